"""Setting a run up, all that comes before its first step: the config (as given, or the saved one
on --resume), the device, the corpus and its vocabulary, the model, optimizer and batches, the
run directory and its lock, and the saved training state put back. The checks run in the order a
user meets them, and none writes anything before the run directory is claimed."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seqgen.data import corpus_path
from seqgen.errors import CheckpointError, DataError, UsageError, restated
from seqgen.train.batches import RandomWindows, StreamBatches
from seqgen.train.config import (
    ARCHITECTURE,
    RESOLVED,
    RESUMABLE_OVERRIDES,
    TrainConfig,
    budget_seconds,
    check_init_from_model,
    check_kind_options,
    family,
    resolve_config,
)
from seqgen.train.distributed import Dist
from seqgen.train.hardware import resolve_precision, run_device
from seqgen.train.runstate import RunState

if TYPE_CHECKING:
    import torch

    from seqgen.checkpoint import Checkpoint, TrainState
    from seqgen.data import Corpus, PreparedData
    from seqgen.models import ModelConfig
    from seqgen.train.calibrate import Calibration


@dataclass
class Origin:
    """Where a run's config comes from: as given (a new run), or as saved in `run_dir` with this
    call's overrides (--resume: with the saved training state, and the lock rank 0 took there
    before reading it: (run_dir, the stale lock it took over or None))."""

    cfg: TrainConfig
    run_dir: Path | None = None
    saved: TrainState | None = None
    locked: tuple[Path, str | None] | None = None


@dataclass
class Loaded:
    """The corpus a run trains on, encoded, and the checkpoint it starts from, if any."""

    corpus: Corpus
    data: PreparedData  # split and encoded with the vocabulary of the checkpoint, if any
    digest: str
    resumed: Checkpoint | None = None  # --resume
    init_ckpt: Checkpoint | None = None  # --init-from


def start_run(config: TrainConfig, resume: str | os.PathLike | None, overrides: dict,
              dist: Dist, hold: contextlib.ExitStack) -> RunState:
    """A run set up to take its first step (or its next one, on --resume). The locks it takes are
    entered on `hold`, which the caller closes when the run ends."""
    origin = _origin(config, resume, overrides, dist, hold)
    cfg = origin.cfg
    device = run_device(cfg, dist)
    loaded = load_data(cfg, origin, overrides)
    calibration = _calibrate(cfg, origin, loaded, device, dist)
    rcfg, mcfg = _run_configs(cfg, loaded, device, calibration)
    recurrent = family(mcfg.kind) == "rnn"
    _fit_batch_size(rcfg, cfg.batch_size, loaded, origin.saved is not None, dist.world, recurrent)
    if calibration is not None and rcfg.precision == "auto":
        rcfg.precision = calibration.precision  # (as timed: saved, so --resume keeps it)
    precision = resolve_precision(rcfg.precision, device, mcfg.kind)
    model = _model(mcfg, loaded.resumed or loaded.init_ckpt, rcfg.seed, dist.rank, device)
    optimizer = _optimizer(model, rcfg)
    stateful = recurrent and rcfg.batching != "random"
    Batches = StreamBatches if stateful else RandomWindows
    batches = Batches(loaded.data.train_ids, rcfg.batch_size, rcfg.seq_len, rcfg.seed,
                      dist.rank, dist.world)
    out, replacing, took_over = _claim_out(rcfg, loaded.corpus.name, origin, dist, hold)
    if dist.rank == 0 and loaded.corpus.normalised is not None:
        _write_normalise_report(out, loaded.corpus.normalised)
    run = RunState(cfg=rcfg, mcfg=mcfg, corpus=loaded.corpus, data=loaded.data,
                   digest=loaded.digest, device=device, precision=precision, dist=dist,
                   model=model, optimizer=optimizer, batches=batches, out=out,
                   replacing=replacing, took_over=took_over)
    if loaded.corpus.kind == "abc" and dist.rank == 0:  # saved in every checkpoint of the run
        from seqgen.music.form import cached_corpus_forms

        run.forms = cached_corpus_forms(loaded.data.split.train)
    if calibration is not None:
        run.calibration = calibration.to_dict()
        run.calibrated = calibration.message()
        run.elapsed = calibration.seconds  # (the calibration is counted in the budget)
    elif loaded.resumed is not None:
        run.calibration = loaded.resumed.meta.get("calibration")
    if origin.saved is not None:
        run.restore(origin.saved)
    run.fwd_model = _forward_model(model, rcfg.compile, dist, run.dev_type)
    if dist.enabled:
        hold.callback(_release_ddp, run)
    return run


def _release_ddp(run: RunState) -> None:
    """Free the DistributedDataParallel wrapper when the run ends, while the process group is
    still up. It holds the group and sits in a reference cycle of its own, so without a collection
    here it is freed at whatever collection comes next: after the group is destroyed, or at exit,
    where gloo can abort the process (SIGABRT, "terminate called without an active exception")
    after a run that finished and saved."""
    import gc

    run.fwd_model = None
    gc.collect()


def start_message(run: RunState) -> str:
    """The start event's line: model, corpus, batch, device, and what is unusual."""
    import torch

    cfg, corpus, data = run.cfg, run.corpus, run.data
    note = ""
    if corpus.normalised is not None:
        note = f"\n{corpus.normalised.summary()} (details: {run.out / NORMALISE_REPORT})"
    return (
        (f"resuming {run.out} at step {run.step:,} | " if run.step else "")
        + f"{run.model.summary()} | {corpus.name}"
        + (f" (ABC, {cfg.abc_headers} headers)" if corpus.kind == "abc" else "")
        + f": {len(data.train_ids):,} train / "
        f"{len(data.val_ids):,} val tokens | batch {cfg.batch_size} x {cfg.seq_len} | "
        f"{run.device} {run.precision}"
        + (f" {torch.get_num_threads()} thread(s)" if run.device == "cpu" else "")
        + (f" x{run.dist.world} processes" if run.dist.enabled else "")
        + (f" | {run.calibrated}" if run.calibrated else "")
        + (f" | took over the lock left by {run.took_over}, no longer running" if run.took_over
           else "")
        + ("" if len(data.val_ids) else " | no validation split: no validation loss, "
           "no best/ checkpoint (--val-fraction)")
        + "".join(f"\n{line}" for line in (corpus.note, f"split {data.split.why}") if line)
        + note)


