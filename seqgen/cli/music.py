"""`seqgen abc2midi` and `seqgen convert`: ABC tunes to MIDI, MusicXML or WAV, and ABC checks."""

from __future__ import annotations

import re
import sys
import time
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from seqgen.cli.console import console, info, message, result, warn

NEW_FORMATS = ("flac", "ogg", "svg", "png", "pdf", "html")  # made by seqgen.cli.scores


class Format(str, Enum):
    midi = "midi"
    musicxml = "musicxml"
    wav = "wav"
    flac = "flac"
    ogg = "ogg"
    svg = "svg"
    png = "png"
    pdf = "pdf"
    html = "html"


IN_HELP = ("An ABC file with one or many tunes, a directory of .abc files (read in name order), "
           "or '-' to read ABC from stdin.")
INSTRUMENT_HELP = ("The General MIDI instrument that plays the tunes: fiddle, flute, whistle, "
                   "accordion, concertina, piano, harp, guitar, banjo, pipes, ... or a program "
                   "number 1-128.")
OUT_HELP = (
    "Where to write: a file (with a suffix, e.g. tune.mid) for a single tune; a directory for "
    "many tunes (one file per tune, "
    "named from X: and T:, e.g. 0001-the-enchanted-valley.mid). Default: beside IN, as IN.mid "
    "for a single tune or the directory IN-midi/ for many (stdin: the current directory)."
)
TUNE_HELP = ("Only one tune: its X: number (when no other tune has it), '#N' for the N-th tune "
             "of the file, or its title (T:, any case; a unique start of it is enough).")
TIMEOUT_HELP = "Stop converting a tune after this many seconds (each tune runs in a worker)."
MAX_CHARS_HELP = "Refuse tunes longer than this many characters."
MAX_BARS_HELP = "Refuse tunes with more than this many bars."
JOBS_HELP = "Convert this many tunes at once (worker processes)."
TEMPO_HELP = ("Play every tune at this many quarter notes a minute. Default: the tune's Q: "
              "field, else the dance its R: field names or its meter suggests (a jig at 116 "
              "dotted quarters a minute; docs/music.md).")

# the options abc2midi and convert share
Input = Annotated[str, typer.Argument(help=IN_HELP, metavar="IN")]
Tune = Annotated[str | None, typer.Option("--tune", help=TUNE_HELP, show_default=False)]
Timeout = Annotated[float, typer.Option("--timeout", help=TIMEOUT_HELP)]
MaxChars = Annotated[int, typer.Option("--max-chars", help=MAX_CHARS_HELP)]
MaxBars = Annotated[int, typer.Option("--max-bars", help=MAX_BARS_HELP)]
Jobs = Annotated[int, typer.Option("--jobs", "-j", help=JOBS_HELP)]
Tempo = Annotated[float | None, typer.Option("--tempo", help=TEMPO_HELP, show_default=False)]
Instrument = Annotated[str, typer.Option("--instrument", help=INSTRUMENT_HELP)]


def _read(spec: str) -> tuple[str, str, Path | None]:
    """(text, name for messages, path or None for stdin)."""
    from seqgen.data import decode_text, read_text_file
    from seqgen.errors import DataError

    if spec == "-":
        text = decode_text(sys.stdin.buffer.read(), "stdin")
        if not text.strip():
            raise DataError("stdin: no ABC text (an ABC tune starts with an 'X:' line)")
        return text, "stdin", None
    path = Path(spec)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".abc" and p.is_file())
        if not files:
            raise DataError(f"{path}: a directory without .abc files; give an ABC file or a "
                            "directory of them")
        # one text, tunes in file order (line numbers in messages count through the files)
        text = "\n\n".join(read_text_file(p).rstrip() for p in files) + "\n"
        return text, str(path), path
    return read_text_file(path), str(path), path


def _select(text: str, name: str, tune: str | None) -> list[tuple[int, int, str]]:
    """(position in the file from 1, first line in the file, tune text) for the tunes to
    convert: all of them, or the one `tune` names (see TUNE_HELP)."""
    from seqgen.errors import DataError, UsageError
    from seqgen.music.abc import select_tune, split_tunes_with_lines

    tunes = split_tunes_with_lines(text)
    if not tunes:
        if re.search(r"^K:", text, re.MULTILINE):  # one tune without X: (a pasted sample)
            tunes = [(1, text.strip())]
        else:
            raise DataError(f"{name}: no tunes found (an ABC tune starts with an 'X:' line "
                            "and has a 'K:' line before its music)")
    numbered = [(i + 1, ln, t) for i, (ln, t) in enumerate(tunes)]
    if tune is None:
        return numbered
    try:
        k = select_tune([t for _, t in tunes], tune, [ln for ln, _ in tunes])
    except UsageError as e:  # it names `tune`: shown as --tune
        raise UsageError(f"`tune` {tune}: {name}: {e.marked or e}", params=True) from None
    return [numbered[k]]


