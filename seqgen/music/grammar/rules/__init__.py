"""The rules of the ABC grammar: which character may follow which, one function per position.

What the grammar enforces: ABC that abc2midi (no ``Error`` line), abcm2ps (no error) and
music21's stock reader and MIDI writer all accept (bench/abc_tools.py gives their verdicts), in
the form the corpora write (bench/tune_form.py measures them). Each rule names the message it
prevents; "music21" means its stock reader.

Header (header.py)
  1. ``X:`` a number first; ``K:`` last, once ``M:`` and ``L:`` are there; one field a line;
     ``M:`` one of METERS, ``L:`` one of UNIT_LENGTHS, ``Q:`` a tempo: once each; ``K:`` one
     of KEYS. Free text (``T C O N B Z S H``): at most 80 characters, 10 lines.
  2. ``R:`` only after ``M:``, one of the rhythms the corpora write under that meter
     (vocabulary.RHYTHMS: no ``R:Reel`` in 9/8); ``hornpipe`` only in 2/4 and 4/4 (abc2midi:
     "Hornpipe must be in 2/4 or 4/4 time").
Notes (elements.py, notes.py, timing.py)
  3. Notes ``[^^|^|_|__|=]? [A-Ga-g] [',]{0,2} length?``, rests ``z length?``, lengths of
     LENGTHS, none shorter than a 1/32; ``'`` only after a lower-case letter, ``,`` after an
     upper-case one (abc2midi: "Bad pitch specifier , after note c").
  4. A tie ``-`` joins two notes of one pitch (the accidental not written again, no rest,
     chord or slur end on either side, not across a section barline) (abc2midi: "Could not
     find note to be tied", "Cannot find note before tie"; abcm2ps: "Bad tie").
  5. Broken rhythm ``A>B``/``A<B``: both notes of one written length, no rest, and in a
     hornpipe only on an even count of units, no staccato (abc2midi: "Cannot apply broken
     rhythm. Notes not equal durations"); no ``.`` before a dotted note (abcm2ps: "Note too
     much dotted").
  6. Decorations ``. ~ T u v`` and ``!name!`` (DECORATION_NAMES) before a note, not a rest,
     and ``~``/``!trill!`` not before a chord (abc2midi). Not ``+name+``: music21 reads its
     letters as notes (the corpora write no ``+trill+``; O'Neill's three ABC 1.6 chords
     ``+E3A3+`` are not written either). No ``H`` (music21 drops the note after it).
Bars (timing.py, form.py)
  7. A bar holds exactly the meter's length (``M:`` and ``L:``; a triplet counts as two of its
     notes, a broken pair as two equal notes, a chord as one note, symbols and graces take no
     time). Only a part's first bar may be short (its pickup), and then its last bar makes one
     bar with it; a section barline is no licence for a short bar (abc2midi: "Track 0 Bar N
     has X time units while the time signature has Y").
  8. At most MAX_BAR_NOTES notes a bar, MAX_LINE_BARS bars and about LINE_WIDTH notes a score
     line (abcm2ps: "Line too much shrunk").
Form: parts, repeats, endings (form.py)
  9. A part (between section barlines ``|| |] |: :|``) has 4 or 8 bars and a note (not rests
     only); a tune has 2 or 3 parts (part_lengths, min_parts, max_parts).
 10. ``|:`` is closed by ``:|`` before the next ``|:`` and before the end (abc2midi: "found
     another |: after a |:", "Missing :| at end of tune"; music21: "badly formed repeats"); a
     ``:|`` without ``|:`` repeats the part. A line-initial ``|`` is only ``|:``. No ``::``
     (music21 loses the notes around it in some tunes).
 11. Endings ``[1`` (``|1``) after a bar of a repeat, closed by ``:|``, then at once ``[2``
     (``:|2``), closed by ``|| |] |:``, no longer than the first; once each, in order
     (abc2midi: "Need || |: :| or :: to mark end of variant ending", "found [1 or like before
     |:"; music21: "badly formed repeats").
Groups and quoted text (groups.py, quoted.py)
 12. Chords ``[CEg]``: 2 to 4 notes without lengths. Triplets ``(3``: three notes of one
     written length. Slurs ``( )``: one level, closed within the bar. Grace notes ``{gf}``:
     1 to 4 notes before a note or rest, none in a triplet.
 13. Quoted text is a chord symbol (``"G"``, ``"F#m7"``, ``"D7/F#"``) or an annotation
     (``"^fine"``, ``">"``) (abc2midi: "Unrecognized chord name", "Guitar chord does not
     start with A-G"; abcm2ps: "Error in annotation").
Lines and the end (barlines.py, inline.py)
 14. A line break only right after a barline: ``\\n``, or irish.abc's ``|!`` mark; a tune ends
     all its lines one way (abcm2ps joins the lines without ``!`` and fails: "Line too much
     shrunk"); no ``!`` within 19 characters after ``|!`` (music21 pairs them as a decoration).
     A ``\\`` continues the line. No line starts with a letter and a colon (a header field).
 15. ``[M:3/4]``, ``[L:1/16]``, ``[K:G]`` at the start of a bar (a new meter where a part
     starts), values as in the header.
 16. ``|]`` or ``<eos>`` ends the tune once every part is closed, no repeat is open, the tune
     has `min_bars` bars and 2 parts; after `max_bars` bars the next barline ends it.
Form control (form.py; ``seqgen sample --form AABB --bars 8 --cadence tonic``)
 17. With a form (lx.form): exactly its parts, each of `bars` bars; a repeated one closed by
     ``:|``, another by ``|| |] |:`` without ``|:`` or endings. With the tonic cadence the last
     bar's last note is the plain tonic of ``K:`` (State.tonic; form.final_bar, cadence_note).

Adding a rule: a position (a member of state.Body or state.Header, or a field of State) and a
function ``rule(lx, s, ch) -> State | None`` (the state after character `ch`, None when it is
not allowed; pure: same state and character, same answer), entered in BODY_RULES or
HEADER_RULES below. What the engine (engine.py) relies on:

- every state the rules reach keeps a way to finish (tests/test_music_grammar.py searches);
- `signature` merges states whose masks are equal: a rule that reads a counter (bars...) must
  keep the counter's values it tells apart apart there;
- outside TEXT_STATES every note letter moves alike (the engine computes the first letter's move
  and shares it), and so does every character of free header text: a rule that tells note
  letters apart (ties of equal pitch, say) must change that sharing in AbcConstraint.advance.
"""

