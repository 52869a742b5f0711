"""Barlines, what may start a bar or a line, line breaks ('\\n', '|!', '\\\\'), endings, and the
end of the tune. Which barline may close a bar, and what parts, repeats and endings allow, is
form.py's.
"""

from __future__ import annotations

from seqgen.music.grammar.rules.elements import decoration_name, start_element
from seqgen.music.grammar.rules.form import (
    close_bar,
    first_ending,
    line_full,
    may_end,
    opening_repeat,
    second_ending,
    tune_over,
)
from seqgen.music.grammar.rules.groups import chord_start
from seqgen.music.grammar.rules.inline import inline_start
from seqgen.music.grammar.rules.timing import can_start_note
from seqgen.music.grammar.state import AFTER_ENDING1, BANG_GAP, BODY, Body, Phase, State
from seqgen.music.grammar.vocabulary import Lexicon


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
    once the tune is over; the only choice once the line has MAX_LINE_BARS bars), '!' (a line
    break mark or a decoration), '\\\\' (the line goes on) or a space; at the start of the tune
    or a line the '|' of an opening repeat; then the bar's first element (none once the tune is
    over); after ':|' that closed a first ending, only the second."""
    after_barline = s.body == Body.BAR_START
    if after_barline:
        if ch == "\n":
            return None if s.breaks == "!" else new_line(s, "\n")
        if ch == "!" and lx.bang and s.bang_gap >= BANG_GAP:
            return s._replace(body=Body.BANG, bang_gap=0)
    if tune_over(lx, s) or (after_barline and line_full(s)):
        return None
    if s.rep == AFTER_ENDING1:
        return _second_ending_start(lx, s, ch)
    if after_barline:
        if ch == " ":
            return s._replace(body=Body.BAR_SPACE)
        if ch == "\\" and lx.continuation and s.breaks != "!" and can_start_note(lx, s):
            return s._replace(body=Body.CONTINUE)  # (a bar follows on the next line)
        if ch == "1":
            e = first_ending(lx, s)  # '|1'
            return None if e is None else e._replace(body=Body.ENDING)
    elif ch == "|":
        return s._replace(body=Body.LINE_OPEN) if opening_repeat(lx, s) is not None else None
    return bar_opening(lx, s, ch)


def new_line(s: State, breaks: str) -> State:
    """A line break after a barline ('\\n', or '!' and '\\n'): the score line is over. A tune
    ends all its lines one way: abcm2ps reads a '!' at a line's end as the only line break of
    the tune and joins the lines without one (then fails: "Line too much shrunk")."""
    return s._replace(body=Body.LINE_START, line_bars=0, line_width=0, line_extras=0,
                      breaks=breaks)


def _second_ending_start(lx: Lexicon, s: State, ch: str) -> State | None:
    """After ':|' closed a first ending: '[2', or '2' right after the ':|'."""
    if ch == "[":
        return s._replace(body=Body.BRACKET)
    if ch == "2" and s.body == Body.BAR_START:
        e = second_ending(s)
        return None if e is None else e._replace(body=Body.ENDING)
    return None


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
    return opening_repeat(lx, s) if ch == ":" else None


def bang(lx: Lexicon, s: State, ch: str) -> State | None:
    """Body.BANG: '!' after a barline: the line break mark ('|!' then the line break, as
    irish.abc ends its lines), or the name of a decoration '!trill!'."""
    s = s._replace(body=Body.BAR_START)
    if ch == "\n":
        return None if s.breaks == "\n" else new_line(s, "!")
    if tune_over(lx, s) or line_full(s) or s.rep == AFTER_ENDING1:
        return None
    opened = bar_opening(lx, s._replace(bang_gap=BANG_GAP), "!")  # (a decoration's '!')
    return None if opened is None else decoration_name(lx, opened._replace(bang_gap=0), ch)


# --------------------------------------------------------------------- line continuations
def continuation(lx: Lexicon, s: State, ch: str) -> State | None:
    """Body.CONTINUE: after '\\\\' only the line break: the score line goes on on the next."""
    return s._replace(body=Body.CONTINUED) if ch == "\n" else None


def continued(lx: Lexicon, s: State, ch: str) -> State | None:
    """Body.CONTINUED: the start of a line after a '\\\\' line: at the start of a bar its first
    element, in the middle of a bar what may come between elements ('| ' closes the bar, as
    O'Neill's writes a pickup on a line of its own)."""
    if s.bar_has_notes:
        return between(lx, s, ch)
    return bar_opening(lx, s, ch)


# ----------------------------------------------------------------------------------- endings
def bracket(lx: Lexicon, s: State) -> State | None:
    """'[' at the start of a bar, when an ending ('[1', '[2'), an inline field or a chord may
    follow."""
    if s.rep == AFTER_ENDING1:
        return s._replace(body=Body.BRACKET)
    if (first_ending(lx, s) is not None or start_element(lx, s, "[") is not None
            or any(inline_start(lx, s, f) is not None for f in lx.inline)):
        return s._replace(body=Body.BRACKET)
    return None


def after_bracket(lx: Lexicon, s: State, ch: str) -> State | None:
    """Body.BRACKET: '1' of a first ending, '2' of a second, an inline field's letter, or a
    chord's first note."""
    if s.rep == AFTER_ENDING1:
        e = second_ending(s) if ch == "2" else None
        return None if e is None else e._replace(body=Body.ENDING)
    if ch == "1":
        e = first_ending(lx, s)
        return None if e is None else e._replace(body=Body.ENDING)
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
    """The state after <eos>: only in the body, right after a section barline (or its line
    break) where the tune may end (form.may_end)."""
    if s.phase != BODY or not may_end(lx, s):
        return None
    return s._replace(phase=Phase.ENDED, body=Body.END)
