"""Sampling text from a trained model: token choice, fast incremental decoding, stop rules.

    from seqgen.sampling import SampleConfig, generate
    ckpt = load_checkpoint("checkpoints/tinyshakespeare")
    samples = generate(ckpt.model, ckpt.tokenizer, "ROMEO:",
                       SampleConfig(length=200, temperature=0.8),
                       generator=torch.Generator().manual_seed(1), context=ckpt.context)
    print(samples[0].text)

How a sample is made (docs/sampling.md has the details):

1. The prompt is read as the model read text in training (``encode_prompt``), in ONE forward
   pass. A model trained on documents (ABC tunes, ``--split-docs``; ``context=None``, the
   library's default) reads it as the start of a document: ``<eos>`` (the token that ends the
   previous document in training) followed by the prompt's characters. A model trained on one
   text split by position never saw ``<eos>``: it reads the prompt as the start of a paragraph,
   after the text's own paragraph break (``context="\n\n"``, not part of the sample). The
   checkpoint records which (``Checkpoint.context``): pass it on. The transformer reads the
   last ``context_length`` tokens of a longer prompt, as it reads any text.
2. Then one step per character: the RNN kinds carry their hidden state, the transformer its KV
   cache (which slides past the context length, see seqgen/models/transformer.py). The
   ``--num-samples`` streams run together as one batch.
3. Each step's logits go through the token choice (``choose_tokens``): temperature (0 = greedy),
   top-k, top-p, then a draw with the Gumbel-max trick (argmax of logits + Gumbel noise is an exact
   draw from softmax(logits)); the noise is drawn for many steps at once from the caller's
   torch.Generator, so a seed gives the same text on the same machine.
4. Tokens stay in a preallocated tensor; the Python side looks at them every few steps (a chunk
   that doubles from 1 to 32 steps, so the first character comes at once), decodes them, checks
   ``<eos>`` and the stop strings, and hands new text to the caller for streaming.
5. With ``constrain="abc"`` the choice takes only tokens the ABC grammar allows: the same token
   as masking the logits first, asking the grammar about the drawn token (and, with top-k/top-p,
   the few most likely ones) instead of computing every mask (``ConstrainedChooser``).

Speed: at the sizes this project trains, a step costs a few dozen tiny tensor operations, so the
cost is per-operation overhead, not arithmetic. ``FastDecoder`` runs the model's own one-token
step (``model.stepper()``, in seqgen/models/) with the fewest operations per step: weights
pre-transposed once, the first RNN layer's input projection folded into a (V, gates) table, one
fused SDPA call per layer over the preallocated KV cache, no allocations besides the ops' outputs.
``ModelDecoder`` is the plain path through ``model.forward`` (any model with the interface);
``UncachedDecoder`` re-reads the whole text every step (the reference the tests compare against).
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from seqgen.config import check_fields, plain_values, setting
from seqgen.errors import UsageError
from seqgen.music.grammar.vocabulary import CADENCES, FORM_CORPUS, MAX_FORM_BARS, form_problem
from seqgen.tokenizer import EOS_ID, UNK_ID

if TYPE_CHECKING:
    import torch
    from torch import Tensor

    from seqgen.tokenizer import Tokenizer

DECODERS = ("auto", "fast", "model", "uncached")
CONSTRAINTS = ("none", "abc")  # see seqgen/music/grammar/
MAX_CHUNK = 32  # tokens generated between two looks from Python (first chunk: 1 token)


# ============================================================================== configuration
@dataclass
class SampleConfig:
    """How to sample. Every field but `stop_at_eos` and `decoder` (library and benchmark
    settings) has a `seqgen sample` option of the same name with dashes."""

    # characters to generate per sample, at most (the prompt not counted)
    length: int = setting(500, ge=0)
    # divides the logits; 0 = greedy (always the most likely character)
    temperature: float = setting(1.0, ge=0, finite=True, text="a number >= 0")
    top_k: int = setting(0, ge=0, note="0 = off")  # keep only the k most likely characters
    # keep the smallest set of most likely characters whose mass reaches p
    top_p: float = setting(1.0, gt=0, le=1, note="1 = off")
    num_samples: int = setting(1, ge=1)  # streams sampled together as one batch
    # a sample ends before the first of these strings it generates
    stop: tuple[str, ...] = setting((), check=lambda stops: "a non-empty string" if any(
        not isinstance(s, str) or not s for s in stops) else None, value=False)
    # a sample ends at the end-of-document token (else it is a newline)
    stop_at_eos: bool = setting(True, flag=None)
    # prompt characters outside the vocabulary: "strict" (error) | "skip"
    unknown: str = setting("strict", choices=("strict", "skip"), text="strict or skip")
    # "auto" (fast when the model allows) | "fast" | "model" | "uncached"
    decoder: str = setting("auto", choices=DECODERS, flag=None)
    # "abc": mask characters that would break an ABC tune (music/grammar)
    constrain: str = setting("none", choices=CONSTRAINTS, text="abc or none")
    key: str | None = None  # with constrain "abc": the only key the tune's K: may take
    # with constrain "abc": the tune's parts, 'AABB' (a letter a part, doubled: repeated), or
    # "corpus": each tune's drawn from `corpus_forms` for its meter and rhythm
    form: str | None = setting(None, check=lambda f: None if f == FORM_CORPUS else form_problem(f),
                               link=": ")
    bars: int = setting(8, ge=1, le=MAX_FORM_BARS)  # with `form`: bars in each part
    # with `form`: "tonic" (the tune's last note is the tonic of K:) or "free"
    cadence: str = setting("tonic", choices=CADENCES, text="tonic or free")
    # with form "corpus": a checkpoint's form distribution (its corpus_forms, "corpus" "forms");
    # with a form of letters, where its bar plans come from (`repeat_bars`)
    corpus_forms: dict | None = setting(None, flag=None)
    # with a form and `corpus_forms`: bars return where a training tune of the tune's form and
    # part length repeats its bars (its bar plan, seqgen.music.grammar.copies)
    repeat_bars: bool = setting(True)
    # with constrain "abc": a tune's header (M:, K:, ..., which the grammar keeps valid) drawn
    # from the model's whole distribution, top-k/top-p applied from the body on
    whole_header: bool = setting(True)

    def __post_init__(self) -> None:
        plain_values(self)
        if isinstance(self.stop, str):  # one stop string, not its characters
            self.stop = (self.stop,)
        elif isinstance(self.stop, list):
            self.stop = tuple(self.stop)

    def validate(self) -> None:
        """UsageError naming the first bad field."""
        check_fields(self)
        if self.form is not None and self.constrain != "abc":
            raise UsageError("`form` needs the ABC constraint (`constrain` abc, the default for "
                             "ABC models)", config=SampleConfig)
        if self.form == FORM_CORPUS and self.corpus_forms is None:
            raise UsageError("`form` corpus needs the form distribution of a checkpoint trained "
                             "on ABC (`corpus_forms`)", config=SampleConfig)
        if self.key is not None and self.constrain != "abc":
            raise UsageError("`key` without `meter` needs the ABC constraint (`constrain` abc, "
                             "the default for ABC models), or give `meter` too",
                             config=SampleConfig)


@dataclass
class Sample:
    """One generated sample. `text` and `tokens` exclude the prompt, the stop string and the
    <eos> that ends it (with stop_at_eos=False sampling runs past <eos>: it stays in `tokens`,
    as a newline in `text`)."""

    index: int
    prompt: str
    text: str
    tokens: list[int]
    stop_reason: str  # "length" | "eos" | "stop"
    stop_string: str | None = None  # the stop string found, when stop_reason == "stop"
    seconds: float = 0.0  # from the start of generate() to this sample's end
    first_token_seconds: float = 0.0  # from the start of generate() to its first character

    def to_dict(self) -> dict:
        d = asdict(self)
        d["chars_per_second"] = round(len(self.tokens) / self.seconds, 1) if self.seconds > 0 else None
        return d


# ============================================================================== token choice
def filter_logits(logits: Tensor, top_k: int = 0, top_p: float = 1.0) -> Tensor:
    """Logits with everything outside the top-k and the top-p nucleus set to -inf (a new tensor).

    logits (B, V). top_k=0 and top_p=1 keep everything. The top-p nucleus is the smallest set of
    most likely tokens whose probability mass reaches p (the most likely token is always kept).
    Ties at the k-th logit are all kept.
    """
    if logits.dim() != 2 or top_k < 0 or not 0.0 < top_p <= 1.0:
        raise UsageError(f"filter_logits needs logits (B, V), top_k >= 0 and top_p in (0, 1]; "
                         f"got a {tuple(logits.shape)} tensor, {top_k}, {top_p}")
    return _filter_logits(logits, top_k, top_p)


def _filter_logits(logits: Tensor, top_k: int, top_p: float) -> Tensor:
    # (unchecked: TokenChooser checked its settings once, not at every step)
    import torch

    out = logits.clone()
    if top_k and top_k < out.shape[-1]:
        kth = torch.topk(out, top_k, dim=-1).values[..., -1:]  # (B, 1)
        out.masked_fill_(out < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(out, dim=-1, descending=True)  # (B, V)
        probs = torch.softmax(sorted_logits, dim=-1)
        before = torch.cumsum(probs, dim=-1) - probs  # mass of the tokens ranked above each one
        drop = before >= top_p  # the set above already reached p: not needed
        drop[..., 0] = False
        out.scatter_(-1, order, sorted_logits.masked_fill(drop, float("-inf")))
    return out


class TokenChooser:
    """Chooses the next token of every stream from logits (B, V): greedy, or a draw.

    A draw is argmax(logits / temperature + g) with Gumbel noise g = -log(Exp(1)), an exact sample
    of softmax(logits / temperature) after top-k/top-p filtering. The noise for `chunk` steps is
    drawn at once from `generator`, which makes the draw two tensor operations per step.
    """

    def __init__(self, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                 generator: torch.Generator | None = None):
        SampleConfig(temperature=temperature, top_k=top_k, top_p=top_p).validate()
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p
        self.generator = generator
        self.greedy = temperature == 0 or top_k == 1
        self._noise: Tensor | None = None
        self._next = 0

    def prepare(self, steps: int, batch: int, vocab: int, device: torch.device | str = "cpu") -> None:
        """Draw the noise for the next `steps` calls of `choose`."""
        import torch

        if self.greedy:
            return
        # drawn where the generator lives (a CPU generator with a CUDA model), then moved
        where = self.generator.device if self.generator is not None else device
        noise = torch.empty(steps, batch, vocab, device=where)
        noise.exponential_(generator=self.generator).log_().neg_()  # Gumbel(0, 1)
        self._noise, self._next = noise.to(device), 0

    @property
    def filters(self) -> bool:
        """Top-k or top-p is on (and the choice is a draw)."""
        return not self.greedy and bool(self.top_k or self.top_p < 1.0)

    def noise(self, logits: Tensor) -> Tensor | None:
        """The Gumbel noise (B, V) of the next choice (None when greedy)."""
        if self.greedy:
            return None
        if self._noise is None or self._next >= self._noise.shape[0]:
            self.prepare(1, logits.shape[0], logits.shape[-1], logits.device)
        self._next += 1
        return self._noise[self._next - 1]

    def scores(self, logits: Tensor, g: Tensor | None, filtered: bool = True) -> Tensor:
        """(B, V): what the choice takes the argmax of (logits, or the filtered logits divided
        by the temperature plus the noise `g`); `filtered` False skips top-k/top-p."""
        import torch

        if g is None:
            return logits
        if filtered and self.filters:
            logits = _filter_logits(logits, self.top_k, self.top_p)
        return torch.add(g, logits.float(), alpha=1.0 / self.temperature)

    def choose(self, logits: Tensor, out: Tensor | None = None) -> Tensor:
        """The chosen token ids (B,) for logits (B, V), written into `out` when given."""
        import torch

        scores = self.scores(logits, self.noise(logits))  # (B, V)
        return torch.argmax(scores, dim=-1, out=out) if out is not None else scores.argmax(-1)


# ====================================================================== constrained token choice
# the most likely tokens the constrained choice reads per stream before a full mask: 16 left
# 3,372 of 100 tunes' stream steps to a mask at top-p 0.95 (225 us each), 64 leaves 632; the
# grammar's time in a batch 2.91 -> 2.27 s and 2.60 -> 2.50 s (docs/grammar.md)
WINDOW = 64
EPS = 1e-5  # mass margin: a nucleus edge closer than this to p is decided on the full mask


class ConstrainedChooser:
    """The token choice under a grammar (`cons`: a ConstrainedBatch): the same token, for the
    same noise, as masking the logits with every stream's mask before `chooser` chooses, but
    masks are seldom computed. With `whole_header`, streams in a tune's header (`cons.in_header`)
    choose without top-k/top-p.

    The draw is the argmax of noise plus (filtered) logits over the allowed tokens. Without
    top-k/top-p the argmax over all tokens is that token whenever the grammar allows it (one
    move of the grammar, which advancing needs anyway); after a refused token the tokens are
    read from the best score down, one move each, until one is allowed (`_best_allowed`).
    With top-k/top-p the filter reads the masked logits (the nucleus of the allowed tokens'
    renormalised distribution), so the allowed set is read from the most likely
    tokens down, one move each, until the allowed nucleus is known: its mass bounds the
    allowed mass from below, the unread tokens' mass from above (`_nucleus`), or, with top-p
    alone, until the best-scoring allowed token surely in the nucleus outscores every token
    that may still be in it (`_chosen`: then it is the choice, whatever the rest). Streams it
    cannot settle within WINDOW tokens or EPS of the edge take the full mask. `full_masks`
    masks every stream at every step (the reference the tests compare with)."""

    def __init__(self, chooser: TokenChooser, cons, full_masks: bool = False,
                 whole_header: bool = False):
        self.chooser, self.cons, self.full_masks = chooser, cons, full_masks
        self.whole_header = whole_header

    def choose(self, logits: Tensor, out: Tensor) -> Tensor:
        """The chosen ids (B,) for logits (B, V), written into `out`; streams that copy a bar
        (`cons.forced()`) take the copy's next token, the noise drawn all the same."""
        import torch

        c, cons = self.chooser, self.cons
        g = c.noise(logits)
        forced = cons.forced()
        # streams in a tune's header: drawn from the whole distribution (no top-k/top-p)
        free = cons.in_header() if c.filters and self.whole_header else []
        skip = set(forced).union(free) if forced or free else ()
        loose = free  # the streams left that choose without the filter
        if self.full_masks:
            rows = [b for b in range(logits.shape[0]) if b not in skip]
        else:
            scores = c.scores(logits, g, filtered=False)  # (B, V)
            torch.argmax(scores, dim=-1, out=out)  # the argmax over all tokens
            ids = out.tolist()
            if c.filters:
                rows = self._filtered(logits, scores, ids, out, skip)
            else:  # kept where the grammar allows it
                rows = [b for b, t in enumerate(ids) if b not in skip and not cons.takes(b, t)]
                rows = self._best_allowed(rows, scores, out) if rows else rows
            loose = [b for b in free if not cons.takes(b, ids[b])]
            loose = self._best_allowed(loose, scores, out) if loose else loose
        for left, filtered in ((rows, True), (loose, False)) if rows or loose else ():
            if left:  # the masked choice of the streams left
                import numpy as np

                at = torch.tensor(left, device=logits.device)
                allowed = torch.from_numpy(np.stack([cons.mask(b) for b in left])).to(
                    logits.device)
                masked = logits[at].masked_fill(~allowed, float("-inf"))  # (R, V)
                out[at] = c.scores(masked, None if g is None else g[at],
                                   filtered=filtered).argmax(-1)
        if forced:
            out[torch.tensor(list(forced), device=out.device)] = torch.tensor(
                list(forced.values()), device=out.device)
        return out

    def _best_allowed(self, rows: list[int], scores: Tensor, out: Tensor) -> list[int]:
        """Without top-k/top-p: the choice of the streams `rows` (whose argmax the grammar
        refused) is their best-scoring allowed token, found by reading the tokens from the best
        score down (equal scores: the lowest id first, as argmax takes it), one move each,
        written into `out`; the streams left (none allowed with a finite score within WINDOW
        tokens) take the mask. In Python lists: a few rows a step, where torch's sort and
        indexing cost more than the reading."""
        left = []
        for b in rows:
            row = scores[b].tolist()
            order = _descending(row)
            t = next((t for t in order[:WINDOW]
                      if row[t] > -math.inf and self.cons.allows(b, t)), None)
            if t is None:
                left.append(b)
            else:
                out[b] = t
        return left

    def _filtered(self, logits: Tensor, scores: Tensor, ids: list[int], out: Tensor,
                  skip: set[int]) -> list[int]:
        """Top-k/top-p: the choice of every stream (but those in `skip`) settled without its
        mask, written into `out`; the streams left. `scores` (B, V) before the filter, `ids`
        their argmax t (in `out` too): where the grammar allows t, fewer than k tokens rank
        above it and the mass u of those above it is below p / (1 - p) times its own (the
        allowed mass a above it is at most u, and a < p (a + p_t) is the nucleus's test), so it
        is the choice. Else `_nucleus` reads the most likely tokens."""
        import torch

        c = self.chooser
        if len(ids) == 1:  # one stream: in Python floats, half the time of ten tensor operations
            sure = [_sure(logits[0].tolist(), ids[0], c.top_k, c.top_p)]
        else:
            probs = torch.softmax(logits, dim=-1)  # (B, V)
            above = logits >= logits.gather(1, out[:, None])  # (B, V), t itself included
            p_t = probs.gather(1, out[:, None]).squeeze(1)  # (B,)
            ok = torch.ones_like(p_t, dtype=torch.bool)
            if c.top_p < 1.0:
                u = (probs * above).sum(-1) - p_t
                ok &= (1.0 - c.top_p) * u < c.top_p * p_t - EPS
            if c.top_k:
                ok &= above.sum(-1) <= c.top_k
            sure = ok.tolist()
        rows = [b for b, fine in enumerate(sure)
                if b not in skip and not (fine and self.cons.takes(b, ids[b]))]
        return self._walk(rows, logits, scores, out) if rows else rows

    def _walk(self, rows: list[int], logits: Tensor, scores: Tensor, out: Tensor) -> list[int]:
        """`_nucleus` for the streams `rows`: the choice of those it settles, written into
        `out`; the streams left. In Python lists, row by row (a few rows a step, where torch's
        sort, softmax and indexing cost more at this size)."""
        c = self.chooser
        left = []
        for b in rows:
            row, sc = logits[b].tolist(), scores[b].tolist()  # (V,)
            order = _descending(row)  # the likeliest first
            ex = _exps(row)
            z = sum(ex)
            ids = order[:WINDOW]
            best = [sc[t] for t in ids]
            # top-p alone (`_nucleus` stops early): the highest score from each place on
            beyond = None if c.top_k else _suffix_max([sc[t] for t in order])[: len(ids) + 1]
            kept = _nucleus(ids, [ex[t] / z for t in ids], [row[t] for t in ids],
                            lambda t, b=b: self.cons.allows(b, t), c.top_k, c.top_p,
                            len(ids) == len(row), best, beyond)
            if kept is None:
                left.append(b)
            else:  # the first of the best (argmax's choice among equal scores: the lowest id)
                out[b] = ids[max(kept, key=lambda i: (best[i], -ids[i]))]
        return left


