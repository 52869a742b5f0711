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
import json
import math
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seqgen.devices import resolve_device
from seqgen.errors import CheckpointError, DataError, Interrupted, TrainingError, UsageError
from seqgen.train.batches import RandomWindows, StreamBatches, rank_rows
from seqgen.train.config import (
    ARCHITECTURE,
    RESOLVED,
    TrainConfig,
    check_init_from_model,
    check_kind_options,
    family,
    option_of,
    resolve_config,
)
from seqgen.train.distributed import Dist, dist_setup, gather_rows
from seqgen.train.events import ProgressEvent, TrainResult
from seqgen.train.hardware import resolve_precision
from seqgen.train.held_out import held_out_loss

if TYPE_CHECKING:
    import torch



# --------------------------------------------------------------------------------- the trainer
def _state_tensors(state: Any) -> tuple[Any, dict]:
    """An RNN state (None, a tensor or a tuple of tensors) split for the training-state files."""
    from seqgen.checkpoint import pack_state

    tensors: dict = {}
    return pack_state(state, tensors, "rnn_state"), tensors


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


class Trainer:
    """One training run. `run()` returns a TrainResult or raises a SeqgenError.

    `resume`: a run directory to continue exactly where it stopped; `overrides`: TrainConfig
    fields to change on resume (budget, evaluation, device and precision only).
    """

    # `corpus` may be given again on resume to say where the corpus is now: its tokens must be
    # the ones the run trained on (checked against the digest saved with the training state)
    RESUMABLE_OVERRIDES = ("steps", "minutes", "eval_every", "eval_tokens", "patience",
                           "log_every", "log_grad_norms", "device", "precision", "compile",
                           "threads", "corpus")

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

    def _resume_config(self):
        """On --resume: the run's saved config with this call's overrides, checked; its
        directory, training state and lock (held from here, (path, stale lock) or None)."""
        from seqgen import checkpoint as ck

        locked = None
        rp = Path(self.resume).expanduser()
        if self.dist.rank == 0 and (rp / ck.META).is_file():  # before reading: no live run
            from seqgen.fileio import directory_lock

            locked = (rp, self._hold.enter_context(directory_lock(rp, None)))
        run_dir, meta, resume_state = ck.load_train_state(self.resume)
        src = run_dir / ck.META
        cfg = TrainConfig.from_dict(meta["train_config"], source=str(src))
        unresolved = [f.name for f in fields(TrainConfig) if getattr(cfg, f.name) is None
                      and f.name in RESOLVED]
        if unresolved or cfg.preset == "auto":
            raise CheckpointError(f"{src}: \"train_config\" does not give "
                                  f"{', '.join(unresolved) or 'the preset'}; it was not "
                                  "written by seqgen train, so it cannot be resumed")
        try:
            cfg.validate()
        except UsageError as e:
            raise CheckpointError(f"{src}: \"train_config\" is invalid ({e})") from None
        saved_minutes = cfg.minutes
        sm = resume_state.meta
        try:
            saved_elapsed = float(sm.get("elapsed_s", 0.0))
        except (TypeError, ValueError):
            raise CheckpointError(f"{run_dir / ck.STATE_META}: unusable training state "
                                  "(elapsed_s)") from None
        spent = bool(saved_minutes) and (sm.get("stop_reason") == "time"
                                         or saved_elapsed >= saved_minutes * 60)
        for k, v in self.overrides.items():
            if k not in self.RESUMABLE_OVERRIDES and v != getattr(cfg, k, v):
                was = getattr(cfg, k)
                raise UsageError(
                    f"{option_of(k)} cannot change when resuming (the run was trained "
                    + ("without it" if was is None else f"with {was!r}")
                    + "); start a new run instead")
            setattr(cfg, k, v)
        if spent and "steps" in self.overrides and "minutes" not in self.overrides:
            cfg.minutes = None  # a step count asked for now replaces the spent time budget
        elif spent and (cfg.minutes or 0) <= saved_minutes:
            raise UsageError(f"{run_dir} already spent its --minutes {saved_minutes:g} "
                             f"budget ({saved_elapsed / 60:.1f} minutes); "
                             "pass a larger --minutes to train on, or --steps N to train to "
                             "step N")
        cfg.out = str(run_dir)
        cfg.validate()
        return cfg, run_dir, resume_state, locked

    def _restore(self, resume_state, optimizer, scheduler, batches, rcfg: TrainConfig,
                 out: Path, device: str):
        """Put the saved training state back: optimizer, schedule, data position, step, time,
        random number generators and the carried RNN state. Returns (best_val, best_step,
        evals_since_best, RNN state for this process's rows, metrics history)."""
        import torch

        from seqgen import checkpoint as ck

        sm, st = resume_state.meta, resume_state.tensors
        try:
            optimizer.load_state_dict(ck.unpack_state(sm["optimizer"], st))
            scheduler.load_state_dict(sm["scheduler"])
            batches.load_state_dict(sm["data"])
            self.step = int(sm["step"])
            self.elapsed = float(sm["elapsed_s"])
            best_val, best_step = sm.get("best_val_loss"), sm.get("best_step")
            evals_since_best = int(sm.get("evals_since_best", 0))
            # random number generators: this process's own, when the run had as many
            # processes (dropout masks then repeat exactly); else they start afresh
            saved_world = int(sm.get("world_size", 1))
            if saved_world == self.dist.world:
                r = self.dist.rank
                # clone(): torch 2.13's set_rng_state reads a row of a larger tensor from
                # the wrong place (a segfault), so each row gets its own storage
                if "torch_rng_ranks" in st:
                    torch.set_rng_state(st["torch_rng_ranks"][r].clone())
                elif self.dist.world == 1 and "torch_rng" in st:
                    torch.set_rng_state(st["torch_rng"])
                if device.startswith("cuda") and "cuda_rng_ranks" in st:
                    torch.cuda.set_rng_state(st["cuda_rng_ranks"][r].clone(), device)
            # the carried RNN state of every row of the global batch; this process's rows
            state = ck.unpack_state(sm.get("rnn_state"), st)
            lo, hi = rank_rows(rcfg.batch_size, self.dist.rank, self.dist.world)
            if state is not None:
                parts = state if isinstance(state, tuple) else (state,)
                if any(t.dim() != 3 or t.shape[1] != rcfg.batch_size for t in parts):
                    state = None  # one process's rows only (older runs): restart the state
            if state is not None:
                state = tuple(t[:, lo:hi].to(device) for t in state) \
                    if isinstance(state, tuple) else state[:, lo:hi].to(device)
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{out / ck.STATE_META}: unusable training state ({e})") from None
        history = _read_history(out / "metrics.jsonl", self.step)
        if self.step >= (rcfg.steps or math.inf):
            raise UsageError(f"{out} already trained {self.step} steps (--steps "
                             f"{rcfg.steps}); pass a larger --steps to train on")
        return best_val, best_step, evals_since_best, state, history

    def _load_data(self, cfg: TrainConfig, run_dir: Path | None, resume_state):
        """The corpus, its split and vocabulary (the checkpoint's on --resume and --init-from,
        checked against the corpus), and the resumed or --init-from checkpoint. Returns
        (corpus, data, its digest, resumed, init_ckpt)."""
        from seqgen import checkpoint as ck
        from seqgen.data import load_corpus, prepare_data

        try:
            corpus = load_corpus(cfg.corpus, glob=cfg.glob, split_docs=cfg.split_docs,
                                 abc_headers=cfg.abc_headers)
        except DataError as e:
            if resume_state is None or "corpus" in self.overrides:
                raise
            raise DataError(f"{e}; if the run's corpus has moved, give its new place: "
                            f"seqgen train NEW_PLACE --resume {run_dir}") from None
        tokenizer, init_ckpt, resumed = None, None, None
        if resume_state is not None:
            # model config, vocabulary and weights, checked as every checkpoint load checks them
            resumed = ck.load_checkpoint(run_dir)
            tokenizer = resumed.tokenizer
        elif cfg.init_from:
            init_ckpt = ck.load_checkpoint(cfg.init_from)
            tokenizer = init_ckpt.tokenizer
            check_kind_options(replace(cfg, kind=init_ckpt.model_config.kind))
            check_init_from_model(cfg, init_ckpt.model_config)
        if tokenizer is not None:
            new = sorted(set().union(*map(set, corpus.documents)) - set(tokenizer.chars), key=ord)
            if new:
                shown = ", ".join(repr(c) for c in new[:20]) + (" ..." if len(new) > 20 else "")
                src = cfg.init_from if init_ckpt else str(cfg.out)
                raise DataError(
                    f"{corpus.name}: {len(new)} character(s) not in the vocabulary of {src}: "
                    f"{shown}; fine-tuning needs a corpus written with the same characters"
                )
        data = prepare_data(corpus, tokenizer, cfg.val_fraction, cfg.seed)
        digest = data.digest()
        if resume_state is not None and resume_state.meta.get("corpus_digest", digest) != digest:
            raise DataError(f"{corpus.name}: not the text the run in {run_dir} was trained on "
                            "(its tokens differ); resume with that corpus, or start a new run "
                            f"from this one with --init-from {run_dir}")
        return corpus, data, digest, resumed, init_ckpt

    def _run(self) -> TrainResult:
        import torch

        from seqgen import checkpoint as ck
        from seqgen.data import check_window
        from seqgen.models import build_model

        # -- config: fresh, or the saved one on resume
        if self.resume is not None:
            cfg, run_dir, resume_state, locked = self._resume_config()
        else:
            cfg, run_dir, resume_state, locked = self.config, None, None, None
            cfg.validate()
            if not cfg.init_from:
                check_kind_options(cfg)
        device = resolve_device(cfg.device)
        if cfg.compile and device == "cpu" and not (
                os.environ.get("CXX") or shutil.which("g++") or shutil.which("clang++")
                or shutil.which("c++")):  # before the run directory is made
            raise UsageError("--compile on CPU needs a C++ compiler (g++ or clang++) on PATH for "
                             "torch.compile; install one (apt-get install g++) or train without "
                             "--compile")
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        elif device == "cpu" and "OMP_NUM_THREADS" not in os.environ:  # (torchrun sets it)
            from seqgen.devices import idle_threads

            torch.set_num_threads(idle_threads(torch.get_num_threads()))
        if self.dist.enabled and device == "cuda":
            device = f"cuda:{self.dist.local_rank}"
            torch.cuda.set_device(device)
        dev_type = device.split(":")[0]

        # -- data and vocabulary
        corpus, data, digest, resumed, init_ckpt = self._load_data(cfg, run_dir, resume_state)
        tokenizer = data.tokenizer

        # -- model
        if resumed is not None:
            rcfg = cfg
            mcfg = replace(resumed.model_config)
        elif init_ckpt is not None:
            mcfg = replace(init_ckpt.model_config)
            if cfg.dropout is not None:
                mcfg.dropout = cfg.dropout
            rcfg, _ = resolve_config(replace(cfg, kind=mcfg.kind), tokenizer.vocab_size,
                                     corpus.num_chars, device)
            for name in (*ARCHITECTURE, "dropout"):
                setattr(rcfg, name, getattr(mcfg, name))
            rcfg.kind = mcfg.kind
            if family(mcfg.kind) == "transformer" and rcfg.seq_len > mcfg.context_length:
                rcfg.seq_len = mcfg.context_length
        else:
            rcfg, mcfg = resolve_config(cfg, tokenizer.vocab_size, corpus.num_chars, device)
        if Path(rcfg.corpus).expanduser().exists():
            # saved absolute, so that --resume and eval find it from any working directory
            rcfg.corpus = str(Path(rcfg.corpus).expanduser().resolve())
        fam = family(mcfg.kind)
        if rcfg.batch_size % self.dist.world:
            raise UsageError(f"--batch-size ({rcfg.batch_size}) must be a multiple of the number "
                             f"of processes ({self.dist.world})")
        check_window(len(data.train_ids), rcfg.seq_len, f"{corpus.name}: the training split")
        if (fam == "rnn" and rcfg.batching != "random"
                and (len(data.train_ids) - 1) // rcfg.batch_size < rcfg.seq_len):
            if cfg.batch_size is not None and resume_state is None:
                raise DataError(
                    f"{corpus.name}: the training split has {len(data.train_ids):,} tokens, too "
                    f"few for --batch-size {rcfg.batch_size} rows of --seq-len {rcfg.seq_len}; "
                    "use a smaller --batch-size or --seq-len"
                )
            fit = (len(data.train_ids) - 1) // rcfg.seq_len
            rcfg.batch_size = max(self.dist.world, fit - fit % self.dist.world)
        precision = resolve_precision(rcfg.precision, device, mcfg.kind)

        torch.manual_seed(rcfg.seed)
        model = build_model(mcfg)
        loaded = resumed or init_ckpt
        if loaded is not None:
            model.load_state_dict(loaded.model.state_dict(), strict=True)
        model.to(device)
        model.train()
        torch.manual_seed(rcfg.seed + 7919 * (self.dist.rank + 1))  # dropout masks per process

        # -- optimizer and schedule
        decay = [p for p in model.parameters() if p.dim() >= 2]
        no_decay = [p for p in model.parameters() if p.dim() < 2]
        groups = [{"params": decay, "weight_decay": rcfg.weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}]
        optimizer = adamw(groups, rcfg.lr)
        self._cfg = rcfg
        self.step = 0
        self.elapsed = 0.0
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self._lr_factor)

        # -- batches
        stateful = fam == "rnn" and rcfg.batching != "random"
        Batches = StreamBatches if stateful else RandomWindows
        batches = Batches(data.train_ids, rcfg.batch_size, rcfg.seq_len, rcfg.seed,
                          self.dist.rank, self.dist.world)

        # -- output directory
        out = Path(rcfg.out) if rcfg.out else default_out(corpus.name)
        if resume_state is None and rcfg.out and (out / ck.META).exists() and not rcfg.overwrite:
            raise UsageError(f"--out {out}: already holds a checkpoint; continue it with "
                             f"--resume {out}, pass --overwrite, or choose another --out")
        rcfg.out = str(out)
        # --overwrite: the first save of this run removes what the old run left that this one
        # may not write again (its best/ and loss curve), so no command picks up the old model
        replacing = resume_state is None and (out / ck.META).exists()
        stale_lock = locked[1] if locked else None
        if self.dist.rank == 0 and not (locked and locked[0].resolve() == out.resolve()):
            # one writer per run directory (.seqgen.lock), until run() ends
            from seqgen.fileio import directory_lock

            stale_lock = self._hold.enter_context(
                directory_lock(out, "--out" if resume_state is None else None))

        # -- restore the training state
        history: list[dict] = []
        metrics_log = _MetricsLog(out / "metrics.jsonl")
        best_val, best_step, evals_since_best = None, None, 0
        state = None
        if resume_state is not None:
            best_val, best_step, evals_since_best, state, history = self._restore(
                resume_state, optimizer, scheduler, batches, rcfg, out, device)

        fwd_model = model
        if rcfg.compile:
            fwd_model = torch.compile(model)
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            fwd_model = DDP(fwd_model, device_ids=[self.dist.local_rank] if dev_type == "cuda"
                            else None)

        autocast = (lambda: torch.autocast(dev_type, dtype=torch.bfloat16)) if precision == "bf16" \
            else contextlib.nullcontext
        budget_s = rcfg.minutes * 60 if rcfg.minutes else None
        V = mcfg.vocab_size
        val_ids = data.val_ids[: rcfg.eval_tokens + 1] if len(data.val_ids) > 1 else None

        def evaluate() -> float | None:
            if val_ids is None:
                return None
            return held_out_loss(model, val_ids, fam == "rnn", rcfg.seq_len, rcfg.batch_size,
                                 autocast, device, self.dist)[0]

        def save(final_metrics: dict, best: bool) -> None:
            # RNG states (one per process) and the carried RNN state of the whole global batch,
            # so that --resume continues exactly with as many processes as before
            rngs = [torch.get_rng_state()[None]]  # (1, N) each
            if dev_type == "cuda":
                rngs.append(torch.cuda.get_rng_state(device)[None])
            whole = state
            if self.dist.enabled:
                rngs = [gather_rows(t, self.dist, 0, [1] * self.dist.world, device) for t in rngs]
                if state is not None:
                    rows = [rank_rows(rcfg.batch_size, r, self.dist.world)
                            for r in range(self.dist.world)]
                    sizes = [hi - lo for lo, hi in rows]
                    parts = [gather_rows(t, self.dist, 1, sizes, device)
                             for t in (state if isinstance(state, tuple) else (state,))]
                    whole = tuple(parts) if isinstance(state, tuple) else parts[0]
            if self.dist.rank != 0:
                return
            packed_state, state_t = _state_tensors(whole)
            tensors = dict(state_t)
            opt_meta = ck.pack_state(optimizer.state_dict(), tensors, "optimizer")
            tensors["torch_rng"] = torch.get_rng_state()
            tensors["torch_rng_ranks"] = rngs[0]  # (world, N)
            if dev_type == "cuda":
                tensors["cuda_rng_ranks"] = rngs[1]
            tmeta = {
                "step": self.step, "elapsed_s": self.elapsed, "world_size": self.dist.world,
                "optimizer": opt_meta, "scheduler": scheduler.state_dict(),
                "data": batches.state_dict(), "rnn_state": packed_state,
                "best_val_loss": best_val, "best_step": best_step,
                "evals_since_best": evals_since_best, "corpus_digest": digest,
                "stop_reason": stop_reason,
            }
            common = dict(tokenizer=tokenizer, train_config=rcfg.to_dict(),
                          corpus_name=corpus.name, corpus_kind=corpus.kind, step=self.step,
                          metrics=final_metrics)
            metrics_log.write(history)
            if best:
                ck.save_checkpoint(out / ck.BEST, model, **common)
            ck.save_checkpoint(out, model, train_state=ck.TrainState(tensors, tmeta), **common)
            nonlocal replacing
            if replacing:
                if not best:
                    shutil.rmtree(out / ck.BEST, ignore_errors=True)
                (out / "loss.png").unlink(missing_ok=True)
                replacing = False

        info = dict(total_steps=rcfg.steps, budget_s=budget_s)
        self._emit(ProgressEvent("start", self.step, elapsed_s=self.elapsed, message=(
            f"{model.summary()} | {corpus.name}"
            + (f" (ABC, {rcfg.abc_headers} headers)" if corpus.kind == "abc" else "")
            + f": {len(data.train_ids):,} train / "
            f"{len(data.val_ids):,} val tokens | batch {rcfg.batch_size} x {rcfg.seq_len} | "
            f"{device} {precision}"
            + (f" {torch.get_num_threads()} thread(s)" if device == "cpu" else "")
            + (f" x{self.dist.world} processes" if self.dist.enabled else "")
            + (f" | took over the lock left by {stale_lock}, no longer running" if stale_lock
               else "")
            + ("" if len(data.val_ids) else " | no validation split: no validation loss, "
               "no best/ checkpoint (--val-fraction)")), **info))

        # -- the loop
        sync = self.dist.enabled
        tokens_per_step = rcfg.batch_size * rcfg.seq_len
        last_eval_s = 0.0
        loss_acc, loss_n, grad_norm = 0.0, 0, None
        gn_max, gn_clipped, gn_n = 0.0, 0, 0  # since the last log point (from gn_v: no extra sync)
        rate_t, rate_steps = time.perf_counter(), 0
        tok_s = None
        last_val, last_train = None, None
        stop_reason = None
        # Ctrl-C: with several processes, all must stop at the same step (they save together),
        # so a stop is only acted on once the flag has gone round in the step's all-reduce
        interrupted = False
        t_prev = time.perf_counter()
        while True:
            x, y, fresh = batches.next()
            # (non_blocking only on CUDA: on MPS a copy from a freed CPU tensor can read garbage)
            x = x.to(device, non_blocking=dev_type == "cuda")
            y = y.to(device, non_blocking=dev_type == "cuda")
            if fam == "rnn" and fresh:
                state = None
            with autocast():
                logits, new_state = fwd_model(x, state if fam == "rnn" else None)  # (B, T, V)
            loss = torch.nn.functional.cross_entropy(logits.float().view(-1, V), y.view(-1))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if rcfg.grad_clip > 0:
                gn = torch.nn.utils.clip_grad_norm_(model.parameters(), rcfg.grad_clip)
            else:
                gn = torch.linalg.vector_norm(torch.stack(
                    [p.grad.detach().norm() for p in model.parameters() if p.grad is not None]))
            now = time.perf_counter()
            self.elapsed += now - t_prev
            t_prev = now
            local_stop = self._stop is not None
            if budget_s is not None and self.elapsed + last_eval_s >= budget_s:
                local_stop = True
            if sync:
                import torch.distributed as dist

                flags = torch.tensor([loss.item(), float(local_stop),
                                      self.elapsed if self.dist.rank == 0 else 0.0,
                                      1.0 if self._stop else 0.0], dtype=torch.float64)
                dist.all_reduce(flags)
                loss_v = flags[0].item() / self.dist.world
                want_stop, self.elapsed = flags[1].item() > 0, flags[2].item()
                interrupted = flags[3].item() > 0
                if interrupted and self._stop is None:
                    self._stop = "interrupt"
            else:
                loss_v, want_stop = loss.item(), local_stop
            gn_v = float(gn)
            if not math.isfinite(loss_v) or not math.isfinite(gn_v):
                what = "loss" if not math.isfinite(loss_v) else "gradient norm"
                last = f"the last good checkpoint is {out} (step {_saved_step(out)})" \
                    if (out / ck.META).exists() else "no checkpoint was saved yet"
                if self.dist.rank == 0 and rcfg.log_grad_norms:  # the norms leading up to it
                    history.append({"step": self.step + 1, "grad_norm": gn_v if
                                    math.isfinite(gn_v) else None, "nonfinite": what})
                    metrics_log.write(history)
                raise TrainingError(
                    f"the {what} became {loss_v if what == 'loss' else gn_v} at step "
                    f"{self.step + 1}; {last}; try a lower --lr (now {rcfg.lr:g}) or --grad-clip"
                )
            optimizer.step()
            self.step += 1
            scheduler.step()
            if fam == "rnn":
                state = model.detach_state(new_state)
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
            lr_now = scheduler.get_last_lr()[0]
            if self.step % rcfg.log_every == 0:
                history.append({"step": self.step, "time_s": round(self.elapsed, 3),
                                "train_loss": loss_acc / loss_n, "lr": lr_now,
                                "grad_norm": grad_norm, "grad_norm_max": gn_max,
                                "clipped_fraction": gn_clipped / gn_n, "tokens_per_s": tok_s})
                gn_max, gn_clipped, gn_n = 0.0, 0, 0
            elif rcfg.log_grad_norms:  # a log point carries its own step's norm
                history.append({"step": self.step, "grad_norm": gn_v})
            self._emit(ProgressEvent("step", self.step, train_loss=loss_v, lr=lr_now,
                                     tokens_per_s=tok_s, grad_norm=gn_v, elapsed_s=self.elapsed,
                                     best_val_loss=best_val, val_loss=last_val, **info))
            if self.step % rcfg.log_every == 0:
                last_train = loss_acc / loss_n
                loss_acc, loss_n = 0.0, 0
            if self.step >= (rcfg.steps or math.inf):
                stop_reason = "steps"
            if not sync:
                interrupted = self._stop is not None
            if interrupted and stop_reason == "steps":
                # the last step is done: finish the run as usual (evaluate, save, exit 0)
                # rather than leave a run that says "resume" and has nothing left to do
                interrupted = False
            if interrupted:
                break
            if want_stop and stop_reason is None:
                stop_reason = "time"
            at_eval = self.step % rcfg.eval_every == 0 or stop_reason is not None
            if not at_eval:
                continue
            # -- evaluate and save
            t0 = time.perf_counter()
            last_val = evaluate()
            if loss_n:
                last_train = loss_acc / loss_n
            improved = last_val is not None and (best_val is None or last_val < best_val)
            if improved:
                best_val, best_step, evals_since_best = last_val, self.step, 0
            elif last_val is not None:
                evals_since_best += 1
            point = {"step": self.step, "time_s": round(self.elapsed, 3), "train_loss": last_train,
                     "val_loss": last_val, "val_bpc": _bpc(last_val), "lr": lr_now,
                     "tokens_per_s": tok_s}
            history.append(point)
            metrics = dict(point, best_val_loss=best_val, best_step=best_step,
                           num_params=model.num_params())
            if (stop_reason is None and rcfg.patience and last_val is not None
                    and evals_since_best >= rcfg.patience):
                stop_reason = "patience"  # (before the save, which records why the run stopped)
            save(metrics, improved)
            t1 = time.perf_counter()
            last_eval_s = t1 - t0
            self.elapsed += last_eval_s
            t_prev = rate_t = t1  # tokens/s counts training steps only
            rate_steps = 0
            self._emit(ProgressEvent("eval", self.step, val_loss=last_val, val_bpc=_bpc(last_val),
                                     best_val_loss=best_val, train_loss=last_train, lr=lr_now,
                                     tokens_per_s=tok_s, elapsed_s=self.elapsed, **info))
            if stop_reason is not None:
                break

        if interrupted:
            metrics = {"step": self.step, "train_loss": last_train, "val_loss": last_val,
                       "best_val_loss": best_val, "best_step": best_step,
                       "num_params": model.num_params(), "interrupted": True}
            save(metrics, False)
            verb = "interrupted" if self._stop == "interrupt" else "stopped"
            raise Interrupted(f"{verb} at step {self.step}; saved {out}; resume with: "
                              f"seqgen train --resume {out}")
        self._emit(ProgressEvent("end", self.step, val_loss=last_val, val_bpc=_bpc(last_val),
                                 best_val_loss=best_val, train_loss=last_train,
                                 tokens_per_s=tok_s, elapsed_s=self.elapsed,
                                 message=stop_reason or "", **info))
        return TrainResult(
            out=out, best=(out / ck.BEST) if best_step is not None else None, step=self.step,
            stop_reason=stop_reason or "steps", elapsed_s=self.elapsed,
            tokens_per_s=_mean_rate(history) or (tok_s or 0.0), train_loss=last_train,
            val_loss=last_val, best_val_loss=best_val, best_step=best_step, config=rcfg,
            model_config=mcfg, model_summary=model.summary(), num_params=model.num_params(),
            corpus_name=corpus.name, corpus_kind=corpus.kind,
            train_tokens=len(data.train_ids), val_tokens=len(data.val_ids), device=device,
            precision=precision, world_size=self.dist.world, history=history,
        )

    def _lr_factor(self, step: int) -> float:
        """LambdaLR's multiplier: linear warmup over warmup_steps, then cosine to min_lr_ratio
        over the run (its progress by steps, or by time under --minutes, whichever is further)."""
        cfg = self._cfg
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