NORMALISE_REPORT = "normalise.json"


def _write_normalise_report(out: Path, report: Any) -> None:
    """RUN/normalise.json: what normalising the ABC corpus repaired, and each tune it dropped
    with why (too many for the terminal)."""
    import json

    from seqgen.fileio import atomic_write_text

    atomic_write_text(out / NORMALISE_REPORT, json.dumps(report.to_dict(), indent=1) + "\n")


# --------------------------------------------------------------------------------- config
def _origin(config: TrainConfig, resume: str | os.PathLike | None, overrides: dict, dist: Dist,
            hold: contextlib.ExitStack) -> Origin:
    if resume is not None:
        return resume_config(resume, overrides, dist, hold)
    config.validate()
    if not config.init_from:
        check_kind_options(config)
    return Origin(config)


def resume_config(resume: str | os.PathLike, overrides: dict, dist: Dist,
                  hold: contextlib.ExitStack) -> Origin:
    """On --resume: the run's saved config with this call's overrides, checked; its directory,
    training state and lock (held from here)."""
    from seqgen import checkpoint as ck

    locked = None
    rp = Path(resume).expanduser()
    if dist.rank == 0 and (rp / ck.META).is_file():  # before reading: no live run
        from seqgen.fileio import directory_lock

        locked = (rp, hold.enter_context(directory_lock(rp, None)))
    run_dir, meta, saved = ck.load_train_state(resume)
    cfg = _saved_config(run_dir / ck.META, meta)
    _override(cfg, overrides, run_dir, saved)
    cfg.out = str(run_dir)
    cfg.validate()
    return Origin(cfg, run_dir, saved, locked)


def _saved_config(src: Path, meta: dict) -> TrainConfig:
    """The config saved with a run, which must be complete (as seqgen train writes it) and valid."""
    cfg = TrainConfig.from_dict(meta["train_config"], source=str(src))
    unresolved = [f.name for f in fields(TrainConfig) if getattr(cfg, f.name) is None
                  and f.name in RESOLVED]
    if unresolved:  # (a calibrated run's preset stays auto, with every field filled in)
        raise CheckpointError(f"{src}: \"train_config\" does not give "
                              f"{', '.join(unresolved) or 'the preset'}; it was not "
                              "written by seqgen train, so it cannot be resumed")
    try:
        cfg.validate()
    except UsageError as e:
        raise restated(CheckpointError, e,
                       lambda m: f"{src}: \"train_config\" is invalid ({m})") from None
    return cfg


