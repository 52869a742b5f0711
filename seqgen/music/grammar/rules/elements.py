"""The start of an element: a note, rest or chord, and what may come before one (an accidental,
a decoration, a chord symbol or annotation, a grace group, a triplet or slur); the note a tie
leads to.

Every rule is ``rule(lx, s, ch) -> State | None``: the state after character `ch` in state `s`,
None when the grammar does not allow it.
"""

from __future__ import annotations

from seqgen.music.grammar.rules.form import final_bar, last_part_tonic
from seqgen.music.grammar.rules.timing import can_start_note, fits
from seqgen.music.grammar.state import BANG_GAP, NO_SLUR, SLUR_WITH_NOTE, Body, State
from seqgen.music.grammar.vocabulary import (
    CHORD_SYMBOL_WIDTH,
    DECORATIONS,
    LINE_EXTRAS,
    NOTE_LETTERS,
    TRILLS,
    Lexicon,
)

# a letter here may start 'b:' (a field)
_LINE_HEADS = frozenset((Body.LINE_START, Body.START, Body.CONTINUED))
_NOTE_ONLY = frozenset((Body.DECORATION, Body.ACCIDENTAL, Body.BROKEN))  # a note, rest or chord
# right before a note: a quoted string or a grace group, not both, and one of it
_SYMBOL_OR_GRACES = frozenset((Body.AFTER_SYMBOL, Body.GRACE_DONE))


def start_element(lx: Lexicon, s: State, ch: str) -> State | None:
    """`ch` as the first character of a note, rest, chord, decoration, chord symbol, grace
    group, triplet or slur, from a point between elements (barlines are the caller's)."""
    if not can_start_note(lx, s):
        return None
    if (ch in "^_=[" or (ch in NOTE_LETTERS and ch.upper() != s.tonic)) and not s.tie and (
            final_bar(lx, s) and not fits(lx, s, short=True)):
        return None  # (only the tonic, a plain note, may end a --form tune)
    if s.tie:
        return _tied_note(s, ch)
    if ch in NOTE_LETTERS:
        return begin_note(s, Body.NOTE, line_lead=s.body in _LINE_HEADS, pitch=ch)
    if ch == "z":  # a part starts with a note (no part of rests only: abc2midi, abcm2ps)
        if not s.part_pitched:
            return None
        return begin_note(s, Body.REST, line_lead=s.body in _LINE_HEADS)
    if ch in "^_=":
        return more(s._replace(body=Body.ACCIDENTAL, partial=ch, last_length=None))
    if ch == "[" and lx.chords and s.body != Body.ACCIDENTAL:  # notes sounding together
        return begin_note(s, Body.CHORD, inner=0)
    if s.body in _NOTE_ONLY:
        return None
    if ch in lx.decorations and s.bang_gap >= BANG_GAP:  # '!trill!'
        return more(s._replace(body=Body.DECORATION_NAME, partial=ch, last_length=None,
                               inner=int(s.body == Body.AFTER_SYMBOL)))
    if ch == '"' and s.body not in _SYMBOL_OR_GRACES and (lx.roots or lx.places):
        # (room for 2 and the annotation's place character, or for a chord symbol)
        need = 2 if lx.places else 2 + CHORD_SYMBOL_WIDTH
        if more(s, need) is None:
            return None
        return more(s._replace(body=Body.QUOTE, partial="", inner=0, last_length=None), 2)
    if ch in DECORATIONS and (ch != "." or s.rhythm.lower() != "hornpipe"):
        # no staccato (nor fermata) in a hornpipe: abc2midi plays its pairs as broken rhythm,
        # and a staccato note cannot take one ("Cannot apply broken rhythm"). After a quoted
        # string a decoration may not precede a chord: music21 reads the '~' of '"G"~[CE]' as
        # a note
        body = Body.DECORATION if s.body != Body.AFTER_SYMBOL else Body.SYMBOL_DECORATION
        return s._replace(body=body, last_length=None, deco=ch)
    if ch == "{" and s.triplet_left == 0 and s.body not in _SYMBOL_OR_GRACES and "}" in lx.stoi:
        return more(s._replace(body=Body.GRACE, partial="", last_length=None), 2)  # (+ a note)
    if ch == "(" and s.slur == NO_SLUR and s.body != Body.GRACE_DONE:
        return s._replace(body=Body.PAREN, last_length=None)
    return None


def more(s: State, n: int = 1) -> State | None:
    """`s` with `n` more of the line's extra width (LINE_EXTRAS), None when it has no room."""
    return s._replace(line_extras=s.line_extras + n) if s.line_extras + n <= LINE_EXTRAS else None


