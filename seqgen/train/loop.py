"""The training loop. `Trainer._run` reads top to bottom: set the run up (start.py), then step
until --steps, --minutes, --patience or a stop request ends it, evaluating and saving every
eval_every steps and at the end. `train(config)` is the short way to run one."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn

from seqgen.errors import Interrupted
from seqgen.train.config import RESUMABLE_OVERRIDES, TrainConfig
from seqgen.train.distributed import Dist, dist_setup
from seqgen.train.events import ProgressEvent, TrainResult
from seqgen.train.meter import Meter
from seqgen.train.start import start_message, start_run

if TYPE_CHECKING:
    import torch

    from seqgen.train.runstate import RunState


def train(config: TrainConfig | None = None, callback: Callable[[ProgressEvent], None] | None = None,
          resume: str | os.PathLike | None = None, overrides: dict | None = None,
          handle_signals: bool = True) -> TrainResult:
    """Train a model as `config` says (or continue the run in `resume`) and return the result.

    Called from the main thread, it handles SIGINT and SIGTERM while it runs (saving a checkpoint
    and raising Interrupted; the previous handlers are restored after); `handle_signals=False`
    leaves them to the caller, who can stop a run with Trainer.request_stop."""
    return Trainer(config, callback, resume, overrides, handle_signals).run()


class Trainer:
    """One training run. `run()` returns a TrainResult or raises a SeqgenError.

    `resume`: a run directory to continue exactly where it stopped; `overrides`: TrainConfig
    fields to change on resume (budget, evaluation, device and precision only).
    """

    RESUMABLE_OVERRIDES = RESUMABLE_OVERRIDES  # (the options --resume may change)

    def __init__(self, config: TrainConfig | None = None, callback: Callable[[ProgressEvent], None]
                 | None = None, resume: str | os.PathLike | None = None,
                 overrides: dict | None = None, handle_signals: bool = True):
        self.config = config or TrainConfig()
        self.callback = callback
        self.resume = resume
        self.overrides = overrides or {}
        self.handle_signals = handle_signals
        self._stop: str | None = None

    def request_stop(self, reason: str = "interrupt") -> None:
        """Stop after the current step, save, and raise Interrupted (safe from a signal handler)."""
        self._stop = reason

    def run(self) -> TrainResult:
        import torch

        threads = torch.get_num_threads()  # the caller's: set again at the end
        self.dist = Dist()
        self.dist = dist_setup()
        try:
            try:
                with self._signals(), contextlib.ExitStack() as self._hold:
                    result = self._run()
            except Interrupted:  # every process raises it at the same step
                self._leave_together()
                raise
            self._leave_together()
            return result
        finally:
            torch.set_num_threads(threads)
            if self.dist.owns_group:
                import torch.distributed as dist

                dist.destroy_process_group()

    # ------------------------------------------------------------------ the loop
    def _run(self) -> TrainResult:
        run = start_run(self.config, self.resume, self.overrides, self.dist, self._hold)
        self._emit(ProgressEvent("start", run.step, elapsed_s=run.elapsed,
                                 message=start_message(run), **run.info))
        meter = Meter(run.cfg.batch_size * run.cfg.seq_len)
        while True:
            step = self._step(run, meter)
            meter.add(step.loss, step.grad_norm, run.cfg.grad_clip)
            lr = run.scheduler.get_last_lr()[0]
            self._log_step(run, meter, step, lr)

            # -- stop?
            if run.step >= (run.cfg.steps or math.inf):
                run.stop_reason = "steps"
            # Ctrl-C: with several processes, all must stop at the same step (they save
            # together), so a stop is only acted on once the flag has gone round in the step's
            # all-reduce. At the last step the run finishes as usual instead (evaluate, save,
            # exit 0), rather than leave a run that says "resume" with nothing left to do.
            interrupted = step.interrupted if self.dist.enabled else self._stop is not None
            if interrupted and run.stop_reason != "steps":
                self._save_and_stop(run, meter)
            if step.stop and run.stop_reason is None:
                run.stop_reason = "time"

            # -- evaluate and save
            if run.step % run.cfg.eval_every == 0 or run.stop_reason is not None:
                self._evaluate_and_save(run, meter, lr)
                if run.stop_reason is not None:
                    break

        self._emit(ProgressEvent("end", run.step, val_loss=run.val_loss, val_bpc=_bpc(run.val_loss),
                                 best_val_loss=run.best_val, train_loss=meter.train_loss,
                                 tokens_per_s=meter.tokens_per_s, elapsed_s=run.elapsed,
                                 message=run.stop_reason or "", **run.info))
        return _result(run, meter)

    def _step(self, run: RunState, meter: Meter) -> _Step:
        """One optimizer step on the next batch. Every process gets the same loss (the mean over
        processes), time and stop flags; a NaN or infinite loss or gradient norm raises
        TrainingError before the update."""
        import torch

        x, y, fresh = run.batches.next()
        # (non_blocking only on CUDA: on MPS a copy from a freed CPU tensor can read garbage)
        x = x.to(run.device, non_blocking=run.dev_type == "cuda")
        y = y.to(run.device, non_blocking=run.dev_type == "cuda")
        if run.recurrent and fresh:
            run.rnn_state = None
        with run.autocast():
            logits, new_state = run.fwd_model(x, run.rnn_state if run.recurrent else None)
        V = run.mcfg.vocab_size  # logits: (B, T, V)
        loss = torch.nn.functional.cross_entropy(logits.float().view(-1, V), y.view(-1))
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = _grad_norm(run.model, run.cfg.grad_clip)
        meter.clock(run)
        val_tokens = len(run.val_ids) if run.val_ids is not None else 0
        step = self._agree(run, loss, meter.eval_estimate(val_tokens))
        step.grad_norm = float(grad_norm)
        if not math.isfinite(step.loss) or not math.isfinite(step.grad_norm):
            raise run.nonfinite_error(step.loss, step.grad_norm)
        run.optimizer.step()
        run.step += 1
        run.scheduler.step()
        if run.recurrent:
            run.rnn_state = run.model.detach_state(new_state)
        return step

    def _agree(self, run: RunState, loss: torch.Tensor, last_eval_s: float) -> _Step:
        """The step as every process sees it: whether to stop (the budget, leaving room for an
        evaluation as long as the last one, or as estimated before the first; or a stop request); with several processes, the
        mean loss, rank 0's time and a stop anywhere, in one all-reduce."""
        local_stop = self._stop is not None
        if run.budget_s is not None and run.elapsed + last_eval_s >= run.budget_s:
            local_stop = True
        if not self.dist.enabled:
            return _Step(loss.item(), local_stop)
        import torch
        import torch.distributed as dist

        flags = torch.tensor([loss.item(), float(local_stop),
                              run.elapsed if self.dist.rank == 0 else 0.0,
                              1.0 if self._stop else 0.0], dtype=torch.float64)
        dist.all_reduce(flags)
        step = _Step(flags[0].item() / self.dist.world, flags[1].item() > 0,
                     interrupted=flags[3].item() > 0)
        run.elapsed = flags[2].item()
        if step.interrupted and self._stop is None:
            self._stop = "interrupt"
        return step

    def _log_step(self, run: RunState, meter: Meter, step: _Step, lr: float) -> None:
        """The step's point in the history (every log_every steps; with --log-grad-norms, every
        step's gradient norm) and its progress event."""
        log_point = run.step % run.cfg.log_every == 0
        if log_point:
            run.history.append(meter.log_point(run.step, run.elapsed, lr))
        elif run.cfg.log_grad_norms:  # a log point carries its own step's norm
            run.history.append({"step": run.step, "grad_norm": step.grad_norm})
        self._emit(ProgressEvent("step", run.step, train_loss=step.loss, lr=lr,
                                 tokens_per_s=meter.tokens_per_s, grad_norm=step.grad_norm,
                                 elapsed_s=run.elapsed, best_val_loss=run.best_val,
                                 val_loss=run.val_loss, **run.info))
        if log_point:
            meter.take_train_loss()

    def _evaluate_and_save(self, run: RunState, meter: Meter, lr: float) -> None:
        """Score the held-out split, keep the best model, decide on early stopping, save; the
        time this takes counts to the run's time."""
        t0 = time.perf_counter()
        val = run.evaluate()
        meter.catch_up()
        improved = run.record_validation(val)
        point = {"step": run.step, "time_s": round(run.elapsed, 3), "train_loss": meter.train_loss,
                 "val_loss": val, "val_bpc": _bpc(val), "lr": lr,
                 "tokens_per_s": meter.tokens_per_s}
        run.history.append(point)
        metrics = dict(point, best_val_loss=run.best_val, best_step=run.best_step,
                       num_params=run.model.num_params())
        if (run.stop_reason is None and run.cfg.patience and val is not None
                and run.evals_since_best >= run.cfg.patience):
            run.stop_reason = "patience"  # (before the save, which records why the run stopped)
        run.save(metrics, improved)
        meter.evaluated(t0, run)
        self._emit(ProgressEvent("eval", run.step, val_loss=val, val_bpc=_bpc(val),
                                 best_val_loss=run.best_val, train_loss=meter.train_loss, lr=lr,
                                 tokens_per_s=meter.tokens_per_s, elapsed_s=run.elapsed,
                                 **run.info))

    def _save_and_stop(self, run: RunState, meter: Meter) -> NoReturn:
        """Save the run where a stop request left it and raise Interrupted (how to resume)."""
        metrics = {"step": run.step, "train_loss": meter.train_loss, "val_loss": run.val_loss,
                   "best_val_loss": run.best_val, "best_step": run.best_step,
                   "num_params": run.model.num_params(), "interrupted": True}
        run.save(metrics, False)
        verb = "interrupted" if self._stop == "interrupt" else "stopped"
        raise Interrupted(f"{verb} at step {run.step}; saved {run.out}; resume with: "
                          f"seqgen train --resume {run.out}")

    # ------------------------------------------------------------------ around the loop
    def _emit(self, ev: ProgressEvent) -> None:
        if self.callback is not None and self.dist.rank == 0:
            self.callback(ev)

    @contextlib.contextmanager
    def _signals(self):
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            yield
            return
        old = {}

        def handler(signum, frame):
            self.request_stop("interrupt" if signum == signal.SIGINT else "terminated")

        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, handler)
        try:
            yield
        finally:
            for sig, h in old.items():
                signal.signal(sig, h)

    def _leave_together(self) -> None:
        """With several processes, wait for all before tearing the process group down: a process
        that destroyed its group while another was still finishing the last save's gathers
        could abort (gloo: "terminate called without an active exception")."""
        if self.dist.enabled:
            import torch.distributed as dist

            dist.barrier()