from __future__ import annotations

from collections.abc import Callable

from seqgen.music.grammar.rules import (
    barlines,
    elements,
    groups,
    header,
    inline,
    notes,
    quoted,
)
from seqgen.music.grammar.rules.barlines import eos
from seqgen.music.grammar.rules.elements import split_pitch
from seqgen.music.grammar.rules.form import last_part_tonic
from seqgen.music.grammar.state import BANG_GAP, BODY, ENDING2, HEADER, Body, Header, State
from seqgen.music.grammar.vocabulary import (
    BAR_WIDTH,
    LINE_EXTRAS,
    LINE_WIDTH,
    MAX_FIELD_CHARS,
    MAX_LINE_BARS,
    Lexicon,
)

Rule = Callable[[Lexicon, State, str], "State | None"]


def _nothing(lx: Lexicon, s: State, ch: str) -> None:
    return None


HEADER_RULES: dict[Header, Rule] = {
    Header.DOC_START: header.doc_start,
    Header.LINE_START: header.field_letter,
    Header.COLON: header.colon,
    Header.VALUE: header.field_value,
    Header.DONE: _nothing,
}

BODY_RULES: dict[Body, Rule] = {
    Body.START: barlines.bar_start,
    Body.LINE_START: barlines.bar_start,
    Body.BAR_START: barlines.bar_start,
    Body.BAR_SPACE: barlines.bar_space,
    Body.LINE_OPEN: barlines.line_open,
    Body.CONTINUE: barlines.continuation,
    Body.CONTINUED: barlines.continued,
    Body.BANG: barlines.bang,
    Body.BRACKET: barlines.after_bracket,
    Body.ENDING: barlines.ending,
    Body.ENDING_SPACE: barlines.ending_space,
    Body.BARLINE: barlines.barline,
    Body.NOTE: notes.note_length,
    Body.REST: notes.note_length,
    Body.ACCIDENTAL: elements.accidental,
    Body.DECORATION: elements.decoration,
    Body.DECORATION_NAME: elements.decoration_name,
    Body.SYMBOL_DECORATION: elements.decoration,
    Body.DECORATED: _nothing,  # (a passing position, never a state)
    Body.AFTER_NOTE: notes.after_note,
    Body.TIE: notes.tie,
    Body.BROKEN: notes.broken,
    Body.SPACE: notes.space,
    Body.CHORD: groups.chord,
    Body.CHORD_ACCIDENTAL: groups.chord_accidental,
    Body.CHORD_NOTE: groups.chord_note,
    Body.CHORD_LENGTH: notes.note_length,
    Body.PAREN: groups.paren,
    Body.TRIPLET: groups.triplet,
    Body.SLUR_OPEN: groups.slur_open,
    Body.GRACE: groups.grace,
    Body.GRACE_ACCIDENTAL: groups.grace_accidental,
    Body.GRACE_NOTE: groups.grace_note,
    Body.GRACE_DONE: groups.grace_done,
    Body.QUOTE: quoted.quote,
    Body.SYMBOL: quoted.symbol,
    Body.SYMBOL_SLASH: quoted.symbol_slash,
    Body.SYMBOL_BASS: quoted.symbol_bass,
    Body.ANNOTATION: quoted.annotation,
    Body.AFTER_SYMBOL: elements.after_symbol,
    Body.INLINE_LETTER: inline.inline_letter,
    Body.INLINE_VALUE: inline.inline_value,
    Body.INLINE_DONE: inline.inline_done,
    Body.INLINE_BRACKET: inline.inline_bracket,
    Body.END: _nothing,
}


