"""The form of a tune: closing a bar, parts, repeats and endings, and the tune's end.

A part is the music between two section barlines (``||``, ``|]``, ``|:``, ``:|``; the tune's start
and end count as such). The state keeps where the current part is (State.rep, part_bars,
pickup, part_pitched), so that rules on a part's length and repeat structure can
read them:

- a plain ``|`` closes a full bar, or the part's first bar when it is short: its pickup
  (``d|gBG``); ``|:`` right after a pickup opens a repeat without ending the part (``d|:GAB``);
- a section barline ends the part: its last bar is full, or makes one bar with the pickup; the
  part has 4 or 8 bars (`lx.part_lengths`; the pickup not counted, a first ending's bars
  counted; `lx.repeat_lengths` when it repeats) and a note; a tune has 2 or 3 parts
  (`lx.min_parts`, `lx.max_parts`);
- ``|:`` opens a repeat that ``:|`` closes before the next ``|:`` and before the end; a ``:|``
  without ``|:`` repeats the part (Irish tunes are written so; abc2midi warns only);
- endings: ``[1`` (or ``|1``) in a repeat after a bar of it (without ``|:`` only while no
  ``:|`` has closed a repeat without endings), closed by ``:|``, then at once ``[2``
  (or ``2`` right after ``:|``), closed by ``||``, ``|]`` or ``|:``; once each, in order; the
  second has at most as many bars as the first;
- the tune may end (``|]``, <eos>) only where every part is closed, no repeat is open and it
  has `lx.min_bars` bars; a barline closes a bar only when the tune can still be finished
  within `lx.max_bars` bars (`bars_to_finish`).
"""

from __future__ import annotations

from seqgen.music.grammar.state import (
    AFTER_ENDING1,
    ENDING1,
    ENDING2,
    NO_REPEAT,
    REPEAT,
    Body,
    State,
)
from seqgen.music.grammar.vocabulary import BAR_WIDTH, LINE_WIDTH, MAX_LINE_BARS, Lexicon

SECTION_BARS = ("||", "|]", "|:", ":|")


def repeats(lx: Lexicon, part: int) -> bool:
    """With a --form (lx.form): part number `part` (0, 1, ...) is a repeated one."""
    return part < len(lx.form) and lx.form[part]


def final_bar(lx: Lexicon, s: State) -> bool:
    """With a --form cadence (lx.cadence): the current bar is the tune's last (the last bar of
    the last part, or of its second ending), or the last of another part of lx.cadence_parts,
    whose last note must be the tonic."""
    if not (lx.cadence and s.tonic and s.parts in lx.cadence_parts):
        return False
    if s.rep == ENDING2:
        return s.ending_bars <= 1
    return s.rep in (NO_REPEAT, REPEAT) and s.part_bars + 1 == lx.part_lengths[0]


def cadence_note(s: State) -> bool:
    """The note just read (s.pitch) sounds the tonic: its letter with no accidental, written
    or earlier in the bar (the key signature gives the tonic its own: F# in K:F#m)."""
    acc, letter = s.pitch[:1] in ("^", "_", "="), s.pitch[:1].upper()
    return not acc and letter == s.tonic and letter not in s.bar_accs


def last_part_tonic(lx: Lexicon, s: State, letter: str) -> bool:
    """With a --form cadence, `letter` is the tonic's and the tune is in a part that ends with
    a cadence (its last, or one of lx.cadence_parts): in its last bar the tonic takes no
    accidental, nor is a tonic with one tied (the cadence needs the plain tonic)."""
    return (bool(s.tonic) and letter.upper() == s.tonic and lx.cadence
            and s.parts in lx.cadence_parts)


def part_open(s: State) -> bool:
    """The current part has begun: a bar of it was closed, or a repeat or ending is open."""
    return s.rep != NO_REPEAT or s.part_bars > 0 or s.pickup >= 0


NO_LENGTH = 1 << 20


def lengths(lx: Lexicon, s: State) -> tuple[int, ...]:
    """The lengths the current part may have: lx.repeat_lengths in a repeat (or its first
    ending), lx.part_lengths else."""
    return lx.repeat_lengths if s.rep in (REPEAT, ENDING1) else lx.part_lengths