def begin_note(s: State, body: Body, pitch: str = "", **more) -> State:
    """A note, rest or chord begins (`body` says which; `pitch` a note's accidental and letter;
    `more`: other fields to set): it counts twice as the first note of a triplet, and it is the
    note an open slur holds."""
    return s._replace(body=body, partial="", last_length=None, pitch=pitch,
                      times=2 if s.triplet_left == 3 else 1, bar_has_notes=True,
                      part_pitched=s.part_pitched or body == Body.NOTE,
                      slur=SLUR_WITH_NOTE if s.slur else NO_SLUR, **more)


def split_pitch(p: str) -> tuple[str, str, str]:
    """'^^c\'' -> ('^^', 'c', "'"): accidental, letter, octave marks."""
    i = len(p) - len(p.lstrip("^_="))
    return p[:i], p[i:i + 1], p[i + 1:]


def octave_mark(s: State, ch: str) -> State | None:
    """After the note s.pitch, the octave mark `ch`: "'" after a lower-case letter, "," after an
    upper-case one (abc2midi: "Bad pitch specifier , after note c"; so no "A',"), at most two."""
    _, letter, marks = split_pitch(s.pitch)
    if len(marks) >= 2 or (letter.islower() if ch == "'" else letter.isupper()) is False:
        return None
    return s._replace(pitch=s.pitch + ch)


def _tied_note(s: State, ch: str) -> State | None:
    """After a tie only a note of the tied pitch (abc2midi: "Could not find note to be tied",
    abcm2ps: "Bad tie"), its accidental written again (abc2midi loses '~_d-|d'); no rest,
    chord, decoration or symbol."""
    acc, letter, _ = split_pitch(s.tie)
    if ch == letter and not acc:
        return begin_note(s, Body.NOTE, line_lead=s.body in _LINE_HEADS, pitch=ch)
    if ch in "^_=" and acc.startswith(ch):  # (forced: it takes no room)
        return s._replace(body=Body.ACCIDENTAL, partial=ch, last_length=None)
    return None


def accidental(lx: Lexicon, s: State, ch: str) -> State | None:
    """Body.ACCIDENTAL: a second '^' or '_', or the note letter (after a tie: the tied note's)."""
    tied_acc, tied_letter, _ = split_pitch(s.tie)
    if ch == s.partial[-1] and ch in "^_" and len(s.partial) == 1:
        if s.tie and not tied_acc.startswith(s.partial + ch):
            return None
        return s._replace(partial=s.partial + ch)
    if ch in NOTE_LETTERS:
        if s.tie and (ch != tied_letter or s.partial != tied_acc):
            return None
        if final_bar(lx, s) and last_part_tonic(lx, s, ch):
            return None
        return begin_note(with_accidental(s, ch), Body.NOTE, pitch=s.partial + ch)
    return None


def with_accidental(s: State, letter: str) -> State:
    """`s` noting that `letter` took an accidental in this bar (abc2midi then applies it to that
    letter in every octave to the end of the bar)."""
    up = letter.upper()
    return s if up in s.bar_accs else s._replace(bar_accs=s.bar_accs + up)


def decoration_name(lx: Lexicon, s: State, ch: str) -> State | None:
    """Body.DECORATION_NAME: a name of DECORATION_NAMES, then the closing mark; then the note,
    rest or chord it decorates (after a chord symbol, no chord: as for '~')."""
    p = s.partial + ch
    words = lx.decorations[p[0]]
    if s.rhythm.lower() == "hornpipe":  # (no fermata: see start_element)
        words = words - {"!fermata!"}
    if p in words:
        body = Body.SYMBOL_DECORATION if s.inner else Body.DECORATION
        return s._replace(body=body, partial="", inner=0, deco=p, bang_gap=BANG_GAP)
    return s._replace(partial=p) if any(w.startswith(p) for w in words) else None


def decoration(lx: Lexicon, s: State, ch: str) -> State | None:
    """Body.DECORATION, Body.SYMBOL_DECORATION: the note or chord the decoration belongs to:
    not a chord after a chord symbol, nor after a trill (abc2midi: "Rolls and trills not
    supported in chords"); not a rest (abc2midi keeps '!trill!z' for the next note)."""
    chord = ch == "[" and s.body == Body.DECORATION and s.deco not in TRILLS
    if ch in NOTE_LETTERS or ch in "^_=" or chord:
        return start_element(lx, s._replace(body=Body.DECORATED), ch)
    return None


def after_symbol(lx: Lexicon, s: State, ch: str) -> State | None:
    """Body.AFTER_SYMBOL: the element a chord symbol or annotation belongs to."""
    return start_element(lx, s, ch)
