"""The header: one field per line, ``X:`` first and ``K:`` last, then into the body.

A prompt's header (`lenient`) is read in any order and with any values; the music after it is
strict.
"""

from __future__ import annotations

from fractions import Fraction

from seqgen.music.abc import parse_meter, parse_unit
from seqgen.music.grammar.state import Body, Header, Phase, State
from seqgen.music.grammar.vocabulary import (
    FREE_FIELDS,
    MAX_FIELD_CHARS,
    MAX_FREE_LINES,
    TEXT_PUNCTUATION,
    TICKS,
    Lexicon,
    tonic_letter,
)


def doc_start(lx: Lexicon, s: State, ch: str) -> State | None:
    """Header.DOC_START: the document starts with X."""
    return s._replace(header=Header.COLON, field="X") if ch == "X" else None


def field_letter(lx: Lexicon, s: State, ch: str) -> State | None:
    """Header.LINE_START: M:, L: and Q: once each; R: once, after M: (a rhythm of its meter:
    RHYTHMS); K: once M: and L: are there; free text (T C O N B Z S H, all read alike as "T") up
    to MAX_FREE_LINES lines. A prompt: any letter."""
    if s.lenient:
        if ch.isalpha() and ch.isascii():
            return s._replace(header=Header.COLON, field=ch)
        return None
    if ch in ("M", "L", "Q") and ch not in s.seen:
        return s._replace(header=Header.COLON, field=ch)
    if ch == "R" and "R" not in s.seen and s.meter in lx.rhythm_prefixes:
        return s._replace(header=Header.COLON, field=ch)
    if ch == "K" and "M" in s.seen and "L" in s.seen:
        return s._replace(header=Header.COLON, field=ch)
    if ch in FREE_FIELDS and s.free_lines < MAX_FREE_LINES:
        return s._replace(header=Header.COLON, field="T")
    return None


def colon(lx: Lexicon, s: State, ch: str) -> State | None:
    """Header.COLON: the colon after the field's letter."""
    return s._replace(header=Header.VALUE, value="", text_len=0) if ch == ":" else None


def field_value(lx: Lexicon, s: State, ch: str) -> State | None:
    """Header.VALUE: one space may follow the colon; then X: and Q: a number, M: L: K: R: a
    value of their lists, the others free text; a line break ends the field."""
    letter = s.field
    if ch == "\n":
        return end_field(lx, s)
    if ch == " " and s.text_len == 0 and not s.value:
        return s._replace(text_len=-1) if not s.lenient or letter not in "XMLKR" else s
    if s.lenient:
        if letter in "XMLKR":
            return s._replace(value=s.value + ch) if len(s.value) < MAX_FIELD_CHARS else None
        return s._replace(text_len=max(s.text_len, 0) + 1) if s.text_len < MAX_FIELD_CHARS else None
    if letter in "XQ":  # a number: the tune's, or the tempo in beats per minute
        if ch.isdigit() and len(s.value) < (4 if letter == "X" else 3) and (s.value or ch != "0"):
            return s._replace(value=s.value + ch, text_len=max(s.text_len, 0))
        return None
    listed = lx.rhythm_prefixes.get(s.meter or "", frozenset()) if letter == "R" else lx.value_prefixes.get(letter)
    if listed is not None:
        v = s.value + ch
        return s._replace(value=v, text_len=max(s.text_len, 0)) if v in listed else None
    return _free_text(s, ch)


def _free_text(s: State, ch: str) -> State | None:
    """Free text: letters, digits, plain punctuation, at most MAX_FIELD_CHARS; no leading double
    space (only its length is kept)."""
    if not (ch.isalnum() or ch in TEXT_PUNCTUATION) or (ch == " " and s.text_len <= 0):
        return None
    n = max(s.text_len, 0) + 1
    return s._replace(text_len=n) if n <= MAX_FIELD_CHARS else None


def end_field(lx: Lexicon, s: State) -> State | None:
    """A line break ends a field whose value is complete (a prompt's: any value); after K:
    the body starts."""
    letter, v = s.field, s.value.strip()
    if not s.lenient and not _complete(lx, letter, v, s.text_len, s.meter):
        return None
    seen = s.seen + letter if letter in "XMLKQR" and letter not in s.seen else s.seen
    s = s._replace(header=Header.LINE_START, field="", value="", text_len=0, seen=seen,
                   free_lines=s.free_lines + (letter not in "XMLKQR"),
                   lenient=1 if s.lenient == 1 else 0)
    if letter == "M":
        s = s._replace(meter=v)
    elif letter == "L":
        s = s._replace(unit=v)
    elif letter == "R":
        s = s._replace(rhythm=v)
    elif letter == "K":
        return body_start(s._replace(tonic=tonic_letter(v) if lx.cadence else ""))
    return s


def _complete(lx: Lexicon, letter: str, v: str, text_len: int, meter: str | None) -> bool:
    if letter == "R":
        return v in lx.rhythms.get(meter or "", ())
    if letter in "XQ":
        return bool(v)
    if letter == "M":
        return v in lx.meters
    if letter == "L":
        return v in lx.units
    if letter == "K":
        return v in lx.keys
    return text_len > 0  # no empty free-text field


def body_start(s: State) -> State:
    """Into the body: durations become integer ticks (fast to add, compare and hash)."""
    bar = parse_meter(s.meter) if s.meter is not None else None
    tq = parse_unit(s.unit, bar) * TICKS / 4
    tb = bar * TICKS if bar is not None else None
    if tq.denominator != 1 or (tb is not None and tb.denominator != 1):
        tb, tq = None, Fraction(1)  # a unit or meter finer than the ticks: no steering
    return s._replace(phase=Phase.BODY, header=Header.DONE, body=Body.START,
                      quarter_unit_ticks=int(tq),
                      bar_ticks=int(tb) if tb is not None else None)
