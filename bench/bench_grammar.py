"""What the ABC grammar (`--constrain abc`) buys, measured with tools seqgen did not write.

    python bench/bench_grammar.py                      # all parts (hours on 2 busy cores)
    python bench/bench_grammar.py --parts tools meters  # some of them
    python bench/bench_grammar.py --runs /tmp/runs     # reuse (or keep) the 1-minute models

Parts:
- tools: the shipped model (seqgen/assets/default), `seqgen sample --tunes` at the default
  settings, --tunes tunes at each of --seeds, with the constraint and with --constrain none:
  the share of tunes abc2midi (no 'Error' line), abcm2ps (no error) and music21's stock
  reader + MIDI writer accept (bench/abc_tools.py), and the share that copy the training
  tunes (seqgen.music.quality.NoveltyIndex, as `seqgen eval` counts copies);
- meters: the shipped model with `--meter M` for each meter of the bundled corpora: the share
  of bars with the meter's length (a part's pickup and the bar that completes it, and the
  tune's last bar, aside), parts shorter than 4 bars, and the R: fields written against the
  R: values the corpora write under that meter;
- models: a model trained for one minute (`seqgen train CORPUS --minutes 1`) on irish.abc and
  on each bundled corpus, sampled with the default constraint: median bars per tune against
  the corpus's (a sample of its tunes), tunes whose endings come in order, tools' verdicts;
- speed: the share of the decode time `seqgen sample --tunes` spends in the grammar.

Bars, parts and endings are music21's reading of each tune (bench/tune_form.py). Prints
Markdown tables; docs/grammar.md has a run.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import re
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import abc_tools  # noqa: E402
import tune_form  # noqa: E402

IRISH = Path(__file__).resolve().parents[2] / "shared" / "data" / "irish.abc"
METERS = ("2/4", "3/4", "4/4", "6/8", "9/8", "12/8", "2/2", "3/2")


# ------------------------------------------------------------------------------- sampling
def sample(ckpt, count: int, seed: int, constrain: str | None = None,
           meter: str | None = None) -> list[str]:
    """`count` tunes as `seqgen sample CKPT --tunes count --seed seed [--meter M]
    [--constrain C]` writes them."""
    import torch

    from seqgen.music.tunes import SamplingRequest, resolve_sampling, sample_tunes

    plan = resolve_sampling(ckpt, SamplingRequest(tunes=True, meter=meter, constrain=constrain))
    torch.set_num_threads(1)
    tunes = sample_tunes(ckpt.model, ckpt.tokenizer, count, plan.prompt, plan.config,
                         torch.Generator().manual_seed(seed))
    return [t.text + "\n" for t in tunes]


def judge(tunes: list[str], jobs: int) -> dict:
    """abc_tools' verdicts on `tunes`: the pass rate of each tool and of all three."""
    items = [("sample", i, t) for i, t in enumerate(tunes)]
    with mp.get_context("fork").Pool(jobs) as pool:
        results = pool.map(abc_tools.judge, items, chunksize=4)
    return abc_tools.summarise(results)


def measure(tunes: list[str], jobs: int) -> list[dict]:
    return tune_form.measure_all(tunes, jobs)


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


