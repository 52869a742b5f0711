"""Independent verdicts on ABC tunes: abc2midi, abcm2ps and music21's stock converter.

No seqgen code decides anything here: each tune is written to a file of its own and given to

- abc2midi (Debian `abcmidi`): fails when it prints a line starting with "Error";
- abcm2ps: fails when it exits non-zero or prints "error" (it prints FILE:LINE:COL: error: ...);
- music21, stock: `converter.parse(text, format='abc').write('midi', fp)` in a worker process
  (a time limit per tune), fails on any exception.

A tune passes all three when none fails. Usage:

    python bench/abc_tools.py FILE.abc [FILE2.abc ...] [--json out.json] [--failures 20]
    python bench/abc_tools.py --corpus folk            # a bundled corpus, as music21 ships it
    python bench/abc_tools.py norm.abc --reuse folk.json   # tunes judged before keep their verdict

`--reuse` takes the verdicts of an earlier --json run for every tune whose text is the same (the
tools read nothing but the text; the earlier run's files must still be where it read them).

The tools are found on PATH; without abc2midi or abcm2ps that column is left out.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

X_LINE = re.compile(r"^X:", re.MULTILINE)
TIME_LIMIT_S = 20.0


def split_tunes(text: str) -> list[tuple[int, str]]:
    """(first line number, tune text) for each tune starting with an X: line."""
    starts = [m.start() for m in X_LINE.finditer(text)]
    out = []
    for i, s in enumerate(starts):
        e = starts[i + 1] if i + 1 < len(starts) else len(text)
        out.append((text.count("\n", 0, s) + 1, text[s:e].rstrip() + "\n"))
    return out


def run_abc2midi(path: Path, workdir: Path) -> list[str]:
    """abc2midi's error lines for the tune in `path` (empty: it passes)."""
    p = subprocess.run(["abc2midi", str(path), "-o", str(workdir / "t.mid")], capture_output=True,
                       text=True, errors="replace", timeout=TIME_LIMIT_S)
    return [ln.strip() for ln in (p.stdout + p.stderr).splitlines() if ln.startswith("Error")]


def run_abcm2ps(path: Path, workdir: Path) -> list[str]:
    """abcm2ps's error lines (empty: it passes)."""
    p = subprocess.run(["abcm2ps", str(path), "-O", str(workdir / "t.ps")], capture_output=True,
                       text=True, errors="replace", timeout=TIME_LIMIT_S)
    errs = [ln.strip() for ln in (p.stdout + p.stderr).splitlines() if "error" in ln.lower()]
    if p.returncode != 0 and not errs:
        errs = [f"exit code {p.returncode}"]
    return errs


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout


def run_music21(text: str, workdir: Path) -> list[str]:
    """music21's stock parse and MIDI write, in this (worker) process, under a time limit."""
    import signal
    import warnings

    warnings.simplefilter("ignore")
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(int(TIME_LIMIT_S))
    try:
        from music21 import converter

        converter.parse(text, format="abc").write("midi", fp=str(workdir / "m.mid"))
        return []
    except _Timeout:
        return [f"timeout after {TIME_LIMIT_S:.0f} s"]
    except Exception as e:  # noqa: BLE001 - any failure of the stock converter counts
        first = str(e).splitlines()[0][:200] if str(e) else ""
        return [f"{type(e).__name__}: {first}"]
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def judge(item: tuple[str, int, str]) -> dict:
    source, line, text = item
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        path = work / "tune.abc"
        path.write_text(text, encoding="utf-8")
        r = {"source": source, "line": line, "title": _title(text)}
        if shutil.which("abc2midi"):
            r["abc2midi"] = run_abc2midi(path, work)
        if shutil.which("abcm2ps"):
            r["abcm2ps"] = run_abcm2ps(path, work)
        r["music21"] = run_music21(text, work)
    return r


def _title(text: str) -> str:
    m = re.search(r"^T:(.*)$", text, re.MULTILINE)
    return m.group(1).strip() if m else ""


TOOLS = ("abc2midi", "abcm2ps", "music21")


def summarise(results: list[dict]) -> dict:
    n = len(results)
    tools = [t for t in TOOLS if results and t in results[0]]
    s = {"tunes": n, "tools": tools}
    for t in tools:
        s[f"{t}_pass"] = sum(not r[t] for r in results) / n if n else None
    s["all_pass"] = sum(all(not r[t] for t in tools) for r in results) / n if n else None
    msgs = Counter()
    for r in results:
        for t in tools:
            for m in r[t]:
                msgs[f"{t}: {re.sub(r'[0-9]+', 'N', m.split(': ', 1)[-1])[:90]}"] += 1
    s["messages"] = msgs.most_common(30)
    return s


def reusable(paths: list[Path]) -> dict[str, dict]:
    """Earlier verdicts (abc_tools --json files) by the text of their tune, read again from the
    file and line each names."""
    out: dict[str, dict] = {}
    tunes: dict[str, dict[int, str]] = {}
    for p in paths:
        for r in json.loads(p.read_text())["tunes"]:
            src = r["source"]
            if src not in tunes:
                f = Path(src)
                text = f.read_text(encoding="utf-8", errors="replace") if f.is_file() else ""
                tunes[src] = dict(split_tunes(text))
            text = tunes[src].get(r["line"])
            if text is not None:
                out[text] = r
    return out


def corpus_files(name: str) -> list[Path]:
    import music21

    base = Path(music21.__file__).parent / "corpus"
    dirs = {"folk": ["oneills1850"], "ryans": ["ryansMammoth"], "aird": ["airdsAirs"]}[name]
    return sorted(p for d in dirs for p in (base / d).rglob("*.abc"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*", type=Path)
    ap.add_argument("--corpus", choices=("folk", "ryans", "aird"))
    ap.add_argument("--json", type=Path, help="write every tune's verdicts here")
    ap.add_argument("--failures", type=int, default=10, help="failing tunes to list")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--reuse", type=Path, action="append", default=[],
                    help="an earlier --json run whose verdicts tunes of the same text keep")
    a = ap.parse_args(argv)
    files = list(a.files) + (corpus_files(a.corpus) if a.corpus else [])
    items = []
    for f in files:
        text = f.read_text(encoding="utf-8", errors="replace")
        items += [(str(f), line, t) for line, t in split_tunes(text)]
    t0 = time.perf_counter()
    known = reusable(a.reuse)
    todo = [it for it in items if it[2] not in known]
    with mp.get_context("fork").Pool(a.jobs) as pool:
        judged = iter(pool.map(judge, todo, chunksize=4))
    results = [{**known[t], "source": src, "line": line} if t in known else next(judged)
               for src, line, t in items]
    s = summarise(results)
    s["reused"] = len(items) - len(todo)
    s["seconds"] = round(time.perf_counter() - t0, 1)
    print(f"{s['tunes']} tunes in {s['seconds']} s"
          + (f" ({s['reused']} verdicts reused)" if s["reused"] else ""))
    for t in s["tools"]:
        print(f"  {t:9s} pass {100 * s[f'{t}_pass']:.1f}%")
    print(f"  all three pass {100 * s['all_pass']:.1f}%")
    for m, c in s["messages"][:20]:
        print(f"  {c:5d}  {m}")
    bad = [r for r in results if any(r[t] for t in s["tools"])]
    for r in bad[: a.failures]:
        why = "; ".join(f"{t}: {r[t][0]}" for t in s["tools"] if r[t])
        print(f"  FAIL {r['source']}:{r['line']} {r['title'][:30]!r}: {why[:160]}")
    if a.json:
        a.json.write_text(json.dumps({"summary": s, "tunes": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
