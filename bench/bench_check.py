"""How often seqgen's music check agrees with the ABC tools, tune by tune.

For each set of tunes (a bundled corpus as music21 ships it, ABC files, or tunes sampled from the
shipped model), the tools' verdicts come from bench/abc_tools.py (abc2midi prints no ``Error``
line, abcm2ps no error, music21's stock parse and MIDI write succeed; a tune passes when all three
do) and seqgen's from its check (``seqgen abc2midi --check``: VALID or not). The table gives the
tools' joint pass rate, the check's VALID rate and the share of tunes where the two agree, and
every disagreement is listed.

    python bench/bench_check.py --corpus folk --corpus ryans --corpus aird --sampled
    python bench/bench_check.py tunes.abc --verdicts tunes.json   # tools' verdicts saved before
    python bench/bench_check.py --corpus folk --markdown          # the table for docs/quality.md

`--sampled` samples 100 tunes for each seed 1, 2, 3 from the shipped model, with the ABC
constraint (`--constrain abc`, the default) and without (`--constrain none`), through the CLI.
`--verdicts FILE.json` reuses the verdicts abc_tools.py wrote with --json (the tools are slow:
minutes per thousand tunes); without it the tools run here (they must be on PATH).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import abc_tools  # noqa: E402  (bench/abc_tools.py: the tools' verdicts)

SEEDS = (1, 2, 3)


def load_set(name: str, files: list[Path]) -> dict:
    """A set of tunes: (source, line, text) for each, split as abc_tools splits them."""
    items = []
    for f in files:
        text = f.read_text(encoding="utf-8", errors="replace")
        items += [(str(f), line, t) for line, t in abc_tools.split_tunes(text)]
    return {"name": name, "items": items}


def sampled_sets(workdir: Path, tunes: int) -> list[dict]:
    """Tunes sampled from the shipped model through the CLI, with and without the constraint."""
    out = []
    for mode in ("abc", "none"):
        files = []
        for seed in SEEDS:
            path = workdir / f"sampled-{mode}-{seed}.abc"
            cmd = [sys.executable, "-m", "seqgen", "-q", "sample", "default", "--tunes",
                   str(tunes), "--seed", str(seed), "--constrain", mode]
            r = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if r.returncode != 0:
                raise SystemExit(f"{' '.join(cmd[2:])} failed: {r.stderr.strip()[-300:]}")
            path.write_text(r.stdout, encoding="utf-8")
            files.append(path)
        out.append(load_set(f"sampled, --constrain {mode} (seeds "
                            f"{','.join(map(str, SEEDS))})", files))
    return out


def tool_verdicts(s: dict, saved: dict[tuple[str, int], dict], jobs: int) -> list[dict]:
    """abc_tools' verdicts for every tune of `s`: from `saved` when there, else by running them."""
    todo = [it for it in s["items"] if (os.path.basename(it[0]), it[1]) not in saved]
    if todo:
        with mp.get_context("fork").Pool(jobs) as pool:
            for r in pool.map(abc_tools.judge, todo, chunksize=4):
                saved[(os.path.basename(r["source"]), r["line"])] = r
    return [saved[(os.path.basename(src), line)] for src, line, _ in s["items"]]


def check_verdicts(s: dict, jobs: int) -> list:
    """seqgen's check of every tune of `s` (its CheckResult), with the default limits."""
    from seqgen.music.convert import convert_tunes

    texts = [t for _, _, t in s["items"]]
    return [r.check for r in convert_tunes(texts, to="midi", check=True, jobs=jobs)]