@dataclass
class _Step:
    """A step as all processes agree on it."""

    loss: float  # the mean over processes
    stop: bool  # a process asked to stop: out of time, or a stop request
    interrupted: bool = False  # (several processes) a stop request has reached every process
    grad_norm: float = math.nan  # before clipping


def _grad_norm(model: torch.nn.Module, clip: float) -> torch.Tensor:
    """The gradient norm before clipping, the gradients clipped to `clip` when it is > 0."""
    import torch

    if clip > 0:
        return torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    return torch.linalg.vector_norm(torch.stack(
        [p.grad.detach().norm() for p in model.parameters() if p.grad is not None]))


def _result(run: RunState, meter: Meter) -> TrainResult:
    from seqgen import checkpoint as ck

    return TrainResult(
        out=run.out, best=(run.out / ck.BEST) if run.best_step is not None else None,
        step=run.step, stop_reason=run.stop_reason or "steps", elapsed_s=run.elapsed,
        tokens_per_s=_mean_rate(run.history) or (meter.tokens_per_s or 0.0),
        train_loss=meter.train_loss, val_loss=run.val_loss, best_val_loss=run.best_val,
        best_step=run.best_step, config=run.cfg, model_config=run.mcfg,
        model_summary=run.model.summary(), num_params=run.model.num_params(),
        corpus_name=run.corpus.name, corpus_kind=run.corpus.kind,
        train_tokens=len(run.data.train_ids), val_tokens=len(run.data.val_ids),
        device=run.device, precision=run.precision, world_size=run.dist.world,
        history=run.history,
    )


def _bpc(nats: float | None) -> float | None:
    return None if nats is None else nats / math.log(2)


def _mean_rate(history: list[dict]) -> float | None:
    rates = [h["tokens_per_s"] for h in history if h.get("tokens_per_s")]
    if not rates:
        return None
    rates.sort()
    return rates[len(rates) // 2]
