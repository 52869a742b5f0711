"""The end of a note, rest or chord: octave marks, the length (as much as the bar has room for),
then what may follow one: a tie, a broken rhythm, the end of a slur, a space, a line
continuation, the next element or a barline."""

from __future__ import annotations

from seqgen.music.grammar.rules.barlines import between
from seqgen.music.grammar.rules.elements import more, octave_mark, split_pitch, start_element
from seqgen.music.grammar.rules.form import cadence_note, close_bar, final_bar, last_part_tonic
from seqgen.music.grammar.rules.timing import broken_pair, finish_note, fits, length_ok
from seqgen.music.grammar.state import NO_SLUR, SLUR_WITH_NOTE, Body, State
from seqgen.music.grammar.vocabulary import Lexicon


def note_length(lx: Lexicon, s: State, ch: str) -> State | None:
    """Body.NOTE, Body.REST, Body.CHORD_LENGTH: octave marks (a note: `octave_mark`; after a
    tie those of the tied note), then the length; a character that cannot continue
    the length ends the note and is read after it."""
    if s.body == Body.NOTE and not s.partial:
        tied_marks = split_pitch(s.tie)[2]
        marks = split_pitch(s.pitch)[2]
        if ch in "',":
            if s.tie and not tied_marks.startswith(marks + ch):
                return None
            return octave_mark(s, ch)
        if s.tie:
            if marks != tied_marks:
                return None
            s = s._replace(tie="")
    p = s.partial + ch
    if length_ok(lx, s, p):
        return s._replace(partial=p)
    done = finish_note(lx, s)
    return None if done is None else after_note(lx, done, ch)


def _may_pause(s: State) -> bool:
    """A space may follow: no triplet, broken pair or slur is open (they stay unbroken)."""
    return not (s.triplet_left or s.forced_length is not None or s.slur)


def _continues(lx: Lexicon, s: State) -> State | None:
    """'\\' at the end of a line (the score line goes on), between elements outside a group."""
    if lx.continuation and _may_pause(s) and not s.tie and s.breaks != "!":
        return s._replace(body=Body.CONTINUE, last_length=None)
    return None


def tie_ok(lx: Lexicon, s: State) -> bool:
    """A tie may follow the note just finished: a note, not a rest or chord (nor a staccato
    note, nor one that closes a slur: abc2midi "Could not find note to be tied"), and a note of
    its pitch can come next, in this bar, or after a plain barline when the note's pitch does
    not depend on an accidental written earlier in the bar on its letter (abc2midi applies it
    to every octave: '=c2 C-|C' ties two pitches)."""
    if not s.pitch or s.body != Body.AFTER_NOTE:
        return False
    acc, letter, _ = split_pitch(s.pitch)
    if acc and last_part_tonic(lx, s, letter):
        return False  # (the tied note could not be written in the tune's last bar)
    tied = s._replace(tie=s.pitch)
    if final_bar(lx, s) and not cadence_note(s):  # (the tied note may not end the tune)
        return fits(lx, tied, short=True)
    return fits(lx, tied) or close_bar(lx, tied, "|") is not None


def after_note(lx: Lexicon, s: State, ch: str) -> State | None:
    """Body.AFTER_NOTE: a tie, a broken rhythm ('>' '<' after a note or chord, not inside a
    triplet, not after a rest), the ')' of a slur that holds a note, a space, a line
    continuation, or what may come between elements."""
    if ch == "-":
        return s._replace(body=Body.TIE, last_length=None, tie=s.pitch) if tie_ok(lx, s) else None
    if ch in "><" and s.last_length is not None and s.triplet_left == 0 and _pairs(lx, s):
        pair = more(s)
        return None if pair is None else broken_pair(lx, pair)
    if ch == ")" and s.slur == SLUR_WITH_NOTE:
        return s._replace(slur=NO_SLUR, last_length=None, pitch="")
    if ch == " ":
        return s._replace(body=Body.SPACE, last_length=None) if _may_pause(s) else None
    if ch == "\\":
        return _continues(lx, s)
    return between(lx, s._replace(last_length=None), ch)


def _pairs(lx: Lexicon, s: State) -> bool:
    """A broken rhythm may start at the note just finished: in a hornpipe abc2midi plays each
    two notes of the unit length from a beat as a broken pair itself, and a '>' after the second
    of such two fails ('G A>B': "Cannot apply broken rhythm"): there, a note of the unit length
    takes '>' only on an even count of units from the bar's start."""
    if s.rhythm.lower() != "hornpipe" or s.last_length is None or lx.l4[s.last_length] != 4:
        return True
    unit = 4 * s.quarter_unit_ticks
    return ((s.filled - unit) // unit) % 2 == 0


def tie(lx: Lexicon, s: State, ch: str) -> State | None:
    """Body.TIE: a space, or what may come between elements (a plain barline, the note)."""
    if ch == " ":
        return s._replace(body=Body.SPACE) if _may_pause(s) else None
    return between(lx, s, ch)


def broken(lx: Lexicon, s: State, ch: str) -> State | None:
    """Body.BROKEN: the pair's second note (no rest, slur or grace group)."""
    return start_element(lx, s, ch) if ch not in "({z" else None


def space(lx: Lexicon, s: State, ch: str) -> State | None:
    """Body.SPACE: single spaces only; a line continuation; then what may come between
    elements."""
    if ch == "\\":
        return _continues(lx, s)
    return None if ch == " " else between(lx, s, ch)