def _override(cfg: TrainConfig, overrides: dict, run_dir: Path, saved: TrainState) -> None:
    """This call's options over the saved config: only the RESUMABLE_OVERRIDES may differ; a
    spent --minutes budget needs a larger one, or a --steps count that replaces it, and spent
    --steps a larger count, or a --minutes budget that replaces it (the run's time in all)."""
    from seqgen import checkpoint as ck

    saved_minutes, saved_steps = cfg.minutes, cfg.steps
    sm = saved.meta
    try:
        saved_elapsed = float(sm.get("elapsed_s", 0.0))
        saved_step = int(sm.get("step", 0))
    except (TypeError, ValueError):
        raise CheckpointError(f"{run_dir / ck.STATE_META}: unusable training state "
                              "(elapsed_s, step)") from None
    spent = bool(saved_minutes) and (sm.get("stop_reason") == "time"
                                     or saved_elapsed >= saved_minutes * 60)
    if saved_steps and saved_step >= saved_steps and "minutes" in overrides \
            and "steps" not in overrides:
        overrides = dict(overrides, steps=None)  # a time budget now replaces the spent steps
        if (overrides["minutes"] or 0) * 60 <= saved_elapsed:
            raise UsageError(f"{run_dir} has trained {saved_elapsed / 60:.2f} minutes already; "
                             "`minutes` is the run's time in all: pass more than that",
                             params=True)
    for k, v in overrides.items():
        if k not in RESUMABLE_OVERRIDES and v != getattr(cfg, k, v):
            was = getattr(cfg, k)
            raise UsageError(
                f"`{k}` cannot change when resuming (the run was trained "
                + ("without it" if was is None else f"with {was!r}")
                + "); start a new run instead", config=TrainConfig)
        setattr(cfg, k, v)
    if spent and "steps" in overrides and "minutes" not in overrides:
        cfg.minutes = None  # a step count asked for now replaces the spent time budget
    elif spent and (cfg.minutes or 0) <= saved_minutes:
        raise UsageError(f"{run_dir} already spent its `minutes` {saved_minutes:g} "
                         f"budget ({saved_elapsed / 60:.1f} minutes); "
                         "pass a larger `minutes` to train on, or `steps` N to train to "
                         "step N", params=True)


def _calibrate(cfg: TrainConfig, origin: Origin, loaded: Loaded, device: str,
               dist: Dist) -> Calibration | None:
    """For `--preset auto` on a time budget: measure the machine and choose (calibrate.py;
    `calibrates` says which runs do)."""
    import torch

    from seqgen.train.calibrate import calibrate, calibrates

    budget_s = budget_seconds(cfg)
    if budget_s is None or not calibrates(cfg, origin.saved is not None, dist.enabled, device):
        return None
    precision: str | tuple[str, ...] = resolve_precision(cfg.precision, device, cfg.kind)
    if cfg.precision == "auto" and precision == "bf16" and cfg.kind == "transformer":
        # bf16 pays for the transformer's large matrices only: each candidate is timed at
        # both and trains at the faster (docs/benchmarks.md, "Precision")
        precision = ("bf16", "fp32")
    return calibrate(cfg.kind, loaded.data.tokenizer.vocab_size, loaded.corpus.num_chars,
                     budget_s, precision, device, torch.get_num_threads())


def _run_configs(cfg: TrainConfig, loaded: Loaded, device: str,
                 calibration: Calibration | None = None) -> tuple[TrainConfig, ModelConfig]:
    """The run's config with every field filled in, and its model's: the resumed run's own; the
    --init-from model's architecture with this run's training options; the calibration's
    choice; or from the preset."""
    vocab_size, chars = loaded.data.tokenizer.vocab_size, loaded.corpus.num_chars
    if loaded.resumed is not None:
        rcfg = cfg
        mcfg = replace(loaded.resumed.model_config)
    elif loaded.init_ckpt is not None:
        mcfg = replace(loaded.init_ckpt.model_config)
        for name in ("dropout", "input_dropout"):
            if getattr(cfg, name) is not None:
                setattr(mcfg, name, getattr(cfg, name))
        rcfg, _ = resolve_config(replace(cfg, kind=mcfg.kind), vocab_size, chars, device)
        for name in (*ARCHITECTURE, "dropout", "input_dropout"):
            setattr(rcfg, name, getattr(mcfg, name))
        rcfg.kind = mcfg.kind
        if family(mcfg.kind) == "transformer" and rcfg.seq_len > mcfg.context_length:
            rcfg.seq_len = mcfg.context_length
    else:
        rcfg, mcfg = resolve_config(cfg, vocab_size, chars, device,
                                    calibration.values if calibration else None)
    path = corpus_path(rcfg.corpus)
    if path is not None and path.exists():
        # saved absolute, so that --resume and eval find it from any working directory
        rcfg.corpus = str(path.resolve())
    return rcfg, mcfg


