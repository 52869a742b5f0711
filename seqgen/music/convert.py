"""Turning ABC tunes into MIDI, MusicXML and WAV with music21, and checking that they are sound.

Public functions (each works on ONE tune's text, as ``seqgen.music.abc.split_tunes`` gives them):

- ``abc_to_midi(text, path, limits=None) -> TuneInfo``: write one tune as a MIDI file (atomically),
  repeats played as written; DataError naming the problem when the tune cannot be converted.
- ``check_tune(text, limits=None, bar_checks=True) -> CheckResult``: VALID (it converts, and the
  ABC linter and music21 find nothing abc2midi, abcm2ps or music21's own converter would reject),
  with every fault and warning by line.
- ``convert_tune(text, to="midi", limits=None) -> TuneResult``: the bytes of one converted tune.
- ``convert_tunes(texts, to, limits, jobs, check)``: many tunes, results in input order.
- ``render_wav(midi_bytes, path, soundfont=None)``: MIDI to WAV with fluidsynth or timidity.

Every tune is parsed and converted in a child process under a time limit (and refused up front
when it is over the size limits), so pathological input fails fast and one bad tune never stops
the others; the child never writes the user's files, so nothing half-written is left behind.

Repeats. music21's own MIDI writer expands repeats, but a ``:|`` without a matching ``|:`` sends it
back to the start of the tune, so playback doubles with every such section. Here the MIDI is built
from music21's parsed notes with our own expansion (``play_order``): each repeated section is
played once more from its own start (the previous ``|:``, ``:|``, ``::``, ``||``, ``|]`` or the start
of the tune), and first and second endings are honoured. Grace notes are not played (they have no
written duration) and chord symbols are not sounded: the MIDI holds the melody.

Parsing goes through the workarounds of seqgen/music/m21.py (music21's warnings collected, bars
kept as written, tokens and decorations music21 would drop or misread fixed first).

music21 is imported inside functions only; importing this module is cheap.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from seqgen.config import check_fields, setting
from seqgen.errors import DataError, SeqgenError, UsageError
from seqgen.fileio import atomic_path, atomic_write_bytes
from seqgen.music import m21
from seqgen.music.abc import (
    count_bars,
    ends_with_barline,
    parse_header,
    split_tunes,
    text_bars,
)
from seqgen.music.audio import DEFAULT_INSTRUMENT, instrument_problem, program_of
from seqgen.music.lint import ERROR, WARNING, Fault, lint_tune
from seqgen.music.tempo import DEFAULT_QPM, choose_tempo, qpm_problem

FORMATS = ("midi", "musicxml", "wav")
SUFFIX = {"midi": ".mid", "musicxml": ".musicxml", "wav": ".wav"}


@dataclass(frozen=True)
class Limits:
    """Per-tune limits: a tune over a size limit is refused before parsing; one that takes longer
    than `timeout_s` seconds is stopped. None switches a limit off (timeout None: run in-process).
    How tunes are played: `tempo` (quarter notes a minute) for every tune when given, else each
    tune's own (seqgen.music.tempo.choose_tempo: Q:, else its dance); `instrument`, a General
    MIDI instrument name or program (seqgen.music.audio.INSTRUMENTS)."""

    timeout_s: float | None = setting(10.0, gt=0, unit="seconds", value=False, flag="--timeout")
    max_chars: int | None = setting(8000, gt=0, value=False)
    max_bars: int | None = setting(150, gt=0, value=False)
    tempo: float | None = setting(None, value=False, check=qpm_problem)  # None: each tune's own
    instrument: str = setting(DEFAULT_INSTRUMENT, link=": ", value=False,
                              check=instrument_problem)

    def validate(self) -> None:
        """UsageError naming the first bad field."""
        check_fields(self)


@dataclass
class TuneInfo:
    """What a tune holds. Lengths in quarter notes; `seconds` is the playback time with repeats."""

    number: int | None = None
    title: str | None = None
    meter: str | None = None
    key: str | None = None
    bars: int = 0
    notes: int = 0  # notes and chords as written (grace notes and chord symbols not counted)
    played_notes: int = 0  # notes sounded with repeats expanded (tied notes counted once)
    written_ql: float = 0.0
    played_ql: float = 0.0
    seconds: float = 0.0
    qpm: float = DEFAULT_QPM  # the tempo at the start
    tempo: str = ""  # how that tempo was chosen, for people ('jig: 116 dotted quarters ...')


@dataclass
class CheckResult:
    """The checks of one tune.

    (A) `converts`: seqgen parses and converts it to MIDI, at least one note, no pitch warnings.
    (E) `tools_ok`: no fault that makes abc2midi, abcm2ps or music21's own converter reject the
        tune (`faults` of severity "error": the ABC linter seqgen.music.lint, and music21's
        re-barring and repeat expansion tried on the parsed tune).
    VALID = A and E: the tune converts here and the ABC tools accept it.
    Measured too, and warnings (not errors) when they fail, since the tools accept such tunes:
    (B) `headers_ok`: X, M, L and K present (a missing T is only noted).
    (C) `metrical_share`: the share of bars as long as the meter says (a short first or last bar,
        a short bar at a section edge and two short bars adding up to one are fine; an over-full
        bar never is); None when not measured (no meter, free meter, or bar checks switched off).
    (D) `ends_with_barline`: the last music line ends with a barline (not checked, and True,
        when bar checks are switched off: such tunes use line ends as barlines).
    `faults` hold every finding with its line (and column), errors first; `reasons` is them as
    one line each.
    """

    converts: bool = False
    headers_ok: bool = False
    metrical_share: float | None = None
    ends_with_barline: bool = False
    faults: list[Fault] = field(default_factory=list)

    @property
    def metrical_ok(self) -> bool:
        return self.metrical_share is None or self.metrical_share >= 0.9

    @property
    def errors(self) -> list[Fault]:
        return [f for f in self.faults if f.severity == ERROR]

    @property
    def warnings(self) -> list[Fault]:
        return [f for f in self.faults if f.severity != ERROR]

    @property
    def tools_ok(self) -> bool:
        return not self.errors

    @property
    def valid(self) -> bool:
        return self.converts and self.tools_ok

    @property
    def reasons(self) -> list[str]:
        return [str(f) for f in self.errors + self.warnings]

    def add(self, message: str, code: str, severity: str = WARNING, line: int = 0,
            col: int = 0, tool: str = "") -> None:
        self.faults.append(Fault(line, col, code, message, tool, severity))


@dataclass
class TuneResult:
    """One tune's conversion: `data` (the file's bytes) or `error` (one line), and timings."""

    index: int  # 0-based position in the input
    info: TuneInfo | None = None
    check: CheckResult | None = None
    data: bytes | None = None
    error: str | None = None
    seconds: float = 0.0  # wall time spent converting in the worker
    cpu_seconds: float = 0.0  # CPU time of that work (the same on a busy machine)

    @property
    def ok(self) -> bool:
        return self.error is None


class ConversionError(DataError):
    """A tune music21 cannot read or convert (the message says why, with a line when known)."""


# ------------------------------------------------------------------------------------ parsing
def parse_tune(text: str, beams: bool = True) -> tuple[Any, list[str]]:
    """Parse one tune with music21: (a music21 Score, music21's warnings). ConversionError when it
    cannot be read. Runs in the calling process with no time limit: prefer the functions below.
    Over-full bars are kept as written (music21 would split them); `beams` False skips beaming."""
    from music21 import abcFormat
    from music21.abcFormat import translate

    if not text.strip():
        raise ConversionError("the tune is empty")
    warns: list[str] = []
    try:
        with m21.quiet(warns, beams):
            handler = m21.handler_class()(abcVersion=abcFormat.ABCFile().abcVersion)
            handler.process(m21.prepare_text(text))
            score = translate.abcToStreamScore(handler)
    except RecursionError:
        raise ConversionError("music21 cannot parse this tune (too deeply nested)") from None
    except Exception as e:  # music21 raises a dozen unrelated types for bad ABC
        raise ConversionError(f"music21 cannot parse this tune: {_one_line(e)}") from None
    return score, warns


def _one_line(e: BaseException) -> str:
    s = " ".join(str(e).split()) or type(e).__name__
    return s[:200]


# ----------------------------------------------------------------------------------- repeats
def _is_repeat(b: Any, direction: str) -> bool:
    from music21 import bar

    return isinstance(b, bar.Repeat) and b.direction == direction


def _ends_section(b: Any) -> bool:
    """A right barline that closes a section: ||, |], [| and the like (not a plain bar)."""
    from music21 import bar

    return b is not None and isinstance(b, bar.Barline) and not isinstance(b, bar.Repeat) and (
        b.type not in ("regular", "dotted", "dashed", "tick", "short", "none")
    )


def _brackets(part: Any, measures: list[Any]) -> dict[int, set[int]]:
    """Measure index -> the passes (1, 2, ...) on which that measure plays, for first/second
    endings."""
    from music21 import spanner

    index = {id(m): i for i, m in enumerate(measures)}
    out: dict[int, set[int]] = {}
    for rb in part.recurse().getElementsByClass(spanner.RepeatBracket):
        try:
            nums = {int(k) for k in rb.numberRange}
        except Exception:
            continue
        for m in rb.getSpannedElements():
            if id(m) in index and nums:
                out.setdefault(index[id(m)], set()).update(nums)
    return out


def play_order(measures: list[Any], brackets: dict[int, set[int]]) -> list[int]:
    """The order in which measures (indices) are played, repeats expanded.

    A ``:|`` sends playback back to the start of its own section (the last ``|:``, or the measure
    after the last ``:|``/``::``/``||``/``|]``, or the tune's start) once; a measure in an ending
    bracket plays only on the passes its bracket names; endings numbered beyond 2 add passes.
    """
    n = len(measures)
    order: list[int] = []
    start, passno, i = 0, 1, 0
    limit = 20 * n + 20
    while i < n and len(order) < limit:
        m = measures[i]
        left, right = getattr(m, "leftBarline", None), getattr(m, "rightBarline", None)
        if _is_repeat(left, "start") and i != start:
            start, passno = i, 1
        nums = brackets.get(i)
        if nums is not None and passno not in nums:
            i += 1
            continue
        order.append(i)
        if _is_repeat(right, "end"):
            # this section's endings: brackets from its start through the run of bracketed
            # measures that follows this one
            j = i + 1
            while j < n and j in brackets:
                j += 1
            total = max([2] + [max(brackets[k]) for k in range(start, j) if k in brackets])
            if passno < total:
                passno += 1
                i = start
                continue
            start, passno = i + 1, 1
        elif _ends_section(right) or (
            nums is not None and passno > 1 and (i + 1 >= n or (i + 1) not in brackets)
        ):
            start, passno = i + 1, 1
        elif _is_repeat(right, "start"):
            start, passno = i + 1, 1
        i += 1
    return order


# --------------------------------------------------------------------------------- expansion
def _sounding(m: Any) -> list[tuple[Fraction, Any]]:
    """(offset in the measure, element) for the notes, chords and rests of a measure."""
    from music21 import harmony

    out = []
    for el in m.flatten().notesAndRests:
        if isinstance(el, harmony.ChordSymbol) or el.duration.isGrace:
            continue
        out.append((Fraction(el.offset), el))
    return out


def _measure_length(m: Any) -> Fraction:
    end = Fraction(0)
    for off, el in _sounding(m):
        end = max(end, off + Fraction(el.duration.quarterLength))
    return end


@dataclass
class _Expanded:
    score: Any
    written_ql: Fraction
    played_ql: Fraction
    written_notes: int
    played_notes: int
    seconds: float
    qpm: float


def expand(score: Any, default_qpm: float = DEFAULT_QPM, marks: bool = True) -> _Expanded:
    """A new flat Score holding the tune's notes as played (repeats expanded), with tempo marks
    and time signatures at their played positions, ready for music21's MIDI writer. The tune's
    own tempo marks are kept with `marks` (`default_qpm` then plays until the first one), else
    the whole tune plays at `default_qpm`."""
    from music21 import chord, meter, note, stream, tempo

    out = stream.Score()
    written = played = Fraction(0)
    written_notes = played_notes = 0
    tempo_marks: list[tuple[Fraction, float]] = []
    for part in score.parts if score.parts else [score]:
        measures = list(part.getElementsByClass(stream.Measure))
        if not measures:  # a tune without barlines: one long "measure"
            measures = [part]
        order = play_order(measures, _brackets(part, measures))
        lengths = [_measure_length(m) for m in measures]
        contents = [_sounding(m) for m in measures]
        part_written = sum(lengths, Fraction(0))
        written = max(written, part_written)
        written_notes += sum(1 for c in contents for _, el in c if not el.isRest)
        p = stream.Part()
        pos = Fraction(0)
        last_ts = None
        pending: dict[float, Any] = {}  # pitch -> a tied note still sounding
        for idx in order:
            m = measures[idx]
            ts = m.timeSignature if hasattr(m, "timeSignature") else None
            if ts is not None and (last_ts is None or ts.ratioString != last_ts):
                p.insert(float(pos), meter.TimeSignature(ts.ratioString))
                last_ts = ts.ratioString
            for mm in m.flatten().getElementsByClass(tempo.MetronomeMark) if marks else ():
                qpm = mm.getQuarterBPM()
                at = pos + Fraction(mm.offset)
                if qpm and (at, float(qpm)) not in tempo_marks[-1:]:
                    p.insert(float(at), tempo.MetronomeMark(number=qpm))
                    tempo_marks.append((at, float(qpm)))
            for off, el in contents[idx]:
                if el.isRest:
                    continue
                at = pos + off
                ql = Fraction(el.duration.quarterLength)
                if isinstance(el, chord.Chord):
                    new: Any = chord.Chord([x.nameWithOctave for x in el.pitches])
                    new.duration.quarterLength = ql
                    p.insert(float(at), new)
                    played_notes += 1
                    continue
                tie = el.tie.type if el.tie is not None else None
                prev = pending.get(el.pitch.ps)
                if tie in ("stop", "continue") and prev is not None and prev[1] == at:
                    prev[0].duration.quarterLength = Fraction(prev[0].duration.quarterLength) + ql
                    pending[el.pitch.ps] = (prev[0], at + ql)
                else:
                    new = note.Note(el.pitch.nameWithOctave)
                    new.duration.quarterLength = ql
                    p.insert(float(at), new)
                    played_notes += 1
                    pending[el.pitch.ps] = (new, at + ql)
                if tie in (None, "stop"):
                    pending.pop(el.pitch.ps, None)
            pos += lengths[idx]
        played = max(played, pos)
        out.insert(0, p)
    # tempo: the marks of the first part, a default before the first one
    tempo_marks.sort()
    first_parts = out.parts[0] if out.parts else None
    if first_parts is not None and not any(at == 0 for at, _ in tempo_marks):
        first_parts.insert(0, tempo.MetronomeMark(number=default_qpm))
        tempo_marks.insert(0, (Fraction(0), default_qpm))
    seconds = 0.0
    for k, (at, qpm) in enumerate(tempo_marks):
        end = tempo_marks[k + 1][0] if k + 1 < len(tempo_marks) else played
        seconds += float(max(Fraction(0), min(end, played) - at)) * 60.0 / qpm
    return _Expanded(out, written, played, written_notes, played_notes, seconds,
                     tempo_marks[0][1] if tempo_marks else default_qpm)


def midi_bytes(expanded_score: Any, program: int = 0) -> bytes:
    """The standard MIDI file of an expanded score, each part played by General MIDI `program`
    (0-based: 0 piano, 40 violin)."""
    from music21 import instrument
    from music21.midi import translate as mt

    for part in expanded_score.parts:
        inst = instrument.Instrument()
        inst.midiProgram = program
        part.insert(0, inst)
    mf = mt.streamToMidiFile(expanded_score)
    return mf.writestr()


# ------------------------------------------------------------------------------------ checking
_PITCH_WARNING = re.compile(r"Could not get pitch information from note:\s*(.*?),\s*assuming C")


def _frac_str(ql: Fraction) -> str:
    """A length in quarter notes as a fraction of a whole note: 1.5 -> '3/8'."""
    f = Fraction(ql) / 4
    return f"{f.numerator}/{f.denominator}"


def _metrical(score: Any, tune: str) -> tuple[float | None, list[tuple[int, str]]]:
    """The share of bars with the meter's length, and reasons for the bad ones (see CheckResult)."""
    from music21 import stream

    part = score.parts[0] if score.parts else score
    measures = list(part.getElementsByClass(stream.Measure))
    if not measures:
        return None, []
    lengths = [_measure_length(m) for m in measures]
    bar_len: list[Fraction | None] = []
    cur: Fraction | None = None
    for m in measures:
        ts = m.timeSignature
        if ts is not None:
            cur = Fraction(ts.barDuration.quarterLength)
        bar_len.append(cur)
    if all(b is None for b in bar_len):
        return None, []
    n = len(measures)

    def edge_before(i: int) -> bool:
        return (i == 0 or measures[i].leftBarline is not None
                or measures[i - 1].rightBarline is not None)

    def edge_after(i: int) -> bool:
        return (i == n - 1 or measures[i].rightBarline is not None
                or measures[i + 1].leftBarline is not None)

    ok = [False] * n
    for i in range(n):
        b = bar_len[i]
        if b is None or lengths[i] == b:
            ok[i] = True
        elif lengths[i] < b and (edge_before(i) or edge_after(i)):
            ok[i] = True
    for i in range(n - 1):  # two short bars that add up to one
        b = bar_len[i]
        if (b is not None and lengths[i] < b and lengths[i + 1] < b
                and lengths[i] + lengths[i + 1] == b):
            ok[i] = ok[i + 1] = True
    tbars = [t for t in text_bars(tune) if t.has_notes]
    lines = [t.line for t in tbars] if len(tbars) == n else None
    reasons: list[tuple[int, str]] = []
    bad = [i for i in range(n) if not ok[i]]
    for i in bad[:5]:
        text = f" '{tbars[i].text[:30]}'" if lines else ""
        what = "is over-full" if lengths[i] > bar_len[i] else "is short"  # type: ignore[operator]
        reasons.append((lines[i] if lines else 0,
                        f"bar {i + 1}{text} {what}: {_frac_str(lengths[i])} where the meter "
                        f"wants {_frac_str(bar_len[i])}"))  # type: ignore[arg-type]
    if len(bad) > 5:
        reasons.append((0, f"... and {len(bad) - 5} more bars of the wrong length"))
    return (n - len(bad)) / n, reasons


def _pitch_faults(warns: list[str], tune: str) -> list[Fault]:
    out = []
    tune_lines = tune.split("\n")
    for w in warns:
        m = _PITCH_WARNING.search(w)
        if not m:
            continue
        tok = m.group(1).strip()
        line = next((i + 1 for i, ln in enumerate(tune_lines)
                     if tok and tok in ln and not re.match(r"^[A-Za-z]:", ln)), 0)
        out.append(Fault(line, 0, "pitch", f"{tok!r} is not a note (music21 would play it as C): "
                         "write a note A-G or a-g", "music21: Could not get pitch information",
                         ERROR))
    return out


def _size_error(text: str, limits: Limits) -> str | None:
    if limits.max_chars is not None and len(text) > limits.max_chars:
        return (f"the tune is {len(text):,} characters long, over the limit of "
                f"{limits.max_chars:,} (raise it with --max-chars)")
    if limits.max_bars is not None:
        bars = count_bars(text)
        if bars > limits.max_bars:
            return (f"the tune has {bars:,} bars, over the limit of {limits.max_bars:,} "
                    f"(raise it with --max-bars)")
    return None


# ------------------------------------------------------------------------- one tune, in-process
def _info(text: str, ex: _Expanded | None, bars: int, tempo: str = "") -> TuneInfo:
    h = parse_header(text)
    info = TuneInfo(number=h.number, title=h.title, meter=h.meter, key=h.key, bars=bars,
                    tempo=tempo)
    if ex is not None:
        info.notes, info.played_notes = ex.written_notes, ex.played_notes
        info.written_ql, info.played_ql = float(ex.written_ql), float(ex.played_ql)
        info.seconds, info.qpm = ex.seconds, ex.qpm
    return info


_HEADER_WARNINGS = {
    "X": "no X: line (the tune's reference number): start the tune with one, e.g. X:1",
    "M": "no M: field (the meter): add one before K:, e.g. M:6/8 (bar lengths are not checked "
         "without it)",
    "L": "no L: field (the unit note length): add one before K:, e.g. L:1/8 (without it ABC's "
         "default applies: 1/16 in meters under 3/4, else 1/8)",
}
# lint faults that explain why music21 cannot read a tune, most telling first
_PARSE_CULPRITS = ("field-lower", "meter", "no-key", "key-none", "field-body", "inline-open",
                   "quote-open", "chord-open", "chord-close", "unit", "bad-char", "no-note",
                   "deco-no-note", "grace-open")


def _text_checks(text: str, bar_checks: bool) -> CheckResult:
    """The checks that need no music21: headers (B), the final barline (D) and the linter."""
    cr = CheckResult()
    h = parse_header(text)
    missing = h.missing("XMLK")
    cr.headers_ok = not missing
    for c in missing:
        if c in _HEADER_WARNINGS:  # a missing K: is the linter's error
            cr.add(_HEADER_WARNINGS[c], f"no-{c.lower()}", line=1)
    if "T" not in h.fields:
        cr.add("no T: (title) field (recommended)", "no-title", line=1)
    ends, line = ends_with_barline(text)
    cr.ends_with_barline = ends or not bar_checks  # without bar checks, line ends are bars
    if not cr.ends_with_barline:
        cr.add("the tune does not end with a barline: end its last bar with '|]' (or '|')"
               if line else "the tune has no music lines", "no-final-bar", line=line or 0)
    cr.faults.extend(lint_tune(text))
    return cr


def _parse_error(text: str, cr: CheckResult, err: Exception) -> str:
    """Why music21 cannot read a tune, in words: the line and construct the linter found (that
    fault then leaves `cr`: the error says it), or music21's own message without its object
    dumps."""
    lines = text.split("\n")
    for code in _PARSE_CULPRITS:
        f = next((f for f in cr.faults if f.code == code and f.line), None)
        if f is not None:
            cr.faults.remove(f)
            src = lines[f.line - 1].strip() if f.line <= len(lines) else ""
            src = src if len(src) <= 40 else src[:37] + "..."
            return f"line {f.line}: `{src}` — {f.message} (music21 cannot read the tune)"
    msg = re.sub(r"<music21\.[\w.]+ '?([^'>]*)'?>", r"'\1'", str(err))
    msg = re.sub(r"\s*tPrev:.*", "", msg)
    return msg


def _score_checks(cr: CheckResult, score: Any, warns: list[str], text: str,
                  bar_checks: bool, stock: bool = True) -> None:
    """The checks on the parsed tune: pitches (A), bar lengths (C) and, with `stock`, what
    music21's own converter would fail on."""
    cr.faults.extend(_pitch_faults(warns, text))
    if bar_checks:
        share, why = _metrical(score, text)
        cr.metrical_share = share
        if share is not None and share < 0.9:
            cr.add(f"only {100 * share:.0f}% of bars have the meter's length (90% wanted)",
                   "bar-lengths")
        for line, msg in why:
            cr.add(msg, "bar-length", line=line)
    if stock:
        cr.faults.extend(stock_music21_faults(score, text))


def stock_music21_faults(score: Any, text: str) -> list[Fault]:
    """What music21's own converter (``converter.parse(text).write('midi')``) fails on, found on
    the tune as seqgen parsed it: repeats it cannot expand (Stream.expandRepeats, which its MIDI
    writer calls). (The other, re-barring an over-full bar, is the linter's: it depends on
    music21's own misreadings, which seqgen's parse corrects.)"""
    from music21 import stream

    out: list[Fault] = []
    if not score[stream.Measure]:  # music21's MIDI writer expands repeats only in measures
        return out
    try:
        score.expandRepeats()
    except Exception as e:
        if "does not contain measures" in str(e):  # a part music21's own parse gives measures
            return out
        out.append(Fault(0, 0, "m21-repeats", "music21's own converter cannot play the repeats "
                         f"({_one_line(e)[:60]}): check that each ':|' has its '|:' and that "
                         "endings [1 [2 follow a repeated part",
                         f"music21: {type(e).__name__}: {_one_line(e)[:60]}", ERROR))
    return out


def _work(text: str, to: str, check: bool, bar_checks: bool, tempo: float | None = None,
          instrument: str = DEFAULT_INSTRUMENT) -> dict:
    """Everything music21 does for one tune; runs in a worker. Returns a dict for TuneResult.
    `tempo`: quarter notes a minute for the whole tune (None: the tune's own, choose_tempo).
    The check runs with every conversion (its warnings are shown); `check` only adds the costlier
    music21 checks (re-barring and repeat expansion, as music21's own converter does them)."""
    from music21 import stream

    t0, c0 = time.perf_counter(), time.process_time()
    res: dict[str, Any] = {}
    cr = _text_checks(text, bar_checks)
    res["check"] = cr
    try:
        try:
            score, warns = parse_tune(text, beams=(to == "musicxml"))
        except ConversionError as e:
            raise ConversionError(_parse_error(text, cr, e)) from None
        bars = max((len(p.getElementsByClass(stream.Measure)) for p in score.parts), default=0)
        choice = choose_tempo(text, tempo)
        ex = expand(score, choice.qpm, marks=choice.source != "--tempo")
        res["info"] = _info(text, ex, bars, choice.describe())
        if ex.written_notes == 0:
            raise ConversionError("the tune has no notes")
        _score_checks(cr, score, warns, text, bar_checks, stock=check)
        try:
            data = midi_bytes(ex.score, program_of(instrument))
        except Exception as e:
            raise ConversionError(f"music21 cannot write MIDI for this tune: {_one_line(e)}") from None
        cr.converts = not any(f.code == "pitch" for f in cr.faults)
        if to == "midi":
            res["data"] = data
        elif to == "wav":
            res["data"] = data  # the parent renders MIDI to WAV (a synthesizer process)
        elif to == "musicxml":
            res["data"] = _musicxml_bytes(score)
    except ConversionError as e:
        res["error"] = str(e)
        res.setdefault("info", _info(text, None, count_bars(text)))
        cr.converts = False
        cr.faults.insert(0, Fault(0, 0, "convert", str(e), "seqgen", ERROR))
    res["seconds"] = time.perf_counter() - t0
    res["cpu_seconds"] = time.process_time() - c0
    return res


def _musicxml_bytes(score: Any) -> bytes:
    """MusicXML of a parsed tune. Its composer is the tune's C: field (music21 reads it into the
    score's metadata) or none: music21 would otherwise name itself ("Music21"), which notation
    programs print as the composer."""
    from music21 import defaults
    from music21.musicxml.m21ToXml import GeneralObjectExporter

    saved = defaults.author
    try:
        defaults.author = ""
        return GeneralObjectExporter(score).parse()
    except Exception as e:
        raise ConversionError(f"music21 cannot write MusicXML for this tune: {_one_line(e)}") from None
    finally:
        defaults.author = saved


# ------------------------------------------------------------------------------------ workers
@contextlib.contextmanager
def _signals_held() -> Iterator[Any]:
    """SIGINT and SIGTERM held back from this thread while it forks a worker; yields the signal
    mask to give back (None where there are no masks). A signal handled inside the fork's
    Python hooks (logging's lock release after the fork) would raise its KeyboardInterrupt
    there, where the interpreter prints "Exception ignored" and drops it: Ctrl-C or `kill` lost,
    the conversion running on to the end. Held back, it is handled just after, in run_limited's
    own code. (A signal that another thread takes, such as a progress spinner's, can still be
    handled in the hooks: the CLI interrupts again then, seqgen/cli/app.py `stop_on_signals`.)"""
    if not hasattr(signal, "pthread_sigmask"):
        yield None
        return
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield mask
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _child(conn: Any, fn: Callable[..., Any], args: tuple, mask: Any = None) -> None:
    if mask is not None:  # the parent's signals, held back while it forked this worker
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    # A worker: its output is not the user's, and music21 may print; silence both streams.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    sys.stdout = sys.stderr = io.StringIO()
    try:
        value = ("ok", fn(*args))
    except BaseException as e:  # report, never raise: the parent shows one line
        value = ("error", f"{type(e).__name__}: {_one_line(e)}")
    try:
        conn.send(value)
    finally:
        conn.close()


def _context() -> Any:
    import multiprocessing as mp

    methods = mp.get_all_start_methods()
    return mp.get_context("fork" if "fork" in methods else "spawn")


_WARM_TUNE = "X:1\nT:warm\nM:2/4\nL:1/8\nQ:1/4=100\nK:D\n|:\"D\"A>B (3cde|[1 f2 {g}f2:|[2 [df]2 z2|]\n"
_warm = False


def _warm_up(full: bool = True) -> None:  # run_limited's default warm_up
    """Import music21 in the parent so that forked workers start with it; with `full`, also
    convert a tiny tune once (music21 builds tables lazily) and freeze the heap so that forked
    workers share its pages. Done once per process."""
    global _warm
    if _warm:
        return
    import gc

    import music21.abcFormat.translate  # noqa: F401
    import music21.midi.translate  # noqa: F401

    if not full:
        return
    _work(_WARM_TUNE, "midi", True, True)
    gc.collect()
    gc.freeze()
    _warm = True


def run_limited(
    fn: Callable[..., Any], arg_list: Iterable[tuple], timeout_s: float | None, jobs: int = 1,
    warm_up: Callable[[bool], None] | None = None,
) -> Iterator[tuple[int, str, Any]]:
    """Run ``fn(*args)`` for each args in a child process each, at most `jobs` at once, stopping any
    that runs over `timeout_s` seconds. Yields (index, "ok" | "error" | "timeout", value or
    message) in input order. timeout None: run in this process, one after another. Before the
    first child, ``warm_up(many)`` prepares this process for `fn` (default: music21's, the
    work of convert_tunes); `many` is True when there is more than one call."""
    args_list = list(arg_list)
    if timeout_s is None:
        for i, args in enumerate(args_list):
            try:
                yield i, "ok", fn(*args)
            except SeqgenError:
                raise
            except Exception as e:
                yield i, "error", f"{type(e).__name__}: {_one_line(e)}"
        return
    from multiprocessing.connection import wait

    (warm_up or _warm_up)(len(args_list) > 1)  # a single tune: importing is enough
    ctx = _context()
    jobs = max(1, jobs)
    done: dict[int, tuple[str, Any]] = {}
    running: dict[Any, tuple[int, Any, float]] = {}  # conn -> (index, process, deadline)
    next_i = 0
    emit = 0
    try:
        while emit < len(args_list):
            while len(running) < jobs and next_i < len(args_list):
                recv, send = ctx.Pipe(duplex=False)
                with _signals_held() as mask:  # a Ctrl-C or kill now stops us after the fork
                    proc = ctx.Process(target=_child, args=(send, fn, args_list[next_i], mask),
                                       daemon=True)
                    proc.start()
                    running[recv] = (next_i, proc, time.monotonic() + timeout_s)
                send.close()
                next_i += 1
            if running:
                now = time.monotonic()
                soonest = min(d for _, _, d in running.values())
                ready: list[Any] = wait(list(running), timeout=max(0.0, soonest - now))
                for conn in ready:
                    i, proc, _ = running.pop(conn)
                    try:
                        done[i] = conn.recv()
                    except (EOFError, OSError):
                        proc.join(5)
                        done[i] = ("error", f"the converter process died (exit code {proc.exitcode})")
                    conn.close()
                    proc.join(5)
                    if proc.is_alive():
                        proc.kill()
                        proc.join()
                now = time.monotonic()
                for conn in [c for c, (_, _, d) in running.items() if d <= now]:
                    i, proc, _ = running.pop(conn)
                    proc.kill()
                    proc.join()
                    conn.close()
                    done[i] = ("timeout", f"took longer than {timeout_s:g} s (raise the limit "
                                          "with --timeout)")
            while emit in done:
                status, value = done.pop(emit)
                yield emit, status, value
                emit += 1
    finally:
        for conn, (_, proc, _) in running.items():
            proc.kill()
            proc.join()
            conn.close()


# ------------------------------------------------------------------------------ public helpers
def convert_tunes(
    texts: list[str],
    to: str = "midi",
    limits: Limits | None = None,
    jobs: int = 1,
    check: bool = False,
    bar_checks: bool = True,
) -> Iterator[TuneResult]:
    """Convert (and with `check`, check) many tunes, each in a worker under `limits`; yields one
    TuneResult per tune in input order. A failing tune gets `error`; the others go on.

    `texts` holds one tune per item (`split_tunes` splits a file). With more than one tune and
    a time limit, the workers are forked from this process after it has imported music21 and
    frozen its heap (gc.freeze), so that they start at once and share those pages: objects
    alive at that moment are never collected afterwards."""
    if isinstance(texts, str):
        raise UsageError("convert_tunes takes a list of tunes, not one string; "
                         "seqgen.music.abc.split_tunes(text) splits a file into them")
    texts = list(texts)
    limits = limits or Limits()
    limits.validate()
    if to not in FORMATS:
        raise UsageError(f"`to` must be one of {', '.join(FORMATS)}, not {to!r}", params=True)
    work: list[tuple] = []
    pre: dict[int, TuneResult] = {}
    for i, text in enumerate(texts):
        err = _size_error(text, limits)
        if err:
            h = parse_header(text)
            pre[i] = TuneResult(i, TuneInfo(number=h.number, title=h.title, meter=h.meter,
                                            key=h.key), _failed_check(text, err, bar_checks),
                                None, err)
        else:
            work.append((i, (text, to, check, bar_checks, limits.tempo, limits.instrument)))
    results = run_limited(_work, [a for _, a in work], limits.timeout_s, jobs)
    k = 0
    for i in range(len(texts)):
        if i in pre:
            yield pre[i]
            continue
        j, status, value = next(results)
        assert work[j][0] == i and j == k
        k += 1
        if status == "ok":
            yield TuneResult(i, value.get("info"), value.get("check"), value.get("data"),
                             value.get("error"), value.get("seconds", 0.0),
                             value.get("cpu_seconds", 0.0))
        else:
            h = parse_header(texts[i])
            yield TuneResult(i, TuneInfo(number=h.number, title=h.title, meter=h.meter,
                                         key=h.key), _failed_check(texts[i], value, bar_checks),
                             None, value,
                             limits.timeout_s or 0.0 if status == "timeout" else 0.0)


def _failed_check(text: str, error: str, bar_checks: bool) -> CheckResult:
    """The check of a tune that was not converted (over a size limit, out of time): its text
    checks, and why it was not converted."""
    cr = _text_checks(text, bar_checks)
    cr.faults.insert(0, Fault(0, 0, "convert", error, "seqgen", ERROR))
    return cr


def _one_tune(text: str) -> str:
    """`text`, or a UsageError when it holds several tunes (X: lines)."""
    n = len(split_tunes(text))
    if n > 1:
        raise UsageError(f"the text holds {n} tunes and this function takes one; "
                         "seqgen.music.abc.split_tunes(text) splits them (or use convert_tunes)")
    return text


def convert_tune(text: str, to: str = "midi", limits: Limits | None = None) -> TuneResult:
    """Convert one tune (in a worker under `limits`); the result has `data` or `error`."""
    return next(convert_tunes([_one_tune(text)], to=to, limits=limits))


def check_tune(text: str, limits: Limits | None = None, bar_checks: bool = True) -> CheckResult:
    """Check one tune (see CheckResult): never raises for bad ABC, the reasons say what is wrong."""
    r = next(convert_tunes([_one_tune(text)], to="midi", limits=limits, check=True,
                           bar_checks=bar_checks))
    assert r.check is not None
    return r.check


def abc_to_midi(text: str, path: str | os.PathLike, limits: Limits | None = None) -> TuneInfo:
    """Write one ABC tune as a MIDI file at `path` (atomically), repeats played as written.

    Returns what the tune holds (TuneInfo); raises ConversionError (a DataError) with a one-line
    reason when the tune cannot be converted, leaving `path` untouched."""
    r = convert_tune(text, "midi", limits)
    if r.error is not None or r.data is None:
        raise ConversionError(r.error or "conversion produced no data")
    atomic_write_bytes(path, r.data)
    assert r.info is not None
    return r.info


# ----------------------------------------------------------------------------------------- WAV
SOUNDFONT_DIRS = ("/usr/share/sounds/sf2", "/usr/share/soundfonts", "/usr/share/sounds/sf3",
                  "/usr/local/share/soundfonts", "~/.local/share/soundfonts")


def find_synth() -> tuple[str, str] | None:
    """('fluidsynth' | 'timidity', path) for the first synthesizer on PATH, or None."""
    for name in ("fluidsynth", "timidity"):
        p = shutil.which(name)
        if p:
            return name, p
    return None


def require_synth(soundfont: str | os.PathLike | None = None) -> tuple[str, str, Path | None]:
    """('fluidsynth' | 'timidity', path, soundfont) ready to render, checked before any work:
    a SeqgenError naming the packages to install when no synthesizer (or, for fluidsynth, no
    soundfont) is found, a UsageError for a `soundfont` that is not one or that timidity (which
    has its own instruments) cannot use."""
    synth = find_synth()
    if synth is None:
        raise SeqgenError("no synthesizer for --to wav: install fluidsynth and a General MIDI "
                          "soundfont (apt-get install fluidsynth fluid-soundfont-gm) or timidity "
                          "(apt-get install timidity)")
    name, exe = synth
    if name == "timidity":
        if soundfont is not None:
            raise UsageError("--soundfont: the synthesizer found, timidity, plays its own "
                             "instruments; drop --soundfont, or install fluidsynth to use it")
        return name, exe, None
    sf = find_soundfont(soundfont)
    if sf is None:
        raise SeqgenError("fluidsynth needs a General MIDI soundfont: install one "
                          "(apt-get install fluid-soundfont-gm) or pass --soundfont FILE.sf2")
    return name, exe, sf


def find_soundfont(explicit: str | os.PathLike | None = None) -> Path | None:
    """A General MIDI soundfont: `explicit`, else $SEQGEN_SOUNDFONT, else the first .sf2/.sf3 in
    the usual directories (FluidR3_GM, TimGM6mb, ...)."""
    for cand, what in ((explicit, "--soundfont"), (os.environ.get("SEQGEN_SOUNDFONT"),
                                                   "$SEQGEN_SOUNDFONT")):
        if cand:
            p = Path(cand).expanduser()
            if not p.is_file():
                raise UsageError(f"{what}: {p} is not a file")
            try:
                with open(p, "rb") as f:
                    head = f.read(12)
            except OSError as e:
                raise UsageError(f"{what}: cannot read {p} ({e.strerror})") from None
            if head[:4] != b"RIFF" or head[8:12] != b"sfbk":  # what every .sf2/.sf3 starts with
                raise UsageError(f"{what}: {p} is not a SoundFont (.sf2 or .sf3) file")
            return p
    for d in SOUNDFONT_DIRS:
        dp = Path(d).expanduser()
        if dp.is_dir():
            fonts = sorted(q for q in dp.iterdir() if q.suffix.lower() in (".sf2", ".sf3"))
            if fonts:
                return fonts[0]
    return None


def render_wav(midi: bytes, path: str | os.PathLike, soundfont: str | os.PathLike | None = None,
               sample_rate: int = 44100, peak_dbfs: float = -1.0, timeout_s: float = 120.0) -> None:
    """Render MIDI bytes to a 16-bit WAV at `path` with fluidsynth (and a General MIDI soundfont)
    or timidity, whichever is on PATH, normalised to a peak of `peak_dbfs` dBFS (synthesizers'
    raw output peaks near -22 dBFS). SeqgenError naming the package to install when neither is."""
    name, exe, sf = require_synth(soundfont)
    with tempfile.TemporaryDirectory(prefix="seqgen-wav-") as tmpdir:
        mid = Path(tmpdir) / "in.mid"
        raw = Path(tmpdir) / "raw.wav"
        mid.write_bytes(midi)
        if name == "fluidsynth":
            cmd = [exe, "-ni", "-q", "-F", str(raw), "-T", "wav", "-r", str(sample_rate),
                   str(sf), str(mid)]
        else:
            cmd = [exe, "-Ow", "-s", str(sample_rate), "-o", str(raw), str(mid)]
        try:
            proc = subprocess.run(cmd, capture_output=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise SeqgenError(f"{name} took longer than {timeout_s:g} s to render") from None
        if proc.returncode != 0 or not raw.is_file() or raw.stat().st_size <= 44:
            msg = (proc.stderr or proc.stdout).decode("utf-8", "replace").strip().splitlines()
            raise SeqgenError(f"{name} failed (exit code {proc.returncode})"
                              + (f": {msg[-1]}" if msg else ""))
        with atomic_path(path) as tmp:
            normalise_wav(raw, tmp, peak_dbfs)


def normalise_wav(src: Path, dst: Path, peak_dbfs: float = -1.0) -> float:
    """Copy a PCM WAV from `src` to `dst` as 16-bit with its peak scaled to `peak_dbfs` dBFS.
    Returns the gain applied (silence is copied unchanged)."""
    import wave

    import numpy as np

    with wave.open(str(src), "rb") as w:
        ch, width, rate, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
        frames = w.readframes(n)
    if width == 2:
        x = np.frombuffer(frames, dtype="<i2").astype(np.float64) / 32768.0
    elif width == 4:
        x = np.frombuffer(frames, dtype="<i4").astype(np.float64) / 2147483648.0
    elif width == 1:
        x = (np.frombuffer(frames, dtype=np.uint8).astype(np.float64) - 128.0) / 128.0
    else:
        raise SeqgenError(f"unexpected {8 * width}-bit WAV from the synthesizer")
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    gain = (10 ** (peak_dbfs / 20.0)) / peak if peak > 0 else 1.0
    y = np.clip(np.round(x * gain * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(str(dst), "wb") as w:
        w.setnchannels(ch)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(y.tobytes())
    return gain
