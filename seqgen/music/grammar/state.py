"""Where a tune is in the grammar: `State`, an immutable tuple, and the enums of its positions.

The enums are str- and int-valued, so that a state hashes and compares as fast as a tuple of
plain strings and ints: the engine caches masks and moves by state.
"""

from __future__ import annotations

from enum import Enum, IntEnum
from typing import NamedTuple


class Phase(IntEnum):
    HEADER = 0
    BODY = 1
    ENDED = 2  # after <eos>


class Header(str, Enum):
    """Where a header line is."""

    DOC_START = "X"  # the start of the document: only X follows
    LINE_START = "line"  # a field's letter follows
    COLON = "colon"  # the letter was read: its colon follows
    VALUE = "value"  # the field's value, up to the line break
    DONE = ""  # in the body


class Body(str, Enum):
    """Where the body is: between elements, or inside one (which rule reads the next character:
    see rules.BODY_RULES)."""

    # the start of a bar, a line, the tune
    START = "start"  # right after K: (the body's start)
    LINE_START = "nl"  # after a line break
    BAR_START = "bar"  # right after a barline
    BAR_SPACE = "barsp"  # a space after a barline
    LINE_OPEN = "open"  # '|' at the start of the tune or a line: only '|:' may follow
    CONTINUE = "cont"  # '\\' (the line goes on on the next): only the line break follows
    CONTINUED = "contnl"  # the start of a line after a '\\' line: the bar goes on
    BANG = "bang"  # '!' after a barline: a line break ('|!') or a decoration's name
    BRACKET = "ending"  # '[' at the start of a bar: an ending, an inline field or a chord
    ENDING = "endsp"  # after '[1' or '[2'
    ENDING_SPACE = "endsp2"  # a space after an ending or an inline field: the music follows
    BARLINE = "bar1"  # a barline's first character ('|' or ':'; partial holds it)
    # notes and rests
    NOTE = "note"  # a note letter: octave marks, then the length (partial: its text so far)
    REST = "rest"  # 'z': the length
    ACCIDENTAL = "acc"  # '^' '_' '=' (partial), then the note letter
    DECORATION = "dec"  # '.' '~' 'T' 'u' 'v' '!trill!': the note, rest or chord it decorates
    DECORATION_NAME = "decname"  # inside '!trill!' or '+trill+' (partial: the text so far)
    SYMBOL_DECORATION = "symdec"  # a decoration after a chord symbol: a note or rest, no chord
    DECORATED = "decnote"  # passing only: the decorated element starts (never a resting state)
    AFTER_NOTE = "after"  # a note, rest or chord is complete
    TIE = "tie"  # '-' after a note
    BROKEN = "broken"  # '>' or '<': the second note of the pair
    SPACE = "space"  # a space between elements
    # chords [CEG]
    CHORD = "chord"  # '[' of a chord: its first note
    CHORD_ACCIDENTAL = "cacc"
    CHORD_NOTE = "cnote"  # a chord's note: octave marks, the next note or ']'
    CHORD_LENGTH = "chordlen"  # after ']': the chord's length
    # triplets, slurs, grace notes
    PAREN = "paren"  # '(': a triplet '(3' or a slur
    TRIPLET = "tuplet"  # '(3': its first note (or a slur)
    SLUR_OPEN = "slur_open"  # '(' of a slur: its first note
    GRACE = "grace"  # '{': the first grace note
    GRACE_ACCIDENTAL = "gacc"
    GRACE_NOTE = "gnote"  # a grace note: octave marks, another grace note or '}'
    GRACE_DONE = "grace_done"  # '}': the note the grace notes lead to
    # quoted text: chord symbols, annotations, words
    QUOTE = "cs"  # '"': a chord root, a word, or an annotation's placement character
    SYMBOL = "csr"  # a chord symbol's root and kind, or a word (partial: the text so far)
    SYMBOL_SLASH = "csb"  # '/' of a chord symbol: the bass root
    SYMBOL_BASS = "csbr"  # the bass root: '#' or 'b', then the closing quote
    ANNOTATION = "ann"  # an annotation's text
    AFTER_SYMBOL = "sym"  # a closing quote: the note the text belongs to
    # inline fields [M:3/4]
    INLINE_LETTER = "inl1"  # '[' and the field's letter: ':'
    INLINE_VALUE = "inlv"  # the value, then ']'
    INLINE_DONE = "inl_done"  # ']': another field, a space or the music
    INLINE_BRACKET = "inlbr"  # '[' after an inline field: another field or a chord
    END = "end"  # after <eos>


# The hot paths of the rules and the engine compare against these module globals: reading an
# attribute of an Enum class goes through EnumType.__getattr__'s slow hook before Python 3.12.
HEADER, BODY, ENDED = Phase.HEADER, Phase.BODY, Phase.ENDED
# Body positions inside quoted text or an inline field, where letters are text, not notes.
TEXT_STATES = frozenset((Body.QUOTE, Body.SYMBOL, Body.SYMBOL_SLASH, Body.SYMBOL_BASS,
                         Body.ANNOTATION, Body.INLINE_LETTER, Body.INLINE_VALUE,
                         Body.DECORATION_NAME, Body.BANG))