def _descending(xs: list[float]) -> list[int]:
    """The positions of `xs`, largest value first; equal values in order (the lowest id first,
    as argmax takes it: Python's sort is stable, reversed too)."""
    return sorted(range(len(xs)), key=xs.__getitem__, reverse=True)


def _exps(logits: list[float]) -> list[float]:
    """exp(logit - the largest): the unnormalised probabilities."""
    top = max(logits)
    return [math.exp(x - top) for x in logits]


def _suffix_max(xs: list[float]) -> list[float]:
    """[max(xs[i:]) for i in 0..len(xs)], -inf past the end."""
    out = [-math.inf] * (len(xs) + 1)
    for i in range(len(xs) - 1, -1, -1):
        out[i] = xs[i] if xs[i] > out[i + 1] else out[i + 1]
    return out


def _sure(logits: list[float], t: int, top_k: int, top_p: float) -> bool:
    """`_filtered`'s test for one stream: token t (the argmax of its scores) is the choice if the
    grammar allows it (fewer than k tokens above it; the mass u above it below p / (1 - p) times
    its own, EPS kept as a margin)."""
    lt, ex = logits[t], _exps(logits)
    above = [e for x, e in zip(logits, ex, strict=True) if x >= lt]  # t itself included
    ok = True
    if top_p < 1.0:
        z = sum(ex)
        p_t, u = ex[t] / z, (sum(above) - ex[t]) / z
        ok = (1.0 - top_p) * u < top_p * p_t - EPS
    if top_k:
        ok = ok and len(above) <= top_k
    return ok