def step(lx: Lexicon, s: State, ch: str) -> State | None:
    """The state after character `ch`, or None when the grammar does not allow it."""
    if s.phase == BODY:
        if s.line_lead and ch == ":":
            return None  # 'b:' at the start of a line would read as a header field
        nxt = BODY_RULES[s.body](lx, s, ch)
        if nxt is None:
            return None
        if s.line_lead:
            nxt = nxt._replace(line_lead=False)
        if s.bang_gap < BANG_GAP and nxt.bang_gap == s.bang_gap:
            nxt = nxt._replace(bang_gap=s.bang_gap + 1)  # (see state.BANG_GAP)
        return nxt
    if s.phase == HEADER:
        return HEADER_RULES[s.header](lx, s, ch)
    return None


def _near_end(lx: Lexicon, b: int) -> bool:
    """From this bar count on form.bars_to_finish may bind (two parts and their pickups)."""
    return b >= lx.max_bars - 2 * lx.part_lengths[-1] - 2


def _bars_class(lx: Lexicon, b: int) -> int:
    """The bar count as masks tell it apart: exactly near min_bars (where '|]' and <eos> start
    to be allowed) and near max_bars (`_near_end`), else 0, 1 for the counts below
    min_bars - 1, min_bars + 1 for those between."""
    if b == 0 or _near_end(lx, b) or lx.min_bars - 1 <= b <= lx.min_bars:
        return b
    return 1 if b < lx.min_bars else lx.min_bars + 1


def _part_class(lx: Lexicon, s: State) -> tuple[int, int]:
    """The part's bars and the ending's as masks tell them apart (form.py reads them). The
    part's bars: exactly near max_bars and where the part may or must end (one bar short of a
    length of lx.part_lengths or lx.repeat_lengths, or of the longest); else whether it began,
    and which of those lengths it passed (1..2 -> 1, 4..6 -> 4 for lengths 4 and 8). The
    ending's bars: only in a second ending, only as whether one more plain bar fits."""
    pb, lengths = s.part_bars, lx.part_lengths + lx.repeat_lengths
    if not (pb == 0 or _near_end(lx, s.bars) or pb + 1 in lengths or pb + 2 > max(lengths)):
        pb = max([1] + [n for n in lengths if n <= pb])
    return pb, (min(s.ending_bars, 2) if s.rep == ENDING2 else 0)


def signature(lx: Lexicon, s: State) -> State:
    """A representative of the states whose masks equal that of `s`. Counters matter only
    where a rule reads them: the bar count (`_bars_class`), the part's and the ending's bars
    (`_part_class`), the line's bars at MAX_LINE_BARS - 1 and beyond, a note's pitch only as whether it has an
    accidental, its letter's case and its octave marks (and whether there is one), the letters
    with accidentals in the bar only as whether they hold the note's or the tied note's,
    (its letter kept when it is the tonic's in a --form tune's last part: form.last_part_tonic),
    the line's extra width only up to 6 short of LINE_EXTRAS, the line's width only as under LINE_WIDTH or not; the length of
    free header text only as empty, under the limit or at it. Masks are cached per
    representative, so a new bar or title seldom needs a new mask."""
    if s.phase == BODY:
        rb = _bars_class(lx, s.bars)
        rp, rend = _part_class(lx, s)
        rl = s.line_bars if s.line_bars >= MAX_LINE_BARS - 1 else 0
        acc, letter, marks = split_pitch(s.pitch)
        tonic = last_part_tonic(lx, s, letter)  # (form.cadence_note, notes.tie_ok)
        other = "B" if s.tonic == "A" else "A"  # (a letter that is not the tonic)
        pitch = ("=" if acc else "") + (letter if tonic else other.lower() if letter.islower()
                                         else other) + marks if s.pitch else ""
        tied = split_pitch(s.tie)[1].upper()
        accs = ((letter.upper() if tonic else other) if letter.upper() in s.bar_accs
                and s.pitch else "") + (
            tied if tied and tied in s.bar_accs else "")
        rn = s.line_width if s.line_width + s.bar_notes + BAR_WIDTH >= LINE_WIDTH else 0
        rx = LINE_EXTRAS - min(LINE_EXTRAS - s.line_extras, 6)  # (no extra costs more)
        gap = BANG_GAP if s.bang_gap >= BANG_GAP else 0
        if (rb, rp, rend, rl, rn, rx, pitch, gap, accs) == (
                s.bars, s.part_bars, s.ending_bars, s.line_bars, s.line_width, s.line_extras,
                s.pitch, s.bang_gap, s.bar_accs):
            return s
        return s._replace(bars=rb, part_bars=rp, ending_bars=rend, line_bars=rl, line_width=rn,
                          line_extras=rx, pitch=pitch, bang_gap=gap, bar_accs=accs)
    if (s.field == "T" and s.header == Header.VALUE and not s.lenient
            and 1 < s.text_len < MAX_FIELD_CHARS):
        return s._replace(text_len=1)
    return s


__all__ = ["BODY_RULES", "HEADER_RULES", "Rule", "eos", "signature", "step"]
