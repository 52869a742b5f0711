"""The form of ABC tunes as music21 reads them (stock parser, no seqgen code deciding): bars,
their lengths against the meter, parts, endings, bars per score line and R: per M:.

bench_grammar.py measures the bundled corpora and sampled tunes with it; the numbers behind the
grammar's corpus-derived limits (seqgen/music/grammar/vocabulary.py) come from here:

    python bench/tune_form.py --corpus folk ryans aird /work/shared/data/irish.abc

prints, per corpus: bars per score line (percentiles), parts per meter (bars, the share under 4),
bars with the meter's length, and the R: values written under each M:.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import re
import signal
import statistics
import sys
import warnings
from collections import Counter, defaultdict
from fractions import Fraction
from pathlib import Path

TIME_LIMIT_S = 20
_SECTION_TYPES = {"double", "final", "light-light", "light-heavy", "heavy-light", "heavy",
                  "heavy-heavy"}


def _alarm(signum, frame):
    raise TimeoutError


def _field(tune: str, letter: str) -> str | None:
    m = re.search(rf"^{letter}:[ \t]*(.*?)[ \t]*$", tune, re.MULTILINE)
    return m.group(1) if m else None


def score_lines(tune: str) -> list[int]:
    """Bars (written, with notes) on each score line: text lines of the body joined where a line
    ends in a '\\' continuation. A bar is counted on the line its closing barline is on."""
    k = re.search(r"^K:.*$", tune, re.MULTILINE)
    if k is None:
        return []
    body = tune[k.end():]
    counts: list[int] = []
    cur, joined = 0, False
    for raw in body.split("\n"):
        line = re.sub(r"%.*", "", raw).rstrip()
        if not line.strip() or re.match(r"^[A-Za-z]:", line):
            continue
        cont = line.endswith("\\")
        text = re.sub(r'"[^"]*"|![^!\n]*!|\+[^+\n]*\+|\[[A-Za-z]:[^\]]*\]', "", line)
        # barlines (one per run of bar characters) after some music
        n = len(re.findall(r"[A-Ga-gz][^|:\[\]]*?(?:\|\]|\|\||:\||\|:|::|\||\[\|)", text))
        cur += n
        if not cont:
            counts.append(cur)
            cur = 0
        joined = cont
    if joined and cur:
        counts.append(cur)
    return [c for c in counts if c]


def measure_tune(text: str) -> dict:
    """music21's reading of one tune: {'meter', 'rhythm', 'bars': [[length, bar length,
    right edge, ending], ...], 'lines': bars per score line} or {'error': ...}.

    Lengths are quarter notes as strings of fractions; right edge is '' (plain), 'section'
    (|| |] and the like), 'end' (:|), 'start' (|: after it) or 'last'; ending is 0 or the number
    of the ending bracket the bar is in."""
    warnings.simplefilter("ignore")
    out = {"meter": _field(text, "M"), "rhythm": _field(text, "R"), "lines": score_lines(text)}
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(TIME_LIMIT_S)
    try:
        from music21 import bar, converter, spanner, stream

        s = converter.parse(text, format="abc")
        part = s.parts[0] if s.parts else s
        measures = list(part.getElementsByClass(stream.Measure))
        ending = {}
        for rb in part.recurse().getElementsByClass(spanner.RepeatBracket):
            for m in rb.getSpannedElements():
                ending[id(m)] = int(str(rb.number).split(",")[0].split("-")[0] or 0)
        rows = []
        for i, m in enumerate(measures):
            r, nxt = m.rightBarline, measures[i + 1] if i + 1 < len(measures) else None
            if nxt is None:
                edge = "last"
            elif isinstance(r, bar.Repeat) and r.direction == "end":
                edge = "end"
            elif isinstance(nxt.leftBarline, bar.Repeat) and nxt.leftBarline.direction == "start":
                edge = "start"
            elif r is not None and r.type in _SECTION_TYPES:
                edge = "section"
            else:
                edge = ""
            notes = [n for n in m.flatten().notesAndRests
                     if not n.duration.isGrace and "ChordSymbol" not in n.classes]
            sounding = any(not n.isRest for n in notes)
            rows.append([str(Fraction(m.duration.quarterLength)),
                         str(Fraction(m.barDuration.quarterLength)), edge,
                         ending.get(id(m), 0), sounding])
        out["bars"] = rows
    except TimeoutError:
        out["error"] = "timeout"
    except Exception as e:  # noqa: BLE001 - a tune music21 cannot read is reported, not fatal
        out["error"] = f"{type(e).__name__}: {str(e)[:100]}"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    return out


def parts_of(rows: list) -> list[list]:
    """The tune's parts: runs of bars between part edges (a section barline, a repeat sign, the
    end of a second ending); a bar in a second (or later) ending closes the part before it and
    is no part of its own; a pickup before '|:' (``d|:GAB``) belongs to the part it begins."""
    parts, cur = [], []
    for row in rows:
        _, _, edge, ending, _ = row
        if ending >= 2:
            if edge:
                if cur:
                    parts.append(cur)
                cur = []
            continue
        cur.append(row)
        if edge == "start" and len(cur) == 1 and Fraction(row[0]) < Fraction(row[1]):
            continue  # a pickup, then '|:'
        if edge in ("end", "start", "section", "last") and not (edge == "end" and ending == 1):
            parts.append(cur)
            cur = []
    if cur:
        parts.append(cur)
    return parts


def part_bars(part: list) -> int:
    """A part's length in bars: its bars less a pickup (a short first bar)."""
    n = len(part)
    if n and Fraction(part[0][0]) < Fraction(part[0][1]):
        n -= 1
    return n


