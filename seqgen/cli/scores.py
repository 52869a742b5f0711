"""`seqgen convert --to svg|png|pdf|html|flac|ogg`: engraved scores, one page of tunes, and
compressed audio; the page `seqgen sample --out DIR` keeps in DIR/index.html; the progress bar
of conversions of many tunes."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from pathlib import Path

from seqgen.cli.console import console, info, message, result, warn

SCORE_FORMATS = ("svg", "png", "pdf")
AUDIO_FORMATS = ("flac", "ogg")
NEW_FORMATS = (*SCORE_FORMATS, "html", *AUDIO_FORMATS)


@contextlib.contextmanager
def progress_bar(total: int, what: str) -> Iterator:
    """A rich progress bar on stderr (silenced by --quiet) for `total` tunes; yields a function
    `advance(text=None)` to call once per tune. Only a spinner line for a single tune."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if total <= 1:
        with console.status(f"{what}...") as status:
            yield lambda text=None: status.update(text or what)
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task(what, total=total)
        yield lambda text=None: bar.update(task, advance=1, description=text or what)


def _limits(timeout, max_chars, max_bars, tempo, instrument):
    from seqgen.music.convert import Limits

    limits = Limits(timeout_s=timeout, max_chars=max_chars, max_bars=max_bars, tempo=tempo,
                    instrument=instrument)
    limits.validate()
    return limits


def convert_new(input: str, output: Path | None, to: str, tune: str | None, jobs: int,
                limits_args: tuple, soundfont: Path | None) -> None:
    """`seqgen convert IN --to svg|png|pdf|html|flac|ogg` (IN a file, '-' or a directory)."""
    from seqgen.cli.music import _read, _select, _targets
    from seqgen.errors import UsageError
    from seqgen.music.abc import tune_stem

    if jobs < 1:
        raise UsageError("--jobs must be >= 1")
    limits = _limits(*limits_args)
    if to in ("png", "pdf"):
        from seqgen.music.engrave import require_cairo

        require_cairo()
    if to in AUDIO_FORMATS:
        from seqgen.music.convert import require_synth

        require_synth(soundfont)  # before any work, naming what to install
    elif soundfont is not None and to != "html":
        raise UsageError("--soundfont applies to audio output (--to wav, flac, ogg, html)")
    text, name, src = _read(input)
    tunes = [(line, t) for _, line, t in _select(text, name, tune)]  # (first line, text)
    texts = [t for _, t in tunes]
    if to == "html":
        return _page(texts, name, src, output, jobs, limits, soundfont)
    stems = [tune_stem(t, i + 1) for i, t in enumerate(texts)]
    targets = _targets(stems, src, output, "." + to, to)
    t0 = time.perf_counter()
    if to in SCORE_FORMATS:
        failed = _scores(texts, tunes, targets, to, jobs, limits)
    else:
        failed = _audio(texts, tunes, targets, to, jobs, limits, soundfont)
    _summary(len(texts), failed, to, targets, name, time.perf_counter() - t0)


def _summary(n: int, failed: list[str], to: str, targets: list[Path], name: str,
             elapsed: float) -> None:
    from seqgen.errors import DataError, SeqgenError

    for line in failed:
        warn(line)
    if n == 1 and failed:
        raise DataError(f"{name}: {failed[0]}")
    if failed:
        raise SeqgenError(f"{len(failed)} of {n} tunes could not be made into {to}; the other "
                          f"{n - len(failed)} were written")
    if n > 1:
        info(f"wrote {n} {to} files to {targets[0].parent} in {elapsed:.1f} s")


def _label(tune_text: str, index: int, first_line: int) -> str:
    from seqgen.music.abc import parse_header

    h = parse_header(tune_text)
    return f"tune {h.number if h.number is not None else index + 1} (line {first_line})"


def _file_lines(reason: str, first_line: int) -> str:
    return re.sub(r"\bline (\d+)", lambda m: f"line {first_line + int(m.group(1)) - 1}", reason)


def _scores(texts, tunes, targets, to, jobs, limits) -> list[str]:
    from seqgen.errors import SeqgenError
    from seqgen.music.engrave import engrave_tunes, svg_to

    failed = []
    with progress_bar(len(texts), f"engraving {len(texts)} tune(s)") as advance:
        for e in engrave_tunes(texts, jobs=jobs, timeout_s=limits.timeout_s):
            label, first = _label(texts[e.index], e.index, tunes[e.index][0]), tunes[e.index][0]
            for w in e.warnings:
                warn(f"{label}: {_file_lines(w, first)}")
            if e.ok:
                try:
                    svg_to(e.svg, targets[e.index], to)
                    result(str(targets[e.index]))
                except SeqgenError as err:
                    failed.append(f"{label}: {message(err)}")
            else:
                failed.append(f"{label}: {_file_lines(e.error or '', first)}")
            advance()
    return failed