def _labels(tunes: list[tuple[int, int, str]]) -> list[str]:
    """Each tune's name in the table: its X: number, with its position ('#139') when the number
    is missing or not unique in the file."""
    from collections import Counter

    from seqgen.music.abc import parse_header

    nums = [parse_header(t).number for _, _, t in tunes]
    count = Counter(nums)
    return [str(n) if n is not None and count[n] == 1 else
            (f"{n} #{pos}" if n is not None else f"#{pos}")
            for (pos, _, _), n in zip(tunes, nums, strict=True)]


# the file names each format may be written to (-o for a single tune)
SUFFIXES = {"midi": (".mid", ".midi"), "musicxml": (".musicxml", ".xml"), "wav": (".wav",),
            "flac": (".flac",), "ogg": (".ogg", ".oga"), "svg": (".svg",), "png": (".png",),
            "pdf": (".pdf",)}


def _targets(stems: list[str], src: Path | None, out: Path | None, suffix: str,
             fmt: str) -> list[Path]:
    """The output path of each tune (one file for one tune, a directory of files for many)."""
    from seqgen.errors import UsageError

    if len(stems) == 1:
        if out is None:
            return [src.with_suffix(suffix) if src is not None else Path(stems[0] + suffix)]
        if out.is_dir() or not out.suffix:  # a directory (a file name needs a suffix: x.mid)
            return [out / (stems[0] + suffix)]
        if out.suffix.lower() not in SUFFIXES[fmt]:
            raise UsageError(f"-o {out}: a {out.suffix} name for {fmt} output; name it "
                             f"{out.stem}{suffix}, or give a directory")
        return [out]
    if out is None:
        out = src.with_name(src.stem + f"-{fmt}") if src is not None else Path(".")
    if out.exists() and not out.is_dir():
        raise UsageError(f"-o {out}: is a file, but {len(stems)} tunes need a directory")
    if not out.exists() and out.suffix.lower() in {x for v in SUFFIXES.values() for x in v}:
        raise UsageError(f"-o {out}: {len(stems)} tunes need a directory, not a file name")
    seen: dict[str, int] = {}
    paths = []
    for s in stems:
        seen[s] = seen.get(s, 0) + 1
        paths.append(out / (s + (f"-{seen[s]}" if seen[s] > 1 else "") + suffix))
    return paths


def _file_lines(reason: str, first_line: int) -> str:
    """Tune-relative 'line N' -> the line in the input file."""
    return re.sub(r"\bline (\d+)", lambda m: f"line {first_line + int(m.group(1)) - 1}", reason)


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 60}:{s % 60:02d}"


