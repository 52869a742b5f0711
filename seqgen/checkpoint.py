"""Checkpoints: a directory holding a trained model, its vocabulary and how it was trained.

Layout of a run directory (``checkpoints/<name>/`` by default)::

    model.safetensors        weights (safetensors: no pickle, nothing executable)
    checkpoint.json          format, version, model config, train config, tokenizer, corpus name,
                             kind, split (and context), step, metrics, and the size + SHA-256
                             of every other file
    train_state.safetensors  optimizer tensors, RNG state, carried RNN hidden state (for --resume)
    train_state.json         optimizer hyper-parameters, scheduler, data position, RNG seeds
    metrics.jsonl            one JSON object per log/eval point (written by training)
    loss.png                 the loss curve (written at the end of training)
    best/                    the checkpoint with the lowest validation loss (model + checkpoint.json)

Every file is written atomically (temp file + fsync + rename). A save writes the new weights and
training state beside the old ones (``.model.safetensors.next`` ...), then ``checkpoint.json`` with
their sizes and SHA-256 (the commit point), then renames them into place. A process killed at any
moment leaves a directory that loads: before the commit point the old files and the old
checkpoint.json still agree; after it, the loader finds the files checkpoint.json describes under
either name, and the next save finishes the renames. ``load_checkpoint`` checks sizes and hashes
and turns anything missing, truncated, corrupt, hostile or from a newer seqgen into a one-line
CheckpointError; a hostile config (absurd sizes) is refused before the model is allocated, by
building it on torch's "meta" device first. torch.load and pickle are never used.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seqgen.errors import CheckpointError, SeqgenError, restated
from seqgen.fileio import atomic_path, atomic_write_text, read_json_object

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
FILES = (WEIGHTS, STATE_TENSORS, STATE_META)  # what "files" in checkpoint.json may describe
SPLITS = ("document", "position")  # checkpoint.json "corpus" "split": see prompt_context
MAX_CONTEXT = 256  # characters of checkpoint.json "corpus" "context", at most
PENDING = ".next"  # a file of a save in progress: .model.safetensors.next
# Memory a model may need beyond its weights (non-persistent buffers such as the one-hot identity
# or the sinusoidal position table): more than this, and 4x the weights, is refused as hostile.
MAX_EXTRA_BYTES = 512 << 20


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
    # what the model reads before a prompt: None = <eos>, a document's start; else characters
    # of the one text it was trained on (a paragraph break): see prompt_context
    context: str | None = None
    # the forms and part lengths of its training tunes per meter and rhythm, for an ABC model
    # trained since they were recorded (seqgen.music.form.corpus_forms); None before that
    forms: dict | None = None


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


def _pending(directory: Path, name: str) -> Path:
    return directory / f".{name}{PENDING}"


def _matches(path: Path, entry: Any) -> bool:
    try:
        return (isinstance(entry, dict) and path.is_file()
                and path.stat().st_size == entry.get("bytes")
                and _sha256(path) == entry.get("sha256"))
    except OSError:  # renamed or removed meanwhile by the run that writes it
        return False


def _finish_pending(directory: Path) -> None:
    """Complete or discard what an interrupted save left: a pending file that checkpoint.json
    describes is renamed into place (the save had committed); any other pending or temporary file
    is removed (the save had not). Only the process holding the run's lock calls this."""
    pending = [n for n in FILES if _pending(directory, n).exists()]
    files: dict = {}
    if pending and (directory / META).is_file():
        try:
            files = json.loads((directory / META).read_text("utf-8")).get("files") or {}
        except (OSError, ValueError, AttributeError):
            files = {}
    for name in pending:
        p = _pending(directory, name)
        if isinstance(files, dict) and _matches(p, files.get(name)):
            os.replace(p, directory / name)
        else:
            p.unlink(missing_ok=True)
    for p in directory.glob(".*.tmp"):  # a temporary file of a write that was killed
        p.unlink(missing_ok=True)


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
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        try:
            save_file(tensors, str(tmp), metadata=metadata)
        except SafetensorError as e:  # its I/O errors (a full disk) are no OSError: make them one
            m = re.search(r"os error (\d+)", str(e))
            code = int(m.group(1)) if m else errno.EIO
            raise OSError(code, os.strerror(code)) from e


