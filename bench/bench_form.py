"""The form of tunes (docs/quality.md "Form"): the shipped model against its training corpus and
an unseen human collection, with an independent music21 reading of some measures.

    python bench/bench_form.py                       # 3 x 100 sampled tunes, 300 + 300 human
    python bench/bench_form.py --tunes 20 --seeds 1 --corpus-tunes 100
    python bench/bench_form.py --model RUN/best --sample-args '--form AABB --bars 8'

Sets: (1) the shipped model, ``seqgen sample default --tunes N --seed S`` for each seed (the
command as a user runs it, its stdout read back); (2) --corpus-tunes tunes of its training
corpus (for the shipped model the bundled folk-plus: O'Neill's, Ryan's and Aird's), read as it
trained (music headers; normalised when it trained on normalised ABC), taken evenly through the
collection; (3) an unseen human set, ../shared/data/irish.abc (the MIT 6.S191 lab's Irish
tunes) when it is there, as many tunes taken the same way. Each set gets
seqgen.music.form.form_stats and the meter and key distance (total variation) to the whole
training corpus; then a second reading by music21's own stock parser (converter.parse: measures,
repeat barlines, its Key object's tonic), no seqgen code in it, for three measures: the last
note is the tonic (per-tune agreement), no bar repeated (agreement; music21's measures as it
reads them, pickups and second endings included) and the repeated parts (the count of
end-repeat barlines against seqgen's repeated parts). For the sampled set, also the share of
tunes that have 4 consecutive bars (notes and durations) equal to 4 consecutive bars of a training
tune (copying whole phrases, which the 40-character rule of `seqgen eval` can miss).
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
from collections import Counter
from fractions import Fraction
from pathlib import Path

from seqgen.checkpoint import load_checkpoint
from seqgen.evaluate import checkpoint_corpus
from seqgen.music.abc import split_tunes
from seqgen.music.form import FormStats, bar_events, form_stats, read_form
from seqgen.music.quality import _tvd, describe_tunes

SHARED_BARS = 4  # issue 19: no sampled tune shares 4 whole bars with a training tune
HUMAN = Path(__file__).resolve().parents[2] / "shared" / "data" / "irish.abc"
ROWS = (("AABB: two parts of 8 bars, each repeated", "aabb"),
        ("parts of exactly 8 bars (8 or 16 in 2/4)", "eight_bar_parts"),
        ("parts of 1-4 bars (fragments)", "fragments"),
        ("bars that recur exactly elsewhere in the tune (mean share)", "recurring"),
        ("tunes with no repeated bar", "no_repeated_bar"),
        ("the opening two bars return later", "opening_returns"),
        ("last note is the tonic of K:", "last_note_tonic"),
        ("tunes with any accidental", "accidentals"))


def sampled(model: str, tunes: int, seed: int, extra: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", "seqgen", "-q", "sample", model, "--tunes", str(tunes),
           "--seed", str(seed), *extra]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return split_tunes(out)


def evenly(tunes: list[str], n: int) -> list[str]:
    if n >= len(tunes):
        return tunes
    return [tunes[i * len(tunes) // n] for i in range(n)]


def m21_reading(tune: str) -> dict | None:
    """Three measures read by music21's stock ABC parser alone."""
    from music21 import bar, converter, key

    try:
        s = converter.parse(tune, format="abc")
    except Exception:  # noqa: BLE001 (music21 raises anything on garbled ABC)
        return None
    part = s.parts[0] if s.parts else s
    sigs = []
    for m in part.getElementsByClass("Measure"):
        evs = tuple((tuple(p.midi for p in n.pitches) if not n.isRest else None,
                     Fraction(n.quarterLength).limit_denominator(960))
                    for n in m.notesAndRests if not n.duration.isGrace)
        if evs:
            sigs.append(evs)
    counts = Counter(sigs)
    notes = [n for n in part.recurse().notes if not n.duration.isGrace]
    keys = list(part.recurse().getElementsByClass(key.Key))
    tonic = None
    if notes and keys:
        tonic = notes[-1].pitches[-1].pitchClass == keys[-1].tonic.pitchClass
    ends = sum(1 for b in part.recurse().getElementsByClass(bar.Repeat) if b.direction == "end")
    return {"no_repeat": not any(counts[x] > 1 for x in sigs), "tonic": tonic, "ends": ends}