def _fit_batch_size(rcfg: TrainConfig, asked: int | None, loaded: Loaded, resuming: bool,
                    world: int, recurrent: bool) -> None:
    """Check that the training split holds a window, and, for stateful RNN batches, rows of one
    window each: a --batch-size given is refused when they do not fit, one from the preset shrinks
    (to a multiple of the number of processes)."""
    from seqgen.data import check_window

    n, name = len(loaded.data.train_ids), loaded.corpus.name
    if rcfg.batch_size % world:
        raise UsageError(f"`batch_size` ({rcfg.batch_size}) must be a multiple of the number "
                         f"of processes ({world})", params=True)
    check_window(n, rcfg.seq_len, f"{name}: the training split")
    if recurrent and rcfg.batching != "random" and (n - 1) // rcfg.batch_size < rcfg.seq_len:
        if asked is not None and not resuming:
            raise DataError(
                f"{name}: the training split has {n:,} tokens, too "
                f"few for `batch_size` {rcfg.batch_size} rows of `seq_len` {rcfg.seq_len}; "
                "use a smaller `batch_size` or `seq_len`", params=True)
        fit = (n - 1) // rcfg.seq_len
        rcfg.batch_size = max(world, fit - fit % world)


# --------------------------------------------------------------------------------- data
def load_data(cfg: TrainConfig, origin: Origin, overrides: dict) -> Loaded:
    """The corpus, its split and vocabulary (the checkpoint's on --resume and --init-from,
    checked against the corpus), and the resumed or --init-from checkpoint."""
    from seqgen import checkpoint as ck
    from seqgen.data import load_corpus, prepare_data

    try:
        corpus = load_corpus(cfg.corpus, glob=cfg.glob, split_docs=cfg.split_docs,
                             abc_headers=cfg.abc_headers, abc_normalise=cfg.abc_normalise)
    except DataError as e:
        if origin.saved is None or "corpus" in overrides:
            raise
        raise DataError(f"{e}; if the run's corpus has moved, give its new place: "
                        f"seqgen train NEW_PLACE --resume {origin.run_dir}") from None
    tokenizer, init_ckpt, resumed = None, None, None
    if origin.saved is not None:
        # model config, vocabulary and weights, checked as every checkpoint load checks them
        resumed = ck.load_checkpoint(origin.run_dir)
        tokenizer = resumed.tokenizer
    elif cfg.init_from:
        init_ckpt = ck.load_checkpoint(cfg.init_from)
        tokenizer = init_ckpt.tokenizer
        check_kind_options(replace(cfg, kind=init_ckpt.model_config.kind))
        check_init_from_model(cfg, init_ckpt.model_config)
    if tokenizer is not None:
        _check_vocabulary(corpus, tokenizer.chars, cfg.init_from if init_ckpt else str(cfg.out))
    # a resumed run splits as it did (runs from before "held_out": a share of the documents)
    share_of = ck.share_of(resumed.meta) if resumed is not None else "tokens"
    data = prepare_data(corpus, tokenizer, cfg.val_fraction, cfg.seed, share_of=share_of)
    digest = data.digest()
    if origin.saved is not None and origin.saved.meta.get("corpus_digest", digest) != digest:
        raise DataError(f"{corpus.name}: not the text the run in {origin.run_dir} was trained "
                        "on (its tokens differ); resume with that corpus, or start a new run "
                        f"from this one with --init-from {origin.run_dir}")
    return Loaded(corpus, data, digest, resumed, init_ckpt)