def _read_json(path: Path, what: str) -> dict:
    return read_json_object(path, CheckpointError, what, "missing; not a seqgen checkpoint",
                            MAX_JSON_BYTES)


def _check_file(directory: Path, name: str, meta: dict) -> Path:
    """The path of `name` in `directory`, after checking its size and hash against the metadata.

    A save killed after writing checkpoint.json but before renaming its new files into place
    leaves them under their pending name: that file is returned when it is the one described."""
    path = directory / name
    entry = (meta.get("files") or {}).get(name)
    if not isinstance(entry, dict):
        raise CheckpointError(f"{directory / META}: \"files\" does not describe {name}")
    if _pending(directory, name).is_file() and _matches(_pending(directory, name), entry):
        return _pending(directory, name)
    try:
        size = path.stat().st_size
        if size != entry.get("bytes"):
            raise CheckpointError(
                f"{path}: {size:,} bytes, expected {entry.get('bytes')!r}; the file is truncated "
                "or was replaced"
            )
        digest = _sha256(path)
    except OSError:
        raise CheckpointError(f"{path}: missing; the checkpoint is incomplete") from None
    if digest != entry.get("sha256"):
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
    corpus_split: str | None = None,
    context: str | None = None,
    forms: dict | None = None,
    held_out: dict | None = None,
    calibration: dict | None = None,
) -> Path:
    """Write a checkpoint into `directory` (created if needed) and return it.

    `corpus_split` is how training split the corpus (seqgen.data.Split.by): "document" (its
    documents each ended by <eos>) or "position" (one text, no <eos>); with "position",
    `context` is what sampling reads before a prompt (seqgen.sampling.text_context). Both are
    saved under "corpus" (see `prompt_context`), with `held_out` ({"of": what `val_fraction` was
    a share of, "share": the held-out share of the characters, "why": in words}; see
    `share_of`) and `forms`, the forms and part lengths of an ABC corpus's training tunes
    (seqgen.music.form.corpus_forms). `calibration`: what `--preset auto` measured and chose
    (seqgen.train.calibrate), saved as "calibration". The weights (and the training state, when
    given) are written first, each atomically; checkpoint.json, with the sizes and hashes of
    those files, is written last.
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
    try:
        _finish_pending(directory)
    except OSError as e:
        from seqgen.fileio import WriteError

        raise WriteError(f"cannot tidy {directory}: {e.strerror or e}") from e
    state = {k: v for k, v in model.state_dict().items()}
    # 1. the new files beside the old ones; 2. checkpoint.json (the commit); 3. rename them.
    _save_tensors(_pending(directory, WEIGHTS), state, metadata={"format": FORMAT})
    written = [WEIGHTS]
    if train_state is not None:
        _save_tensors(_pending(directory, STATE_TENSORS), train_state.tensors,
                      metadata={"format": FORMAT})
        atomic_write_text(_pending(directory, STATE_META),
                          json.dumps(_json_safe(train_state.meta)) + "\n")
        written += [STATE_TENSORS, STATE_META]
    files = {name: _file_entry(_pending(directory, name)) for name in written}
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "model_config": config.to_dict(),
        "train_config": _json_safe(train_config),
        "tokenizer": tokenizer.to_dict(),
        "corpus": {"name": str(corpus_name), "kind": corpus_kind,
                   **({"split": corpus_split} if corpus_split is not None else {}),
                   **({"context": context} if context is not None else {}),
                   **({"held_out": held_out} if held_out is not None else {}),
                   **({"forms": forms} if forms is not None else {})},
        "step": int(step),
        "metrics": _json_safe(metrics or {}),
        "summary": model.summary() if hasattr(model, "summary") else type(model).__name__,
        "files": files,
        **({"calibration": _json_safe(calibration)} if calibration is not None else {}),
    }
    atomic_write_text(directory / META, json.dumps(meta, ensure_ascii=False, indent=1) + "\n")
    try:
        for name in written:
            os.replace(_pending(directory, name), directory / name)
    except OSError as e:  # committed already: the loader reads the pending files
        from seqgen.fileio import WriteError

        raise WriteError(f"cannot write {directory / name}: {e.strerror or e}") from e
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
    if corpus.get("split", "document") not in SPLITS:
        raise CheckpointError(f"{src}: \"corpus\" \"split\" must be 'document' or 'position'")
    context = corpus.get("context", "")
    if not isinstance(context, str) or len(context) > MAX_CONTEXT:
        raise CheckpointError(f"{src}: \"corpus\" \"context\" must be a string of at most "
                              f"{MAX_CONTEXT} characters")
    if "forms" in corpus:
        from seqgen.music.form import forms_problem

        problem = forms_problem(corpus["forms"])
        if problem:
            raise CheckpointError(f"{src}: \"corpus\" \"forms\" {problem}")
    for name, entry in meta["files"].items():
        if name not in FILES:
            raise CheckpointError(f"{src}: \"files\" names {name[:80]!r}, which is not a file of a "
                                  f"seqgen checkpoint ({', '.join(FILES)})")
        if (not isinstance(entry, dict) or set(entry) != {"bytes", "sha256"}
                or type(entry["bytes"]) is not int or entry["bytes"] < 0
                or not isinstance(entry["sha256"], str) or len(entry["sha256"]) != 64):
            raise CheckpointError(f"{src}: \"files\" entry of {name} must be "
                                  "{\"bytes\": size, \"sha256\": hex digest}")
    return directory, meta


def _check_shapes(expected: dict[str, tuple], found: dict[str, tuple], path: Path) -> None:
    """CheckpointError unless the tensors `found` in `path` are exactly those the model needs."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:4])}"
                         f"{' ...' if len(unexpected) > 4 else ''}")
        raise CheckpointError(f"{path}: the weights do not fit the model config ({'; '.join(parts)})")
    for k, shape in expected.items():
        if found[k] != shape:
            raise CheckpointError(f"{path}: tensor {k} has shape {found[k]}, the model config "
                                  f"needs {shape}")


