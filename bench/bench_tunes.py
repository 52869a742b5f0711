"""What top-p and the ABC constraint cost in tune sampling speed: the shipped model.

    python bench/bench_tunes.py                  # both parts, medians of 3 and of 12 tunes
    python bench/bench_tunes.py --repeats 5 --tunes 20

Part 1, the decode step: --length characters from the prompt 'X:' without the ABC constraint and
without stopping at <eos> (every case does the same number of steps), 1 and 16 streams; the
table gives the median time of one step of the batch. Part 2, whole tunes, one stream (as
`seqgen sample --tunes 1` makes one; more tunes are one batch, which `bench_grammar.py --parts
speed` times): --tunes tunes one after another from 'X:' (seeds 0, 1, ...), each ended by
<eos>, with the ABC constraint (the default) and without, at top-p 1, 0.9 and 0.95, after one
warm-up tune per case (the grammar's masks are built the first time a state is seen and cached;
docs/quality.md); the table gives the median characters per second over the tunes, and what
the constraint adds to a character at the same top-p (issue 18's measure, one stream). The
cases run round-robin, so machine noise hits every case alike. Library generate(), the decoder
`seqgen sample` uses, on one torch thread. docs/benchmarks.md ("What top-p and the constraint
cost in speed") has a run of it.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from seqgen.checkpoint import load_checkpoint
from seqgen.evaluate import default_model_dir
from seqgen.sampling import SampleConfig, generate

TOP_P = (1.0, 0.9)
TUNE_TOP_P = (1.0, 0.9, 0.95)  # part 2: and the grammar's default


def timed(ckpt, cfg: SampleConfig, seed: int) -> tuple[float, list]:
    t = time.perf_counter()
    samples = generate(ckpt.model, ckpt.tokenizer, "X:", cfg, torch.Generator().manual_seed(seed))
    return time.perf_counter() - t, samples


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--length", type=int, default=1000, help="part 1: steps per case")
    ap.add_argument("--repeats", type=int, default=3, help="part 1: runs per case")
    ap.add_argument("--tunes", type=int, default=12, help="part 2: tunes per case")
    args = ap.parse_args()
    torch.set_num_threads(1)
    ckpt = load_checkpoint(default_model_dir())
    print(f"{ckpt.path}, 1 thread\n")

    step_us: dict[tuple, list[float]] = {}
    for rep in range(args.repeats):
        for n in (1, 16):
            for p in TOP_P:
                cfg = SampleConfig(length=args.length, top_p=p, num_samples=n, stop_at_eos=False)
                dt, _ = timed(ckpt, cfg, rep)
                step_us.setdefault((n, p), []).append(dt / args.length * 1e6)
    print(f"Part 1: one decode step, {args.length:,} steps without the constraint, median of "
          f"{args.repeats}\n")
    print("| streams | top-p 1 | top-p 0.9 | top-p 0.9 costs |")
    print("|---|---|---|---|")
    for n in (1, 16):
        a, b = (statistics.median(step_us[(n, p)]) for p in TOP_P)
        print(f"| {n} | {a:,.0f} us | {b:,.0f} us | +{b - a:,.0f} us ({b / a - 1:+.0%}) |")

    rate: dict[tuple, list[float]] = {}
    for c in ("abc", "none"):
        for p in TUNE_TOP_P:  # warm-up: the grammar's masks of the common states
            timed(ckpt, SampleConfig(length=1500, top_p=p, constrain=c), 10_000)
    for seed in range(args.tunes):
        for c in ("abc", "none"):
            for p in TUNE_TOP_P:
                dt, [s] = timed(ckpt, SampleConfig(length=1500, top_p=p, constrain=c), seed)
                rate.setdefault((c, p), []).append(len(s.tokens) / dt)
    print(f"\nPart 2: {args.tunes} tunes one after another, one stream, median characters per "
          "second (top-p 0.95 is the default under the grammar, 0.9 without it)\n")
    print("| | " + " | ".join(f"top-p {p:g}" for p in TUNE_TOP_P) + " |")
    print("|---|" + "---|" * len(TUNE_TOP_P))
    med = {k: statistics.median(v) for k, v in rate.items()}
    for c in ("abc", "none"):
        print(f"| `--constrain {c}` | " + " | ".join(f"{med[(c, p)]:,.0f} chars/s"
                                                  for p in TUNE_TOP_P) + " |")
    # the issue-18 measure: what the constraint adds to a character at the same top-p
    print("| the constraint's cost a character | " + " | ".join(
        f"{1e6 / med[('abc', p)]:,.0f} against {1e6 / med[('none', p)]:,.0f} us "
        f"({med[('none', p)] / med[('abc', p)] - 1:+.0%})" for p in TUNE_TOP_P) + " |")


if __name__ == "__main__":
    main()