def compare(s: dict, tools: list[dict], checks: list) -> dict:
    names = [t for t in abc_tools.TOOLS if tools and t in tools[0]]
    rows = []
    for (src, line, _), tv, cr in zip(s["items"], tools, checks, strict=True):
        tools_pass = all(not tv[t] for t in names)
        rows.append({"source": src, "line": line, "title": tv.get("title", ""),
                     "tools_pass": tools_pass, "check_pass": bool(cr.valid),
                     "tools": {t: tv[t][:2] for t in names if tv[t]},
                     "check": [str(f) for f in cr.errors[:3]]})
    n = len(rows)
    return {
        "name": s["name"], "tunes": n, "tools": names,
        "per_tool": {t: sum(not tv[t] for tv in tools) / n for t in names} if n else {},
        "tools_pass": sum(r["tools_pass"] for r in rows) / n if n else None,
        "check_pass": sum(r["check_pass"] for r in rows) / n if n else None,
        "agree": sum(r["tools_pass"] == r["check_pass"] for r in rows) / n if n else None,
        "disagreements": [r for r in rows if r["tools_pass"] != r["check_pass"]],
    }


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def report(results: list[dict], markdown: bool) -> str:
    lines = []
    if markdown:
        lines += ["| tunes | set | abc2midi | abcm2ps | music21 | all three tools | seqgen check "
                  "VALID | agreement | disagreements |",
                  "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in results:
            pt = r["per_tool"]
            lines.append(f"| {r['tunes']} | {r['name']} | {pct(pt.get('abc2midi'))} | "
                         f"{pct(pt.get('abcm2ps'))} | {pct(pt.get('music21'))} | "
                         f"{pct(r['tools_pass'])} | {pct(r['check_pass'])} | "
                         f"**{pct(r['agree'])}** | {len(r['disagreements'])} |")
    else:
        for r in results:
            lines.append(f"{r['name']}: {r['tunes']} tunes; tools pass {pct(r['tools_pass'])} "
                         f"({', '.join(f'{t} {pct(v)}' for t, v in r['per_tool'].items())}); "
                         f"check VALID {pct(r['check_pass'])}; agreement {pct(r['agree'])}")
    for r in results:
        if not r["disagreements"]:
            continue
        lines.append("")
        lines.append(f"Disagreements, {r['name']}:" if not markdown else
                     f"Disagreements, {r['name']}:\n")
        for d in r["disagreements"]:
            said = ("tools reject, check says VALID" if d["check_pass"] else
                    "tools accept, check says INVALID")
            why = "; ".join(f"{t}: {v[0][-90:]}" for t, v in d["tools"].items()) or \
                "; ".join(d["check"])[:180]
            lines.append(f"{'- ' if markdown else '  '}{Path(d['source']).name}:{d['line']} "
                         f"{d['title'][:30]!r}: {said} ({why})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*", type=Path, help="ABC files (one set)")
    ap.add_argument("--corpus", action="append", default=[], choices=("folk", "ryans", "aird"))
    ap.add_argument("--sampled", action="store_true",
                    help="also 3 x 100 tunes from the shipped model, with and without the "
                    "ABC constraint")
    ap.add_argument("--sampled-tunes", type=int, default=100, help="tunes per seed")
    ap.add_argument("--verdicts", type=Path, action="append", default=[],
                    help="abc_tools.py --json output to reuse (matched by file name and line)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--markdown", action="store_true", help="a Markdown table (docs)")
    ap.add_argument("--json", type=Path, help="write every set's comparison here")
    a = ap.parse_args(argv)
    saved: dict[tuple[str, int], dict] = {}
    for v in a.verdicts:
        for r in json.loads(v.read_text())["tunes"]:
            saved[(os.path.basename(r["source"]), r["line"])] = r
    sets = [load_set(", ".join(f.name for f in a.files), a.files)] if a.files else []
    sets += [load_set(c, abc_tools.corpus_files(c)) for c in a.corpus]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-check-") as d:
        if a.sampled:
            sets += sampled_sets(Path(d), a.sampled_tunes)
        results = []
        for s in sets:
            tools = tool_verdicts(s, saved, a.jobs)
            checks = check_verdicts(s, a.jobs)
            results.append(compare(s, tools, checks))
            print(f"{s['name']}: {len(s['items'])} tunes compared", file=sys.stderr)
    print(report(results, a.markdown))
    print(f"\n({time.perf_counter() - t0:.0f} s; python {' '.join(sys.argv)})", file=sys.stderr)
    if a.json:
        a.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