def _nucleus(ids: list[int], probs: list[float], vals: list[float], allows: Callable[[int], bool],
             top_k: int, top_p: float, full: bool, scores: list[float] | None = None,
             beyond: list[float] | None = None) -> list[int] | None:
    """Positions (in `ids`, the most likely tokens first, with their probabilities and logits)
    of the allowed tokens that top-k then top-p keep once the others are masked; None when that
    is not settled within these tokens (`full`: they are the whole vocabulary) or within EPS.

    With `scores` (each token's, what the choice takes the argmax of) and `beyond` (beyond[i]:
    the highest score of the tokens from place i on, read or not), top-p alone stops early with
    the one position that is the choice: once an allowed token surely in the nucleus scores
    above every token that may still be in it (`_chosen`)."""
    kept: list[int] = []  # positions of allowed tokens, in order
    before: list[float] = []  # the allowed mass before each
    lead: list[int] = []  # lead[j]: the best-scoring of kept[: j + 1] (the lowest id on a tie)
    mass = seen = 0.0  # allowed mass read, all mass read
    kth = None
    early = scores is not None and beyond is not None and not top_k and top_p < 1.0
    for i, t in enumerate(ids):
        if kth is not None and vals[i] < kth:
            break  # top-k: k allowed tokens (and the ties of the k-th) found
        if not top_k and _settled(before, mass, 1.0 - seen, top_p):
            break
        if early and kept:
            pos = _chosen(kept, before, lead, scores, beyond[i], mass, 1.0 - seen, top_p)
            if pos is not None:
                return [pos]
        seen += probs[i]
        if allows(t):
            if early:
                j = lead[-1] if lead else i
                lead.append(i if (scores[i], -t) > (scores[j], -ids[j]) else j)
            kept.append(i)
            before.append(mass)
            mass += probs[i]
            if top_k and len(kept) == top_k:
                kth = vals[i]
    else:
        if not full and (top_k or not _settled(before, mass, 1.0 - seen, top_p)):
            return None  # (top-k: k allowed not found among the window)
    if not kept:
        return None  # nothing allowed: the full mask's fallback (<eos>)
    if top_p >= 1.0:
        return kept
    # the allowed mass: the top-k set's, or between `mass` and mass + the unread mass
    if not _settled(before, mass, 0.0 if top_k or full else 1.0 - seen, top_p):
        return None
    return [i for i, b in zip(kept, before, strict=True) if b < top_p * mass]