def _table(name: str, n: int, check: bool) -> Any:
    from rich import box
    from rich.table import Table

    table = Table(title=f"{name}: {n} tune{'s' if n != 1 else ''}", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    cols = ["tune", "title", "meter", "key", "bars"]
    cols += ["A", "B", "C", "D", "E", "status"] if check else ["notes", "duration", "status"]
    for c in cols:
        table.add_column(c, justify="right" if c in ("tune", "bars", "notes", "duration", "C")
                         else "left", overflow="ellipsis", no_wrap=True,
                         min_width={"title": None, "key": None, "C": 4, "status": 7}.get(
                             c, max(len(c), 2)),
                         max_width={"title": 22, "key": 11}.get(c))
    return table


def _fault_lines(cr: Any, label: str, first: int, errors_only: bool = False) -> list[str]:
    """One line per fault of a tune's check (errors first), in file line numbers; a fault that
    several tools would report at one place is said once."""
    seen: set[tuple] = set()
    out = []
    for f in cr.errors + ([] if errors_only else cr.warnings):
        key = (f.line, f.col, f.code.removesuffix("-m2ps"))
        if key in seen:
            continue
        seen.add(key)
        kind = "" if f.severity == "error" else "warning: "
        out.append(f"tune {label} (line {first}): {kind}{_file_lines(str(f), first)}")
    return out


def _check_row(cr: Any) -> list[str]:
    mark = {True: "ok", False: "[red]no[/]"}
    warn_mark = {True: "ok", False: "[yellow]no[/]"}
    share = "" if cr.metrical_share is None else f"{100 * cr.metrical_share:.0f}%"
    if cr.metrical_share is not None and not cr.metrical_ok:
        share = f"[yellow]{share}[/]"
    tools = "ok" if cr.tools_ok else f"[red]{len(cr.errors)}[/]"
    return [mark[cr.converts], warn_mark[cr.headers_ok], share, warn_mark[cr.ends_with_barline],
            tools, "[green]VALID[/]" if cr.valid else "[red]INVALID[/]"]


def _status(cr: Any) -> str:
    """'ok', or 'ok, 2 warnings' when the check found faults in a converted tune."""
    n = len({(f.line, f.col, f.code.removesuffix("-m2ps")) for f in cr.faults}) if cr else 0
    return "[green]ok[/]" if not n else f"[yellow]ok, {n} warning{'s' if n != 1 else ''}[/]"


def _run(
    input: str, output: Path | None, to: str, tune: str | None, check: bool,
    timeout: float, max_chars: int, max_bars: int, jobs: int, tempo: float | None, bar_check: bool,
    soundfont: Path | None, instrument: str = "fiddle",
) -> None:
    from rich.markup import escape

    from seqgen.errors import UsageError
    from seqgen.music.abc import tune_stem
    from seqgen.music.convert import SUFFIX, Limits, convert_tunes, require_synth

    if jobs < 1:
        raise UsageError("--jobs must be >= 1")
    if check and output is not None:
        raise UsageError("--check writes no files: drop -o, or drop --check to convert")
    if soundfont is not None and to != "wav":
        raise UsageError("--soundfont applies to --to wav only")
    limits = Limits(timeout_s=timeout, max_chars=max_chars, max_bars=max_bars, tempo=tempo,
                    instrument=instrument)
    limits.validate()
    if to == "wav" and not check:
        # fail before converting anything, naming the package to install or the bad soundfont
        require_synth(soundfont)
    text, name, src = _read(input)
    tunes = _select(text, name, tune)
    labels = _labels(tunes)
    stems = [tune_stem(t, pos) for pos, _, t in tunes]
    targets = [] if check else _targets(stems, src, output, SUFFIX[to], to)
    table = _table(name, len(tunes), check)
    failed = invalid = 0
    notes_out: list[str] = []
    t0 = time.perf_counter()
    from seqgen.cli.scores import progress_bar

    with progress_bar(len(tunes), f"converting {len(tunes)} tune(s)") as advance:
        results = convert_tunes([t for _, _, t in tunes], to=to, limits=limits, jobs=jobs,
                                check=check, bar_checks=bar_check)
        for r in results:
            first, label, inf = tunes[r.index][1], labels[r.index], r.info
            row = [label, escape((inf.title or "") if inf else ""),
                   escape((inf and inf.meter) or ""), escape((inf and inf.key) or ""),
                   str(inf.bars) if inf is not None and inf.bars else ""]
            if check:
                cells, valid = _check_cells(r, label, first, notes_out)
                invalid += not valid
            else:
                cells = _write_row(r, label, first, targets, to, soundfont, len(tunes), notes_out)
                failed += cells[-1] == "[red]failed[/]"
            table.add_row(*row, *cells)
            advance()
    console.print(table)
    for line in notes_out:
        info(line)
    _summary(len(tunes), failed, invalid, check, time.perf_counter() - t0, to, targets, name,
             tunes, r.error)


def _summary(n: int, failed: int, invalid: int, check: bool, elapsed: float, to: str,
             targets: list[Path], name: str, tunes: list, last_error: str | None) -> None:
    from seqgen.errors import SeqgenError

    if check:
        info(f"{n - invalid} of {n} tunes VALID ({100 * (n - invalid) / n:.1f}%) "
             f"in {elapsed:.1f} s")
        if invalid:
            raise SeqgenError(f"{invalid} of {n} tunes are not VALID (reasons above)")
        return
    if n > 1 and not failed:
        info(f"wrote {n} {to} files to {targets[0].parent} in {elapsed:.1f} s")
    if failed:
        if n == 1:
            from seqgen.music.convert import ConversionError

            raise ConversionError(f"{name}: {_file_lines(last_error or '', tunes[0][1])}")
        warn(f"{failed} of {n} tunes could not be converted (see the table)")
        raise SeqgenError(f"{failed} of {n} tunes could not be converted; the other "
                          f"{n - failed} were written")


def _check_cells(r: Any, label: str, first: int, notes_out: list[str]) -> tuple[list[str], bool]:
    """The --check cells of result `r` (A to E, status) and whether it is VALID; its faults go
    to `notes_out` (errors first), its line to stdout (with its first error when not VALID)."""
    cr, inf = r.check, r.info
    assert cr is not None
    notes_out += _fault_lines(cr, label, first)
    errs = _fault_lines(cr, label, first, errors_only=True)
    result("\t".join([label, "VALID" if cr.valid else "INVALID",
                      (inf.title or "") if inf else "",
                      errs[0].split(": ", 1)[1] if errs and not cr.valid else ""]).rstrip("\t"))
    return _check_row(cr), cr.valid


def _write_row(r, label: str, first: int, targets: list[Path], to: str,
               soundfont: Path | None, count: int, notes_out: list[str]) -> list[str]:
    """Write the converted tune of result `r` to its target (the path goes to stdout); its
    cells (notes, duration, status), a failure's reason in `notes_out`. One tune of `count`
    that cannot be written is an error."""
    from seqgen.errors import SeqgenError
    from seqgen.music.convert import render_wav

    inf = r.info
    ok = r.ok and inf is not None
    cells = [str(inf.notes), _duration(inf.seconds)] if ok else ["", ""]  # type: ignore[union-attr]
    if r.ok and r.data is not None:
        path = targets[r.index]
        try:
            if to == "wav":
                render_wav(r.data, path, soundfont=soundfont)
            else:
                from seqgen.fileio import atomic_write_bytes

                atomic_write_bytes(path, r.data)
        except SeqgenError as e:
            if count == 1:
                raise
            r.error = message(e)
    if r.ok:
        result(str(targets[r.index]))
        if r.check is not None:
            notes_out += _fault_lines(r.check, label, first)
        return [*cells, _status(r.check)]
    notes_out.append(f"tune {label} (line {first}): {_file_lines(r.error or '', first)}")
    return [*cells, "[red]failed[/]"]


def abc2midi(
    input: Input,
    output: Path | None = typer.Option(None, "--output", "-o", help=OUT_HELP),
    tune: Tune = None,
    check: bool = typer.Option(
        False, "--check",
        help="Validate only, write nothing: per tune (A) converts with notes and no pitch "
        "warnings, (E) no fault that makes abc2midi, abcm2ps or music21's own converter reject "
        "it (each named with its line); VALID = A and E. Also measured, as warnings: (B) X, M, "
        "L and K headers, (C) share of bars with the meter's length, (D) ends with a barline. "
        "Exit code 1 when any tune is not VALID.",
    ),
    bar_check: bool = typer.Option(
        True, "--bar-check/--no-bar-check",
        help="Check bar lengths (C) and the final barline (D) with --check; switch off for "
        "tunes that use line ends as barlines, such as the Essen collection.",
    ),
    timeout: Timeout = 10.0,
    max_chars: MaxChars = 8000,
    max_bars: MaxBars = 150,
    jobs: Jobs = 1,
    tempo: Tempo = None,
    instrument: Instrument = "fiddle",
) -> None:
    """Turn ABC tunes into MIDI files (one per tune), repeats played as written, or check them.

    A summary table (tune, title, meter, key, bars, notes, duration in minutes:seconds, status:
    'ok', or 'ok, N warnings' with the check's findings listed below it) goes to stderr; the
    paths written (or, with --check, one VALID/INVALID line per tune) go to stdout.
    """
    _run(input, output, "midi", tune, check, timeout, max_chars, max_bars, jobs, tempo,
         bar_check, None, instrument)


def convert(
    input: Input,
    to: Format = typer.Option(..., "--to", help="Output format: midi, musicxml (notation, repeats "
                              "as written), wav, flac or ogg (audio; needs fluidsynth or "
                              "timidity), svg, png or pdf (engraved scores; png and pdf need the "
                              "Cairo library), or html (one page of every tune: score, audio "
                              "player, ABC text, check verdict)."),
    output: Path | None = typer.Option(None, "--output", "-o", help=OUT_HELP.replace(
        "IN.mid", "IN.mid/.svg/...").replace("IN-midi/", "IN-FORMAT/")
        + " For html: the page's file (default IN.html)."),
    tune: Tune = None,
    soundfont: Path | None = typer.Option(
        None, "--soundfont", help="General MIDI soundfont (.sf2) for fluidsynth (default: "
        "$SEQGEN_SOUNDFONT or the first one in /usr/share/sounds/sf2 and similar)."),
    timeout: Timeout = 10.0,
    max_chars: MaxChars = 8000,
    max_bars: MaxBars = 150,
    jobs: Jobs = 1,
    tempo: Tempo = None,
    instrument: Instrument = "fiddle",
) -> None:
    """Convert ABC tunes to MIDI, MusicXML, audio (WAV, FLAC, Ogg), engraved scores (SVG, PNG,
    PDF; one file per tune) or one HTML page of them all.

    WAV renders the MIDI with fluidsynth (and a General MIDI soundfont) or timidity, whichever
    is installed, normalised to a peak of -1 dBFS. The summary table goes to stderr, the paths
    written to stdout.
    """
    if to.value in NEW_FORMATS:
        from seqgen.cli.scores import convert_new

        return convert_new(input, output, to.value, tune, jobs,
                           (timeout, max_chars, max_bars, tempo, instrument), soundfont)
    _run(input, output, to.value, tune, False, timeout, max_chars, max_bars, jobs, tempo, True,
         soundfont, instrument)


def register(root: Any) -> None:
    root.command("abc2midi")(abc2midi)
    root.command("convert")(convert)
