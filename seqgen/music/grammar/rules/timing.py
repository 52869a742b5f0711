"""How long things last: the room left in a bar, note lengths, triplets and broken pairs.

Durations are integer ticks (TICKS per whole note): a note of written length `k` (a key of
LENGTHS) lasts ``lx.l4[k] * s.quarter_unit_ticks * s.times`` ticks. `bar_ticks` None (no meter,
or one finer than the ticks) switches the bar-length rules off.
"""

from __future__ import annotations

from seqgen.music.grammar.state import Body, State
from seqgen.music.grammar.vocabulary import Lexicon


def fits(lx: Lexicon, s: State, times: int = 1) -> bool:
    """A new note (of the shortest length, counted `times`) still fits in the bar."""
    if s.forced_length is not None:
        return True
    if s.bar_ticks is None:
        return True
    return s.filled + lx.min_l4 * s.quarter_unit_ticks * times <= s.bar_ticks


def can_start_note(lx: Lexicon, s: State) -> bool:
    """A note may start: it fits in the bar, and the tune has not reached its last bar."""
    return fits(lx, s, 2 if s.triplet_left == 3 else 1) and s.bars < lx.max_bars


def length_ok(lx: Lexicon, s: State, p: str) -> bool:
    """`p` can grow into a length the bar still has room for (or the length the triplet or
    broken pair forces)."""
    if s.forced_length is not None:
        return s.forced_length.startswith(p)
    if p not in lx.length_prefixes:
        return False
    if s.bar_ticks is None:
        return True
    room = s.bar_ticks - s.filled
    return any(k.startswith(p) and v * s.quarter_unit_ticks * s.times <= room
               for k, v in lx.l4.items())


def finish_note(lx: Lexicon, s: State) -> State | None:
    """The note whose length is s.partial is complete: count its time in the bar (None when the
    length is not one, or overfills the bar). The first note of a triplet sets the length of
    the other two; the notes of a triplet or broken pair take the length they are given."""
    if s.partial not in lx.lengths:
        return None
    if s.forced_length is not None:
        if s.partial != s.forced_length:
            return None
        left = max(s.triplet_left - 1, 0)
        return s._replace(body=Body.AFTER_NOTE, partial="",
                          forced_length=s.forced_length if left else None, triplet_left=left,
                          last_length=None, times=1)
    filled = s.filled + lx.l4[s.partial] * s.quarter_unit_ticks * s.times
    if s.bar_ticks is not None and filled > s.bar_ticks:
        return None
    if s.triplet_left == 3:
        return s._replace(body=Body.AFTER_NOTE, partial="", filled=filled, triplet_left=2,
                          forced_length=s.partial, last_length=None, times=1)
    return s._replace(body=Body.AFTER_NOTE, partial="", filled=filled, last_length=s.partial,
                      times=1)


def broken_pair(lx: Lexicon, s: State) -> State | None:
    """'>' or '<' after a note of length s.last_length: the pair's second note takes the same
    length, and its time is counted now (A>B lasts as long as A B). None when it would overfill
    the bar."""
    extra = lx.l4[s.last_length] * s.quarter_unit_ticks
    if s.bar_ticks is not None and s.filled + extra > s.bar_ticks:
        return None
    return s._replace(body=Body.BROKEN, forced_length=s.last_length, last_length=None,
                      filled=s.filled + extra)
