"""Training: TrainConfig, presets, batching, and the loop (AdamW, warmup + cosine, clipping).

    config = TrainConfig(corpus="folk", minutes=5)
    result = train(config, callback=print)          # -> TrainResult(out=Path(...), ...)

RNN kinds train with truncated backpropagation through time on *stateful* batches, as char-rnn
does: the training id stream is cut into B parallel rows, window t of each row continues window
t-1, and the hidden state is carried from one window to the next (detached, so gradients stop at
the window edge). The transformer trains on B windows drawn at random positions.

Validation loss is the mean cross-entropy in nats per token on the held-out documents (every
character and each end-of-document token is a token); bits per character = nats / ln 2.

Distributed: under `torchrun --nproc_per_node=N` (WORLD_SIZE > 1) the model is wrapped in
DistributedDataParallel (gloo on CPU, nccl on CUDA); the global batch is split across ranks so that
N processes compute the same update as one process with the same --batch-size. Only rank 0 writes
files and reports progress.

The library never prints: progress reaches the caller through `callback(ProgressEvent)`.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
import time
from collections.abc import Callable

from seqgen.errors import Interrupted
from seqgen.train.config import RESUMABLE_OVERRIDES, TrainConfig
from seqgen.train.distributed import Dist, dist_setup
from seqgen.train.events import ProgressEvent, TrainResult
from seqgen.train.start import start_message, start_run


# --------------------------------------------------------------------------------- the trainer
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

    # ------------------------------------------------------------------ setup
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

    def _leave_together(self) -> None:
        """With several processes, wait for all before tearing the process group down: a process
        that destroyed its group while another was still finishing the last save's gathers
        could abort (gloo: "terminate called without an active exception")."""
        if self.dist.enabled:
            import torch.distributed as dist

            dist.barrier()

    def _run(self) -> TrainResult:
        import torch

        from seqgen import checkpoint as ck

        run = start_run(self.config, self.resume, self.overrides, self.dist, self._hold)
        rcfg, model, out, info = run.cfg, run.model, run.out, run.info
        self._emit(ProgressEvent("start", run.step, elapsed_s=run.elapsed,
                                 message=start_message(run), **info))

        # -- the loop
        sync = self.dist.enabled
        tokens_per_step = rcfg.batch_size * rcfg.seq_len
        last_eval_s = 0.0
        loss_acc, loss_n, grad_norm = 0.0, 0, None
        gn_max, gn_clipped, gn_n = 0.0, 0, 0  # since the last log point (from gn_v: no extra sync)
        rate_t, rate_steps = time.perf_counter(), 0
        tok_s = None
        last_val, last_train = None, None
        run.stop_reason = None
        # Ctrl-C: with several processes, all must stop at the same step (they save together),
        # so a stop is only acted on once the flag has gone round in the step's all-reduce
        interrupted = False
        t_prev = time.perf_counter()
        while True:
            x, y, fresh = run.batches.next()
            # (non_blocking only on CUDA: on MPS a copy from a freed CPU tensor can read garbage)
            x = x.to(run.device, non_blocking=run.dev_type == "cuda")
            y = y.to(run.device, non_blocking=run.dev_type == "cuda")
            if run.recurrent and fresh:
                run.rnn_state = None
            with run.autocast():
                logits, new_state = run.fwd_model(x, run.rnn_state if run.recurrent else None)  # (B, T, V)
            loss = torch.nn.functional.cross_entropy(logits.float().view(-1, run.mcfg.vocab_size), y.view(-1))
            run.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if rcfg.grad_clip > 0:
                gn = torch.nn.utils.clip_grad_norm_(model.parameters(), rcfg.grad_clip)
            else:
                gn = torch.linalg.vector_norm(torch.stack(
                    [p.grad.detach().norm() for p in model.parameters() if p.grad is not None]))
            now = time.perf_counter()
            run.elapsed += now - t_prev
            t_prev = now
            local_stop = self._stop is not None
            if run.budget_s is not None and run.elapsed + last_eval_s >= run.budget_s:
                local_stop = True
            if sync:
                import torch.distributed as dist

                flags = torch.tensor([loss.item(), float(local_stop),
                                      run.elapsed if self.dist.rank == 0 else 0.0,
                                      1.0 if self._stop else 0.0], dtype=torch.float64)
                dist.all_reduce(flags)
                loss_v = flags[0].item() / self.dist.world
                want_stop, run.elapsed = flags[1].item() > 0, flags[2].item()
                interrupted = flags[3].item() > 0
                if interrupted and self._stop is None:
                    self._stop = "interrupt"
            else:
                loss_v, want_stop = loss.item(), local_stop
            gn_v = float(gn)
            if not math.isfinite(loss_v) or not math.isfinite(gn_v):
                raise run.nonfinite_error(loss_v, gn_v)
            run.optimizer.step()
            run.step += 1
            run.scheduler.step()
            if run.recurrent:
                run.rnn_state = model.detach_state(new_state)
            loss_acc += loss_v
            loss_n += 1
            grad_norm = gn_v
            gn_max, gn_n = max(gn_max, gn_v), gn_n + 1
            gn_clipped += rcfg.grad_clip > 0 and gn_v > rcfg.grad_clip
            rate_steps += 1
            if rate_steps >= 5:
                t = time.perf_counter()
                tok_s = rate_steps * tokens_per_step / max(t - rate_t, 1e-9)
                rate_t, rate_steps = t, 0
            lr_now = run.scheduler.get_last_lr()[0]
            if run.step % rcfg.log_every == 0:
                run.history.append({"step": run.step, "time_s": round(run.elapsed, 3),
                                "train_loss": loss_acc / loss_n, "lr": lr_now,
                                "grad_norm": grad_norm, "grad_norm_max": gn_max,
                                "clipped_fraction": gn_clipped / gn_n, "tokens_per_s": tok_s})
                gn_max, gn_clipped, gn_n = 0.0, 0, 0
            elif rcfg.log_grad_norms:  # a log point carries its own step's norm
                run.history.append({"step": run.step, "grad_norm": gn_v})
            self._emit(ProgressEvent("step", run.step, train_loss=loss_v, lr=lr_now,
                                     tokens_per_s=tok_s, grad_norm=gn_v, elapsed_s=run.elapsed,
                                     best_val_loss=run.best_val, val_loss=last_val, **info))
            if run.step % rcfg.log_every == 0:
                last_train = loss_acc / loss_n
                loss_acc, loss_n = 0.0, 0
            if run.step >= (rcfg.steps or math.inf):
                run.stop_reason = "steps"
            if not sync:
                interrupted = self._stop is not None
            if interrupted and run.stop_reason == "steps":
                # the last step is done: finish the run as usual (evaluate, save, exit 0)
                # rather than leave a run that says "resume" and has nothing left to do
                interrupted = False
            if interrupted:
                break
            if want_stop and run.stop_reason is None:
                run.stop_reason = "time"
            at_eval = run.step % rcfg.eval_every == 0 or run.stop_reason is not None
            if not at_eval:
                continue
            # -- evaluate and save
            t0 = time.perf_counter()
            last_val = run.evaluate()
            if loss_n:
                last_train = loss_acc / loss_n
            improved = run.record_validation(last_val)
            point = {"step": run.step, "time_s": round(run.elapsed, 3), "train_loss": last_train,
                     "val_loss": last_val, "val_bpc": _bpc(last_val), "lr": lr_now,
                     "tokens_per_s": tok_s}
            run.history.append(point)
            metrics = dict(point, best_val_loss=run.best_val, best_step=run.best_step,
                           num_params=model.num_params())
            if (run.stop_reason is None and rcfg.patience and last_val is not None
                    and run.evals_since_best >= rcfg.patience):
                run.stop_reason = "patience"  # (before the save, which records why the run stopped)
            run.save(metrics, improved)
            t1 = time.perf_counter()
            last_eval_s = t1 - t0
            run.elapsed += last_eval_s
            t_prev = rate_t = t1  # tokens/s counts training steps only
            rate_steps = 0
            self._emit(ProgressEvent("eval", run.step, val_loss=last_val, val_bpc=_bpc(last_val),
                                     best_val_loss=run.best_val, train_loss=last_train, lr=lr_now,
                                     tokens_per_s=tok_s, elapsed_s=run.elapsed, **info))
            if run.stop_reason is not None:
                break

        if interrupted:
            metrics = {"step": run.step, "train_loss": last_train, "val_loss": last_val,
                       "best_val_loss": run.best_val, "best_step": run.best_step,
                       "num_params": model.num_params(), "interrupted": True}
            run.save(metrics, False)
            verb = "interrupted" if self._stop == "interrupt" else "stopped"
            raise Interrupted(f"{verb} at step {run.step}; saved {out}; resume with: "
                              f"seqgen train --resume {out}")
        self._emit(ProgressEvent("end", run.step, val_loss=last_val, val_bpc=_bpc(last_val),
                                 best_val_loss=run.best_val, train_loss=last_train,
                                 tokens_per_s=tok_s, elapsed_s=run.elapsed,
                                 message=run.stop_reason or "", **info))
        return TrainResult(
            out=out, best=(out / ck.BEST) if run.best_step is not None else None, step=run.step,
            stop_reason=run.stop_reason or "steps", elapsed_s=run.elapsed,
            tokens_per_s=_mean_rate(run.history) or (tok_s or 0.0), train_loss=last_train,
            val_loss=last_val, best_val_loss=run.best_val, best_step=run.best_step, config=rcfg,
            model_config=run.mcfg, model_summary=model.summary(), num_params=model.num_params(),
            corpus_name=run.corpus.name, corpus_kind=run.corpus.kind,
            train_tokens=len(run.data.train_ids), val_tokens=len(run.data.val_ids), device=run.device,
            precision=run.precision, world_size=self.dist.world, history=run.history,
        )


def _bpc(nats: float | None) -> float | None:
    return None if nats is None else nats / math.log(2)


def _mean_rate(history: list[dict]) -> float | None:
    rates = [h["tokens_per_s"] for h in history if h.get("tokens_per_s")]
    if not rates:
        return None
    rates.sort()
    return rates[len(rates) // 2]


def train(config: TrainConfig | None = None, callback: Callable[[ProgressEvent], None] | None = None,
          resume: str | os.PathLike | None = None, overrides: dict | None = None,
          handle_signals: bool = True) -> TrainResult:
    """Train a model as `config` says (or continue the run in `resume`) and return the result.

    Called from the main thread, it handles SIGINT and SIGTERM while it runs (saving a checkpoint
    and raising Interrupted; the previous handlers are restored after); `handle_signals=False`
    leaves them to the caller, who can stop a run with Trainer.request_stop."""
    return Trainer(config, callback, resume, overrides, handle_signals).run()
