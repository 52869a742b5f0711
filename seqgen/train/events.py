"""What a run tells its caller: a ProgressEvent while it trains, a TrainResult at the end."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from seqgen.models import ModelConfig
    from seqgen.train.config import TrainConfig


@dataclass
class ProgressEvent:
    """What the training loop reports. `kind`: start, step, eval, end."""

    kind: str
    step: int
    total_steps: int | None  # when --steps is set
    elapsed_s: float
    budget_s: float | None  # when --minutes is set
    train_loss: float | None = None  # mean over the steps since the last report
    val_loss: float | None = None  # nats per token
    val_bpc: float | None = None  # bits per character
    best_val_loss: float | None = None
    lr: float | None = None
    tokens_per_s: float | None = None
    grad_norm: float | None = None  # before clipping
    message: str = ""

    @property
    def fraction_done(self) -> float | None:
        parts = []
        if self.total_steps:
            parts.append(self.step / self.total_steps)
        if self.budget_s:
            parts.append(self.elapsed_s / self.budget_s)
        return min(1.0, max(parts)) if parts else None


@dataclass
class TrainResult:
    """What `train` returns: the run directory and its best/ (None without validation), the last
    step, why training stopped, and the losses, timings and history of the run."""

    out: Path
    best: Path | None
    step: int
    stop_reason: str  # "steps" (--steps reached), "time" (--minutes spent), "patience" (early stop)
    elapsed_s: float  # training and validation (and saves) of the whole run, set-up not counted
    tokens_per_s: float  # the mean over the training steps of this call (validation not counted)
    train_loss: float | None
    val_loss: float | None
    best_val_loss: float | None
    best_step: int | None
    config: TrainConfig
    model_config: ModelConfig
    model_summary: str
    num_params: int
    corpus_name: str
    corpus_kind: str
    train_tokens: int
    val_tokens: int
    device: str
    precision: str
    world_size: int
    history: list[dict] = field(default_factory=list)
    train_steps: int = 0  # the steps this call trained (after --resume: since it resumed)
