"""Bars that return: one stream's bar plan, followed by copying the text of earlier bars.

A tune of the folk corpora repeats bars inside its parts (a reel's bars 5-6 are often its bars
1-2, part B often ends as part A does). The models seqgen trains on a CPU do not copy whole bars
on their own (docs/quality.md, "The default model"), so the sampler does it when the tune's form
is drawn from the training tunes: with the form it draws the *bar plan* of one training tune of
that form and part length ('4=0 5=1 15=7': bar 4 repeats bar 0, ...; seqgen.music.form), and
where the plan says that a bar repeats an earlier one, the sampler writes that bar's text again,
character by character, each one through the grammar: a character the grammar refuses there ends
the copy and the model goes on from it. The model reads the copied characters as its own, so
what follows a copy follows from it.

Bars are counted as seqgen.music.form counts them: the bars of the written parts in order, each
part's `bars` bars (a pickup and the bars of a second ending not counted, a first ending's
counted), from 0. A bar's text is what stands between its barlines, spaces around it left out,
and the first character of its closing barline ('|' or ':'), so that the copy's last note ends
where the source's did; a bar holding a line break, an ending's or an inline field's start
is not copied (a '!' line-break mark comes with its line break).
"""

from __future__ import annotations

import re
from typing import Protocol

from seqgen.music.grammar.state import AFTER_ENDING1, ENDING2, TEXT_STATES, Body, State

# where the next character may start a bar's first element
_BAR_EDGE = frozenset((Body.BARLINE, Body.BAR_START, Body.BAR_SPACE, Body.LINE_START))
_UNCOPIED = re.compile(r"[\n\\]|^\[\d|^\d|\[[A-Za-z]:")


class Moves(Protocol):
    """What the copier asks of a grammar (AbcConstraint): the state after a token, or None."""

    def advance(self, s: State, token: int) -> State | None: ...


class BarCopier:
    """One stream's bar plan (`plan`: bar i -> the earlier bar j it repeats) in a tune whose
    parts have `bars` bars each; `stoi` maps characters to token ids.

    `step` follows the stream's characters (the states before and after each); `next` is the
    token the stream must take next, or None (it returns at once away from a bar's edge and
    outside a copy). The constraint (ConstrainedBatch) asks `next` before each choice and
    checks the token against the grammar; `drop` ends a copy the grammar refuses."""

    def __init__(self, plan: dict[int, int], bars: int, stoi: dict[str, int]):
        self.plan, self.bars, self.stoi = plan, bars, stoi
        self.sources: dict[int, str] = {}  # bar index -> its text, once closed
        self.copied: list[int] = []  # the bars whose copy began, in order
        self._queue: list[int] = []  # ids still to write of the copy under way
        self._buf: list[str] = []  # the current bar's characters
        self._barline_at: int | None = None  # where in _buf its closing barline began

    def index(self, s: State) -> int | None:
        """The index of the bar `s` is in (None: a second ending's bar)."""
        if s.rep in (ENDING2, AFTER_ENDING1):
            return None
        return s.parts * self.bars + s.part_bars

    def may_copy(self, s: State) -> bool:
        """A copy is under way, or `s` is at a bar's edge (where `next` may start one): the
        cheap test before `next`, asked of every stream at every step."""
        return bool(self._queue) or s.body in _BAR_EDGE

    def next(self, s: State, grammar: Moves) -> int | None:
        """The token the stream must take from state `s` (the stream's constraint `grammar`
        tells which tokens it takes), or None. At a bar's edge, a copy the plan asks for begins
        when the grammar takes the source's first character as the first of the bar the plan
        copies into."""
        if self._queue:
            return self._queue[0]
        if s.body not in _BAR_EDGE or (s.body != Body.BARLINE and s.bar_has_notes):
            return None
        here = self.index(s)
        if here is None:
            return None
        # the bar the next character starts: after a plain '|' the next one (the same after a
        # pickup), at a bar's start this one
        if s.body == Body.BARLINE:
            full = s.bar_ticks is None or s.filled == s.bar_ticks
            target = (here + 1 if full else here) if s.partial == "|" else None
        else:
            target = here
        if target is not None:
            src = self.plan.get(target)
            if src is not None and src in self.sources and target not in self.copied:
                ids = [self.stoi[c] for c in self.sources[src]]
                if grammar.advance(s, ids[0]) is not None:
                    self._queue = ids
                    self.copied.append(target)
                    return ids[0]
        return None

    def drop(self) -> None:
        """End the copy under way (the grammar refused its next character)."""
        self._queue = []

    def step(self, prev: State, nxt: State, ch: str) -> None:
        """The stream went from `prev` to `nxt` by character `ch`."""
        if self._queue:
            if self.stoi.get(ch) == self._queue[0]:
                self._queue.pop(0)
            else:
                self._queue = []
        if nxt.bars > prev.bars:  # a bar closed: `prev` was still in it
            end = len(self._buf) if self._barline_at is None else self._barline_at
            # (an opening '|:' at the start of the tune or a line stays in the buffer)
            text = "".join(self._buf[:end]).strip().lstrip("|:").strip()
            full = prev.bar_ticks is None or prev.filled == prev.bar_ticks
            at = self.index(prev)
            if (full and at is not None and text and self._barline_at is not None
                    and not _UNCOPIED.search(text)):
                # the closing barline's first character too: the copy's last note ends there
                # (the model would go on from 'A' with '/G/', and the bar would differ)
                self.sources.setdefault(at, text + self._buf[end])
            self._buf, self._barline_at = [], None
            if nxt.body not in (Body.BAR_START, Body.BARLINE):
                self._buf.append(ch)  # ('|a': the next bar's first character)
            return
        if prev.body in TEXT_STATES or nxt.body != Body.BARLINE or prev.body == Body.BARLINE:
            self._buf.append(ch)
        else:  # a barline begins
            self._barline_at = len(self._buf)
            self._buf.append(ch)