def _check_vocabulary(corpus: Corpus, chars: Any, src: str) -> None:
    """DataError for characters of `corpus` that the vocabulary of checkpoint `src` lacks."""
    new = sorted(set().union(*map(set, corpus.documents)) - set(chars), key=ord)
    if new:
        shown = ", ".join(repr(c) for c in new[:20]) + (" ..." if len(new) > 20 else "")
        raise DataError(
            f"{corpus.name}: {len(new)} character(s) not in the vocabulary of {src}: "
            f"{shown}; fine-tuning needs a corpus written with the same characters"
        )


# --------------------------------------------------------------------------------- model
def _model(mcfg: ModelConfig, start: Checkpoint | None, seed: int, rank: int,
           device: str) -> torch.nn.Module:
    """The model on `device`, in training mode, with the weights of the checkpoint it starts
    from, if any; torch's RNG is then seeded per process (each its own dropout masks)."""
    import torch

    from seqgen.models import build_model

    torch.manual_seed(seed)
    model = build_model(mcfg)
    if start is not None:
        model.load_state_dict(start.model.state_dict(), strict=True)
    model.to(device)
    model.train()
    torch.manual_seed(seed + 7919 * (rank + 1))  # dropout masks per process
    return model


def _optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on the matrices only (not on biases and norms)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return adamw(groups, cfg.lr)


def adamw(groups: list[dict], lr: float) -> torch.optim.AdamW:
    """AdamW, fused (one kernel for all tensors) where torch has the kernel for the parameters'
    device, as on CPU and CUDA: on a 2-core CPU its step is about 5x faster than the per-tensor
    loop torch uses by default there (docs/benchmarks.md). A run resumed from a checkpoint keeps
    the implementation it was saved with (load_state_dict restores the flag), so resumes stay
    exact."""
    import torch

    try:
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.99), fused=True)
    except (RuntimeError, ValueError):  # a device without the fused kernel
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.99))


def _forward_model(model: torch.nn.Module, compile: bool, dist: Dist,
                   dev_type: str) -> torch.nn.Module:
    """The model as a step calls it: compiled under --compile, in DistributedDataParallel with
    several processes."""
    import torch

    fwd_model = model
    if compile:
        fwd_model = torch.compile(model)
    if dist.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        fwd_model = DDP(fwd_model, device_ids=[dist.local_rank] if dev_type == "cuda" else None)
    return fwd_model


# --------------------------------------------------------------------------------- run directory
def _claim_out(rcfg: TrainConfig, corpus_name: str, origin: Origin, dist: Dist,
               hold: contextlib.ExitStack) -> tuple[Path, bool, str | None]:
    """The run directory (rcfg.out, set here when it was not given); whether this run replaces
    the checkpoint there (--overwrite); and the stale lock taken over, if any. Rank 0 holds the
    directory's lock from here until the run ends: one writer per run directory."""
    from seqgen import checkpoint as ck

    fresh = origin.saved is None
    out = Path(rcfg.out) if rcfg.out else default_out(corpus_name)
    if fresh and rcfg.out and (out / ck.META).exists() and not rcfg.overwrite:
        raise UsageError(f"`out` {out}: already holds a checkpoint; continue it with "
                         f"`resume` {out}, pass `overwrite`, or choose another `out`",
                         params=True)
    rcfg.out = str(out)
    # --overwrite: the first save of this run removes what the old run left that this one
    # may not write again (its best/ and loss curve), so no command picks up the old model
    replacing = fresh and (out / ck.META).exists()
    locked = origin.locked
    stale_lock = locked[1] if locked else None
    if dist.rank == 0 and not (locked and locked[0].resolve() == out.resolve()):
        from seqgen.fileio import directory_lock

        stale_lock = hold.enter_context(directory_lock(out, "--out" if fresh else None))
    return out, replacing, stale_lock


def default_out(corpus_name: str, root: str = "checkpoints") -> Path:
    """checkpoints/<name>, or <name>-2, -3... when that already holds a checkpoint."""
    stem = Path(corpus_name).stem if Path(corpus_name).suffix else Path(corpus_name).name
    stem = "".join(c if c.isalnum() or c in "-_." else "-" for c in stem).strip(".-") or "run"
    base = Path(root) / stem
    p, i = base, 2
    from seqgen.fileio import is_locked

    while (p / "checkpoint.json").exists() or is_locked(p):  # taken, or a run is starting there
        p, i = base.with_name(f"{stem}-{i}"), i + 1
    return p