def _size_estimate(config: ModelConfig) -> int:
    """Parameters plus buffers (in elements) the config needs, from the models' shapes; a quick
    upper-bound sketch that lets ordinary checkpoints skip the slower exact plan below."""
    V, H, L, C = config.vocab_size, config.hidden_size, config.num_layers, config.context_length
    if config.kind == "transformer":
        return 2 * V * H + C * H + L * (12 * H * H + 4 * H) + 2 * H + V * max(H, 1)
    E = V if config.embedding == "onehot" else config.embed_dim
    gates = {"rnn": 1, "gru": 3, "lstm": 4}.get(config.kind, 4)
    return V * max(E, V) + gates * L * (H * (E + H) + H * H + 2 * H) + H * V


def _plan_model(config: ModelConfig, weights_path: Path, src: Path) -> None:
    """Refuse a config that does not fit the weights file, or that needs far more memory than the
    weights, before allocating anything: the model is built on the "meta" device (shapes only)
    and compared with the safetensors header."""
    import torch
    from safetensors import safe_open

    from seqgen.models import build_model

    try:
        with safe_open(str(weights_path), framework="pt") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as e:  # SafetensorError, OSError: not usable
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"{weights_path}: not a valid safetensors file ({msg})") from None
    if config.num_layers > len(shapes):
        raise CheckpointError(f"{src}: \"model_config\" has {config.num_layers:,} layers but "
                              f"{weights_path.name} holds only {len(shapes)} tensors")
    sizes = [config.vocab_size, config.hidden_size, config.embed_dim, config.context_length]
    total = sum(math.prod(s) for s in shapes.values())
    if max(sizes) > max(total, 1) * 4 and max(sizes) > (1 << 24):
        raise CheckpointError(f"{src}: \"model_config\" sizes ({max(sizes):,}) are too large for "
                              f"the {total:,} weights in {weights_path.name}; not a real checkpoint")
    weight_bytes = weights_path.stat().st_size
    try:
        plausible = _size_estimate(config) * 4 <= 4 * weight_bytes + MAX_EXTRA_BYTES
    except (TypeError, ValueError, OverflowError):
        plausible = False
    if plausible:
        # Building it allocates about as much as the weights: the exact shape checks run on the
        # real model in load_checkpoint. (Building on "meta" would import torch._dynamo: ~3 s.)
        return
    try:
        config.validate()
        with torch.device("meta"):
            plan = build_model(config)
    except SeqgenError as e:
        raise restated(CheckpointError, e,
                       lambda m: f"{src}: the model config cannot be built ({m})") from None
    except (RuntimeError, ValueError, TypeError, OverflowError) as e:
        raise CheckpointError(f"{src}: the model config cannot be built ({type(e).__name__})") \
            from None
    expected = {k: tuple(v.shape) for k, v in plan.state_dict().items()}
    _check_shapes(expected, shapes, weights_path)
    saved = set(expected)
    extra = sum(b.numel() * b.element_size() for name, b in plan.named_buffers()
                if name not in saved)
    if extra > max(MAX_EXTRA_BYTES, 4 * weight_bytes):
        raise CheckpointError(
            f"{src}: this model config needs {extra / 1e9:,.1f} GB of memory besides its "
            f"{weight_bytes / 1e6:,.1f} MB of weights (one-hot or position tables); refused as "
            "hostile or corrupt"
        )