def _chosen(kept: list[int], before: list[float], lead: list[int], scores: list[float],
            unread: float, mass: float, rest: float, top_p: float) -> int | None:
    """The choice among the allowed tokens read (`kept`, `before`, `lead` as in `_nucleus`),
    if already certain: the best of those surely in the nucleus (whatever the unread tokens,
    of mass `rest`, hold) scores above every other token that may be in it, the read ones and
    `unread`, the highest score of the tokens not read. None when not certain."""
    # surely in: before < p x (the least allowed mass); maybe in: before < p x (the most)
    sure = bisect_left(before, top_p * mass - EPS)
    if not sure:
        return None
    maybe = bisect_left(before, top_p * (mass + rest) + EPS)
    pos = lead[sure - 1]
    top = scores[pos]
    if top <= unread or any(scores[kept[j]] >= top for j in range(sure, maybe)):
        return None
    return pos


def _settled(before: list[float], mass: float, rest: float, top_p: float) -> bool:
    """Whatever the unread tokens (mass `rest`) hold: no unread allowed token is in the top-p
    nucleus, and each read one is in or out (allowed mass between `mass` and mass + rest)."""
    lo, hi = top_p * mass, top_p * (mass + rest)
    if mass < hi + EPS:
        return False
    # `before` rises (masses add up): the first at or above lo - EPS is the only one that can
    # fall in [lo - EPS, hi + EPS)
    i = bisect_left(before, lo - EPS)
    return i == len(before) or before[i] >= hi + EPS