def cross_check(tunes: list[str]) -> dict[str, str]:
    agree: dict[str, list[bool]] = {"tonic": [], "no_repeat": [], "repeats": []}
    ours_tonic, theirs_tonic = [], []
    for t in tunes:
        f, m = read_form(t), m21_reading(t)
        if f is None or m is None:
            continue
        if f.last_note_tonic is not None and m["tonic"] is not None:
            agree["tonic"].append(f.last_note_tonic == m["tonic"])
            ours_tonic.append(f.last_note_tonic)
            theirs_tonic.append(m["tonic"])
        agree["no_repeat"].append((f.recurring == 0) == m["no_repeat"])
        agree["repeats"].append(sum(p.repeated for p in f.parts) == m["ends"])
    pct = lambda xs: f"{100 * sum(xs) / max(len(xs), 1):.0f}%"  # noqa: E731
    return {"last note tonic, agree": f"{pct(agree['tonic'])} of {len(agree['tonic'])} "
            f"(seqgen {pct(ours_tonic)}, music21 {pct(theirs_tonic)})",
            "no repeated bar, agree": f"{pct(agree['no_repeat'])} of {len(agree['no_repeat'])}",
            "repeated parts = end repeats, agree": f"{pct(agree['repeats'])}"}


def shares_bars(tunes: list[str], training: list[str], n: int = SHARED_BARS) -> float:
    """The share of `tunes` that have `n` consecutive bars (notes and durations, form.bar_events)
    equal to `n` consecutive bars of a training tune."""
    grams = set()
    for t in training:
        bars = bar_events(t) or []
        grams.update(tuple(bars[i:i + n]) for i in range(len(bars) - n + 1))
    hits = 0
    for t in tunes:
        bars = bar_events(t) or []
        hits += any(tuple(bars[i:i + n]) in grams for i in range(len(bars) - n + 1))
    return hits / max(len(tunes), 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tunes", type=int, default=100, help="sampled tunes per seed")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--corpus-tunes", type=int, default=300, help="tunes of each human set")
    ap.add_argument("--model", default="default", help="the checkpoint to sample")
    ap.add_argument("--sample-args", default="", help="more seqgen sample options, e.g. "
                    "'--form AABB --bars 8'")
    args = ap.parse_args()
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text()
                .splitlines() if ln.startswith("model name")), platform.processor())
    print(f"CPU: {cpu}")
    # the training corpus as the model read it (music headers; normalised when it trained so)
    corpus = checkpoint_corpus(load_checkpoint(args.model))
    folk = corpus.documents
    sets: dict[str, list[str]] = {}
    t0 = time.perf_counter()
    name = "seqgen (shipped model)" if args.model == "default" else f"seqgen ({args.model})"
    sets[name] = [t for s in args.seeds
                  for t in sampled(args.model, args.tunes, s, args.sample_args.split())]
    print(f"{name}: sampled {len(sets[name])} tunes in {time.perf_counter() - t0:.0f} s "
          f"(seeds {args.seeds}{', ' + args.sample_args if args.sample_args else ''})")
    sets[f"training corpus ({corpus.name})"] = evenly(folk, args.corpus_tunes)
    if HUMAN.is_file():
        sets["unseen human (irish.abc)"] = evenly(split_tunes(HUMAN.read_text()),
                                                   args.corpus_tunes)
    ref = describe_tunes(folk, "corpus")
    stats: dict[str, FormStats] = {}
    for name, tunes in sets.items():
        t = time.perf_counter()
        stats[name] = form_stats(tunes)
        per = (time.perf_counter() - t) / max(len(tunes), 1) * 1000
        print(f"{name}: {len(tunes)} tunes, {stats[name].unread} unread, {per:.1f} ms a tune")
    names = list(sets)
    print("\n| measure | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for label, field in ROWS:
        vals = [getattr(stats[n], field) for n in names]
        print(f"| {label} | " + " | ".join("-" if v is None else f"{100 * v:.0f}%"
                                           for v in vals) + " |")
    for what in ("meters", "keys"):
        vals = [_tvd(getattr(describe_tunes(sets[n], "x"), what), getattr(ref, what))
                for n in names]
        print(f"| {what[:-1]} distance to the training corpus (TVD) | "
              + " | ".join("-" if v is None else f"{v:.2f}" for v in vals) + " |")
    shared = {n: shares_bars(sets[n], folk) for n in names if n.startswith("seqgen")}
    print(f"| tunes sharing {SHARED_BARS} consecutive bars with a training tune | " + " | ".join(
        f"{100 * shared[n]:.1f}%" if n in shared else "-" for n in names) + " |")
    print("| most common forms | " + " | ".join(
        ", ".join(f"{k} {100 * v / stats[n].tunes:.0f}%" for k, v in
                  list(stats[n].forms.items())[:3]) for n in names) + " |")
    print("\nmusic21's own reading (converter.parse), against seqgen's:")
    for name in names:
        t = time.perf_counter()
        checks = cross_check(sets[name])
        print(f"- {name}: " + "; ".join(f"{k} {v}" for k, v in checks.items())
              + f" ({(time.perf_counter() - t) / len(sets[name]) * 1000:.0f} ms a tune)")


if __name__ == "__main__":
    main()
