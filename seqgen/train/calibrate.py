"""`--preset auto` on a time budget: measure the machine, then choose the model and its training.

A calibration of a few seconds (at most `SHARE` of the budget, and counted in it) times a few
training steps of each candidate size, smallest first, at the precision the run will use, on
the cores the run will use. The rule (`choose`, docs/training.md "How auto chooses") then reads
only measured quantities: each candidate's tokens/s, its parameter count, the corpus size and
the seconds left to train.

    tokens(c)  = tokens/s(c) x seconds left                 what candidate c would read
    size       = the largest c with tokens(c) >= TOKENS_PER_PARAM x params(c)
                 and params(c) <= PARAMS_PER_CHAR x corpus characters (else the smallest)
    passes     = tokens(size) / corpus characters
    dropout    = DROPOUT_PER_PASS x (passes - FREE_PASSES), in [0, MAX_DROPOUT]
                 (RNN kinds: on the inputs too, input_dropout = dropout)
    batch      = BATCH rows of WINDOW tokens (SMALL_BATCH when that leaves < MIN_STEPS steps)
    lr         = the candidate's own (larger models take smaller steps)

So a faster machine, a quieter one or a longer budget gets a larger model, and a budget that
reads the corpus many times gets dropout. Runs given `--steps`, `--threads` or a named preset
never calibrate (docs/training.md says what they get).
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from seqgen.train.config import TrainConfig

SHARE = 0.05  # at most this share of the budget is spent calibrating
MAX_SECONDS = 5.0  # and at most this many seconds
MIN_BUDGET_S = 10.0  # a shorter budget is not calibrated: the smallest candidate, said so
TIMED_STEPS = 2  # steps timed per candidate (after one untimed warm-up step)

# The rule's constants, fitted from bench/bench_train.py sweeps (docs/benchmarks.md, "auto").
TOKENS_PER_PARAM = 3.0  # a model must read at least this many tokens per parameter
PARAMS_PER_CHAR = 10.0  # and have at most this many parameters per corpus character
FREE_PASSES = 8.0  # passes over the corpus that need no dropout
DROPOUT_PER_PASS = 0.05
MAX_DROPOUT = {"rnn": 0.35, "transformer": 0.2}
BATCH, SMALL_BATCH, MIN_STEPS = 64, 32, 400
WINDOW = 64  # RNN truncated-BPTT window (the transformer's is its context length)


def calibrates(cfg: TrainConfig, resuming: bool, distributed: bool, device: str) -> bool:
    """Whether a run calibrates: `--preset auto` on a time budget, on one CPU process. Not a
    run given `--steps` (what it trains depends on its options and seed only, not on the
    machine's speed), `--threads`, the model's size (`--hidden-size`, `--num-layers`: the
    calibration chooses a size, and its learning rate and dropout are for the size it chose),
    `--resume` or `--init-from` (the model is given), several processes (each would measure
    its own) or a GPU (not measured here): those take `choose_preset`."""
    return (cfg.preset == "auto" and cfg.steps is None and cfg.threads is None
            and cfg.hidden_size is None and cfg.num_layers is None
            and not resuming and not cfg.init_from and not distributed and device == "cpu")


@dataclass(frozen=True)
class Candidate:
    """One size `auto` may choose: the model fields it sets and its peak learning rate."""

    name: str
    model: dict[str, Any]
    lr: float
    batch_size: int = BATCH  # the transformer's per-size batch (its windows are longer)


# Smallest first. RNN kinds: one layer on a 64-wide embedding (32 for the smallest).
RNN_CANDIDATES = tuple(
    Candidate(f"1x{h}", dict(hidden_size=h, num_layers=1, embed_dim=32 if h < 256 else 64),
              lr=round(8e-3 * min(1.0, 256 / h), 4))
    for h in (128, 256, 384, 512, 768))
TRANSFORMER_CANDIDATES = (
    Candidate("2x64", dict(hidden_size=64, num_layers=2, num_heads=4, context_length=64), 3e-3,
              16),
    Candidate("4x128", dict(hidden_size=128, num_layers=4, num_heads=4, context_length=64),
              2e-3, 12),
    Candidate("4x256", dict(hidden_size=256, num_layers=4, num_heads=4, context_length=128),
              1.5e-3, 12),
    Candidate("6x384", dict(hidden_size=384, num_layers=6, num_heads=6, context_length=256),
              1e-3, 8),
)


def candidates(kind: str) -> tuple[Candidate, ...]:
    return TRANSFORMER_CANDIDATES if kind == "transformer" else RNN_CANDIDATES


@dataclass
class Measured:
    """A candidate as the calibration found it: its parameters and training tokens/s (None: not
    timed, the calibration's time ran out first)."""

    name: str
    params: int
    tokens_per_s: float | None
    precision: str = ""  # the one it was timed at (the faster, where several were)


@dataclass
class Calibration:
    """What `auto` measured and chose, and why: the start line says it (`message`) and
    checkpoint.json keeps it (`to_dict`)."""

    kind: str
    precision: str
    threads: int
    budget_s: float
    seconds: float  # spent calibrating (counted in the budget)
    measured: list[Measured] = field(default_factory=list)
    chosen: str = ""
    values: dict[str, Any] = field(default_factory=dict)  # the TrainConfig fields it sets
    tokens: float = 0.0  # the chosen candidate's expected training tokens
    passes: float = 0.0
    reason: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    def message(self) -> str:
        mixed = len({m.precision for m in self.measured if m.tokens_per_s}) > 1
        timed = ", ".join(f"{m.name} {m.tokens_per_s:,.0f}" + (f" {m.precision}" if mixed else "")
                          for m in self.measured if m.tokens_per_s is not None)
        head = (f"auto: timed {timed} tokens/s ({self.precision}, {self.threads} thread(s), "
                f"{self.seconds:.1f} s) -> " if timed else "auto: ")
        return head + f"{self.chosen}, {self.reason}"


# --------------------------------------------------------------------------------- measuring
def measure(kind: str, vocab_size: int, precision: str | tuple[str, ...], device: str,
            limit_s: float,
            enough: Callable[[Measured], bool] = lambda m: False,
            clock: Callable[[], float] = time.perf_counter) -> tuple[list[Measured], float]:
    """Each candidate's training tokens/s (a few steps on random tokens: the speed depends on
    the shapes only), smallest first, until `limit_s` is spent or a candidate is `enough` (the
    larger ones are then left untimed; a `limit_s` of 0 times none); and the seconds spent.
    With several precisions each candidate is timed at each and keeps the faster. Uses its own
    random generator and restores torch's, so the run it precedes trains as it would have."""
    import torch

    from seqgen.models import ModelConfig, build_model
    from seqgen.train.start import adamw

    precisions = (precision,) if isinstance(precision, str) else precision
    t0 = clock()
    rng = torch.get_rng_state()
    gen = torch.Generator().manual_seed(0)
    out: list[Measured] = []
    step_s_per_param = 0.0  # the last candidate's seconds per step and parameter
    try:
        for c in candidates(kind):
            mcfg = ModelConfig(kind=kind, vocab_size=vocab_size, **c.model)
            model = build_model(mcfg).to(device).train()
            params = sum(p.numel() for p in model.parameters())
            rates: dict[str, float] = {}
            # (a candidate whose warm-up and timed steps would overrun the time is not started)
            expected = len(precisions) * (TIMED_STEPS + 1) * step_s_per_param * params
            done = bool(out) and out[-1].tokens_per_s is None or any(map(enough, out))
            first = not out and limit_s > 0
            if first or not done and clock() + expected < t0 + limit_s:
                for p in precisions:
                    # (the smallest is always timed, by one step at least: its warm-up step is
                    # the process's first, which the run would pay for anyway)
                    r = _rate(model, c, mcfg, p, device, gen, t0 + limit_s, clock, adamw,
                              min_steps=0 if out else 2)
                    if r is not None:
                        rates[p] = r
            best = max(rates, key=rates.__getitem__) if rates else precisions[0]
            rate = rates.get(best)
            if rate is not None:
                step_s_per_param = c.batch_size * _window(mcfg) / rate / params
            out.append(Measured(c.name, params, rate, best))
    finally:
        torch.set_rng_state(rng)
    return out, clock() - t0


def _rate(model, c: Candidate, mcfg, precision: str, device: str, gen, deadline: float,
          clock: Callable[[], float], adamw, min_steps: int = 0) -> float | None:
    """Median tokens/s of TIMED_STEPS training steps after a warm-up step; None when the
    deadline comes before one step is timed (`min_steps` are taken whatever the time)."""
    import torch
    import torch.nn.functional as F

    T, B = _window(mcfg), c.batch_size
    x = torch.randint(mcfg.vocab_size, (B, T + 1), generator=gen).to(device)  # (B, T + 1)
    opt = adamw([{"params": list(model.parameters()), "weight_decay": 0.0}], c.lr)
    bf16 = torch.autocast(device.split(":")[0], dtype=torch.bfloat16)
    autocast = bf16 if precision == "bf16" else contextlib.nullcontext()
    times: list[float] = []
    for i in range(TIMED_STEPS + 1):
        if i >= min_steps and clock() >= deadline:
            break
        t = clock()
        with autocast:
            logits, _ = model(x[:, :-1], None)  # (B, T, V)
        loss = F.cross_entropy(logits.float().flatten(0, 1), x[:, 1:].flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss.item()
        if i:  # (the first step warms caches and allocators up)
            times.append(clock() - t)
    return B * T / statistics.median(times) if times else None


def _window(mcfg) -> int:
    return mcfg.context_length if mcfg.kind == "transformer" else WINDOW


# --------------------------------------------------------------------------------- the rule
def _fits(m: Measured, train_s: float, corpus_chars: int) -> bool:
    """Candidate `m` reads enough tokens per parameter in `train_s` and is not too large for
    the corpus."""
    return (m.tokens_per_s is not None and m.tokens_per_s * train_s >= TOKENS_PER_PARAM * m.params
            and m.params <= PARAMS_PER_CHAR * max(corpus_chars, 1))


def choose(cal: Calibration, corpus_chars: int) -> Calibration:
    """Fill in `cal`'s choice from its measurements (see the module's description)."""
    fam = "transformer" if cal.kind == "transformer" else "rnn"
    by_name = {c.name: c for c in candidates(cal.kind)}
    train_s = max(cal.budget_s - cal.seconds, 0.0)
    chars = max(corpus_chars, 1)
    timed = [m for m in cal.measured if m.tokens_per_s]
    fits = [m for m in timed if _fits(m, train_s, chars)]
    if not timed:
        pick, why = cal.measured[0], (
            f"the smallest: a budget under {MIN_BUDGET_S:g} s is too short to calibrate"
            if cal.budget_s < MIN_BUDGET_S else
            "the smallest: no candidate could be timed in the calibration's time")
        rate = None
    else:
        pick = fits[-1] if fits else timed[0]
        rate = pick.tokens_per_s
    c = by_name[pick.name]
    tokens = (rate or 0.0) * train_s
    passes = tokens / chars
    dropout = min(MAX_DROPOUT[fam], max(0.0, DROPOUT_PER_PASS * (passes - FREE_PASSES)))
    batch = c.batch_size
    seq_len = c.model.get("context_length", WINDOW)
    if fam == "rnn" and tokens < MIN_STEPS * batch * seq_len:
        batch = SMALL_BATCH
    if timed:
        why = (f"{tokens / pick.params:.1f} tokens per parameter in {train_s:.0f} s "
               f"(the largest with >= {TOKENS_PER_PARAM:g}" + (
                   "" if fits else ": none, so the smallest") + f"), {passes:.1f} passes over "
               f"{chars:,} characters -> dropout {dropout:.2f}"
               + (" (output and inputs)" if fam == "rnn" and dropout else "")
               + f", batch {batch} x {seq_len}, "
               f"lr {c.lr:g}")
    cal.chosen, cal.tokens, cal.passes, cal.reason = pick.name, tokens, passes, why
    if pick.precision:
        cal.precision = pick.precision
    # RNN kinds: the inputs dropped as the output (irish.abc, 5 minutes' steps of 1x512: best
    # held-out 1.1374 with the output's dropout 0.35 alone, 1.1029 with the inputs' too)
    cal.values = {**c.model, "dropout": round(dropout, 3),
                  "input_dropout": round(dropout, 3) if fam == "rnn" else 0.0, "batch_size": batch,
                  "seq_len": seq_len, "lr": c.lr,
                  "weight_decay": 0.1 if fam == "transformer" else 0.0}
    return cal


def calibrate(kind: str, vocab_size: int, corpus_chars: int, budget_s: float,
              precision: str | tuple[str, ...], device: str, threads: int) -> Calibration:
    """Measure (unless the budget is under MIN_BUDGET_S) and choose. Several `precision`s: each
    candidate is timed at each, and the run trains at the chosen one's faster
    (`Calibration.precision`)."""
    first = precision if isinstance(precision, str) else precision[0]
    cal = Calibration(kind, first, threads, budget_s, 0.0)
    if budget_s < MIN_BUDGET_S:
        cal.measured, _ = measure(kind, vocab_size, precision, device, 0.0)
        return choose(cal, corpus_chars)
    limit = min(MAX_SECONDS, SHARE * budget_s)

    def too_big(m: Measured) -> bool:  # (then so are the larger ones: stop timing)
        return m.tokens_per_s is not None and not _fits(m, budget_s - limit, corpus_chars)

    cal.measured, cal.seconds = measure(kind, vocab_size, precision, device, limit, too_big)
    return choose(cal, corpus_chars)