def part_length(options: tuple[int, ...], n: int) -> int:
    """The shortest of `options` of at least `n` bars (NO_LENGTH when none is)."""
    return next((k for k in options if k >= n), NO_LENGTH)


def bars_to_finish(lx: Lexicon, s: State) -> int:
    """The fewest bars after state `s` (at a bar's start) that finish the tune: close the open
    part (an ending, a repeat), then, while the tune has fewer than min_parts parts or min_bars
    bars, more parts."""
    parts = s.parts + part_open(s)
    if s.rep in (AFTER_ENDING1, ENDING2):
        need = 1
    elif part_open(s):
        need = part_length(lengths(lx, s), s.part_bars + 1) - s.part_bars + (s.rep == ENDING1)
    else:
        need = 0
    short = lx.min_bars - (s.bars + need)
    while short > 0 or parts < lx.min_parts:  # (whole parts)
        more_bars = min(part_length(lx.part_lengths, short), lx.part_lengths[-1])
        need, short, parts = need + more_bars, short - more_bars, parts + 1
    return need + (NO_LENGTH if parts > lx.max_parts else 0)


def in_budget(lx: Lexicon, s: State) -> State | None:
    """`s` when the tune can still end within max_bars from it, else None."""
    return s if s.bars + bars_to_finish(lx, s) <= lx.max_bars else None


# ---------------------------------------------------------------------------- closing a bar
def _bar_length_ok(s: State, ends_part: bool) -> bool:
    """The bar has the meter's length; a part's first bar may be short (the pickup, not at a
    part's end), a part's last bar may make one bar with the pickup."""
    if s.bar_ticks is None or s.filled == s.bar_ticks:
        return True
    if not ends_part:
        return s.pickup < 0
    return s.pickup > 0 and s.filled + s.pickup == s.bar_ticks


def close_bar(lx: Lexicon, s: State, kind: str) -> State | None:
    """A barline `kind` ('|' or one of SECTION_BARS) closes the current bar (None when it may
    not): the bar's length, the part's length and repeat structure, the tune's length."""
    if s.slur or s.triplet_left or s.forced_length is not None or not s.bar_has_notes:
        return None
    if s.tie and (kind != "|" or _accidental_ends(s)):
        return None  # a tie goes on to the next bar's first note, not across a section
    first = s.pickup < 0
    short = s.bar_ticks is not None and s.filled < s.bar_ticks
    if kind == "|:" and lx.form and not repeats(lx, s.parts + (not first or not short)):
        return None  # '|:' opens a part the form repeats
    if kind == "|" or (kind == "|:" and first and short and s.rep == NO_REPEAT):
        # a bar inside the part: full, or the pickup ('|:' after the pickup opens the repeat)
        if not _bar_length_ok(s, False):
            return None
        nxt = s._replace(pickup=s.filled if short else 0) if first else s
        if s.rep == ENDING2:  # a second ending has at most the first one's bars
            if s.ending_bars <= 1:
                return None
            nxt = nxt._replace(ending_bars=s.ending_bars - 1)
        elif not short:
            if s.part_bars + 2 > lengths(lx, s)[-1]:
                return None  # this bar must end the part
            nxt = nxt._replace(part_bars=s.part_bars + 1,
                              ending_bars=s.ending_bars + (s.rep == ENDING1))
        if kind == "|:":
            nxt = nxt._replace(rep=REPEAT)
        return in_budget(lx, _closed(nxt, kind))
    if first and short or not _bar_length_ok(s, True):
        return None
    if short and final_bar(lx, s) and not cadence_note(s):
        return None  # (a last bar that makes one with the pickup ends on the tonic too)
    ended = _end_part(lx, s, kind)
    return None if ended is None else in_budget(lx, _closed(ended, kind))


