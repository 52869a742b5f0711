"""The engine of the ABC constraint: masks of allowed token ids, the moves between states, their
caches, and the streams of a batch. What may follow what is the rules' (rules/).

Speed: states are small immutable tuples; both the mask of a state and the move (state, id) ->
state are cached (but for a stream's own moves in the body, which nearly never recur: only the
last one per stream is kept, for the advance that follows `takes`). Masks are cached per
`rules.signature` (states whose masks are equal share one), and a new mask computes one note
letter's move for all of them (in the body they are allowed alike but after a tie). The
counters of the bar, the line and the part make nearly every state new, so the sampler seldom
asks for a mask: it asks whether the drawn token is allowed
(`ConstrainedBatch.takes`, the move itself) or a few likely ones (`allows`, per class of states;
seqgen.sampling.ConstrainedChooser). No torch here: masks are numpy bool arrays over the
tokenizer's ids (``<eos>`` = id 0).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from seqgen.music.grammar import rules
from seqgen.music.grammar.rules.form import final_bar
from seqgen.music.grammar.state import BODY, HEADER, TEXT_STATES, Header, State
from seqgen.music.grammar.vocabulary import (
    BODY_CHARS,
    EOS_ID,
    NOTE_LETTERS,
    TEXT_PUNCTUATION,
    UNK_ID,
    ConstraintError,
    Lexicon,
)

if TYPE_CHECKING:
    import numpy as np

    from seqgen.music.grammar.copies import BarCopier
    from seqgen.tokenizer import Tokenizer


# entries each cache of an AbcConstraint keeps at most: nearly every state of a tune is new, so
# the caches would grow with every tune sampled; a full cache is emptied and fills again (they
# only save work: moves are pure). 500 tunes in one batch: peak memory 588 MB against 720 MB
# unbounded, the same time and tunes (`seqgen sample default --tunes 500 --seed 9`)
CACHE_LIMIT = 20_000


_UNSEEN = State(meter="unseen")  # (a cache's default: no state the grammar makes)


def _room(cache: dict) -> dict:
    """`cache`, emptied when it holds CACHE_LIMIT entries."""
    if len(cache) >= CACHE_LIMIT:
        cache.clear()
    return cache


class AbcConstraint:
    """The ABC grammar over one tokenizer's vocabulary (see seqgen.music.grammar).

    ``start()`` is the state at the start of a document; ``mask(state)`` the allowed ids (numpy
    bool, size vocab_size, ``<eos>`` included); ``advance(state, id)`` the next state, None when
    the id is not allowed. Masks and moves are cached per state.
    """

    def __init__(self, itos: Sequence[str], min_bars: int = 8, max_bars: int = 64,
                 key: str | None = None, form: str | None = None, bars: int = 8,
                 cadence: str = "tonic", cadence_parts: tuple[int, ...] = ()):
        self.lex = Lexicon(itos, min_bars, max_bars, key, form, bars, cadence, cadence_parts)
        self.itos, self.stoi = self.lex.itos, self.lex.stoi
        self.min_bars, self.max_bars = self.lex.min_bars, self.lex.max_bars
        self._chars = [(i, c) for i, c in enumerate(self.itos) if i > UNK_ID]
        letters = [i for i, c in self._chars if c in NOTE_LETTERS]
        # body masks: one note letter stands for all (but after a tie); characters no body
        # state takes are refused at once
        self._letter, self._letters = letters[0], letters[1:]
        self._letter_set = frozenset(letters)
        self._ids = [i for i, _ in self._chars]
        self._body_ids = [i for i, c in self._chars if c in BODY_CHARS]  # the rest: never
        self._body_other = [i for i in self._body_ids if i not in set(letters)]
        text = [i for i, c in self._chars if c != " " and (c.isalnum() or c in TEXT_PUNCTUATION)]
        self._text_rep = {i: text[0] for i in text} if text else {}
        # the order in which _live tries characters (any order gives the same answer): each
        # one the first that most of the states left allow, read greedily from the states the
        # look-ahead met in 60 tunes of the shipped model (17,648 states: 35,381 rule calls
        # against 89,018 in the order "abcdefgABCDEFG|\n z2"; _live's time about halved)
        likely = "D\\/\nG|: B)4iAaerop2nlg]6bjdtuy8x"
        self._probe = sorted((c for _, c in self._chars),
                             key=lambda c: likely.index(c) if c in likely else len(likely))
        # and per position (State.body, or State.header in the header; no value is both), that
        # order learnt as it goes: a character that answers moves one place up, so each
        # position's list comes to lead with what its states take (a note: '-' or a length)
        self._probes: dict[str, list[str]] = {}
        self._on_state = range(min(2, len(self._probe)))  # (the first two tried on the state)
        self._masks: dict[State, np.ndarray] = {}
        self._moves: dict[tuple[State, int], State | None] = {}
        self._alive: dict[State, bool] = {}
        self._sigs: dict[State, State] = {}

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    # ------------------------------------------------------------------------- public API
    def start(self) -> State:
        return State()

    def step(self, s: State, ch: str) -> State | None:
        """The state after character `ch`, or None when it is not allowed (no look-ahead)."""
        return rules.step(self.lex, s, ch)

    def advance(self, s: State, token: int, keep: bool = True) -> State | None:
        """The state after `token` (an id), or None when the grammar does not allow it; cached
        unless `keep` is False and `s` is in the body (a stream's own state: nearly always
        new, where a class's moves recur)."""
        key = (s, token)
        nxt = self._moves.get(key, _UNSEEN)  # (a miss, the usual case, raises no KeyError)
        if nxt is not _UNSEEN:
            return nxt
        if token == EOS_ID:
            nxt = rules.eos(self.lex, s)
        elif token <= UNK_ID or token >= len(self.itos):
            nxt = None
        elif s.phase == BODY and s.body not in TEXT_STATES and self.itos[token] not in BODY_CHARS:
            nxt = None  # a character no body state takes
        elif (s.field == "T" and s.header == Header.VALUE
              and self._text_rep.get(token, token) != token):
            nxt = self.advance(s, self._text_rep[token])  # every character of free text alike
        else:
            nxt = rules.step(self.lex, s, self.itos[token])
            if nxt is not None and not self._live(nxt):
                nxt = None  # a move into a dead end (one step of look-ahead)
        if keep or s.phase != BODY:
            _room(self._moves)[key] = nxt
        return nxt

    def allows(self, s: State, token: int) -> bool:
        """``mask(s)[token]``, without computing the mask when it is not cached: the move of
        `s`'s class (`_sig`) by `token` (outside free text every note letter but after a tie
        or in a --form tune's last bar by the first one, as `mask` does), cached."""
        s = self._sig(s)
        m = self._masks.get(s)
        if m is not None:
            return bool(m[token])
        if (token in self._letter_set and s.phase == BODY and not s.tie
                and s.body not in TEXT_STATES and not final_bar(self.lex, s)):
            token = self._letter
        return self.advance(s, token) is not None

    def mask(self, s: State) -> np.ndarray:
        """The ids allowed after state `s` (bool array of vocab_size; never all False)."""
        s = self._sig(s)
        m = self._masks.get(s)
        if m is None:
            import numpy as np

            m = np.zeros(len(self.itos), dtype=bool)
            body = s.phase == BODY and s.body not in TEXT_STATES
            if body and not s.tie and not final_bar(self.lex, s):  # every note letter alike
                for i in self._body_other:
                    m[i] = self.advance(s, i) is not None
                m[self._letters] = m[self._letter] = self.advance(s, self._letter) is not None
            else:
                for i in self._body_ids if body else self._ids:
                    m[i] = self.advance(s, i) is not None
            m[EOS_ID] = self.advance(s, EOS_ID) is not None
            if not m.any():  # never happens for states the grammar reaches (tested)
                m[EOS_ID] = True
            m.flags.writeable = False
            _room(self._masks)[s] = m
        return m

    def allowed_chars(self, s: State) -> str:
        """The allowed characters as a string ('\\x00' standing for <eos>), for tests and errors."""
        m = self.mask(s)
        return ("\x00" if m[EOS_ID] else "") + "".join(c for i, c in self._chars if m[i])

    def feed_text(self, s: State, text: str, lenient: bool = False) -> State:
        """The state after the characters of `text`; ConstraintError naming the first character
        the grammar refuses. `lenient` reads a header in any order and with any values (prompts)."""
        if lenient and s.phase == HEADER:
            s = s._replace(lenient=1)
        line, col = 1, 0
        for ch in text:
            col += 1
            nxt = rules.step(self.lex, s, ch)
            if nxt is None:
                raise ConstraintError(
                    f"the prompt breaks the ABC grammar at line {line}, column {col} ({ch!r}"
                    f" where {self._describe(s)}); fix it or sample with --constrain none")
            s = nxt
            if ch == "\n":
                line, col = line + 1, 0
        if s.lenient:
            # generation is strict; a prompt that ends inside a header line the strict grammar
            # cannot finish ('M:7/') finishes that line leniently
            strict = s._replace(lenient=0)
            s = strict if self._viable(strict) else s._replace(lenient=2)
        return s

    # ----------------------------------------------------------------------------- search
    def _sig(self, s: State) -> State:
        """The representative of `s`'s class of states (rules.signature), cached."""
        r = self._sigs.get(s)
        if r is None:
            r = _room(self._sigs)[s] = rules.signature(self.lex, s)
        return r

    def _live(self, s: State) -> bool:
        """Some character or <eos> may follow state `s`. The two characters its position's
        states most often take (`_probes`) are tried on `s` itself first: they answer about 97%
        of the states, nearly all of them new, where their class (`_sig`) would cost about a
        rule step more; the rest are answered per class, cached (a class's states allow the
        same characters)."""
        lx, step = self.lex, rules.step
        key = s.body if s.phase == BODY else s.header
        order = self._probes.get(key)
        if order is None:
            order = self._probes[key] = list(self._probe)
        for i in self._on_state:
            if step(lx, s, order[i]) is not None:
                if i:  # (a new list, stored at once: a thread reading the old one sees it whole)
                    self._probes[key] = [order[1], order[0], *order[2:]]
                return True
        s = self._sig(s)
        live = self._alive.get(s)
        if live is None:
            live = rules.eos(lx, s) is not None
            if not live:
                for i, c in enumerate(order):
                    if step(lx, s, c) is not None:
                        if i:
                            self._probes[key] = [*order[: i - 1], c, order[i - 1], *order[i + 1:]]
                        live = True
                        break
            _room(self._alive)[s] = live
        return live

    def _viable(self, s: State) -> bool:
        return any(self.advance(s, i) is not None for i in range(len(self.itos)))

    def _describe(self, s: State) -> str:
        allowed = self.allowed_chars(s._replace(lenient=0)).replace("\x00", "<eos>")
        return f"the grammar allows {allowed[:40]!r}" if allowed else "nothing may follow"


# ------------------------------------------------------------------------------ streams
class ConstrainedBatch:
    """The constraint for the streams of one batch: the masks of all streams as one array, and
    moving every stream on by its chosen token. A stream whose constraint is off (its state None,
    after a token the grammar refused) allows everything.

    `per_tune(state)`, when given, is asked once per stream, when the stream's header ends (its
    body starts: `state` holds M: and R:), for the constraint that stream then follows: one with
    a form drawn for that tune (seqgen.music.form.FormDraw), and the BarCopier of its bar plan
    or None; or None to go on as it is. The stream's text so far is read again by the new
    constraint. `forced()` gives the tokens the copiers write next."""

    def __init__(self, constraint: AbcConstraint, batch: int, prompt: str = "",
                 per_tune: Callable[[State], tuple[AbcConstraint, BarCopier | None] | None]
                 | None = None):
        import numpy as np

        self.prompt = prompt
        s0 = constraint.feed_text(constraint.start(), prompt, lenient=True)
        self.states: list[State | None] = [s0] * batch
        self.constraints: list[AbcConstraint] = [constraint] * batch
        self._all = np.ones(constraint.vocab_size, dtype=bool)
        self.per_tune = per_tune
        # the tokens each stream took since the prompt, until its header ends (None: ended)
        self._heads: list[list[int] | None] = [[] if per_tune else None for _ in range(batch)]
        self.copiers: list[BarCopier | None] = [None] * batch
        self._copying: list[int] = []  # the streams given a copier
        self._in_header = set(range(batch)) if s0.phase == HEADER else set()
        # each stream's last `takes`: its constraint, the state, the token, the move (`advance`
        # reads it)
        self._taken: list[tuple] = [(None, None, -1, None)] * batch
        if per_tune is not None and s0.phase == BODY:  # the prompt holds the whole header
            for b in range(batch):
                self._tune_starts(b)

    def masks(self) -> np.ndarray:
        """(B, V) bool: the ids each stream may take next."""
        import numpy as np

        return np.stack([self.mask(b) for b in range(len(self.states))])

    def mask(self, b: int) -> np.ndarray:
        """(V,) bool: the ids stream `b` may take next."""
        s = self.states[b]
        return self.constraints[b].mask(s) if s is not None else self._all

    def allows(self, b: int, token: int) -> bool:
        """Stream `b` may take `token` next (one move of the grammar, cached for `advance`)."""
        s = self.states[b]
        return s is None or self.constraints[b].allows(s, token)

    def takes(self, b: int, token: int) -> bool:
        """`allows`, read from the move itself (which `advance` then finds cached): for the
        token the stream is about to take (tests check that a state's moves agree with its
        mask)."""
        s = self.states[b]
        if s is None:
            return True
        c = self.constraints[b]
        nxt = c.advance(s, token, keep=False)
        self._taken[b] = (c, s, token, nxt)  # (for `advance`)
        return nxt is not None

    def in_header(self) -> list[int]:
        """The streams in a tune's header (constraint on)."""
        return sorted(self._in_header)

    def forced(self) -> dict[int, int]:
        """The token each copying stream (BarCopier) must take next, by stream, where the
        grammar takes it; a copy it refuses ends (the stream chooses freely)."""
        out: dict[int, int] = {}
        for b in self._copying:
            copier, s = self.copiers[b], self.states[b]
            if copier is None or s is None or not copier.may_copy(s):
                continue
            c = self.constraints[b]
            t = copier.next(s, c)
            if t is None:
                continue
            if c.advance(s, t) is None:
                copier.drop()
            else:
                out[b] = t
        return out

    def advance(self, tokens: Sequence[int]) -> None:
        """Move every stream on by its token (a stream given a refused token switches off)."""
        for b, t in enumerate(tokens):
            s = self.states[b]
            if s is not None:
                c, taken = self.constraints[b], self._taken[b]
                if taken[0] is c and taken[1] is s and taken[2] == t:
                    prev, s = s, taken[3]
                else:
                    prev, s = s, c.advance(s, int(t))
                self.states[b] = s
                if prev.phase == HEADER and (s is None or s.phase != HEADER):
                    self._in_header.discard(b)
                copier = self.copiers[b]
                if copier is not None:
                    if s is None:
                        self.copiers[b] = None
                    else:
                        copier.step(prev, s, c.itos[int(t)])
                head = self._heads[b]
                if head is not None:
                    head.append(int(t))
                    if s is None:
                        self._heads[b] = None
                    elif s.phase == BODY:
                        self._tune_starts(b)

    def _tune_starts(self, b: int) -> None:
        """Stream `b`'s header has ended: switch it to the constraint `per_tune` gives (the
        prompt and the tokens so far read again by it), if any and if it reads them."""
        assert self.per_tune is not None
        head, self._heads[b] = self._heads[b] or [], None
        s = self.states[b]
        drawn = self.per_tune(s) if s is not None else None
        if drawn is None:
            return
        c, copier = drawn
        text = "".join(c.itos[t] for t in head if t > UNK_ID)
        try:
            s = c.feed_text(c.feed_text(c.start(), self.prompt, lenient=True), text)
        except ConstraintError:
            return  # (a header the other constraint does not take: go on as before)
        self.constraints[b], self.states[b], self.copiers[b] = c, s, copier
        if copier is not None:
            self._copying.append(b)


_CACHE: dict[tuple, AbcConstraint] = {}


def abc_constraint(tokenizer: Tokenizer, min_bars: int = 8, max_bars: int = 64,
                   key: str | None = None, form: str | None = None, bars: int = 8,
                   cadence: str = "tonic", cadence_parts: tuple[int, ...] = ()) -> AbcConstraint:
    """The AbcConstraint of a tokenizer's vocabulary (with K: fixed to `key` when given; with a
    `form` such as 'AABB', parts of exactly `bars` bars, ending on the tonic with `cadence`
    'tonic', and so do the parts numbered in `cadence_parts`), shared (with its caches) by
    every sampler in this process that uses the same vocabulary and settings."""
    ident = (tuple(tokenizer.itos), min_bars, max_bars, key, form, bars, cadence, cadence_parts)
    c = _CACHE.get(ident)
    if c is None:
        if len(_CACHE) > 32:  # (forms drawn per tune: a few dozen at most)
            _CACHE.clear()
        c = _CACHE[ident] = AbcConstraint(tokenizer.itos, min_bars, max_bars, key, form, bars,
                                          cadence, cadence_parts)
    return c
