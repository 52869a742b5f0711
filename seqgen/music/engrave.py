"""Engraved scores of ABC tunes: SVG drawn by verovio, PNG and PDF made from it by cairosvg.

    from seqgen.music.engrave import engrave_svg, engrave_tunes, svg_to
    e = engrave_svg(tune_text)          # Engraving: .svg (or .error) and .warnings
    svg_to(e.svg, "tune.pdf")           # or .png; CairoMissing names what to install

verovio reads ABC itself, but its reader has gaps that `prepare` works around on the text, line
numbers kept, before verovio sees it:

- it stops the whole process (C++ abort) on a ``!`` without a closing ``!`` (the old ABC
  line-break mark at a line's end, as in irish.abc), a ``"`` without its closing ``"``, an inline
  field without ``]`` or a ``]`` that closes no chord: such marks are left out;
- it draws no first and second endings, and ignores key changes: endings (``[1``, ``|2``,
  ``:|2``) and keys (``K:`` lines and ``[K:...]``) become markers that `_finish` turns into MEI
  ``<ending>`` and ``<scoreDef keysig>`` elements before the score is drawn;
- ``::`` is not a barline to it (written ``:||:`` instead), nor are line ends in a tune without
  any barline (the Essen collection marks bars that way; a ``|`` is added at each line's end),
  and the notes after a tune's last barline are dropped (a ``|`` is added);
- ``+decoration+`` (ABC 2.0) is read as notes (written ``!decoration!``); R: and Q: fields are
  not drawn (left out: seqgen's page shows the rhythm and tempo itself).

Each tune is engraved in a worker process (verovio can still abort on input nobody foresaw; one
such tune never stops the others); verovio's log lines are caught from the worker's stderr and
returned as warnings. verovio and cairosvg are imported inside functions only.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from seqgen.errors import DataError, SeqgenError, UsageError
from seqgen.fileio import atomic_path, atomic_write_text
from seqgen.music.abc import parse_header

FORMATS = ("svg", "png", "pdf")
# Page width 2100 units (A4 at verovio's scale), height adjusted to the music; scaled 40%: a
# score about 840 pixels wide, with a viewBox so that a page can scale it to its width.
OPTIONS = {"adjustPageHeight": True, "pageHeight": 60000, "pageWidth": 2100, "scale": 40,
           "footer": "none", "breaks": "smart", "svgViewBox": True, "svgRemoveXlink": True,
           "svgFormatRaw": True}
# verovio log lines that say nothing about the drawing seqgen asked for
_NOISE = ("Title field missing",)
_MEI = "http://www.music-encoding.org/ns/mei"
_MARK = "seqgen-"  # markers from `prepare`, as verovio remarks: [r:seqgen-ending 1]


@dataclass
class Engraving:
    """One tune's score: `svg` (a standalone SVG document) or `error` (one line); `warnings`
    are what was changed or not drawn (each a line, naming the tune's line when known)."""

    index: int
    svg: str | None = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


class EngraveError(DataError):
    """A tune verovio cannot draw (the message says why)."""


class CairoMissing(SeqgenError):
    """PNG or PDF asked for, but cairosvg or the Cairo library it needs is not installed."""


# ---------------------------------------------------------------------------- the ABC text
_FIELD_LINE = re.compile(r"^([A-Za-z+]):(.*)$")
_DECORATION = re.compile(r"!([^!\s|\[\]\"]{1,40})!")
_PLUS_DECORATION = re.compile(r"\+([A-Za-z][A-Za-z0-9.<>()]{0,39})\+")
_INLINE = re.compile(r"\[([A-Za-z]):([^\]\n]*)\]")
_BAR = re.compile(r"[|:]*\|[|:\]]*|::+")
_ENDING = re.compile(r"\[?(\d+(?:[,-]\d+)*)")
_BAR_AFTER_MARK = re.compile(r"(\[r:seqgen-[^\]]*\])(\s*)(\[?\|[|:\]]*|:+\|[|:\]]*)")
_DROP_FIELDS = "QRPT"  # not drawn (T: in the body is a section title verovio would misplace)


def _music_line(line: str, lineno: int, notes: list[str]) -> str:
    """One music line as verovio can read it (see the module's docstring)."""
    out: list[str] = []
    i, n, chord = 0, len(line), False
    while i < n:
        c = line[i]
        if c == "%" and (i == 0 or line[i - 1] != "\\"):
            break
        if c == '"':
            j = line.find('"', i + 1)
            if j < 0:
                notes.append(f"line {lineno}: a '\"' without its closing '\"' was left out")
                i += 1
                continue
            out.append(line[i:j + 1])
            i = j + 1
        elif c == "!":
            m = _DECORATION.match(line, i)
            if m:
                out.append(m.group(0))
                i = m.end()
                continue
            if line[i + 1:].strip():  # a '!' at the line's end is the old line-break mark
                notes.append(f"line {lineno}: a '!' without its closing '!' was left out")
            i += 1
        elif c == "+" and (m := _PLUS_DECORATION.match(line, i)):
            name = m.group(1)  # +trill+, or an old (ABC 1.6) chord such as +E3A3+
            out.append(f"[{name}]" if re.fullmatch(r"[A-Ga-g^_=,'0-9/]+", name) else f"!{name}!")
            i = m.end()
        elif c == "[" and (m := _INLINE.match(line, i)):
            letter, value = m.group(1), m.group(2).strip()
            if letter == "K":
                out.append(f"[r:{_MARK}key {value}]")
            elif letter not in _DROP_FIELDS and letter != "r":
                out.append(m.group(0))
            i = m.end()
        elif c == "[" and re.match(r"\[[A-Za-z]:", line[i:]):
            notes.append(f"line {lineno}: an inline field without its closing ']' was left out")
            break
        elif c == "[" and (m := re.compile(r"\[(\d+(?:[,-]\d+)*)").match(line, i)):
            out.append(f"[r:{_MARK}ending {m.group(1)}]")
            i = m.end()
        elif c in "|:" and (m := _BAR.match(line, i)):
            bar = m.group(0)
            out.append(":||:" if set(bar) == {":"} or bar == ":|:" else bar)
            i = m.end()
            if (e := _ENDING.match(line, i)) and (e.group(0)[0] == "[" or e.start() == i):
                out.append(f"[r:{_MARK}ending {e.group(1)}]")
                i = e.end()
        elif c == "[" and line[i + 1:i + 2] != "|":
            chord = True
            out.append(c)
            i += 1
        elif c == "]" and not chord and not (out and out[-1].endswith("|")):
            notes.append(f"line {lineno}: a ']' that closes no chord was left out")
            i += 1
        else:
            chord = chord and c != "]"
            if c != "y":  # a spacer, which verovio cannot draw
                out.append(c)
            i += 1
    text = "".join(out).rstrip()
    # a marker right before a barline would make a bar of its own: put it after the barline
    return _BAR_AFTER_MARK.sub(lambda m: m.group(3) + m.group(2) + m.group(1), text)


def prepare(tune: str) -> tuple[str, list[str]]:
    """`tune` as verovio's ABC reader can draw it (see the module's docstring), and notes on
    what was left out (each names the tune's line, 1 = its first line)."""
    h = parse_header(tune)
    lines = tune.split("\n")
    notes: list[str] = []
    head: list[str] = [] if "X" in h.fields else ["X:1"]
    for raw in lines[:h.body_line - 1]:
        m = _FIELD_LINE.match(raw.strip())
        if m and m.group(2).strip() and m.group(1) not in "QRPG":  # not drawn by verovio
            head.append(f"{m.group(1)}:{m.group(2).strip()}")
    if "K" not in h.fields:
        head.append("K:C")
    body: list[str] = []
    key: str | None = None
    for lineno, raw in enumerate(lines[h.body_line - 1:], start=h.body_line):
        stripped = raw.strip()
        m = _FIELD_LINE.match(stripped)
        if not stripped or stripped.startswith("%"):
            continue
        if m and not stripped.startswith("|"):
            letter = m.group(1)
            if letter == "K":
                key = m.group(2).split("%")[0].strip()
            elif letter not in _DROP_FIELDS and m.group(2).strip():
                body.append(stripped)
            continue
        music = _music_line(raw, lineno, notes)
        if key is not None:
            music = _BAR_AFTER_MARK.sub(lambda m: m.group(3) + m.group(2) + m.group(1),
                                        f"[r:{_MARK}key {key}]" + music)
            key = None
        body.append(music)
    _close_bars(body)
    return "\n".join(head + body) + "\n", notes


def _close_bars(body: list[str]) -> None:
    """Barlines verovio needs to draw every note: one at each line's end in a tune that has
    none (line ends are its bars), and one after notes that follow the last barline."""
    music = [k for k, ln in enumerate(body) if not _FIELD_LINE.match(ln)]
    if not music:
        return
    if not any("|" in re.sub(r"\[r:[^\]]*\]|\"[^\"]*\"", "", body[k]) for k in music):
        for k in music:
            body[k] += " |"
        return
    last = music[-1]
    tail = re.split(r"\|", re.sub(r"\"[^\"]*\"|![^!]*!|\[r:[^\]]*\]", "", body[last]))[-1]
    if re.search(r"[A-Ga-gzx]", tail):
        body[last] += " |"


# ------------------------------------------------------------------------------ key signatures
_FIFTHS = {"C": 0, "G": 1, "D": 2, "A": 3, "E": 4, "B": 5, "F": -1}
_MODES = {"maj": 0, "ion": 0, "m": -3, "min": -3, "aeo": -3, "mix": -1, "dor": -2, "phr": -4,
          "lyd": 1, "loc": -5}


def key_signature(key: str) -> str | None:
    """The MEI key signature of an ABC key ('D' -> '2s', 'Ador' -> '0', 'Bb' -> '2f'), or None
    for one without a tonic (K:none, K:HP) or beyond seven sharps or flats."""
    m = re.match(r"\s*([A-Ga-g])([#b]?)\s*([A-Za-z]*)", key)
    if not m:
        return None
    word = m.group(3).lower()
    mode = _MODES.get(word if word == "m" else word[:3], 0)
    n = _FIFTHS[m.group(1).upper()] + {"#": 7, "b": -7}.get(m.group(2), 0) + mode
    if abs(n) > 7:
        return None
    return "0" if n == 0 else f"{abs(n)}{'s' if n > 0 else 'f'}"


# ---------------------------------------------------------------------------- verovio, in process
_tk = None


def _toolkit():
    """This process's verovio toolkit (made once: forked workers share it)."""
    global _tk
    if _tk is None:
        import verovio

        verovio.enableLog(verovio.LOG_WARNING)
        _tk = verovio.toolkit()
    return _tk


def warm_up(many: bool = True) -> None:
    """Make the toolkit before workers are forked (run_limited's warm_up)."""
    _toolkit()


@contextlib.contextmanager
def _stderr_to(lines: list[str]) -> Iterator[None]:
    """Catch what is written to file descriptor 2 (verovio logs there) into `lines`."""
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as f:
        os.dup2(f.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            f.seek(0)
            lines.extend(f.read().decode("utf-8", "replace").splitlines())


def _log_warnings(lines: list[str]) -> list[str]:
    out = []
    for ln in lines:
        m = re.match(r"\[(Warning|Error)\]\s*(.*)", ln.strip())
        if m and not any(x in m.group(2) for x in _NOISE):
            msg = m.group(2).removeprefix("ABC import: ")
            msg = re.sub(r"Closing slur for element '[^']*' could not be matched",
                         "a ')' that closes no slur is not drawn", msg)
            msg = re.sub(r"'[a-z0-9]{6,9}' already tied", "a tie after a tie is not drawn", msg)
            out.append(f"verovio{' error' if m.group(1) == 'Error' else ''}: {msg}")
    return list(dict.fromkeys(out))


def engrave(tune: str, seed: int = 1, title: bool = True) -> tuple[str, list[str]]:
    """Draw one tune in this process (no time limit; prefer engrave_svg): its SVG and the
    warnings. EngraveError when verovio draws nothing. `seed` makes the SVG's ids (ids differ
    between seeds, so that several SVGs can share one HTML page); `title` False leaves the
    title, composer and origin out of the drawing (a page that shows them itself)."""
    text, notes = prepare(tune)
    tk = _toolkit()
    log: list[str] = []
    with _stderr_to(log):
        tk.resetXmlIdSeed(seed)
        marked = _MARK in text  # then laid out once, after the markers are made MEI
        tk.setOptions({**OPTIONS, "inputFrom": "abc", "breaks": "none" if marked else "smart",
                       "header": "auto" if title else "none"})
        ok = tk.loadData(text)
        if ok and marked:
            mei = _finish(tk.getMEI(), notes)
            tk.setOptions({"inputFrom": "mei", "breaks": "smart"})
            ok = tk.loadData(mei)
        pages = tk.getPageCount() if ok else 0
        svg = tk.renderToSVG(1) if pages else ""
    warnings = notes + _log_warnings(log)
    if not ok or 'class="note"' not in svg and 'class="rest"' not in svg:
        raise EngraveError("verovio drew no notes for this tune" + (
            f" ({warnings[-1]})" if warnings else ""))
    if pages > 1:
        warnings.append(f"the score has {pages} pages; only the first is drawn")
    # the ABC reader's own ids (system breaks) are the same in every score: make them unique
    return re.sub(r'\bid="abcLine', f'id="s{seed}-abcLine', svg), warnings


def _finish(mei: str, notes: list[str]) -> str:
    """verovio's MEI of a prepared tune with the markers made into endings and key changes, and
    ties given the '#' their start needs when read back."""
    ET.register_namespace("", _MEI)
    ET.register_namespace("xml", "http://www.w3.org/XML/1998/namespace")
    root = ET.fromstring(mei)
    q = f"{{{_MEI}}}"
    for tie in root.iter(q + "tie"):
        if tie.get("startid") and not tie.get("startid", "").startswith("#"):
            tie.set("startid", "#" + tie.get("startid", ""))
    for section in root.iter(q + "section"):
        kids = list(section)
        marks: dict[int, list[tuple[str, str]]] = {}  # index of a measure in kids -> marks
        for k, el in enumerate(kids):
            if el.tag != q + "measure":
                continue
            for layer in el.iter(q + "layer"):
                for annot in [a for a in layer if a.tag == q + "annot"]:
                    text = "".join(annot.itertext())
                    if text.startswith(_MARK):
                        kind, _, value = text[len(_MARK):].partition(" ")
                        marks.setdefault(k, []).append((kind, value))
                        layer.remove(annot)
        _keys(section, kids, marks, notes, q)
        _endings(section, kids, marks, q)
    return ET.tostring(root, encoding="unicode")


def _keys(section: ET.Element, kids: list[ET.Element], marks: dict, notes: list[str],
          q: str) -> None:
    for k in sorted(marks, reverse=True):
        for kind, value in marks[k]:
            if kind != "key":
                continue
            sig = key_signature(value)
            if sig is None:
                notes.append(f"the key change to K:{value} is not drawn")
                continue
            section.insert(list(section).index(kids[k]), ET.Element(q + "scoreDef",
                                                                    {"keysig": sig}))


def _closes(measure: ET.Element) -> bool:
    return measure.get("right") in ("rptend", "dbl", "end", "rptboth")


def _endings(section: ET.Element, kids: list[ET.Element], marks: dict, q: str) -> None:
    """Wrap each marked measure and the ones after it, up to a repeat, double or final
    barline, the next ending or the end of the ABC line (a system break), in an <ending>."""
    starts = sorted(k for k, ms in marks.items() if any(kind == "ending" for kind, _ in ms))
    for k in starts:
        number = next(v for kind, v in marks[k] if kind == "ending")
        group = [kids[k]]
        j = k
        while not _closes(kids[j]):
            j += 1
            if (j >= len(kids) or kids[j].tag != q + "measure" or j in starts
                    or kids[j].get("left") == "rptstart"):
                break
            group.append(kids[j])
        at = list(section).index(kids[k])
        ending = ET.Element(q + "ending", {"n": number.split(",")[0].split("-")[0],
                                           "label": f"{number}."})
        for m in group:
            section.remove(m)
            ending.append(m)
        section.insert(at, ending)


# ----------------------------------------------------------------------------- many tunes
def _engrave_worker(tune: str, seed: int, title: bool) -> dict:
    t0 = time.perf_counter()
    try:
        svg, warnings = engrave(tune, seed, title)
        return {"svg": svg, "warnings": warnings, "seconds": time.perf_counter() - t0}
    except EngraveError as e:
        return {"error": str(e), "seconds": time.perf_counter() - t0}


def engrave_tunes(tunes: Iterable[str], jobs: int = 1, timeout_s: float | None = 10.0,
                  seed: int = 1, title: bool = True) -> Iterator[Engraving]:
    """Engrave each tune (one tune's text per item) in a worker process under `timeout_s`
    (None: in this process), `jobs` at once; yields an Engraving per tune in input order. A
    tune verovio cannot draw, or that stops it, gets `error`; the others go on. Tune k's SVG
    ids are made from `seed` + k (unique on one page); `title` as for `engrave`."""
    from seqgen.music.convert import run_limited

    if isinstance(tunes, str):
        raise UsageError("engrave_tunes takes a list of tunes, not one string; "
                         "seqgen.music.abc.split_tunes(text) splits a file into them")
    tunes = list(tunes)
    if jobs < 1:
        raise UsageError("--jobs must be >= 1")
    args = [(t, seed + k, title) for k, t in enumerate(tunes)]
    for i, status, value in run_limited(_engrave_worker, args, timeout_s, jobs, warm_up=warm_up):
        if status == "ok":
            yield Engraving(i, value.get("svg"), value.get("error"), value.get("warnings", []),
                            value.get("seconds", 0.0))
        elif status == "timeout":
            yield Engraving(i, error=f"verovio {value}", seconds=timeout_s or 0.0)
        else:
            died = "process died" in value
            yield Engraving(i, error="verovio stopped on this tune (it cannot read it)" if died
                            else f"verovio failed: {value}")


def engrave_svg(tune: str, timeout_s: float | None = 10.0) -> Engraving:
    """Engrave one tune (see engrave_tunes)."""
    return next(engrave_tunes([tune], timeout_s=timeout_s))


# ------------------------------------------------------------------------------- PNG and PDF
CAIRO_HINT = ("PNG and PDF need the Cairo library: apt-get install libcairo2 (macOS: brew "
              "install cairo); SVG and HTML work without it")


def require_cairo() -> None:
    """CairoMissing (one line saying what to install) when cairosvg cannot run here."""
    try:
        import cairosvg  # noqa: F401  (loads the Cairo C library through cairocffi)
    except (ImportError, OSError) as e:
        raise CairoMissing(f"{CAIRO_HINT} ({type(e).__name__}: {str(e).splitlines()[0][:80]})"
                           ) from None


def svg_to(svg: str, path: str | os.PathLike, fmt: str | None = None, width: int = 1600) -> None:
    """Write an SVG score as `fmt` ("svg", "png" or "pdf"; default: the suffix of `path`),
    atomically. PNG: `width` pixels wide on white; PDF: vector, the SVG's size."""
    fmt = (fmt or Path(path).suffix.lstrip(".")).lower()
    if fmt == "svg":
        atomic_write_text(path, svg)
        return
    if fmt not in FORMATS:
        raise UsageError(f"score format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    require_cairo()
    import cairosvg

    with atomic_path(path) as tmp:
        if fmt == "png":
            cairosvg.svg2png(bytestring=svg.encode(), write_to=str(tmp), output_width=width,
                             background_color="white")
        else:
            cairosvg.svg2pdf(bytestring=svg.encode(), write_to=str(tmp))
