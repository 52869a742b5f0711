"""How long things last: the room left in a bar, note lengths, triplets and broken pairs.

Durations are integer ticks (TICKS per whole note): a note of written length `k` (a key of
LENGTHS) lasts ``lx.l4[k] * s.quarter_unit_ticks * s.times`` ticks. `bar_ticks` None (no meter,
or one finer than the ticks) switches the bar-length rules off.
"""

from __future__ import annotations

from seqgen.music.grammar.rules.form import cadence_note, final_bar, in_budget, part_open
from seqgen.music.grammar.state import Body, State
from seqgen.music.grammar.vocabulary import MAX_BAR_NOTES, Lexicon

NO_FILL = 1 << 20
POWERS_OF_TWO = frozenset(1 << i for i in range(8))


def fill_count(lx: Lexicon, step: int, room: int) -> int:
    """The fewest notes of the vocabulary's lengths (in units of `step` ticks, a quarter of the
    unit length) that fill `room` ticks exactly (a large number when none do). Cached."""
    key = (step, room)
    n = lx.fill_cache.get(key)
    if n is None:
        if room == 0:
            n = 0
        elif room < 0 or room % step:
            n = NO_FILL
        else:
            n = min((1 + fill_count(lx, step, room - v * step) for v in lx.playable(step)
                     if v * step <= room), default=NO_FILL)
        lx.fill_cache[key] = n
    return n


def fits(lx: Lexicon, s: State, times: int = 1, count: int = 1, short: bool = False) -> bool:
    """A new note (`count` notes lasting `times` times its length: 3 and 2 for a triplet)
    still fits in the bar: with some length, and the bar can still be filled with at most
    MAX_BAR_NOTES notes (abcm2ps cannot fit a line of too many: "Line too much shrunk").
    `short`: and leaves room for one more (the tonic that ends a --form tune, form.final_bar)."""
    if s.forced_length is not None:
        return True
    if s.bar_ticks is None:
        return s.bar_notes + count + short <= MAX_BAR_NOTES
    q, room = s.quarter_unit_ticks, s.bar_ticks - s.filled
    key = (q, room, s.bar_notes, times, count, short)
    ok = lx.fits_cache.get(key)
    if ok is None:  # (a few hundred keys: nearly every call is a look-up)
        ok = lx.fits_cache[key] = any(
            s.bar_notes + count + fill_count(lx, q, room - v * q * times) <= MAX_BAR_NOTES
            for v in lx.playable(q) if v * q * times < room or (
                not short and v * q * times == room))
    return ok


def can_start_note(lx: Lexicon, s: State) -> bool:
    """A note may start: it fits in the bar, the tune has not reached its last bar, and the
    part it begins (if it begins one) can be finished within max_bars."""
    if not fits(lx, s, *((2, 3) if s.triplet_left == 3 else (1, 1))) or s.bars >= lx.max_bars:
        return False
    if part_open(s) or s.bar_has_notes:
        return True
    return s.parts < lx.max_parts and in_budget(lx, s._replace(pickup=0)) is not None


def length_fits(lx: Lexicon, s: State, k: str) -> bool:
    """A note of written length `k` (a key of LENGTHS) fits: the bar has room for it and can
    then be filled within MAX_BAR_NOTES; no note shorter than a 1/32."""
    q, v = s.quarter_unit_ticks, lx.l4[k]
    if v not in lx.playable(q):
        return False
    if s.bar_ticks is None:
        return True
    room = s.bar_ticks - s.filled - v * q * s.times
    count = 3 if s.times == 2 else 1  # (the first note of a triplet counts for its three)
    if room == 0 and final_bar(lx, s) and (s.body != Body.NOTE or s.times == 2
                                           or not cadence_note(s)):
        return False  # the tune's last note is the tonic (a note, not a rest, chord, triplet)
    return room >= 0 and s.bar_notes + count + fill_count(lx, q, room) <= MAX_BAR_NOTES


def length_ok(lx: Lexicon, s: State, p: str) -> bool:
    """`p` can grow into a length that fits (`length_fits`), or into the length the triplet or
    broken pair forces."""
    if s.forced_length is not None:
        return s.forced_length.startswith(p)
    return p in lx.length_prefixes and any(
        k.startswith(p) and length_fits(lx, s, k) for k in lx.l4)


def finish_note(lx: Lexicon, s: State) -> State | None:
    """The note whose length is s.partial is complete: count its time in the bar (None when the
    length is not one, or overfills the bar). The first note of a triplet sets the length of
    the other two; the notes of a triplet or broken pair take the length they are given."""
    if s.partial not in lx.lengths:
        return None
    # no broken rhythm after a rest, a staccato or fermata note (abc2midi: "Cannot apply broken
    # rhythm") or
    # a dotted one (abcm2ps: "Note too much dotted"); no tie after a staccato note (abc2midi:
    # "Cannot find note before tie")
    staccato = s.deco == "." and s.body == Body.NOTE
    pairs = (s.body != Body.REST and s.deco not in (".", "!fermata!")
             and lx.l4[s.partial] in POWERS_OF_TWO)
    fitting = s.forced_length is not None or length_fits(lx, s, s.partial)  # (s.pitch read)
    if s.deco or staccato:  # (most notes have neither: no new state for them)
        s = s._replace(deco="", pitch="" if staccato else s.pitch)
    if s.forced_length is not None:
        if s.partial != s.forced_length:
            return None
        left = max(s.triplet_left - 1, 0)
        return s._replace(body=Body.AFTER_NOTE, partial="",
                          forced_length=s.forced_length if left else None, triplet_left=left,
                          last_length=None, times=1)
    if not fitting:
        return None
    filled = s.filled + lx.l4[s.partial] * s.quarter_unit_ticks * s.times
    if s.triplet_left == 3:  # (the triplet's three notes count now)
        return s._replace(body=Body.AFTER_NOTE, partial="", filled=filled, triplet_left=2,
                          forced_length=s.partial, last_length=None, times=1,
                          bar_notes=s.bar_notes + 3)
    return s._replace(body=Body.AFTER_NOTE, partial="", filled=filled,
                      last_length=s.partial if pairs else None, times=1,
                      bar_notes=s.bar_notes + 1)


def broken_pair(lx: Lexicon, s: State) -> State | None:
    """'>' or '<' after a note of length s.last_length: the pair's second note takes the same
    length, and its time is counted now (A>B lasts as long as A B). None when it would overfill
    the bar (or when no note was just finished)."""
    if s.last_length is None:
        return None
    extra = lx.l4[s.last_length] * s.quarter_unit_ticks
    if s.bar_ticks is not None and (
            s.bar_notes + 1 + fill_count(lx, s.quarter_unit_ticks,
                                         s.bar_ticks - s.filled - extra) > MAX_BAR_NOTES
            or (s.filled + extra == s.bar_ticks and final_bar(lx, s))):
        return None  # (a pair does not end a --form tune: its second note is unknown yet)
    return s._replace(body=Body.BROKEN, forced_length=s.last_length, last_length=None,
                      filled=s.filled + extra, bar_notes=s.bar_notes + 1)
