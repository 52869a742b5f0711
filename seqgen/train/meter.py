"""What the training loop measures between its reports: the mean train loss since the last log
point, the gradient norms since then, tokens per second, and the clock the run's time is kept
by (training steps and evaluations count; the set-up does not)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from seqgen.train.runstate import RunState


class Meter:
    """The loop's running figures; see the module's description."""

    RATE_STEPS = 5  # tokens/s is measured over this many steps

    def __init__(self, tokens_per_step: int):
        self.tokens_per_step = tokens_per_step
        self.loss_sum, self.loss_n = 0.0, 0  # since the last log point
        self.train_loss: float | None = None  # the mean at the last log point or evaluation
        self.grad_norm: float | None = None  # the last step's, before clipping
        # since the last log point (from the steps' norms: no extra sync)
        self.gn_max, self.gn_clipped, self.gn_n = 0.0, 0, 0
        self.rate_t, self.rate_steps = time.perf_counter(), 0
        self.tokens_per_s: float | None = None
        self.last_eval_s = 0.0  # how long the last evaluation and save took
        self.t_prev = time.perf_counter()

    def clock(self, run: RunState) -> None:
        """Add the time since the last call (or evaluation) to the run's."""
        now = time.perf_counter()
        run.elapsed += now - self.t_prev
        self.t_prev = now

    def add(self, loss: float, grad_norm: float, grad_clip: float) -> None:
        """Count a finished step: its loss and gradient norm (clipped when over `grad_clip`)."""
        self.loss_sum += loss
        self.loss_n += 1
        self.grad_norm = grad_norm
        self.gn_max, self.gn_n = max(self.gn_max, grad_norm), self.gn_n + 1
        self.gn_clipped += grad_clip > 0 and grad_norm > grad_clip
        self.rate_steps += 1
        if self.rate_steps >= self.RATE_STEPS:
            t = time.perf_counter()
            self.tokens_per_s = self.rate_steps * self.tokens_per_step / max(t - self.rate_t, 1e-9)
            self.rate_t, self.rate_steps = t, 0

    def log_point(self, step: int, elapsed: float, lr: float) -> dict:
        """The history point of a log step; the gradient-norm figures start again after it."""
        point = {"step": step, "time_s": round(elapsed, 3),
                 "train_loss": self.loss_sum / self.loss_n, "lr": lr,
                 "grad_norm": self.grad_norm, "grad_norm_max": self.gn_max,
                 "clipped_fraction": self.gn_clipped / self.gn_n, "tokens_per_s": self.tokens_per_s}
        self.gn_max, self.gn_clipped, self.gn_n = 0.0, 0, 0
        return point

    def take_train_loss(self) -> None:
        """At a log point: the mean train loss since the last one becomes `train_loss`."""
        self.train_loss = self.loss_sum / self.loss_n
        self.loss_sum, self.loss_n = 0.0, 0

    def catch_up(self) -> None:
        """At an evaluation: `train_loss` includes the steps since the last log point."""
        if self.loss_n:
            self.train_loss = self.loss_sum / self.loss_n

    def eval_estimate(self, val_tokens: int) -> float:
        """How long the next evaluation and save may take: as long as the last one; before the
        first, the held-out tokens at half the training speed (a forward pass costs about a
        third of a step), so that a slow run's first evaluation does not overrun its budget."""
        if self.last_eval_s or not self.tokens_per_s:
            return self.last_eval_s
        return val_tokens / self.tokens_per_s / 2

    def evaluated(self, t0: float, run: RunState) -> None:
        """An evaluation (and save) that began at `t0` is over: its time counts to the run's and
        to the next step's budget check, not to tokens/s."""
        t1 = time.perf_counter()
        self.last_eval_s = t1 - t0
        run.elapsed += self.last_eval_s
        self.t_prev = self.rate_t = t1  # tokens/s counts training steps only
        self.rate_steps = 0