def choose_tokens(logits: Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                  generator: torch.Generator | None = None) -> Tensor:
    """The next token (B,) for logits (B, V): temperature 0 = greedy, else a draw after top-k/top-p."""
    if logits.dim() != 2:
        raise UsageError(f"choose_tokens needs logits (B, V), not a {tuple(logits.shape)} tensor")
    return TokenChooser(temperature, top_k, top_p, generator).choose(logits)


# ============================================================================== decoders
# Every decoder returns float32 logits (B, V) with <unk> at -inf: <unk> stands for characters the
# vocabulary lacks, so it is never sampled.
def _no_unk(logits: Tensor) -> Tensor:
    logits = logits.float()
    logits[:, UNK_ID] = float("-inf")
    return logits


def _unk_bias(vocab_size: int, device) -> Tensor:
    """(V,) zeros with -inf at <unk>: the logit bias of the fast decoder's stepper."""
    import torch

    bias = torch.zeros(vocab_size, device=device)
    bias[UNK_ID] = float("-inf")
    return bias


class ModelDecoder:
    """Incremental decoding through ``model.forward`` with the model's own state (any kind)."""

    def __init__(self, model, batch_size: int, device):
        self.model = model
        self.state = model.init_state(batch_size, device)

    def prefill(self, ids: Tensor) -> Tensor:
        """Consume ids (B, T) in one forward pass; logits (B, V) of the last position."""
        logits, self.state = self.model(ids, self.state)
        return _no_unk(logits[:, -1])

    def step(self, tok: Tensor) -> Tensor:
        """Consume tok (B,); logits (B, V) for the next token."""
        logits, self.state = self.model(tok.view(-1, 1), self.state)
        return _no_unk(logits[:, -1])