# ---------------------------------------------------------------------------- part: tools
def part_tools(args) -> None:
    from seqgen.checkpoint import load_checkpoint
    from seqgen.evaluate import checkpoint_corpus, default_model_dir
    from seqgen.music.quality import NoveltyIndex

    ckpt = load_checkpoint(default_model_dir())
    novelty = NoveltyIndex(checkpoint_corpus(ckpt).documents)
    print(f"\n### The shipped model: {args.tunes} tunes per seed, `seqgen sample default "
          f"--tunes {args.tunes} --seed S [--constrain none]`\n")
    print("| constraint | seed | abc2midi | abcm2ps | music21 | all three | copies |")
    print("|---|---|---|---|---|---|---|")
    for constrain in args.constrain:
        totals: Counter = Counter()
        for seed in args.seeds:
            tunes = sample(ckpt, args.tunes, seed, constrain)
            s = judge(tunes, args.jobs)
            copies = sum(novelty.copies(t) for t in tunes) / len(tunes)
            for k in ("abc2midi_pass", "abcm2ps_pass", "music21_pass", "all_pass"):
                totals[k] += s[k] * len(tunes)
            totals["n"] += len(tunes)
            totals["copies"] += copies * len(tunes)
            print(f"| `{constrain}` | {seed} | {pct(s['abc2midi_pass'])} | "
                  f"{pct(s['abcm2ps_pass'])} | {pct(s['music21_pass'])} | "
                  f"{pct(s['all_pass'])} | {pct(copies)} |", flush=True)
            for m, c in s["messages"][:3]:
                print(f"|  | | {c}: {m[:70]} | | | | |")
        n = totals["n"]
        print(f"| `{constrain}` | all | {pct(totals['abc2midi_pass'] / n)} | "
              f"{pct(totals['abcm2ps_pass'] / n)} | {pct(totals['music21_pass'] / n)} | "
              f"{pct(totals['all_pass'] / n)} | {pct(totals['copies'] / n)} |", flush=True)


# --------------------------------------------------------------------------- part: meters
def corpus_rhythms() -> dict[str, Counter]:
    """R: values per M: in the bundled corpora (as `seqgen train` reads them), case-blind."""
    from seqgen.data import load_corpus

    out: dict[str, Counter] = {}
    for spec in ("folk", "ryans", "aird"):
        for t in load_corpus(spec, abc_headers="music").documents:
            m = re.search(r"^M:[ \t]*(\S+)", t, re.MULTILINE)
            r = re.search(r"^R:[ \t]*(.+?)[ \t]*$", t, re.MULTILINE)
            if m and r:
                out.setdefault(m.group(1), Counter())[r.group(1).lower()] += 1
    return out


_SAME_METER = {"4/4": "C", "2/2": "C|"}


def part_meters(args) -> None:
    from seqgen.checkpoint import load_checkpoint
    from seqgen.evaluate import default_model_dir

    ckpt = load_checkpoint(default_model_dir())
    rhythms = corpus_rhythms()
    print(f"\n### `--meter M`: {args.meter_tunes} tunes per meter, `seqgen sample default "
          f"--tunes {args.meter_tunes} --meter M --seed {args.seeds[0]}`\n")
    print("| M: | bars | of the meter's length | parts | parts < 4 bars | R: written | R: the "
          "corpora write under M: |")
    print("|---|---|---|---|---|---|---|")
    for meter in args.meters:
        tunes = sample(ckpt, args.meter_tunes, args.seeds[0], meter=meter)
        rows = [m for m in measure(tunes, args.jobs) if "bars" in m]
        verdicts = [v for m in rows for v in tune_form.bar_verdicts(m["bars"])]
        judged = [v for v in verdicts if v is not None]
        parts = [tune_form.part_bars(p) for m in rows for p in tune_form.parts_of(m["bars"])]
        written = Counter((m.get("rhythm") or "").lower() for m in rows if m.get("rhythm"))
        known = rhythms.get(meter, Counter()) + rhythms.get(_SAME_METER.get(meter, ""),
                                                            Counter())
        ok = sum(c for r, c in written.items() if known[r] > 0)
        show = ", ".join(f"{r} {c}" for r, c in written.most_common(4)) or "none"
        print(f"| {meter} | {len(verdicts)} | {pct(sum(judged) / len(judged))} | {len(parts)} | "
              f"{pct(sum(p < 4 for p in parts) / len(parts))} | {show} "
              f"({ok} of {sum(written.values())} as in the corpora) | "
              f"{', '.join(f'{r} {c}' for r, c in known.most_common(4)) or 'none'} |",
              flush=True)


# --------------------------------------------------------------------------- part: models
def endings_in_order(rows: list) -> bool:
    """Every run of ending bars reads 1.. then 2.. (music21's repeat brackets)."""
    run: list[int] = []
    for row in rows + [[None, None, "", 0, False]]:
        e = row[3]
        if e:
            if not run or run[-1] != e:
                run.append(e)
            continue
        if run and run != list(range(1, len(run) + 1)):
            return False
        run = []
    return True


