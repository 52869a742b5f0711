"""Tune sampling speed of the shipped model: ABC constraint off and on, top-p 1 and 0.9.

    python bench/bench_tunes.py                    # tunes from 'X:', medians of 3
    python bench/bench_tunes.py --length 2000 --repeats 5 --streams 1,4,16

Every case samples from the prompt 'X:' with the library's generate(), the decoder `seqgen
sample` uses, on one torch thread, until each stream's tune ends (<eos>) or --length characters;
the rate is the characters of the tunes over the wall time (a batch runs until its longest tune
ends, as `seqgen sample --tunes` does), and a step's cost the wall time over the batch's steps. Tunes end at <eos> because after it the grammar has
nothing more to allow: sampling on would be unconstrained work in a constrained case. The same
seeds give each case the same first draws, but top-p and the constraint change the tunes and
their lengths, so the table also gives the mean tune length. The cases run round-robin --repeats
times and the table gives medians, so machine noise hits every case alike.
docs/benchmarks.md ("Seventh session: top-p 0.9 for tunes") has a run of it.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from seqgen.checkpoint import load_checkpoint
from seqgen.evaluate import default_model_dir
from seqgen.sampling import SampleConfig, generate

CASES = (("none", 1.0), ("none", 0.9), ("abc", 1.0), ("abc", 0.9))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--length", type=int, default=1500, help="characters per tune, at most")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--streams", default="1,16", help="batch sizes, comma-separated")
    args = ap.parse_args()
    torch.set_num_threads(1)
    ckpt = load_checkpoint(default_model_dir())
    streams = [int(s) for s in args.streams.split(",")]
    rates: dict[tuple, list[float]] = {}
    lengths: dict[tuple, list[float]] = {}
    step_us: dict[tuple, list[float]] = {}
    for rep in range(args.repeats):
        for n in streams:
            for constrain, top_p in CASES:
                cfg = SampleConfig(length=args.length, top_p=top_p, num_samples=n,
                                   stop_at_eos=True, constrain=constrain)
                t = time.perf_counter()
                samples = generate(ckpt.model, ckpt.tokenizer, "X:", cfg,
                                   torch.Generator().manual_seed(rep))
                dt = time.perf_counter() - t
                chars = sum(len(s.tokens) for s in samples)
                steps = max(len(s.tokens) for s in samples)  # the batch's decode steps
                rates.setdefault((n, constrain, top_p), []).append(chars / dt)
                lengths.setdefault((n, constrain, top_p), []).append(chars / n)
                step_us.setdefault((n, constrain, top_p), []).append(dt / steps * 1e6)
    print(f"{ckpt.path}: tunes from 'X:' (at most {args.length:,} characters), 1 thread, "
          f"median of {args.repeats}\n")
    print("| streams | " + " | ".join(f"`--constrain {c}`, top-p {p:g}" for c, p in CASES) + " |")
    print("|---" * (len(CASES) + 1) + "|")
    for n in streams:
        cells = [f"{statistics.median(rates[(n, c, p)]):,.0f} chars/s, "
                 f"{statistics.median(step_us[(n, c, p)]):,.0f} us/step "
                 f"({statistics.mean(lengths[(n, c, p)]):,.0f} chars/tune)" for c, p in CASES]
        print(f"| {n} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