class UncachedDecoder:
    """No cache: every step re-runs the model over the whole text (RNNs, from a zero state) or the
    last context_length tokens (transformer, as nanoGPT's generate() does). Slow; the reference.

    Same results as the cached decoders for RNNs at any length, and for the transformer while the
    text fits in its context (past it, the KV cache's sliding window sees fewer tokens).
    """

    def __init__(self, model, batch_size: int, device):
        self.model = model
        self.window = getattr(model.config, "context_length", None)
        self.transformer = model.config.kind == "transformer"
        self.ids: Tensor | None = None

    def _run(self) -> Tensor:
        ids = self.ids[:, -self.window:] if self.transformer else self.ids
        logits, _ = self.model(ids, None)
        return _no_unk(logits[:, -1])

    def prefill(self, ids: Tensor) -> Tensor:
        self.ids = ids
        return self._run()

    def step(self, tok: Tensor) -> Tensor:
        import torch

        self.ids = torch.cat([self.ids, tok.view(-1, 1)], dim=1)
        return self._run()


class FastDecoder(ModelDecoder):
    """The prompt through ``model.forward``, then each token through the model's own one-token
    step (``model.stepper()``: its weights laid out once, see seqgen/models/); <unk> is masked by
    the stepper's logit bias, inside the output layer's addmm."""

    def __init__(self, model, batch_size: int, device):
        import torch

        super().__init__(model, batch_size, device)
        with torch.no_grad():  # weights laid out for inference: no graph back to the parameters
            self.stepper = model.stepper(logit_bias=_unk_bias(model.config.vocab_size, device))

    def step(self, tok: Tensor) -> Tensor:
        logits, self.state = self.stepper.step(tok, self.state)
        return logits


def make_decoder(model, batch_size: int, device, kind: str = "auto"):
    """A decoder (prefill/step) for `model`: see DECODERS and the module docstring. "auto" is
    FastDecoder for a model with a ``stepper`` (seqgen's LanguageModel), else ModelDecoder."""
    if kind == "uncached":
        return UncachedDecoder(model, batch_size, device)
    if kind in ("auto", "fast"):
        if hasattr(model, "stepper"):
            try:
                return FastDecoder(model, batch_size, device)
            except (AttributeError, TypeError, IndexError):
                if kind == "fast":
                    raise
        elif kind == "fast":
            raise UsageError(f"no fast decoder for {type(model).__name__}")
    return ModelDecoder(model, batch_size, device)


# ============================================================================== generation
BATCH_FOR_THREADS = 8  # streams from which a decode step's matmuls are worth a second thread
MAX_THREADS = 4


def default_threads(batch_size: int) -> int:
    """CPU threads for sampling. One for fewer than 8 streams: each op of a decode step is tiny
    and a second thread only adds waiting. From 8 streams on, the cores of this process's CPU
    set that are idle now (at most 4; measured over 0.1 s where Linux tells): on the quiet
    2-core development machine 16 streams ran 1.2-1.5x faster on 2 threads than on 1, but with
    one other busy process 2.6x (LSTM 2x512) and 4.3x (transformer) slower, since each step
    waits for the thread that shares its core (docs/benchmarks.md). The text does not depend
    on the thread count."""
    if batch_size < BATCH_FOR_THREADS:
        return 1
    from seqgen.devices import idle_threads, usable_cores

    return idle_threads(min(usable_cores(), MAX_THREADS))


def _device(model):
    import itertools

    import torch

    t = next(itertools.chain(model.parameters(), model.buffers()), None)
    return t.device if t is not None else torch.device("cpu")


def text_context(text: str) -> str:
    """What a model trained on `text` as one text (no <eos> in its training ids) reads before a
    prompt: a paragraph break as `text` writes it, "\n\n" (a blank line); "\n" in a text without
    blank lines, " " in one without line breaks, else nothing. Training saves it in the
    checkpoint (checkpoint.json "corpus" "context", see seqgen.checkpoint.prompt_context)."""
    for context in ("\n\n", "\n", " "):
        if context in text:
            return context
    return ""