def corpus_median_bars(spec: str, n: int, jobs: int) -> float:
    tunes = tune_form._tunes_of(spec)
    random.Random(0).shuffle(tunes)
    rows = [m for m in measure(tunes[:n], jobs) if "bars" in m]
    return statistics.median(len(m["bars"]) for m in rows)


def part_models(args) -> None:
    from seqgen.checkpoint import load_checkpoint

    runs = Path(args.runs)
    print(f"\n### Models trained for {args.minutes:g} minute(s), {args.model_tunes} tunes each "
          f"with the default constraint, seed {args.seeds[0]}\n")
    print(f"| corpus | corpus bars per tune (median of {args.corpus_tunes}) | sampled (median) | ratio | "
          "endings in order | abc2midi | abcm2ps | music21 |")
    print("|---|---|---|---|---|---|---|---|")
    for spec in (str(IRISH) if s == "irish" else s for s in args.corpora):
        name = Path(spec).stem
        out = runs / name
        if not (out / "best").exists():
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "seqgen", "-q", "train", spec, "--minutes",
                            str(args.minutes), "-o", str(out), "--overwrite"], check=True,
                           stdout=subprocess.DEVNULL)
            print(f"<!-- trained {name} in {time.perf_counter() - t:.0f} s -->", flush=True)
        ckpt = load_checkpoint(out / "best")
        tunes = sample(ckpt, args.model_tunes, args.seeds[0])
        rows = [m for m in measure(tunes, args.jobs) if "bars" in m]
        got = statistics.median(len(m["bars"]) for m in rows)
        want = corpus_median_bars(spec, args.corpus_tunes, args.jobs)
        order = sum(endings_in_order(m["bars"]) for m in rows) / len(rows)
        s = judge(tunes, args.jobs)
        print(f"| {name} | {want:g} | {got:g} | {got / want:.2f} | {pct(order)} | "
              f"{pct(s['abc2midi_pass'])} | {pct(s['abcm2ps_pass'])} | "
              f"{pct(s['music21_pass'])} |", flush=True)


# ---------------------------------------------------------------------------- part: speed
def part_speed(args) -> None:
    """The constraint's share of the decode: `seqgen sample default --tunes N` samples its tunes
    as one batch; the time inside ConstrainedBatch (the grammar's work at each step: which
    tokens a stream may take, masks where needed, moving every stream on) against the whole
    batch's time, in a fresh process (the first batch meets states no cache holds) and after.
    Since the bar plans also the copies' next tokens (`forced`) and which streams are in a
    header (`in_header`).
    `--code DIR` times another checkout's seqgen (a `git archive` of an older commit) in a
    subprocess per batch, alternating with this one's: old new old new."""
    if args.code:
        return _speed_alternating(args)
    import torch

    from seqgen.checkpoint import load_checkpoint
    from seqgen.evaluate import default_model_dir
    from seqgen.music.grammar import ConstrainedBatch
    from seqgen.music.tunes import SamplingRequest, resolve_sampling, sample_tunes

    spent = [0.0]

    def timed(f):
        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return f(*a, **k)
            finally:
                spent[0] += time.perf_counter() - t
        return wrapper

    # (older code: masks, advance; forced and in_header since the bar plans, 2026-12-06)
    for name in ("masks", "mask", "allows", "takes", "advance", "forced", "in_header"):
        if name in vars(ConstrainedBatch):
            setattr(ConstrainedBatch, name, timed(getattr(ConstrainedBatch, name)))
    ckpt = load_checkpoint(default_model_dir())
    plan = resolve_sampling(ckpt, SamplingRequest(tunes=True))
    torch.set_num_threads(1)
    if not args.quiet:
        print(f"\n### The constraint's share of the decode: `seqgen sample default --tunes "
              f"{args.tunes} --seed S` (one batch, 1 torch thread)\n")
        print("| seed | batch | whole batch | in the grammar | share | grammar's cost per step |")
        print("|---|---|---|---|---|---|")
    for i, seed in enumerate(args.seeds):
        spent[0] = 0.0
        t = time.perf_counter()
        sample_tunes(ckpt.model, ckpt.tokenizer, args.tunes, plan.prompt, plan.config,
                     torch.Generator().manual_seed(seed))
        total = time.perf_counter() - t
        g = spent[0]
        print(f"| {seed} | {'first (cold caches)' if i == 0 else 'later'} | {total:.2f} s | "
              f"{g:.2f} s | {g / total:.0%} | {g / (total - g):+.0%} |", flush=True)


