"""Tune sampling speed of the shipped model: ABC constraint off and on, top-p 1 and 0.9.

    python bench/bench_tunes.py                    # 1,000 characters from 'X:', medians of 3
    python bench/bench_tunes.py --length 2000 --repeats 5 --streams 1,4,16

Every case generates --length characters per stream from the prompt 'X:' (<eos> does not stop
a stream here, so every case does the same work) with the library's generate(), the decoder
`seqgen sample` uses, on one torch thread. The cases run round-robin --repeats times and the table
gives medians of characters per second (all streams counted), so machine noise hits every case
alike. docs/benchmarks.md ("Seventh session: top-p 0.9 for tunes") has a run of it.
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
    ap.add_argument("--length", type=int, default=1000, help="characters per stream")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--streams", default="1,16", help="batch sizes, comma-separated")
    args = ap.parse_args()
    torch.set_num_threads(1)
    ckpt = load_checkpoint(default_model_dir())
    streams = [int(s) for s in args.streams.split(",")]
    rates: dict[tuple, list[float]] = {}
    for rep in range(args.repeats):
        for n in streams:
            for constrain, top_p in CASES:
                cfg = SampleConfig(length=args.length, top_p=top_p, num_samples=n,
                                   stop_at_eos=False, constrain=constrain)
                t = time.perf_counter()
                generate(ckpt.model, ckpt.tokenizer, "X:", cfg, torch.Generator().manual_seed(rep))
                rates.setdefault((n, constrain, top_p), []).append(
                    n * args.length / (time.perf_counter() - t))
    print(f"{ckpt.path}: {args.length:,} characters per stream from 'X:', 1 thread, "
          f"median of {args.repeats}\n")
    print("| streams | " + " | ".join(f"`--constrain {c}`, top-p {p:g}" for c, p in CASES) + " |")
    print("|---" * (len(CASES) + 1) + "|")
    for n in streams:
        cells = [f"{statistics.median(rates[(n, c, p)]):,.0f} chars/s" for c, p in CASES]
        print(f"| {n} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
