"""Benchmark ABC -> MIDI conversion and the --check validation over real corpora.

For each corpus (the bundled ones and ../shared/data/irish.abc, skipping what is absent) it
reports: the share of tunes converted, the share VALID, playback length against written length
(repeats expanded by seqgen, and for a sample by music21's stock writer), the time per tune in the
worker (median, p95, max) and the wall time; then every failing tune with its first reason.
Finally it times a whole `seqgen abc2midi` process on a single tune (median of several runs).

    python bench/bench_music.py                       # every corpus, in full (minutes)
    python bench/bench_music.py --sample 300 --jobs 2  # at most 300 tunes per corpus (irish: all)
    python bench/bench_music.py --corpora irish,folk
    python bench/bench_music.py --scores               # scores, pages and audio (issue 20)

--scores engraves every tune of irish.abc and of 300 tunes sampled from the shipped model
(`seqgen -q sample default --tunes 100 --seed S`, S = 1, 2, 3), listing any verovio cannot draw
and the median time per score; then builds a 100-tune page without audio, and one with audio
beside it, and times a whole `seqgen convert one.abc --to svg` process.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
IRISH = HERE.parent.parent / "shared" / "data" / "irish.abc"
CORPORA = ["irish", "folk", "ryans", "aird", "fife", "essen"]
NO_BAR_CHECKS = {"essen"}  # Essen uses line ends as barlines: bar lengths are not measured


def load(name: str) -> list[str] | None:
    from seqgen.data import load_corpus
    from seqgen.errors import DataError

    if name == "irish":
        if not IRISH.is_file():
            return None
        return load_corpus(str(IRISH)).documents
    try:
        return load_corpus(name).documents
    except DataError:
        return None


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def stock_ratio(tunes: list[str], n: int, timeout_s: float) -> tuple[float | None, int]:
    """Median played/written length with music21's own repeat expansion (its MIDI writer's), on
    `n` tunes, each in a worker under the time limit; returns (median, timeouts)."""
    from seqgen.music.convert import run_limited

    ratios, timeouts = [], 0
    for _, status, value in run_limited(_stock_one, [(t,) for t in tunes[:n]], timeout_s, 2):
        if status == "ok" and value is not None:
            ratios.append(value)
        elif status == "timeout":
            timeouts += 1
    return (statistics.median(ratios) if ratios else None), timeouts


def _stock_one(text: str) -> float | None:
    from music21 import stream

    from seqgen.music.convert import parse_tune

    score, _ = parse_tune(text, beams=False)
    part = score.parts[0]
    written = sum(m.highestTime for m in part.getElementsByClass(stream.Measure))
    if not written:
        return None
    return float(part.expandRepeats().highestTime) / float(written)


def single_process_seconds(tune: str, runs: int = 5) -> tuple[float, float]:
    """Median wall and CPU seconds (user + system, the process and its worker) of a whole
    `seqgen abc2midi` process converting one tune."""
    import resource

    def cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime

    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "tune.abc"
        src.write_text(tune + "\n")
        walls, cpus = [], []
        for _ in range(runs):
            t0, c0 = time.perf_counter(), cpu()
            subprocess.run([sys.executable, "-m", "seqgen", "-q", "abc2midi", str(src)],
                           check=True, capture_output=True)
            walls.append(time.perf_counter() - t0)
            cpus.append(cpu() - c0)
    return statistics.median(walls), statistics.median(cpus)


def sampled_tunes(seed: int) -> list[str]:
    """100 tunes from the shipped model, as a user gets them."""
    from seqgen.music.abc import split_tunes

    out = subprocess.run([sys.executable, "-m", "seqgen", "-q", "sample", "default", "--tunes",
                          "100", "--seed", str(seed)], check=True, capture_output=True, text=True)
    return split_tunes(out.stdout)


def scores(jobs: int, runs: int = 5) -> None:
    """The figures of issue 20 (see the module's docstring)."""
    from seqgen.music.engrave import engrave, engrave_tunes

    sets = {"irish.abc": load("irish") or []}
    for seed in (1, 2, 3):
        sets[f"sampled, seed {seed}"] = sampled_tunes(seed)
    print("| tunes | engraved | verovio errors | warnings (tunes) | worker s/tune median / p95 "
          "| wall |")
    print("|---|---:|---:|---:|---:|---:|")
    failing = []
    for name, tunes in sets.items():
        t0 = time.perf_counter()
        res = list(engrave_tunes(tunes, jobs=jobs))
        wall = time.perf_counter() - t0
        errs = [r for r in res if not r.ok or any("verovio error" in w for w in r.warnings)]
        failing += [f"- {name} X:{tunes[r.index].split(chr(10))[0][2:]}: "
                    f"{r.error or [w for w in r.warnings if 'error' in w][0]}" for r in errs]
        secs = [r.seconds for r in res]
        print(f"| {name} ({len(tunes)}) | {sum(r.ok for r in res)} | {len(errs)} | "
              f"{sum(bool(r.warnings) for r in res)} | {statistics.median(secs) * 1e3:.0f} / "
              f"{pct(secs, 0.95) * 1e3:.0f} ms | {wall:.1f} s |", flush=True)
    print(f"\nTunes verovio cannot draw or reports errors for: {len(failing)}")
    for f in failing:
        print(f)
    irish = sets["irish.abc"][:200] or sets["sampled, seed 1"]
    per = []
    for _ in range(2):  # in this process, one after another: the engraving alone
        for t in irish:
            t0 = time.perf_counter()
            engrave(t)
            per.append(time.perf_counter() - t0)
    print(f"\nengraving in one process, {len(irish)} tunes x 2: median "
          f"{statistics.median(per) * 1e3:.1f} ms, p95 {pct(per, 0.95) * 1e3:.1f} ms a score")
    page_figures(sets["sampled, seed 1"], jobs)
    single_svg_seconds(irish[0], runs)


def page_figures(tunes: list[str], jobs: int) -> None:
    from seqgen.music.convert import find_soundfont, find_synth
    from seqgen.music.page import build_page

    t0 = time.perf_counter()
    page = build_page(tunes, "bench", audio="none", jobs=jobs)
    print(f"\n{len(tunes)}-tune page without audio (jobs {jobs}): "
          f"{time.perf_counter() - t0:.1f} s, {len(page.html) / 1e6:.1f} MB")
    if find_synth() is None or find_soundfont() is None:
        print("no synthesizer with a soundfont: audio not measured")
        return
    with tempfile.TemporaryDirectory() as d:
        names = [f"tune_{k + 1:03d}" for k in range(len(tunes))]
        t0 = time.perf_counter()
        build_page(tunes, "bench", audio="beside", audio_dir=d, names=names, jobs=jobs)
        wall = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in Path(d).iterdir())
        seconds = 0.0
        import soundfile as sf

        for p in Path(d).iterdir():
            seconds += sf.info(str(p)).duration
    print(f"{len(tunes)}-tune page with audio beside it (mono Ogg Vorbis): {wall:.1f} s, "
          f"{size / 1e6:.1f} MB of audio for {seconds / 60:.1f} minutes of music "
          f"({size * 8 / seconds / 1e3:.0f} kbit/s); embedded (base64) it is 4/3 of that")


