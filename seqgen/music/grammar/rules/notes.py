"""The end of a note, rest or chord: octave marks, the length (as much as the bar has room for),
then what may follow one: a tie, a broken rhythm, the end of a slur, a space, the next element
or a barline."""

from __future__ import annotations

from seqgen.music.grammar.rules.barlines import between
from seqgen.music.grammar.rules.elements import start_element
from seqgen.music.grammar.rules.timing import broken_pair, finish_note, length_ok
from seqgen.music.grammar.state import NO_SLUR, SLUR_WITH_NOTE, Body, State
from seqgen.music.grammar.vocabulary import Lexicon


def note_length(lx: Lexicon, s: State, ch: str) -> State | None:
    """Body.NOTE, Body.REST, Body.CHORD_LENGTH: octave marks (a note, at most two), then the
    length; a character that cannot continue the length ends the note and is read after it."""
    if ch in "'," and not s.partial and s.body == Body.NOTE:
        if s.octave >= 2:
            return None
        return s._replace(octave=s.octave + 1)
    p = s.partial + ch
    if length_ok(lx, s, p):
        return s._replace(partial=p)
    done = finish_note(lx, s)
    return None if done is None else after_note(lx, done, ch)


def _may_pause(s: State) -> bool:
    """A space may follow: no triplet, broken pair or slur is open (they stay unbroken)."""
    return not (s.triplet_left or s.forced_length is not None or s.slur)


def after_note(lx: Lexicon, s: State, ch: str) -> State | None:
    """Body.AFTER_NOTE: a tie, a broken rhythm ('>' '<', not inside a triplet), the ')' of a
    slur that holds a note, a space, or what may come between elements."""
    if ch == "-":
        return s._replace(body=Body.TIE, last_length=None)
    if ch in "><" and s.last_length is not None and s.triplet_left == 0:
        return broken_pair(lx, s)
    if ch == ")" and s.slur == SLUR_WITH_NOTE:
        return s._replace(slur=NO_SLUR, last_length=None)
    if ch == " ":
        return s._replace(body=Body.SPACE, last_length=None) if _may_pause(s) else None
    return between(lx, s._replace(last_length=None), ch)


def tie(lx: Lexicon, s: State, ch: str) -> State | None:
    """Body.TIE: a space, or what may come between elements."""
    if ch == " ":
        return s._replace(body=Body.SPACE) if _may_pause(s) else None
    return between(lx, s, ch)


def broken(lx: Lexicon, s: State, ch: str) -> State | None:
    """Body.BROKEN: the pair's second note (no slur or grace group before it)."""
    return start_element(lx, s, ch) if ch not in "({" else None


def space(lx: Lexicon, s: State, ch: str) -> State | None:
    """Body.SPACE: single spaces only; then what may come between elements."""
    return None if ch == " " else between(lx, s, ch)