def _files_state(directory: Path) -> tuple:
    """What a writer changes in `directory`: inode and mtime of each checkpoint file."""
    out = []
    for name in (META, *FILES, *(f".{n}{PENDING}" for n in FILES)):
        try:
            st = (directory / name).stat()
            out.append((st.st_ino, st.st_mtime_ns, st.st_size))
        except OSError:
            out.append(None)
    return tuple(out)


def _while_stable(path: str | os.PathLike, load):
    """load() again when it failed while a training run was saving into the directory (a reader
    can see the new checkpoint.json with the old weights for a moment): a failure is reported
    only when the directory did not change while reading."""
    import time

    for attempt in range(50):
        try:
            directory = resolve_dir(path)
        except CheckpointError:
            directory = None
        before = _files_state(directory) if directory else None
        try:
            return load()
        except (CheckpointError, OSError) as e:
            if directory is None or _files_state(directory) == before or attempt == 49:
                if isinstance(e, OSError):
                    raise CheckpointError(f"{e.filename or path}: cannot read "
                                          f"({e.strerror or e})") from None
                raise
            time.sleep(0.02)


def default_model_dir() -> Path | None:
    """The default model shipped with the package (seqgen/assets/default), or None when this
    installation has none."""
    d = Path(__file__).resolve().parent / "assets" / "default"
    return d if (d / META).is_file() else None


def load_checkpoint(path: str | os.PathLike, device: str = "cpu") -> Checkpoint:
    """Load the checkpoint in `path` (a run directory or its best/ directory) onto `device`;
    ``"default"`` (when no such directory is here) is the model shipped with seqgen, as on the
    command line.

    The model is returned in eval mode. Any problem is a CheckpointError naming the file, and a
    `device` this machine lacks a UsageError (seqgen.devices.resolve_device). It is safe to load
    from a run directory while `seqgen train` is saving into it.
    """
    from seqgen.devices import resolve_device

    device = resolve_device(device)
    if str(path) == "default" and not Path(path).exists() and default_model_dir() is not None:
        path = default_model_dir()  # type: ignore[assignment]
    return _while_stable(path, lambda: _load_checkpoint(path, device))