def single_svg_seconds(tune: str, runs: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "one.abc"
        src.write_text(tune + "\n")
        walls = []
        for _ in range(runs):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "seqgen", "-q", "convert", str(src), "--to",
                            "svg"], check=True, capture_output=True)
            walls.append(time.perf_counter() - t0)
    print(f"\nwhole process `seqgen -q convert one.abc --to svg` (median of {runs}): "
          f"{statistics.median(walls):.2f} s wall ({', '.join(f'{w:.2f}' for w in walls)})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpora", default=",".join(CORPORA))
    ap.add_argument("--sample", type=int, default=0, help="at most this many tunes per corpus "
                    "(a seeded random sample; 0: all)")
    ap.add_argument("--full", default="irish", help="corpora never sampled (comma-separated)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--stock", type=int, default=60, help="tunes per corpus for music21's stock "
                    "expansion (0: skip)")
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--scores", action="store_true", help="the score, page and audio figures "
                    "(issue 20) instead")
    args = ap.parse_args()
    if args.scores:
        print(f"command: python bench/bench_music.py {' '.join(sys.argv[1:])}")
        return scores(args.jobs)

    from seqgen.music.abc import parse_header
    from seqgen.music.convert import Limits, convert_tunes

    limits = Limits(timeout_s=args.timeout)
    print(f"command: python bench/bench_music.py {' '.join(sys.argv[1:])}".rstrip())
    print()
    print("| corpus | tunes | converted | VALID | played/written (median, seqgen) "
          "| music21 stock (median) | wall per tune median / p95 / max "
          "| CPU per tune median / p95 / max | wall |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    failures: list[str] = []
    reasons: dict[str, Counter] = {}
    for name in args.corpora.split(","):
        tunes = load(name)
        if tunes is None:
            print(f"| {name} | absent, skipped | | | | | | | |")
            continue
        total = len(tunes)
        if args.sample and total > args.sample and name not in args.full.split(","):
            tunes = random.Random(0).sample(tunes, args.sample)
        t0 = time.perf_counter()
        res = list(convert_tunes(tunes, limits=limits, jobs=args.jobs, check=True,
                                 bar_checks=name not in NO_BAR_CHECKS))
        wall = time.perf_counter() - t0
        ok = [r for r in res if r.ok]
        valid = [r for r in res if r.check and r.check.valid]
        ratios = [r.info.played_ql / r.info.written_ql for r in ok
                  if r.info and r.info.written_ql]
        secs = [r.seconds for r in res]
        cpu = [r.cpu_seconds for r in res if r.cpu_seconds]
        stock, stock_to = stock_ratio(tunes, args.stock, args.timeout) if args.stock else (None, 0)
        stock_s = "" if stock is None else f"{stock:.2f}x (n={min(args.stock, len(tunes))}" + (
            f", {stock_to} over {args.timeout:g} s)" if stock_to else ")")
        n = len(res)
        label = f"{n}" + (f" of {total}" if n != total else "")
        print(f"| {name} | {label} | {100 * len(ok) / n:.1f}% | {100 * len(valid) / n:.1f}% | "
              f"{statistics.median(ratios):.2f}x | {stock_s} | {statistics.median(secs):.3f} / "
              f"{pct(secs, 0.95):.3f} / {max(secs):.2f} s | {statistics.median(cpu):.3f} / "
              f"{pct(cpu, 0.95):.3f} / {max(cpu):.2f} s | {wall:.0f} s |", flush=True)
        c: Counter = Counter()
        for r in res:
            if r.check and not r.check.valid:
                first = r.check.reasons[0] if r.check.reasons else "?"
                c[_category(r)] += 1
                h = parse_header(tunes[r.index])
                failures.append(f"- {name} X:{h.number} {h.title!r}: "
                                f"{'; '.join(r.check.reasons[:2]) or first}")
        reasons[name] = c
    print()
    print("Why tunes are not VALID (first failing check per tune):")
    for name, c in reasons.items():
        if c:
            print(f"- {name}: " + ", ".join(f"{k} {v}" for k, v in c.most_common()))
    print()
    tune = load("irish") or load("folk") or []
    if tune:
        wall, cpu_s = single_process_seconds(tune[0])
        print(f"whole process `seqgen -q abc2midi tune.abc` (one tune, median of 5): "
              f"{wall:.2f} s wall, {cpu_s:.2f} s CPU")
    print()
    print(f"Failing tunes ({len(failures)}):")
    for f in failures:
        print(f)


def _category(r) -> str:
    cr = r.check
    if not cr.converts:
        if r.error and "took longer" in r.error:
            return "time limit"
        if r.error and "over the limit" in r.error:
            return "size limit"
        if r.error:
            return "A: does not convert"
        return "A: pitch warnings"
    if not cr.headers_ok:
        return "B: missing headers"
    if not cr.metrical_ok:
        return "C: bar lengths"
    if not cr.ends_with_barline:
        return "D: no final barline"
    return "other"


if __name__ == "__main__":
    main()
