"""Inline fields at the start of a bar: ``[M:3/4]``, ``[L:1/16]``, ``[K:G]``, values as in the
header. A new meter (at the start of a part only) or unit counts from that bar on; those two
only in tunes whose bars are measured (a prompt without M: switches that off; [K:] stays)."""

from __future__ import annotations

from seqgen.music.grammar.rules.elements import start_element
from seqgen.music.grammar.rules.groups import chord_start
from seqgen.music.grammar.rules.timing import can_start_note
from seqgen.music.grammar.state import NO_REPEAT, REPEAT, Body, State
from seqgen.music.grammar.vocabulary import INLINE_FIELDS, TICKS, Lexicon


def inline_start(lx: Lexicon, s: State, ch: str) -> State | None:
    """`ch` after a '[' at the start of a bar, as the letter of an inline field: [M:] where a
    part starts (a pickup and the bar completing it keep one meter), [L:] in measured tunes,
    [K:] anywhere; none after a tie, none where no note may start; several in the order
    M, L, K (s.field: the one before), each once."""
    if ch not in lx.inline or s.tie or not can_start_note(lx, s):
        return None
    if s.body == Body.INLINE_BRACKET and ch not in INLINE_FIELDS[INLINE_FIELDS.index(s.field) + 1:]:
        return None
    if ch != "K" and s.bar_ticks is None:
        return None
    if ch == "M" and (s.part_bars or s.pickup >= 0 or s.rep not in (NO_REPEAT, REPEAT)):
        return None
    return s._replace(body=Body.INLINE_LETTER, field=ch, value="")


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
    done = s._replace(body=Body.INLINE_DONE, value="")  # (field: the letter, for the next)
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
    s = s._replace(field="")
    return s._replace(body=Body.ENDING_SPACE) if ch == " " else start_element(lx, s, ch)


def inline_bracket(lx: Lexicon, s: State, ch: str) -> State | None:
    """Body.INLINE_BRACKET: '[' after an inline field opens another field or a chord."""
    if ch in lx.inline:
        return inline_start(lx, s, ch)
    return chord_start(lx, s._replace(field=""), ch)