def _audio(texts, tunes, targets, to, jobs, limits, soundfont) -> list[str]:
    from seqgen.errors import SeqgenError
    from seqgen.music.audio import render_audio
    from seqgen.music.convert import convert_tunes

    failed = []
    with progress_bar(len(texts), f"rendering {len(texts)} tune(s)") as advance:
        for r in convert_tunes(texts, to="midi", limits=limits, jobs=jobs):
            label, first = _label(texts[r.index], r.index, tunes[r.index][0]), tunes[r.index][0]
            try:
                if not r.ok or r.data is None:
                    raise SeqgenError(_file_lines(r.error or "no MIDI", first))
                render_audio(r.data, targets[r.index], to, soundfont)
                result(str(targets[r.index]))
            except SeqgenError as err:
                failed.append(f"{label}: {message(err)}")
            advance()
    return failed


def _page(texts, name, src, output, jobs, limits, soundfont) -> None:
    """One HTML page of every tune (audio embedded when a synthesizer is installed)."""
    from seqgen.errors import SeqgenError, UsageError
    from seqgen.music.page import build_page, write_page

    if output is None:
        output = src.with_suffix(".html") if src is not None else Path("tunes.html")
    elif output.is_dir() or not output.suffix:
        output = output / ((src.stem if src is not None else "tunes") + ".html")
    elif output.suffix.lower() not in (".html", ".htm"):
        raise UsageError(f"-o {output}: a page is an .html file; name it {output.stem}.html")
    if output.exists() and not output.is_dir():  # refused before any work, not after
        from seqgen.music.page import is_seqgen_page

        if not is_seqgen_page(output):
            raise UsageError(f"{output}: exists and was not written by seqgen; refusing to "
                             "replace it (move it, or name another file with -o)")
    t0 = time.perf_counter()
    with progress_bar(3 * len(texts), f"making the page of {len(texts)} tune(s)") as advance:
        page = build_page(texts, Path(name).name, limits=limits, jobs=jobs,
                          soundfont=soundfont,
                          progress=lambda stage, done, total: advance(f"{stage} {done}/{total}"))
    output.parent.mkdir(parents=True, exist_ok=True)
    write_page(output, page.html)
    for t in page.tunes:
        for w in t.warnings:
            warn(f"{t.title}: {w}")
    result(str(output))
    info(f"wrote {output} ({len(texts)} tunes, {len(page.html) / 1e6:.1f} MB) in "
         f"{time.perf_counter() - t0:.1f} s: open it in a browser")
    if page.score_errors:
        raise SeqgenError(f"{page.score_errors} of {len(texts)} tunes have no score (verovio "
                          f"cannot read them; the page shows why); the page was written")


# --------------------------------------------------------------------------- seqgen sample
_TUNE_ABC = re.compile(r"tune_(\d+)\.abc")


def write_index(out: Path, jobs: int = 1) -> Path | None:
    """DIR/index.html for every tune_NN.abc in `out` (audio beside it as tune_NN.ogg when a
    synthesizer is installed; made once per tune). Returns the page's path, or None (with a
    warning) when index.html is there and is not seqgen's."""
    from seqgen.music.page import build_page, is_seqgen_page, write_page

    index = out / "index.html"
    if index.exists() and not is_seqgen_page(index):
        warn(f"{index} exists and was not written by seqgen: not replaced, no page written")
        return None
    files = sorted((int(m.group(1)), p) for p in out.iterdir()
                   if (m := _TUNE_ABC.fullmatch(p.name)))
    texts = [p.read_text(encoding="utf-8") for _, p in files]
    names = [p.stem for _, p in files]
    links = [f"{n}.mid" if (out / f"{n}.mid").is_file() else None for n in names]
    with progress_bar(3 * len(texts), "making index.html") as advance:
        page = build_page(texts, f"{out.name or out}: {len(texts)} tunes", names=names,
                          audio="beside", audio_dir=out, midi_links=links, jobs=jobs,
                          progress=lambda stage, done, total: advance(f"{stage} {done}/{total}"))
    write_page(index, page.html)
    return index
