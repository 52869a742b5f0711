"""Checkpoints: a directory holding a trained model, its vocabulary and how it was trained.

Layout of a run directory (``checkpoints/<name>/`` by default)::

    model.safetensors        weights (safetensors: no pickle, nothing executable)
    checkpoint.json          format, version, model config, train config, tokenizer, corpus name
                             and kind, step, metrics, and the size + SHA-256 of every other file
    train_state.safetensors  optimizer tensors, RNG state, carried RNN hidden state (for --resume)
    train_state.json         optimizer hyper-parameters, scheduler, data position, RNG seeds
    metrics.jsonl            one JSON object per log/eval point (written by training)
    loss.png                 the loss curve (written at the end of training)
    best/                    the checkpoint with the lowest validation loss (model + checkpoint.json)

Every file is written atomically (temp file + fsync + rename) and ``checkpoint.json`` last, so that
it always describes complete files; ``load_checkpoint`` checks sizes and hashes and turns anything
missing, truncated, corrupt or from a newer seqgen into a one-line CheckpointError. torch.load and
pickle are never used.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seqgen.errors import CheckpointError, SeqgenError
from seqgen.fileio import atomic_path, atomic_write_text

if TYPE_CHECKING:
    import torch

    from seqgen.models import ModelConfig
    from seqgen.tokenizer import Tokenizer

FORMAT = "seqgen-checkpoint"
VERSION = 1
WEIGHTS = "model.safetensors"
META = "checkpoint.json"
STATE_TENSORS = "train_state.safetensors"
STATE_META = "train_state.json"
BEST = "best"
MAX_JSON_BYTES = 64 << 20  # a checkpoint.json larger than this is not one of ours


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model (in eval mode) and everything needed to use or resume it."""

    model: torch.nn.Module
    tokenizer: Tokenizer
    model_config: ModelConfig
    train_config: dict
    corpus_name: str
    corpus_kind: str  # "abc" or "text"
    step: int
    metrics: dict
    path: Path
    meta: dict = field(default_factory=dict)  # the whole checkpoint.json


@dataclass
class TrainState:
    """What --resume needs beyond the weights: tensors go to safetensors, the rest to JSON."""

    tensors: dict[str, torch.Tensor]
    meta: dict


# --------------------------------------------------------------------------------- helpers
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _file_entry(path: Path) -> dict:
    return {"bytes": path.stat().st_size, "sha256": _sha256(path)}


