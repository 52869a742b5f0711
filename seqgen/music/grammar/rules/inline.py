"""Inline fields at the start of a bar: ``[M:3/4]``, ``[L:1/16]``, ``[K:G]``, values as in the
header. A new meter or unit counts from that bar on; only in tunes whose bars are measured (a
prompt may have switched that off)."""

from __future__ import annotations

from seqgen.music.grammar.rules.elements import start_element
from seqgen.music.grammar.rules.groups import chord_start
from seqgen.music.grammar.state import Body, State
from seqgen.music.grammar.vocabulary import TICKS, Lexicon


def inline_start(lx: Lexicon, s: State, ch: str) -> State | None:
    """`ch` after a '[' at the start of a bar, as the letter of an inline field."""
    if ch in lx.inline and s.bar_ticks is not None:
        return s._replace(body=Body.INLINE_LETTER, field=ch, value="")
    return None


def inline_letter(lx: Lexicon, s: State, ch: str) -> State | None:
    """Body.INLINE_LETTER: the colon."""
    return s._replace(body=Body.INLINE_VALUE) if ch == ":" else None


def inline_value(lx: Lexicon, s: State, ch: str) -> State | None:
    """Body.INLINE_VALUE: a value of the field's list, then ']'."""
    v = s.value + ch
    if v in lx.value_prefixes[s.field]:
        return s._replace(value=v)
    if ch != "]":
        return None
    done = s._replace(body=Body.INLINE_DONE, field="", value="")
    if s.field == "K":
        return done if s.value in lx.keys else None
    if s.field == "M" and s.value in lx.meters:  # (the body counts in ticks only)
        return done._replace(bar_ticks=int(lx.meters[s.value] * TICKS))
    if s.field == "L" and s.value in lx.units:
        return done._replace(quarter_unit_ticks=int(lx.units[s.value] * TICKS / 4))
    return None


def inline_done(lx: Lexicon, s: State, ch: str) -> State | None:
    """Body.INLINE_DONE: another inline field, or (after one space) the bar's music."""
    if ch == "[":
        return s._replace(body=Body.INLINE_BRACKET)
    return s._replace(body=Body.ENDING_SPACE) if ch == " " else start_element(lx, s, ch)


def inline_bracket(lx: Lexicon, s: State, ch: str) -> State | None:
    """Body.INLINE_BRACKET: '[' after an inline field opens another field or a chord."""
    if ch in lx.inline:
        return inline_start(lx, s, ch)
    return chord_start(lx, s, ch)