def encode_prompt(tokenizer: Tokenizer, prompt: str, unknown: str = "strict",
                  context: str | None = None) -> list[int]:
    """The ids a model reads before its first sampled character: the prompt read as the model
    read text in training. VocabularyError listing unknown characters (unknown="strict"), or
    they are dropped ("skip").

    context None (a model trained on documents, each ended by <eos>): ``<eos>`` then the prompt,
    the start of a document. A string (a model trained on one text, which never saw <eos>):
    its characters then the prompt; a checkpoint's `context` (seqgen.checkpoint.prompt_context)
    is the text's paragraph break, "\n\n", so that "ROMEO:" is read as a speaker's name at the
    start of a paragraph and an empty prompt as the text after a blank line. Read from nothing
    instead, an LSTM's state is one it never had in training, and "ROMEO:" goes on with
    capitals (docs/sampling.md has the measurements). An empty prompt and context start from
    the vocabulary's first character."""
    ids = tokenizer.encode(prompt, errors=unknown, source="prompt")
    if context is None:
        return [EOS_ID] + ids
    ids = tokenizer.encode(context, errors="skip") + ids
    if not ids and tokenizer.chars:
        ids = [tokenizer.stoi[tokenizer.chars[0]]]
    return ids or [EOS_ID]  # (a vocabulary without characters: nothing else to read)


class _Stream:
    """Bookkeeping of one sample while it is generated: text, stop rules, what was streamed."""

    def __init__(self, stops: Sequence[str], holdback: int):
        self.stops = stops
        self.holdback = holdback
        self.ids: list[int] = []
        self.text = ""
        self.emitted = 0
        self.reason: str | None = None
        self.stop_string: str | None = None
        self.seconds = 0.0
        self.first = 0.0

    def add(self, ids: list[int], decode: Callable[..., str], stop_at_eos: bool) -> None:
        if stop_at_eos and EOS_ID in ids:
            ids = ids[: ids.index(EOS_ID)]
            reason = "eos"
        else:
            reason = None
        start = len(self.text)
        self.ids += ids
        self.text += decode(ids, eos="\n")  # one character per id (<eos> kept: a line break)
        if self.stops:
            lo = max(0, start - self.holdback)
            hits = [(self.text.find(s, lo), s) for s in self.stops]
            hits = [(i, s) for i, s in hits if i >= 0]
            if hits:
                i, s = min(hits, key=lambda h: (h[0], -len(h[1])))
                self.text, self.ids = self.text[:i], self.ids[:i]
                self.reason, self.stop_string = "stop", s
                return
        if reason:
            self.reason = reason

    def pending(self) -> str:
        """New text safe to stream (held back while it could still begin a stop string)."""
        end = len(self.text) if self.reason else max(self.emitted, len(self.text) - self.holdback)
        piece = self.text[self.emitted : end]
        self.emitted = end
        return piece