def _end_part(lx: Lexicon, s: State, kind: str) -> State | None:
    """A section barline ends the part (or its first ending): what the repeat state allows."""
    if lx.form and (kind == ":|") != repeats(lx, s.parts) and s.rep in (NO_REPEAT, REPEAT):
        return None  # a part the form repeats ends with ':|', another with || |] |:
    if s.rep == ENDING2:
        if kind == ":|" or (final_bar(lx, s._replace(ending_bars=1)) and s.ending_bars > 1):
            return None  # a second ending is closed by || |] or |: (abc2midi, music21); the
            # tune's last as long as the first (its last bar is the cadence's)
    elif s.part_bars + 1 not in lengths(lx, s) or not s.part_pitched:
        return None  # a part of 4, 8, 12 or 16 bars, with a note
    elif s.rep == ENDING1:
        if kind != ":|":
            return None
        return s._replace(rep=AFTER_ENDING1, part_bars=s.part_bars + 1,
                          ending_bars=s.ending_bars + 1)
    elif s.rep == REPEAT and kind != ":|":
        return None  # '|:' is closed by ':|' before the next '|:' or the end
    elif kind == ":|" and s.part_bars + 1 not in lx.repeat_lengths:
        return None  # a part repeated by ':|' has 4 or 8 bars
    if kind == "|]" and (s.bars + 1 < lx.min_bars or s.parts + 1 < lx.min_parts):
        return None
    plain = s.plain_repeat or (kind == ":|" and s.rep in (NO_REPEAT, REPEAT))
    return s._replace(rep=REPEAT if kind == "|:" else NO_REPEAT, part_bars=0, pickup=-1,
                      part_pitched=False, plain_repeat=plain, parts=s.parts + 1)


def _accidental_ends(s: State) -> bool:
    """The tied note takes its accidental from one written earlier in the bar on its letter:
    the barline ends it (abc2midi applies it to every octave, so '=c2 C-|C' ties two pitches:
    "Could not find note to be tied")."""
    i = len(s.tie) - len(s.tie.lstrip("^_="))
    return i == 0 and s.tie[:1].upper() in s.bar_accs


def _closed(s: State, kind: str) -> State:
    return s._replace(body=Body.BAR_START, partial="", last_bar=kind, filled=0,
                      bar_has_notes=False, bars=s.bars + 1, line_bars=s.line_bars + 1,
                      line_width=s.line_width + s.bar_notes + BAR_WIDTH, bar_notes=0,
                      bar_accs="",
                      last_length=None)


# --------------------------------------------------------------------- repeats and endings
def opening_repeat(lx: Lexicon, s: State) -> State | None:
    """'|:' before any note of a part, at the start of the tune or of a line."""
    if s.rep != NO_REPEAT or part_open(s) or s.bar_has_notes or s.tie or (
            lx.form and not repeats(lx, s.parts)):
        return None
    return in_budget(lx, s._replace(body=Body.BAR_START, rep=REPEAT, last_bar="|:"))


def first_ending(lx: Lexicon, s: State) -> State | None:
    """'[1' (or '|1') at the start of a bar after a plain barline: in a repeat with a bar, or
    in a part without '|:' while no ':|' has closed a repeat without endings (after one
    abc2midi wants '|:': "found [1 or like before |:")."""
    if s.last_bar != "|" or s.part_bars < 1 or s.tie or (lx.form and not repeats(lx, s.parts)):
        return None
    if s.rep == REPEAT or (s.rep == NO_REPEAT and not s.plain_repeat):
        return in_budget(lx, s._replace(rep=ENDING1, last_bar="[1", ending_bars=0))
    return None


def second_ending(s: State) -> State | None:
    """'[2' (or '2' right after ':|'), only where ':|' closed a first ending."""
    return s._replace(rep=ENDING2, last_bar="[2") if s.rep == AFTER_ENDING1 else None


def line_full(s: State) -> bool:
    """The score line has MAX_LINE_BARS bars, or LINE_WIDTH notes and extras: it ends at this
    barline."""
    return s.line_bars >= MAX_LINE_BARS or s.line_width >= LINE_WIDTH


def tune_over(lx: Lexicon, s: State) -> bool:
    return s.bars >= lx.max_bars or s.last_bar == "|]"


def may_end(lx: Lexicon, s: State) -> bool:
    """The tune may end here (after a barline): every part closed, no repeat open, no tie,
    min_bars bars and min_parts parts."""
    return (s.bars >= lx.min_bars and s.parts >= lx.min_parts and s.rep == NO_REPEAT
            and not part_open(s) and not s.tie and s.body in (Body.BAR_START, Body.LINE_START))