# music21's reader takes the text from a '!' to the next '!' within 19 characters for a
# decoration and drops it: no '!' may come that close after a '!' that ends a line
BANG_GAP = 19
# Slur states
NO_SLUR, SLUR_EMPTY, SLUR_WITH_NOTE = 0, 1, 2
# Repeat states (State.rep): where the current part is in its repeat and endings
NO_REPEAT = 0  # no '|:' open (a ':|' repeats from the part's start: as Irish tunes are written)
REPEAT = 1  # after '|:': a ':|' must close it before the next '|:' and the end
ENDING1 = 2  # in a first ending '[1': it ends with ':|'
AFTER_ENDING1 = 3  # ':|' closed the first ending: '[2' follows
ENDING2 = 4  # in a second ending '[2': a section barline (|| |] |:) ends it and the part


class State(NamedTuple):
    """Where a tune is in the grammar. Immutable and hashable (masks and moves are cached)."""

    phase: Phase = Phase.HEADER
    # header
    header: Header = Header.DOC_START
    field: str = ""  # the letter of the field being read (header or inline; "T": free text)
    value: str = ""  # the value so far (X, Q, M, L, K; free text keeps only its length)
    text_len: int = 0  # characters of the value so far (-1: only the space after the colon)
    seen: str = ""  # the fields of X M L K Q R read so far
    free_lines: int = 0  # free-text lines (T: C: ...) so far
    meter: str | None = None  # the M: value read (strings hash fast)
    unit: str = ""  # the L: value read ("" none)
    rhythm: str = ""  # the R: value read ("" none)
    lenient: int = 0  # 1: reading a prompt's header; 2: the prompt's last header line
    # body
    body: Body = Body.START  # where in the body (Body)
    partial: str = ""  # a token so far: length suffix, accidental, barline, symbol text, graces
    bar_ticks: int | None = None  # the bar's length in ticks (TICKS per whole note); None: free
    quarter_unit_ticks: int = 6  # ticks of a quarter of the unit length (lengths are n/4 units)
    filled: int = 0  # ticks of the current bar so far
    bar_has_notes: bool = False  # the current bar holds a note
    bar_notes: int = 0  # notes, rests and chords of the current bar (a triplet: 3) so far
    line_extras: int = 0  # width of the line's accidentals, texts, grace notes (LINE_EXTRAS)
    bar_accs: str = ""  # the letters (upper case) that took an accidental in the bar so far
    bars: int = 0  # bars with notes closed so far
    # the part (a section between section barlines; its repeat and endings)
    rep: int = NO_REPEAT  # NO_REPEAT | REPEAT | ENDING1 | AFTER_ENDING1 | ENDING2
    part_bars: int = 0  # bars of the part so far, its pickup not counted (endings: the first)
    parts: int = 0  # parts closed so far
    ending_bars: int = 0  # bars of the first ending so far; in the second, its bars still free
    pickup: int = -1  # ticks of the part's pickup (0: none; -1: its first bar is not over yet)
    part_pitched: bool = False  # the part holds a note (not only rests)
    plain_repeat: bool = False  # a ':|' closed a repeat without endings in the tune so far
    line_bars: int = 0  # bars closed on the current score line (a '\\' line goes on)
    breaks: str = ""  # how the tune ends its lines: "!" ('|!' marks), "\n" (plain), "" (not yet)
    line_width: int = 0  # notes, rests, chords and extras of the bars closed on the score line
    # ties: a tie joins two notes of one pitch
    pitch: str = ""  # the current (chord or grace) note's pitch as written: '^c\'', "B,"
    tie: str = ""  # after a tie: the pitch the next note must have
    triplet_left: int = 0  # notes of a triplet still to come
    forced_length: str | None = None  # the length every coming note of a triplet / pair has
    times: int = 1  # the current note counts this many times (2: first note of a triplet)
    last_length: str | None = None  # length of the note just finished (for '>' and '<')
    slur: int = NO_SLUR  # NO_SLUR | SLUR_EMPTY (open, no note yet) | SLUR_WITH_NOTE
    last_bar: str = ""  # the last barline ('[1' and '[2' count: they follow one)
    line_lead: bool = False  # the body line so far is one note letter ('b' then ':' = a field)
    inner: int = 0  # notes of the chord [...] so far, or characters of the annotation
    bang_gap: int = BANG_GAP  # characters since a '!' line break mark (counted up to BANG_GAP)
    deco: str = ""  # the decoration of the coming or current note ('.', '~', '!trill!')
    tonic: str = ""  # with a --form cadence: the letter of K:'s tonic ('A' for Ador)


_FIELD_INDEX = {name: i for i, name in enumerate(State._fields)}


def _replace(self: State, **changes) -> State:
    """The state with `changes` (as NamedTuple._replace, about twice as fast: the rules make a
    new state for nearly every character they read)."""
    values = [*self]
    for name in changes:
        values[_FIELD_INDEX[name]] = changes[name]
    return tuple.__new__(State, values)


State._replace = _replace  # type: ignore[method-assign,assignment]
