"""Barlines, what may start a bar or a line, endings, and the end of the tune.

A barline closes a bar (`close_bar`): a full one, or a short one that starts the tune or a
section or ends one; ``|]`` ends the tune once it has `min_bars` bars, after `max_bars` bars
the next barline ends it; ``<eos>`` only right after a barline (`eos`).
"""

from __future__ import annotations

from seqgen.music.grammar.rules.elements import start_element
from seqgen.music.grammar.rules.groups import chord_start
from seqgen.music.grammar.rules.inline import inline_start
from seqgen.music.grammar.state import BODY, Body, Phase, State
from seqgen.music.grammar.vocabulary import SECTION_BARS, Lexicon


# ---------------------------------------------------------------------------- closing a bar
def close_bar(lx: Lexicon, s: State, kind: str) -> State | None:
    """A barline `kind` closes the current bar (None when it may not)."""
    if s.slur or s.triplet_left or s.forced_length is not None:
        return None
    full = s.bar_ticks is None or s.filled == s.bar_ticks
    if not s.bar_has_notes:
        return _opening_repeat(s) if kind == "|:" else None
    if not full and not (s.section_start or kind in SECTION_BARS):
        return None
    if kind == "|:" and s.bars + 1 >= lx.max_bars:
        return None  # the tune must end at this barline: not with an opening repeat
    if kind == "|]" and s.bars + 1 < lx.min_bars:
        return None  # '|]' ends the tune, which is not long enough yet
    return s._replace(body=Body.BAR_START, partial="", last_bar=kind,
                      section_start=kind in SECTION_BARS, filled=0, bar_has_notes=False,
                      bars=s.bars + 1, last_length=None)


def _opening_repeat(s: State) -> State | None:
    """'|:' before any note of the bar: only at the start of the tune or of a line (once)."""
    if s.bars == 0 and s.body == Body.START:
        return s._replace(body=Body.BAR_START, last_bar="|:", section_start=True, filled=0)
    if s.body == Body.LINE_START and s.last_bar != "|:":
        return s._replace(body=Body.BAR_START, last_bar="|:", section_start=True, filled=0)
    return None


def between(lx: Lexicon, s: State, ch: str) -> State | None:
    """`ch` at a point between elements (after a note, a space, a tie): a barline's first
    character (when some barline may close the bar here), or the next element."""
    if ch in "|:":
        kinds = ("|", "||", "|]", "|:") if ch == "|" else (":|",)
        if any(close_bar(lx, s, k) is not None for k in kinds):
            return s._replace(body=Body.BARLINE, partial=ch)
        return None
    return start_element(lx, s, ch)


def barline(lx: Lexicon, s: State, ch: str) -> State | None:
    """Body.BARLINE: the barline's second character ('||' '|]' '|:' ':|'; not '::', around
    which music21 loses the notes in some tunes), or after a plain '|' the next bar's first."""
    if s.partial == "|":
        if ch in "|]:":
            return close_bar(lx, s, "|" + ch)
        done = close_bar(lx, s, "|")
        return None if done is None else bar_start(lx, done, ch)
    if s.partial == ":":
        return close_bar(lx, s, ":|") if ch == "|" else None
    return None


# ----------------------------------------------------------------------- the start of a bar
def bar_start(lx: Lexicon, s: State, ch: str) -> State | None:
    """Body.BAR_START, Body.START, Body.LINE_START: right after a barline a line break (also
    once the tune is over) or a space; at the start of the tune or a line the '|' of an opening
    repeat; then the bar's first element (none once the tune is over)."""
    after_barline = s.body == Body.BAR_START
    if ch == "\n" and after_barline:
        return s._replace(body=Body.LINE_START)
    if s.bars >= lx.max_bars or s.last_bar == "|]":  # the tune is over
        return None
    if after_barline:
        if ch == " ":
            return s._replace(body=Body.BAR_SPACE)
    elif ch == "|":
        return s._replace(body=Body.LINE_OPEN)
    return bar_opening(lx, s, ch)


def bar_space(lx: Lexicon, s: State, ch: str) -> State | None:
    """Body.BAR_SPACE: the bar's first element (one space only; no line break after it)."""
    return None if ch in " \n" else bar_opening(lx, s, ch)


def bar_opening(lx: Lexicon, s: State, ch: str) -> State | None:
    """The first character of a bar's music: '[' (an ending, inline field or chord), or an
    element; no second barline."""
    if ch == "[":
        return bracket(lx, s)
    if ch in "|:":
        return None
    return start_element(lx, s, ch)


def line_open(lx: Lexicon, s: State, ch: str) -> State | None:
    """Body.LINE_OPEN: '|' at the start of the tune or a line can only be '|:'."""
    if ch != ":":
        return None
    at = Body.START if s.bars == 0 and s.last_bar == "" else Body.LINE_START
    return close_bar(lx, s._replace(body=at), "|:")


# ----------------------------------------------------------------------------------- endings
def ending_ok(s: State) -> bool:
    """A first ending '[1' may start this bar."""
    if s.last_bar == ":|":
        return True
    return s.last_bar in ("|", "||") and s.bars > 0


def bracket(lx: Lexicon, s: State) -> State | None:
    """'[' at the start of a bar, when an ending ('[1', '[2'), an inline field or a chord may
    follow."""
    if (ending_ok(s) or start_element(lx, s, "[") is not None
            or (lx.inline and s.bar_ticks is not None)):
        return s._replace(body=Body.BRACKET)
    return None


def after_bracket(lx: Lexicon, s: State, ch: str) -> State | None:
    """Body.BRACKET: '1' of a first ending (after a barline), '2' of a second (after ':|'), an
    inline field's letter, or a chord's first note."""
    if ch == "1" and s.last_bar != ":|" and ending_ok(s):
        return s._replace(body=Body.ENDING, last_bar="[1")
    if ch == "2" and s.last_bar == ":|":
        return s._replace(body=Body.ENDING, last_bar="[2")
    return inline_start(lx, s, ch) if ch in lx.inline else chord_start(lx, s, ch)


def ending(lx: Lexicon, s: State, ch: str) -> State | None:
    """Body.ENDING: a space, or the ending's first element."""
    if ch == " ":
        return s._replace(body=Body.ENDING_SPACE)
    return start_element(lx, s, ch)


def ending_space(lx: Lexicon, s: State, ch: str) -> State | None:
    """Body.ENDING_SPACE: the first element (one space only)."""
    return start_element(lx, s, ch) if ch != " " else None


# ------------------------------------------------------------------------- the tune's end
def eos(lx: Lexicon, s: State) -> State | None:
    """The state after <eos>: only in the body, right after a barline (not '|:'), once the
    tune has `min_bars` bars."""
    if s.phase != BODY or s.bars < lx.min_bars:
        return None
    if s.body == Body.BARLINE and s.partial == "|":
        s = close_bar(lx, s, "|")
        if s is None:
            return None
    if s.body in (Body.BAR_START, Body.LINE_START) and s.last_bar != "|:":
        return s._replace(phase=Phase.ENDED, body=Body.END)
    return None
