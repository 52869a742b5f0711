"""Groups of notes: chords ``[CEG]2``, grace notes ``{gf}``, triplets ``(3ABc`` and slurs
``(AB)``."""

from __future__ import annotations

from seqgen.music.grammar.rules.elements import more, octave_mark, start_element, with_accidental
from seqgen.music.grammar.rules.form import final_bar, last_part_tonic
from seqgen.music.grammar.rules.timing import fits
from seqgen.music.grammar.state import NO_SLUR, SLUR_EMPTY, Body, State
from seqgen.music.grammar.vocabulary import MAX_CHORD_NOTES, NOTE_LETTERS, Lexicon


# ------------------------------------------------------------------------------------ chords
def chord_start(lx: Lexicon, s: State, ch: str) -> State | None:
    """`ch` after a '[' that opens a chord."""
    opened = start_element(lx, s, "[")
    return None if opened is None else chord(lx, opened, ch)


def chord(lx: Lexicon, s: State, ch: str) -> State | None:
    """Body.CHORD (and a chord note's next character): 2 to MAX_CHORD_NOTES notes with
    accidentals and octave marks, no lengths; after ']' the chord's length, which counts as one
    note's."""
    if s.inner >= MAX_CHORD_NOTES:
        return None
    if ch in NOTE_LETTERS:
        return s._replace(body=Body.CHORD_NOTE, partial="", pitch=ch, inner=s.inner + 1)
    if ch in "^_=":
        return more(s._replace(body=Body.CHORD_ACCIDENTAL, partial=ch))
    return None


def chord_accidental(lx: Lexicon, s: State, ch: str) -> State | None:
    """Body.CHORD_ACCIDENTAL: a second '^' or '_', or the note letter."""
    if ch == s.partial and ch in "^_" and len(s.partial) == 1:
        return s._replace(partial=s.partial + ch)
    if ch in NOTE_LETTERS:
        if final_bar(lx, s) and last_part_tonic(lx, s, ch):
            return None
        return with_accidental(s, ch)._replace(body=Body.CHORD_NOTE, partial="", pitch=ch,
                                                inner=s.inner + 1)
    return None


def chord_note(lx: Lexicon, s: State, ch: str) -> State | None:
    """Body.CHORD_NOTE: octave marks (`octave_mark`), ']' after two notes or more, or the next
    note."""
    if ch in "',":
        return octave_mark(s, ch)
    if ch == "]" and s.inner >= 2:
        return s._replace(body=Body.CHORD_LENGTH, partial="", pitch="", inner=0)
    return chord(lx, s, ch)


# ------------------------------------------------------------------------------- grace notes
def grace(lx: Lexicon, s: State, ch: str) -> State | None:
    """Body.GRACE: the first grace note (notes without lengths)."""
    if ch in NOTE_LETTERS:
        return s._replace(body=Body.GRACE_NOTE, pitch=ch)
    if ch in "^_=":
        return more(s._replace(body=Body.GRACE_ACCIDENTAL))
    return None


def grace_accidental(lx: Lexicon, s: State, ch: str) -> State | None:
    """Body.GRACE_ACCIDENTAL: the grace note's letter."""
    if ch not in NOTE_LETTERS:
        return None
    if final_bar(lx, s) and last_part_tonic(lx, s, ch):
        return None
    return with_accidental(s, ch)._replace(body=Body.GRACE_NOTE, pitch=ch)


def grace_note(lx: Lexicon, s: State, ch: str) -> State | None:
    """Body.GRACE_NOTE: octave marks (`octave_mark`), '}', or another grace note (at most four
    in a group; partial counts the ones after the first)."""
    if ch in "',":
        return octave_mark(s, ch)
    if ch == "}":
        return s._replace(body=Body.GRACE_DONE, pitch="")
    if ch in NOTE_LETTERS and len(s.partial) < 3:
        return more(s._replace(pitch=ch, partial=s.partial + "g"))
    if ch in "^_=" and len(s.partial) < 3:
        return more(s._replace(body=Body.GRACE_ACCIDENTAL, partial=s.partial + "g"))
    return None


def grace_done(lx: Lexicon, s: State, ch: str) -> State | None:
    """Body.GRACE_DONE: the note (or rest) the grace notes lead to."""
    if ch in NOTE_LETTERS or ch in "^_=" or ch == "z":
        return start_element(lx, s._replace(partial=""), ch)
    return None


# --------------------------------------------------------------------- triplets and slurs
def paren(lx: Lexicon, s: State, ch: str) -> State | None:
    """Body.PAREN: '3' for a triplet (when three notes of the shortest length fit in the time
    of two, and no triplet or broken pair is open), else the first note of a slur."""
    if ch == "3" and s.triplet_left == 0 and s.forced_length is None and fits(
            lx, s, 2, 3, short=final_bar(lx, s)):
        return s._replace(body=Body.TRIPLET, triplet_left=3)
    opened = s._replace(body=Body.SLUR_OPEN, slur=SLUR_EMPTY)
    if ch in "({" or ")" not in lx.stoi:
        return None
    return start_element(lx, opened, ch)


def triplet(lx: Lexicon, s: State, ch: str) -> State | None:
    """Body.TRIPLET: a slur over the triplet, or its first note (no grace group)."""
    if ch == "(" and s.slur == NO_SLUR and ")" in lx.stoi:
        return s._replace(body=Body.SLUR_OPEN, slur=SLUR_EMPTY)
    return start_element(lx, s, ch) if ch != "{" else None


def slur_open(lx: Lexicon, s: State, ch: str) -> State | None:
    """Body.SLUR_OPEN: the slur's first note (no second slur, no grace group)."""
    if ch == "(":
        return None
    return start_element(lx, s, ch) if ch != "{" else None
