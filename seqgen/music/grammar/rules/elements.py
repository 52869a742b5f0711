"""The start of an element: a note, rest or chord, and what may come before one (an accidental,
a decoration, a chord symbol or annotation, a grace group, a triplet or slur).

Every rule is ``rule(lx, s, ch) -> State | None``: the state after character `ch` in state `s`,
None when the grammar does not allow it.
"""

from __future__ import annotations

from seqgen.music.grammar.rules.timing import can_start_note
from seqgen.music.grammar.state import NO_SLUR, SLUR_WITH_NOTE, Body, State
from seqgen.music.grammar.vocabulary import DECORATIONS, NOTE_LETTERS, Lexicon

_LINE_HEADS = frozenset((Body.LINE_START, Body.START))  # a letter here may start 'b:' (a field)
_NOTE_ONLY = frozenset((Body.DECORATION, Body.ACCIDENTAL, Body.BROKEN))  # a note, rest or chord
# right before a note: a quoted string or a grace group, not both, and one of it
_SYMBOL_OR_GRACES = frozenset((Body.AFTER_SYMBOL, Body.GRACE_DONE))


def start_element(lx: Lexicon, s: State, ch: str) -> State | None:
    """`ch` as the first character of a note, rest, chord, decoration, chord symbol, grace
    group, triplet or slur, from a point between elements (barlines are the caller's)."""
    if not can_start_note(lx, s):
        return None
    if ch in NOTE_LETTERS or ch == "z":
        return begin_note(s, Body.NOTE if ch != "z" else Body.REST,
                          line_lead=s.body in _LINE_HEADS)
    if ch in "^_=":
        return s._replace(body=Body.ACCIDENTAL, partial=ch, last_length=None)
    if ch == "[" and lx.chords and s.body != Body.ACCIDENTAL:  # notes sounding together
        return begin_note(s, Body.CHORD, inner=0)
    if s.body in _NOTE_ONLY:
        return None
    if ch == '"' and s.body not in _SYMBOL_OR_GRACES and (lx.roots or lx.places):
        return s._replace(body=Body.QUOTE, partial="", inner=0, last_length=None)
    if ch in DECORATIONS:
        # after a quoted string a decoration may not precede a chord: music21 reads the
        # '~' of '"G"~[CE]' as a note
        body = Body.DECORATION if s.body != Body.AFTER_SYMBOL else Body.SYMBOL_DECORATION
        return s._replace(body=body, last_length=None)
    if ch == "{" and s.triplet_left == 0 and s.body not in _SYMBOL_OR_GRACES and "}" in lx.stoi:
        return s._replace(body=Body.GRACE, partial="", last_length=None)
    if ch == "(" and s.slur == NO_SLUR and s.body != Body.GRACE_DONE:
        return s._replace(body=Body.PAREN, last_length=None)
    return None


def begin_note(s: State, body: Body, **more) -> State:
    """A note, rest or chord begins (`body` says which; `more`: other fields to set): it counts
    twice as the first note of a triplet, and it is the note an open slur holds."""
    return s._replace(body=body, partial="", octave=0, last_length=None,
                      times=2 if s.triplet_left == 3 else 1, bar_has_notes=True,
                      slur=SLUR_WITH_NOTE if s.slur else NO_SLUR, **more)


def accidental(lx: Lexicon, s: State, ch: str) -> State | None:
    """Body.ACCIDENTAL: a second '^' or '_', or the note letter."""
    if ch == s.partial[-1] and ch in "^_" and len(s.partial) == 1:
        return s._replace(partial=s.partial + ch)
    if ch in NOTE_LETTERS:
        return begin_note(s, Body.NOTE)
    return None


def decoration(lx: Lexicon, s: State, ch: str) -> State | None:
    """Body.DECORATION, Body.SYMBOL_DECORATION: the note, rest or (not after a chord symbol)
    chord the decoration belongs to."""
    if ch in NOTE_LETTERS or ch in "^_=" or ch == "z" or (ch == "[" and s.body == Body.DECORATION):
        return start_element(lx, s._replace(body=Body.DECORATED), ch)
    return None


def after_symbol(lx: Lexicon, s: State, ch: str) -> State | None:
    """Body.AFTER_SYMBOL: the element a chord symbol or annotation belongs to."""
    return start_element(lx, s, ch)