def _load_checkpoint(path: str | os.PathLike, device: str = "cpu") -> Checkpoint:
    from seqgen.models import ModelConfig, build_model
    from seqgen.tokenizer import Tokenizer

    directory, meta = read_meta(path)
    src = directory / META
    try:
        config = ModelConfig.from_dict(meta["model_config"])
    except CheckpointError as e:
        raise restated(CheckpointError, e, lambda m: f"{src}: {m}") from None
    except (SeqgenError, TypeError, ValueError, KeyError) as e:
        raise restated(CheckpointError, e, lambda m: f"{src}: bad \"model_config\" ({m})") \
            from None
    try:
        tokenizer = Tokenizer.from_dict(meta["tokenizer"], source=f"{src} \"tokenizer\"")
    except SeqgenError as e:
        raise CheckpointError(str(e)) from None
    if config.vocab_size != tokenizer.vocab_size:
        raise CheckpointError(
            f"{src}: the model's vocab_size ({config.vocab_size}) differs from the tokenizer's "
            f"({tokenizer.vocab_size}); the checkpoint is inconsistent"
        )
    weights_path = _check_file(directory, WEIGHTS, meta)
    _plan_model(config, weights_path, src)  # before anything big is allocated
    weights = _load_tensors(weights_path, device="cpu")
    try:
        model = build_model(config)
    except SeqgenError as e:
        raise restated(CheckpointError, e,
                       lambda m: f"{src}: the model config cannot be built ({m})") from None
    _check_shapes({k: tuple(v.shape) for k, v in model.state_dict().items()},
                  {k: tuple(v.shape) for k, v in weights.items()}, directory / WEIGHTS)
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
        context=prompt_context(meta),
        forms=meta["corpus"].get("forms"),
    )


def prompt_context(meta: dict) -> str | None:
    """What the model of checkpoint.json `meta` reads before a prompt, as it read text in
    training (seqgen.sampling.encode_prompt): None, ``<eos>``, for a model trained on documents
    each ended by <eos> (the prompt starts a document); else the characters that come before a
    paragraph in the one text it was trained on (split by position: no <eos> in its training
    ids), "\n\n" for most texts.

    Training records "corpus" "split" ("document" | "position") and, for "position", the
    "context". Checkpoints written before that have neither; for them: ABC tunes (corpus kind
    "abc", as the shipped model's) and text read with --split-docs or from a folder with --glob
    were documents; other text is taken as one text, read after "\n\n" when its vocabulary has
    a line break. That is the safe side: a model trained on documents loses only the context of
    a document's start when read without <eos>, while a model that never saw <eos> can derail
    after one."""
    corpus, tc = meta.get("corpus") or {}, meta.get("train_config") or {}
    split = corpus.get("split")
    if split is None:
        documents = (corpus.get("kind") == "abc" or bool(tc.get("split_docs"))
                     or tc.get("glob") is not None)
        split = "document" if documents else "position"
    if split == "document":
        return None
    if isinstance(corpus.get("context"), str):
        return corpus["context"]
    chars = (meta.get("tokenizer") or {}).get("chars") or ()
    return "\n\n" if "\n" in chars else " " if " " in chars else ""


def share_of(meta: dict) -> str:
    """What `val_fraction` was a share of when the run of checkpoint.json `meta` split its corpus
    (seqgen.data.split_corpus): "tokens", as "corpus" "held_out" records it, or "documents" for
    checkpoints written before that record, whose split held out a share of the documents."""
    from seqgen.data import SHARE_OF

    held = (meta.get("corpus") or {}).get("held_out")
    of = held.get("of") if isinstance(held, dict) else None
    return of if of in SHARE_OF else "documents"


def load_train_state(path: str | os.PathLike) -> tuple[Path, dict, TrainState]:
    """The run directory, its checkpoint.json and its training state, for --resume.

    CheckpointError when `path` is not a checkpoint or holds no training state (best/ has none).
    """
    return _while_stable(path, lambda: _load_train_state(path))


def _load_train_state(path: str | os.PathLike) -> tuple[Path, dict, TrainState]:
    """The run directory, its checkpoint.json and its training state, for --resume.

    CheckpointError when `path` is not a checkpoint or holds no training state (best/ has none).
    """
    p = Path(path).expanduser()
    if p.is_dir() and not (p / META).is_file():
        raise CheckpointError(
            f"{p}: not a seqgen checkpoint (no {META} in it); `resume` takes a run directory",
            params=True
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