def _json_safe(obj: Any) -> Any:
    """Tuples become lists, non-finite floats become strings JSON can carry."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return repr(obj)
    return obj


def _save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict | None = None) -> None:
    from safetensors.torch import save_file

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def _read_json(path: Path, what: str) -> dict:
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise CheckpointError(f"{path}: {size:,} bytes is too large for a {what}")
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing; not a seqgen checkpoint") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path}: is a directory, expected the {what}") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror})") from None
    try:
        d = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise CheckpointError(f"{path}: not UTF-8 text; the {what} is corrupt") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(
            f"{path}: line {e.lineno}: invalid JSON ({e.msg}); the {what} is corrupt or truncated"
        ) from None
    if not isinstance(d, dict):
        raise CheckpointError(f"{path}: expected a JSON object; the {what} is corrupt")
    return d


def _check_file(directory: Path, name: str, meta: dict) -> Path:
    """The path of `name` in `directory`, after checking its size and hash against the metadata."""
    path = directory / name
    entry = (meta.get("files") or {}).get(name)
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; the checkpoint is incomplete")
    if not isinstance(entry, dict):
        raise CheckpointError(f"{directory / META}: \"files\" does not describe {name}")
    size = path.stat().st_size
    if size != entry.get("bytes"):
        raise CheckpointError(
            f"{path}: {size:,} bytes, expected {entry.get('bytes')!r}; the file is truncated or "
            "was replaced"
        )
    if _sha256(path) != entry.get("sha256"):
        raise CheckpointError(f"{path}: SHA-256 does not match {META}; the file is corrupt")
    return path


def _load_tensors(path: Path, device: str = "cpu") -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device=device)
    except Exception as e:  # SafetensorError, OSError, ValueError: all mean "not usable"
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"{path}: not a valid safetensors file ({msg})") from None


def resolve_dir(path: str | os.PathLike) -> Path:
    """`path` as a checkpoint directory: a run directory, its best/ directory, or the
    checkpoint.json / model.safetensors inside one."""
    p = Path(path).expanduser()
    if p.is_file() and p.name in (META, WEIGHTS):
        p = p.parent
    if not p.exists():
        raise CheckpointError(f"{p}: no such checkpoint directory")
    if not p.is_dir():
        raise CheckpointError(f"{p}: not a checkpoint directory (expected a directory with {META})")
    if not (p / META).is_file():
        if (p / BEST / META).is_file():
            return p / BEST
        raise CheckpointError(f"{p}: not a seqgen checkpoint (no {META} in it)")
    return p


# --------------------------------------------------------------------------------- packing
def pack_state(obj: Any, tensors: dict[str, torch.Tensor], prefix: str = "") -> Any:
    """A JSON-able copy of `obj` (a state_dict of nested dicts, lists, tuples, numbers and
    tensors) with every tensor moved into `tensors` under a key derived from its place in `obj`.

    unpack_state(pack_state(obj, t), t) rebuilds `obj` exactly: int dict keys stay ints, tuples
    stay tuples, non-finite floats survive.
    """
    import torch

    if isinstance(obj, torch.Tensor):
        key = prefix or "tensor"
        tensors[key] = obj.detach().to("cpu").clone().contiguous()
        return {"$t": key}
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in obj):
            return {k: pack_state(v, tensors, f"{prefix}.{k}" if prefix else k)
                    for k, v in obj.items()}
        items = []
        for k, v in obj.items():
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise TypeError(f"cannot store a state key of type {type(k).__name__}")
            items.append([k, pack_state(v, tensors, f"{prefix}.{k}" if prefix else str(k))])
        return {"$items": items}
    if isinstance(obj, tuple):
        return {"$tuple": [pack_state(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [pack_state(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]
    if isinstance(obj, float) and not math.isfinite(obj):
        return {"$f": repr(obj)}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store a value of type {type(obj).__name__} in a checkpoint")


def unpack_state(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """The inverse of pack_state; CheckpointError when a referenced tensor is missing."""
    if isinstance(obj, dict):
        if set(obj) == {"$t"}:
            try:
                return tensors[obj["$t"]]
            except KeyError:
                raise CheckpointError(f"training state refers to a missing tensor {obj['$t']!r}") from None
        if set(obj) == {"$items"}:
            return {k: unpack_state(v, tensors) for k, v in obj["$items"]}
        if set(obj) == {"$tuple"}:
            return tuple(unpack_state(v, tensors) for v in obj["$tuple"])
        if set(obj) == {"$f"}:
            return float(obj["$f"])
        return {k: unpack_state(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [unpack_state(v, tensors) for v in obj]
    return obj


# --------------------------------------------------------------------------------- saving
def save_checkpoint(
    directory: str | os.PathLike,
    model: torch.nn.Module,
    tokenizer: Tokenizer,
    train_config: dict,
    corpus_name: str,
    corpus_kind: str,
    step: int,
    metrics: dict | None = None,
    train_state: TrainState | None = None,
    extra: dict | None = None,
) -> Path:
    """Write a checkpoint into `directory` (created if needed) and return it.

    The weights (and the training state, when given) are written first, each atomically;
    checkpoint.json, with the sizes and hashes of those files, is written last.
    """
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        from seqgen.fileio import WriteError

        raise WriteError(f"cannot create {directory}: {e.strerror or e}") from e
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    model = getattr(model, "_orig_mod", model)  # unwrap torch.compile
    config = model.config
    state = {k: v for k, v in model.state_dict().items()}
    _save_tensors(directory / WEIGHTS, state, metadata={"format": FORMAT})
    files = {WEIGHTS: _file_entry(directory / WEIGHTS)}
    if train_state is not None:
        _save_tensors(directory / STATE_TENSORS, train_state.tensors, metadata={"format": FORMAT})
        atomic_write_text(directory / STATE_META, json.dumps(_json_safe(train_state.meta)) + "\n")
        files[STATE_TENSORS] = _file_entry(directory / STATE_TENSORS)
        files[STATE_META] = _file_entry(directory / STATE_META)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "model_config": config.to_dict(),
        "train_config": _json_safe(train_config),
        "tokenizer": tokenizer.to_dict(),
        "corpus": {"name": str(corpus_name), "kind": corpus_kind},
        "step": int(step),
        "metrics": _json_safe(metrics or {}),
        "summary": model.summary() if hasattr(model, "summary") else type(model).__name__,
        "files": files,
    }
    if extra:
        meta.update(_json_safe(extra))
    atomic_write_text(directory / META, json.dumps(meta, ensure_ascii=False, indent=1) + "\n")
    return directory


# --------------------------------------------------------------------------------- loading
def read_meta(path: str | os.PathLike) -> tuple[Path, dict]:
    """The checkpoint directory and its validated checkpoint.json, without loading weights."""
    directory = resolve_dir(path)
    meta = _read_json(directory / META, "checkpoint metadata")
    src = directory / META
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{src}: not a seqgen checkpoint (\"format\" is not {FORMAT!r})")
    version = meta.get("version")
    if type(version) is not int or version < 1:
        raise CheckpointError(f"{src}: \"version\" must be a positive integer")
    if version > VERSION:
        raise CheckpointError(
            f"{src}: checkpoint format version {version} is newer than this seqgen understands "
            f"({VERSION}); upgrade seqgen to load it"
        )
    for key, typ in [("model_config", dict), ("train_config", dict), ("tokenizer", dict),
                     ("corpus", dict), ("metrics", dict), ("files", dict)]:
        if not isinstance(meta.get(key), typ):
            raise CheckpointError(f"{src}: \"{key}\" is missing or not a JSON object")
    if type(meta.get("step")) is not int or meta["step"] < 0:
        raise CheckpointError(f"{src}: \"step\" must be a non-negative integer")
    corpus = meta["corpus"]
    if corpus.get("kind") not in ("abc", "text") or not isinstance(corpus.get("name"), str):
        raise CheckpointError(f"{src}: \"corpus\" must have a name and a kind of 'abc' or 'text'")
    return directory, meta


def load_checkpoint(path: str | os.PathLike, device: str = "cpu") -> Checkpoint:
    """Load the checkpoint in `path` (a run directory or its best/ directory) onto `device`.

    The model is returned in eval mode. Any problem is a CheckpointError naming the file.
    """
    from seqgen.models import ModelConfig, build_model
    from seqgen.tokenizer import Tokenizer

    directory, meta = read_meta(path)
    src = directory / META
    try:
        config = ModelConfig.from_dict(meta["model_config"])
    except CheckpointError as e:
        raise CheckpointError(f"{src}: {e}") from None
    except (SeqgenError, TypeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{src}: bad \"model_config\" ({e})") from None
    try:
        tokenizer = Tokenizer.from_dict(meta["tokenizer"], source=f"{src} \"tokenizer\"")
    except SeqgenError as e:
        raise CheckpointError(str(e)) from None
    if config.vocab_size != tokenizer.vocab_size:
        raise CheckpointError(
            f"{src}: the model's vocab_size ({config.vocab_size}) differs from the tokenizer's "
            f"({tokenizer.vocab_size}); the checkpoint is inconsistent"
        )
    weights = _load_tensors(_check_file(directory, WEIGHTS, meta), device="cpu")
    try:
        config.validate()
        model = build_model(config)
    except SeqgenError as e:
        raise CheckpointError(f"{src}: the model config cannot be built ({e})") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:4])}"
                         f"{' ...' if len(unexpected) > 4 else ''}")
        raise CheckpointError(
            f"{directory / WEIGHTS}: the weights do not fit the model config ({'; '.join(parts)})"
        )
    for k, v in expected.items():
        if tuple(weights[k].shape) != tuple(v.shape):
            raise CheckpointError(
                f"{directory / WEIGHTS}: tensor {k} has shape {tuple(weights[k].shape)}, the model "
                f"config needs {tuple(v.shape)}"
            )
    model.load_state_dict(weights, strict=True)
    model.to(device)
    model.eval()
    return Checkpoint(
        model=model,
        tokenizer=tokenizer,
        model_config=config,
        train_config=meta["train_config"],
        corpus_name=meta["corpus"]["name"],
        corpus_kind=meta["corpus"]["kind"],
        step=meta["step"],
        metrics=meta["metrics"],
        path=directory,
        meta=meta,
    )


def load_train_state(path: str | os.PathLike) -> tuple[Path, dict, TrainState]:
    """The run directory, its checkpoint.json and its training state, for --resume.

    CheckpointError when `path` is not a checkpoint or holds no training state (best/ has none).
    """
    p = Path(path).expanduser()
    if p.is_dir() and not (p / META).is_file():
        raise CheckpointError(
            f"{p}: not a seqgen checkpoint (no {META} in it); --resume takes a run directory"
        )
    directory, meta = read_meta(p)
    if STATE_META not in meta["files"] or STATE_TENSORS not in meta["files"]:
        raise CheckpointError(
            f"{directory}: holds no training state, so it cannot be resumed (a best/ directory "
            "never does: resume its parent run directory)"
        )
    _check_file(directory, WEIGHTS, meta)
    tensors = _load_tensors(_check_file(directory, STATE_TENSORS, meta))
    state_meta = _read_json(_check_file(directory, STATE_META, meta), "training state")
    return directory, meta, TrainState(tensors=tensors, meta=state_meta)


def find_latest_checkpoint(root: str | os.PathLike = "checkpoints") -> Path | None:
    """The most recently written run directory under `root` (by its checkpoint.json), or None."""
    root = Path(root).expanduser()
    if not root.is_dir():
        return None
    candidates = []
    if (root / META).is_file():
        candidates.append(root)
    for child in root.iterdir():
        if child.is_dir() and (child / META).is_file():
            candidates.append(child)
    if not candidates:
        return None
    return max(candidates, key=lambda p: ((p / META).stat().st_mtime_ns, str(p)))
