"""A run between its steps (RunState), and how it is kept: saved to the run directory at each
evaluation (weights, training state, metrics.jsonl) and put back from there by --resume."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seqgen.errors import CheckpointError, TrainingError, UsageError
from seqgen.train.batches import rank_rows
from seqgen.train.config import TrainConfig, family
from seqgen.train.distributed import Dist, gather_rows
from seqgen.train.held_out import held_out_loss

if TYPE_CHECKING:
    from seqgen.checkpoint import TrainState
    from seqgen.data import Corpus, PreparedData
    from seqgen.models import ModelConfig


@dataclass(eq=False)
class RunState:
    """One run: the parts set up for it (seqgen.train.start) and how far it has got.

    `evaluate` scores the held-out split, `save` writes the run to its directory and `restore`
    puts a saved one back; `lr_factor` is the learning-rate schedule (LambdaLR's multiplier),
    which follows the run's steps and time."""

    # what the set-up made: the same for the whole run
    cfg: TrainConfig  # every field resolved
    mcfg: ModelConfig
    corpus: Corpus
    data: PreparedData
    digest: str  # of the encoded corpus, saved so that --resume can check its corpus
    device: str
    precision: str
    dist: Dist
    model: Any  # the seqgen model (saved, evaluated, clipped)
    optimizer: Any
    batches: Any  # StreamBatches or RandomWindows
    out: Path
    replacing: bool = False  # --overwrite: the first save removes what the old run left there
    took_over: str | None = None  # the lock of a run that no longer runs, taken over
    forms: dict | None = None  # an ABC corpus's forms (music.form.corpus_forms), for checkpoints
    fwd_model: Any = None  # the model as a step calls it (compiled, in DDP); set after restore
    calibration: dict | None = None  # what `--preset auto` measured and chose (checkpoint.json)
    calibrated: str = ""  # the start line's account of it (a new calibrated run only)
    # how far it has got
    step: int = 0
    elapsed: float = 0.0  # seconds of training and evaluation (the set-up does not count)
    rnn_state: Any = None  # the RNN kinds' state carried across windows: this process's rows
    history: list[dict] = field(default_factory=list)  # the points of metrics.jsonl
    val_loss: float | None = None  # at the last evaluation
    best_val: float | None = None
    best_step: int | None = None
    evals_since_best: int = 0
    stop_reason: str | None = None  # once decided: steps, time or patience

    def __post_init__(self) -> None:
        import torch

        self.metrics_log = MetricsLog(self.out / "metrics.jsonl")
        val_ids = self.data.val_ids
        self.val_ids = val_ids[: self.cfg.eval_tokens + 1] if len(val_ids) > 1 else None
        # (a bound method: LambdaLR saves its empty __dict__, as runs have always saved it)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.lr_factor)

    @property
    def dev_type(self) -> str:
        return self.device.split(":")[0]

    @property
    def recurrent(self) -> bool:
        """An RNN kind: carries its state from window to window."""
        return family(self.mcfg.kind) == "rnn"

    @property
    def budget_s(self) -> float | None:
        return self.cfg.minutes * 60 if self.cfg.minutes else None

    @property
    def info(self) -> dict:
        """What every ProgressEvent of the run carries."""
        return dict(total_steps=self.cfg.steps, budget_s=self.budget_s)

    def autocast(self) -> contextlib.AbstractContextManager:
        """The context a forward pass runs in: bf16 autocast under --precision bf16."""
        import torch

        if self.precision == "bf16":
            return torch.autocast(self.dev_type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def lr_factor(self, step: int) -> float:
        """LambdaLR's multiplier: linear warmup over warmup_steps, then cosine to min_lr_ratio
        over the run (its progress by steps, or by time under --minutes, whichever is further)."""
        cfg = self.cfg
        if step < cfg.warmup_steps:
            return (step + 1) / (cfg.warmup_steps + 1)
        if cfg.schedule == "constant":
            return 1.0
        progress = 0.0
        if cfg.steps:
            progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        if cfg.minutes:
            progress = max(progress, self.elapsed / (cfg.minutes * 60))
        progress = min(1.0, max(0.0, progress))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    # ------------------------------------------------------------------ evaluation
    def evaluate(self) -> float | None:
        """The held-out loss (nats per token) of the first eval_tokens validation tokens; None
        without a validation split. All processes must call it together."""
        if self.val_ids is None:
            return None
        return held_out_loss(self.model, self.val_ids, self.recurrent, self.cfg.seq_len,
                             self.cfg.batch_size, self.autocast, self.device, self.dist)[0]

    def record_validation(self, val_loss: float | None) -> bool:
        """Note an evaluation's loss; True when it is the best so far."""
        self.val_loss = val_loss
        improved = val_loss is not None and (self.best_val is None or val_loss < self.best_val)
        if improved:
            self.best_val, self.best_step, self.evals_since_best = val_loss, self.step, 0
        elif val_loss is not None:
            self.evals_since_best += 1
        return improved

    def nonfinite_error(self, loss: float, grad_norm: float) -> TrainingError:
        """The error for a step whose loss or gradient norm is NaN or infinite, saying where the
        last good checkpoint is; with --log-grad-norms, the norm that failed is logged first."""
        from seqgen import checkpoint as ck

        what = "loss" if not math.isfinite(loss) else "gradient norm"
        last = f"the last good checkpoint is {self.out} (step {_saved_step(self.out)})" \
            if (self.out / ck.META).exists() else "no checkpoint was saved yet"
        if self.dist.rank == 0 and self.cfg.log_grad_norms:  # the norms leading up to it
            self.history.append({"step": self.step + 1, "grad_norm": grad_norm if
                                 math.isfinite(grad_norm) else None, "nonfinite": what})
            self.metrics_log.write(self.history)
        return TrainingError(
            f"the {what} became {loss if what == 'loss' else grad_norm} at step "
            f"{self.step + 1}; {last}; try a lower `lr` (now {self.cfg.lr:g}) or `grad_clip`",
            params=True)

    # ------------------------------------------------------------------ save
    def save(self, metrics: dict, best: bool) -> None:
        """Write the run to its directory (and its model to best/ when `best`): weights,
        training state, metrics.jsonl. All processes must call it together: the RNG state of
        each and the carried RNN state of the whole global batch are saved, so that --resume
        with as many processes continues exactly. Only rank 0 writes."""
        import torch

        from seqgen import checkpoint as ck
        from seqgen.sampling import text_context

        rngs, whole = self._gather()
        if self.dist.rank != 0:
            return
        packed_state, state_t = _state_tensors(whole)
        tensors = dict(state_t)
        opt_meta = ck.pack_state(self.optimizer.state_dict(), tensors, "optimizer")
        tensors["torch_rng"] = torch.get_rng_state()
        tensors["torch_rng_ranks"] = rngs[0]  # (world, N)
        if self.dev_type == "cuda":
            tensors["cuda_rng_ranks"] = rngs[1]
        tmeta = {
            "step": self.step, "elapsed_s": self.elapsed, "world_size": self.dist.world,
            "optimizer": opt_meta, "scheduler": self.scheduler.state_dict(),
            "data": self.batches.state_dict(), "rnn_state": packed_state,
            "best_val_loss": self.best_val, "best_step": self.best_step,
            "evals_since_best": self.evals_since_best, "corpus_digest": self.digest,
            "stop_reason": self.stop_reason,
        }
        split = self.data.split  # how sampling will read prompts (seqgen.sampling.encode_prompt)
        common = dict(tokenizer=self.data.tokenizer, train_config=self.cfg.to_dict(),
                      corpus_name=self.corpus.name, corpus_kind=self.corpus.kind, step=self.step,
                      metrics=metrics, corpus_split=split.by, calibration=self.calibration,
                      context=text_context(split.train[0]) if split.by == "position" else None,
                      forms=self.forms,
                      held_out={"of": self.data.share_of, "share": round(split.share, 6),
                                "why": split.why})
        self.metrics_log.write(self.history)
        if best:
            ck.save_checkpoint(self.out / ck.BEST, self.model, **common)
        ck.save_checkpoint(self.out, self.model, train_state=ck.TrainState(tensors, tmeta),
                           **common)
        if self.replacing:
            if not best:
                shutil.rmtree(self.out / ck.BEST, ignore_errors=True)
            (self.out / "loss.png").unlink(missing_ok=True)
            self.replacing = False

    def _gather(self) -> tuple[list, Any]:
        """The RNG states of every process ((world, N) tensors: torch's, and CUDA's on a GPU) and
        the carried RNN state of every row of the global batch, on rank 0."""
        import torch

        rngs = [torch.get_rng_state()[None]]  # (1, N) each
        if self.dev_type == "cuda":
            rngs.append(torch.cuda.get_rng_state(self.device)[None])
        state = whole = self.rnn_state
        if self.dist.enabled:
            d = self.dist
            rngs = [gather_rows(t, d, 0, [1] * d.world, self.device) for t in rngs]
            if state is not None:
                rows = [rank_rows(self.cfg.batch_size, r, d.world) for r in range(d.world)]
                sizes = [hi - lo for lo, hi in rows]
                parts = [gather_rows(t, d, 1, sizes, self.device)
                         for t in (state if isinstance(state, tuple) else (state,))]
                whole = tuple(parts) if isinstance(state, tuple) else parts[0]
        return rngs, whole

    # ------------------------------------------------------------------ restore
    def restore(self, saved: TrainState) -> None:
        """Put the saved training state back: optimizer, schedule, data position, step, time,
        best validation, random number generators and the carried RNN state, then the metrics
        history up to the saved step. CheckpointError for a state that does not fit; UsageError
        when the run has trained its --steps already."""
        from seqgen import checkpoint as ck

        sm, st = saved.meta, saved.tensors
        try:
            self.optimizer.load_state_dict(ck.unpack_state(sm["optimizer"], st))
            self.scheduler.load_state_dict(sm["scheduler"])
            self.batches.load_state_dict(sm["data"])
            self.step = int(sm["step"])
            self.elapsed = float(sm["elapsed_s"])
            self.best_val, self.best_step = sm.get("best_val_loss"), sm.get("best_step")
            self.evals_since_best = int(sm.get("evals_since_best", 0))
            # random number generators: this process's own, when the run had as many
            # processes (dropout masks then repeat exactly); else they start afresh
            if int(sm.get("world_size", 1)) == self.dist.world:
                self._restore_rngs(st)
            self.rnn_state = self._my_rows(ck.unpack_state(sm.get("rnn_state"), st))
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{self.out / ck.STATE_META}: unusable training state "
                                  f"({e})") from None
        self.history = read_history(self.out / "metrics.jsonl", self.step)
        if self.step >= (self.cfg.steps or math.inf):
            raise UsageError(f"{self.out} already trained {self.step} steps (`steps` "
                             f"{self.cfg.steps}); pass a larger `steps` to train on", params=True)

    def _restore_rngs(self, st: dict) -> None:
        import torch

        r = self.dist.rank
        # clone(): torch 2.13's set_rng_state reads a row of a larger tensor from the wrong
        # place (a segfault), so each row gets its own storage
        if "torch_rng_ranks" in st:
            torch.set_rng_state(st["torch_rng_ranks"][r].clone())
        elif self.dist.world == 1 and "torch_rng" in st:
            torch.set_rng_state(st["torch_rng"])
        if self.device.startswith("cuda") and "cuda_rng_ranks" in st:
            torch.cuda.set_rng_state(st["cuda_rng_ranks"][r].clone(), self.device)

    def _my_rows(self, state: Any) -> Any:
        """This process's rows of the saved RNN state of the whole global batch, on its device
        (None when the state holds one process's rows only, as older runs saved it)."""
        if state is None:
            return None
        lo, hi = rank_rows(self.cfg.batch_size, self.dist.rank, self.dist.world)
        parts = state if isinstance(state, tuple) else (state,)
        if any(t.dim() != 3 or t.shape[1] != self.cfg.batch_size for t in parts):
            return None  # restart the state
        if isinstance(state, tuple):
            return tuple(t[:, lo:hi].to(self.device) for t in state)
        return state[:, lo:hi].to(self.device)


def _state_tensors(state: Any) -> tuple[Any, dict]:
    """An RNN state (None, a tensor or a tuple of tensors) split for the training-state files."""
    from seqgen.checkpoint import pack_state

    tensors: dict = {}
    return pack_state(state, tensors, "rnn_state"), tensors


def _saved_step(out: Path) -> int | str:
    try:
        return json.loads((out / "checkpoint.json").read_text())["step"]
    except Exception:
        return "?"


class MetricsLog:
    """metrics.jsonl, one JSON object per line: written whole (temp file + rename) the first
    time, which also drops the lines past the step a run resumed from; after that only the new
    points are appended, so that a long run's log costs time in proportion to its length. A
    line torn by a crash is skipped when read back (`read_history`)."""

    def __init__(self, path: Path):
        self.path = path
        self.written: int | None = None  # points of the history already in the file

    def write(self, history: list[dict]) -> None:
        from seqgen.fileio import atomic_write_text

        lines = (json.dumps(h) + "\n" for h in history[self.written or 0:])
        if self.written is None:
            atomic_write_text(self.path, "".join(lines))
        else:
            try:
                with open(self.path, "a", encoding="utf-8") as f:
                    f.write("".join(lines))
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as e:
                from seqgen.fileio import WriteError

                raise WriteError(f"cannot write {self.path}: {e.strerror or e}") from e
        self.written = len(history)


def read_history(path: Path, up_to: int) -> list[dict]:
    """The points of metrics.jsonl up to step `up_to` (none when the file cannot be read)."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            h = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(h, dict) and isinstance(h.get("step"), int) and h["step"] <= up_to:
            out.append(h)
    return out