def _speed_alternating(args) -> None:
    """part_speed for the code in args.code and this checkout's, one subprocess each (the
    seeds one after another, so the later ones find warm caches), alternating --rounds times;
    then the medians."""
    here = Path(__file__).resolve().parent.parent
    runs: dict[str, list[tuple[float, float]]] = {}
    print(f"\n### The constraint's share of the decode, `seqgen sample default --tunes "
          f"{args.tunes}`, seeds {' '.join(map(str, args.seeds))} in one process each, "
          f"{args.rounds} rounds alternating\n")
    print("| round | code | seed | whole batch | in the grammar | share | cost per step |")
    print("|---|---|---|---|---|---|---|")
    for r in range(args.rounds):
        for label, root in (("before", Path(args.code).resolve()), ("after", here)):
            cmd = [sys.executable, "-c", "import runpy, sys; sys.argv = sys.argv[1:]; "
                   "runpy.run_path(sys.argv[0], run_name='__main__')", __file__, "--parts",
                   "speed", "--quiet", "--tunes", str(args.tunes), "--seeds",
                   *map(str, args.seeds)]
            out = subprocess.run(cmd, cwd=root, capture_output=True, text=True, check=True)
            for line in out.stdout.splitlines():
                cells = [c.strip() for c in line.strip("|").split("|")]
                if len(cells) == 6 and cells[0].isdigit():
                    print(f"| {r + 1} | {label} | {cells[0]} | " + " | ".join(cells[2:]) + " |",
                          flush=True)
                    total, grammar = float(cells[2][:-2]), float(cells[3][:-2])
                    runs.setdefault(f"{label}, seed {cells[0]}", []).append((total, grammar))
    print("\n| code, seed | median whole batch | median in the grammar | share | cost per step |")
    print("|---|---|---|---|---|")
    for key, rows in runs.items():
        total = statistics.median(t for t, _ in rows)
        g = statistics.median(g for _, g in rows)
        print(f"| {key} | {total:.2f} s | {g:.2f} s | {g / total:.0%} | {g / (total - g):+.0%} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", nargs="+", default=["tools", "meters", "models", "speed"],
                    choices=("tools", "meters", "models", "speed"))
    ap.add_argument("--tunes", type=int, default=100, help="tools: tunes per seed")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--meter-tunes", type=int, default=30, help="meters: tunes per meter")
    ap.add_argument("--meters", nargs="+", default=list(METERS), help="meters: the meters")
    ap.add_argument("--model-tunes", type=int, default=50, help="models: tunes per model")
    ap.add_argument("--minutes", type=float, default=1.0, help="models: training minutes")
    ap.add_argument("--constrain", nargs="+", default=["abc", "none"], choices=("abc", "none"),
                    help="tools: the constraints to sample with")
    ap.add_argument("--corpora", nargs="+", default=["irish", "folk", "ryans", "aird"],
                    help="models: the corpora to train on (irish: ../shared/data/irish.abc)")
    ap.add_argument("--corpus-tunes", type=int, default=300,
                    help="models: corpus tunes whose median bar count is the reference")
    ap.add_argument("--runs", default="/tmp/seqgen-grammar-runs",
                    help="models: where the trained models go (reused when there)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--code", help="speed: also time the seqgen checkout in this folder (a "
                    "`git archive` of an older commit), alternating with this one")
    ap.add_argument("--rounds", type=int, default=3, help="speed with --code: rounds")
    ap.add_argument("--quiet", action="store_true", help="speed: rows only (for --code)")
    args = ap.parse_args(argv)
    if not args.quiet:
        print(f"{os.cpu_count()} CPUs; {time.strftime('%Y-%m-%d')}")
    for part in args.parts:
        {"tools": part_tools, "meters": part_meters, "models": part_models,
         "speed": part_speed}[part](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