class Sampler:
    """Generates samples; iterate it for (sample index, new text) pieces as they are decided.

    After the iteration ends, `samples` holds one Sample per stream, in order. `context`: what
    the model reads before the prompt, as it read text in training (`encode_prompt`): pass the
    checkpoint's `context` (None, the default, reads <eos>: a document's start).
    """

    # True: the grammar masks every stream at every step (ConstrainedChooser's reference path,
    # for tests and bench/); the tokens are the same
    full_masks = False

    def __init__(self, model, tokenizer: Tokenizer, prompt: str = "",
                 config: SampleConfig | None = None, generator: torch.Generator | None = None,
                 context: str | None = None):
        self.config = config = config or SampleConfig()
        config.validate()
        mcfg = getattr(model, "config", None)
        if mcfg is not None and mcfg.vocab_size != tokenizer.vocab_size:
            raise UsageError(f"the model has a vocabulary of {mcfg.vocab_size} tokens and the "
                             f"tokenizer {tokenizer.vocab_size}: use the tokenizer of the model's "
                             "own checkpoint")
        self.model, self.tokenizer, self.prompt = model, tokenizer, prompt
        self.generator = generator
        # what the model reads before its first character (encode_prompt), cut to the last
        # context_length tokens for a transformer, which never reads more at once
        self.prompt_ids = encode_prompt(tokenizer, prompt, config.unknown, context)
        window = getattr(mcfg, "context_length", 0) if getattr(mcfg, "kind", "") == "transformer" \
            else 0
        if window and len(self.prompt_ids) > window:
            self.prompt_ids = self.prompt_ids[-window:]
        self.samples: list[Sample] = []
        self.constraint = None  # per-stream masks of allowed tokens (ConstrainedBatch), or None
        if config.constrain == "abc":
            from seqgen.music.grammar import ConstrainedBatch, ConstraintError, abc_constraint

            try:
                grammar = abc_constraint(tokenizer)
            except ConstraintError as e:
                raise ConstraintError(f"{e}; sample with --constrain none") from None
            letters = config.form if config.form != FORM_CORPUS else None
            if config.key is not None or letters is not None:  # (a key's own error)
                grammar = abc_constraint(tokenizer, key=config.key, form=letters,
                                         bars=config.bars, cadence=config.cadence)
            from seqgen.music.form import FormDraw, letter_plan

            per_tune = None
            drawn = config.form == FORM_CORPUS
            if drawn or (letters is not None and config.repeat_bars
                         and (config.corpus_forms or letter_plan(letters, config.bars))):
                # each tune's form (or only its bar plan) drawn when its header ends
                import random

                import torch

                seed = int(torch.randint(0, 2**62, (1,), generator=generator,
                                         device=generator.device if generator else "cpu"))
                per_tune = FormDraw(tokenizer, config.corpus_forms or {}, random.Random(seed),
                                    key=config.key, cadence=config.cadence,
                                    repeat_bars=config.repeat_bars,
                                    form=None if drawn else (letters, config.bars))
            known = tokenizer.encode(prompt, errors=config.unknown)  # the prompt the text goes on
            self.constraint = ConstrainedBatch(grammar, config.num_samples, tokenizer.decode(known),
                                               per_tune)

    def __iter__(self) -> Iterator[tuple[int, str]]:
        import torch

        cfg, model = self.config, self.model
        t0 = time.perf_counter()
        B, N = cfg.num_samples, cfg.length
        device = _device(model)
        holdback = max((len(s) - 1 for s in cfg.stop), default=0)
        streams = [_Stream(cfg.stop, holdback) for _ in range(B)]
        decode = self.tokenizer.decode
        chooser = TokenChooser(cfg.temperature, cfg.top_k, cfg.top_p, self.generator)
        cons = self.constraint
        cons_chooser = ConstrainedChooser(chooser, cons, self.full_masks, cfg.whole_header)
        if model.training:
            raise UsageError("the model is in training mode; call model.eval() before sampling")
        with torch.inference_mode():
            decoder = make_decoder(model, B, device, cfg.decoder)
            prompt = torch.tensor(self.prompt_ids, dtype=torch.long, device=device)
            logits = decoder.prefill(prompt.expand(B, -1))  # (B, V)
            out = torch.empty(max(N, 1), B, dtype=torch.long, device=device)  # (N, B)
            # each <eos> seen at once where that costs no wait on a GPU (the grammar reads every
            # token anyway): the last stream's <eos> ends the decoding there, not at its chunk's end
            see_ends = cfg.stop_at_eos and (cons is not None or device.type == "cpu")
            t, chunk = 0, 1
            while t < N:
                n = min(chunk, N - t)
                chooser.prepare(n, B, logits.shape[-1], device)
                going = {b for b, s in enumerate(streams) if not s.reason}
                for j in range(t, t + n):
                    if cons is not None:  # the grammar's choice (allowed tokens only)
                        tok = cons_chooser.choose(logits, out[j])  # (B,)
                    else:
                        tok = chooser.choose(logits, out=out[j])  # (B,)
                    if see_ends or cons is not None:
                        ids = tok.tolist()
                        if cons is not None:
                            cons.advance(ids)
                        if see_ends:
                            going = {b for b in going if ids[b] != EOS_ID}
                            if not going:
                                n = j + 1 - t  # (every stream has ended)
                                break
                    if j + 1 < N:
                        logits = decoder.step(tok)
                new = out[t : t + n].t().tolist()  # (B, n): the one look per chunk
                t += n
                chunk = min(2 * chunk, MAX_CHUNK)
                now = time.perf_counter() - t0
                for b, s in enumerate(streams):
                    if s.reason:
                        continue
                    if not s.first:
                        s.first = now
                    s.add(new[b], decode, cfg.stop_at_eos)
                    if t >= N and not s.reason:
                        s.reason = "length"
                    if s.reason:
                        s.seconds = now
                    piece = s.pending()
                    if piece:
                        yield b, piece
                if all(s.reason for s in streams):
                    break
        now = time.perf_counter() - t0
        for s in streams:
            if not s.reason:  # length 0
                s.reason, s.seconds = "length", now
        self.samples = [
            Sample(index=b, prompt=self.prompt, text=s.text, tokens=s.ids, stop_reason=s.reason,
                   stop_string=s.stop_string, seconds=s.seconds, first_token_seconds=s.first)
            for b, s in enumerate(streams)
        ]


def generate(model, tokenizer: Tokenizer, prompt: str = "", config: SampleConfig | None = None,
             generator: torch.Generator | None = None,
             on_text: Callable[[int, str], None] | None = None,
             context: str | None = None) -> list[Sample]:
    """Sample `config.num_samples` continuations of `prompt` together; see the module docstring.

    on_text(index, text) is called with each stream's new text as soon as it is decided (for
    streaming). `context`: what the model reads before the prompt, a checkpoint's `context`
    (`encode_prompt`; None: <eos>, the start of a document). Raises VocabularyError for prompt
    characters the model does not know (unless config.unknown == "skip") and UsageError for
    bad settings.
    """
    sampler = Sampler(model, tokenizer, prompt, config, generator, context)
    for index, piece in sampler:
        if on_text is not None:
            on_text(index, piece)
    return sampler.samples