def bar_verdicts(rows: list) -> list[bool | None]:
    """Per bar: True when it has the meter's length, False when not, None when it is exempt (a
    short first bar of a part, the pickup; the part's, an ending's or the tune's last bar when
    it and the pickup add up to a bar or it is shorter than a bar at the tune's end)."""
    out: list[bool | None] = []
    pickup = Fraction(0)
    first = True
    for i, (length, barlen, edge, ending, _) in enumerate(rows):
        length, barlen = Fraction(length), Fraction(barlen)
        if first:
            pickup = length if length < barlen else Fraction(0)
        if length == barlen:
            out.append(True)
        elif first and length < barlen:
            out.append(None)
        elif edge and length + pickup == barlen:
            out.append(None)
        elif edge == "last" and length < barlen:
            out.append(None)
        else:
            out.append(False)
        first = bool(edge) and not (edge == "end" and ending == 1)
        if first and i + 1 < len(rows) and rows[i + 1][3] >= 2:
            first = False  # a second ending starts no part
    return out


def _tunes_of(spec: str) -> list[str]:
    from seqgen.data import load_corpus

    return load_corpus(spec, abc_headers="music").documents


def measure_all(tunes: list[str], jobs: int | None = None) -> list[dict]:
    with mp.get_context("fork").Pool(jobs or os.cpu_count() or 1) as pool:
        return pool.map(measure_tune, tunes, chunksize=8)


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] if xs else float("nan")


def summary(results: list[dict]) -> dict:
    """Per meter: tunes, bars per tune (median), parts (count, bars: median, share under 4,
    1st percentile), share of bars with the meter's length; bars per line (all meters:
    median, 95th, 99th percentile, max); R: per M: counts."""
    per: dict[str, dict] = defaultdict(lambda: {"tunes": 0, "bars": [], "parts": [],
                                                "ok": 0, "judged": 0, "lines": []})
    rhythms: dict[str, Counter] = defaultdict(Counter)
    lines: list[int] = []
    errors = 0
    for r in results:
        meter = (r.get("meter") or "?").strip()
        if r.get("rhythm"):
            rhythms[meter][r["rhythm"]] += 1
        lines += r["lines"]
        if "bars" not in r:
            errors += 1
            continue
        d = per[meter]
        d["tunes"] += 1
        d["bars"].append(len(r["bars"]))
        d["parts"] += [part_bars(p) for p in parts_of(r["bars"])]
        v = bar_verdicts(r["bars"])
        d["ok"] += sum(x is True for x in v)
        d["judged"] += sum(x is not None for x in v)
        d["lines"] += r["lines"]
    return {"per_meter": per, "rhythms": rhythms, "lines": lines, "errors": errors,
            "tunes": len(results)}


def print_summary(name: str, s: dict) -> None:
    ln = s["lines"]
    print(f"\n### {name}: {s['tunes']} tunes ({s['errors']} music21 cannot read)\n")
    if ln:
        print(f"bars per score line: median {statistics.median(ln):g}, 95th percentile "
              f"{pct(ln, 95):g}, 99th {pct(ln, 99):g}, max {max(ln)}\n")
    print("| M: | tunes | bars per tune (median) | parts | part bars (median) | parts < 4 bars "
          "| 1st pct | bars of the meter's length | bars per line (99th pct) | R: |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for m, d in sorted(s["per_meter"].items(), key=lambda kv: -kv[1]["tunes"]):
        if d["tunes"] < 5:
            continue
        parts = d["parts"]
        short = sum(p < 4 for p in parts) / len(parts) if parts else 0
        ok = d["ok"] / d["judged"] if d["judged"] else float("nan")
        rh = ", ".join(f"{k} {v}" for k, v in s["rhythms"][m].most_common(6))
        print(f"| {m} | {d['tunes']} | {statistics.median(d['bars']):g} | {len(parts)} | "
              f"{statistics.median(parts) if parts else 0:g} | {short:.1%} | {pct(parts, 1):g} | "
              f"{ok:.1%} | {pct(d['lines'], 99) if d['lines'] else 0:g} | {rh} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", nargs="+", default=["folk", "ryans", "aird"],
                    help="bundled corpus names or ABC files")
    ap.add_argument("--json", type=Path, help="write the per-tune measurements here")
    a = ap.parse_args(argv)
    everything = {}
    for spec in a.corpus:
        results = measure_all(_tunes_of(spec))
        everything[spec] = results
        print_summary(spec, summary(results))
        sys.stdout.flush()
    if a.json:
        a.json.write_text(json.dumps(everything))
    return 0


if __name__ == "__main__":
    sys.exit(main())