def _bpc(nats: float | None) -> float | None:
    return None if nats is None else nats / math.log(2)


def _mean_rate(history: list[dict]) -> float | None:
    rates = [h["tokens_per_s"] for h in history if h.get("tokens_per_s")]
    if not rates:
        return None
    rates.sort()
    return rates[len(rates) // 2]


def _saved_step(out: Path) -> int | str:
    try:
        return json.loads((out / "checkpoint.json").read_text())["step"]
    except Exception:
        return "?"


class _MetricsLog:
    """metrics.jsonl, one JSON object per line: written whole (temp file + rename) the first
    time, which also drops the lines past the step a run resumed from; after that only the new
    points are appended, so that a long run's log costs time in proportion to its length. A
    line torn by a crash is skipped when read back (`_read_history`)."""

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


def _read_history(path: Path, up_to: int) -> list[dict]:
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


def train(config: TrainConfig | None = None, callback: Callable[[ProgressEvent], None] | None = None,
          resume: str | os.PathLike | None = None, overrides: dict | None = None,
          handle_signals: bool = True) -> TrainResult:
    """Train a model as `config` says (or continue the run in `resume`) and return the result.

    Called from the main thread, it handles SIGINT and SIGTERM while it runs (saving a checkpoint
    and raising Interrupted; the previous handlers are restored after); `handle_signals=False`
    leaves them to the caller, who can stop a run with Trainer.request_stop."""
    return Trainer(config, callback, resume, overrides, handle_signals).run()
