"""seqgen.sampling.ConstrainedChooser: the token choice under the ABC grammar takes the same
token, at the same seed, as masking every stream's logits before the choice, while it seldom
computes a mask."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import seqgen.sampling as sampling
from seqgen.models import ModelConfig, build_model
from seqgen.music.grammar import ConstrainedBatch
from seqgen.sampling import ConstrainedChooser, SampleConfig, Sampler, TokenChooser, generate
from seqgen.tokenizer import Tokenizer

# every construct of the grammar in few characters (as tests/test_music_grammar.py)
VOCAB_TEXT = ("X:1\nT:Reel o' the Bog\nM:6/8 2/4 C|\nL:1/8 1/16\nK:Dmix Am G Minor\n"
              "|:(3ABc d2>e f/g//a^b_c=d3/2|(AB)[1 {ga}Te-~f.uv z2:|[2 A,B'||C|]::\n"
              '"G" "Bbmaj7/F#" "^fine" [CEG]2 !trill! \\ jig reel')
TOK = Tokenizer.build([VOCAB_TEXT])
SETTINGS = [dict(), dict(top_p=0.9), dict(top_p=0.5), dict(top_k=5), dict(top_k=3, top_p=0.8),
            dict(temperature=0.0), dict(temperature=1.5, top_p=0.95), dict(top_k=1)]


class FakeGrammar:
    """The part of ConstrainedBatch the chooser reads, over a fixed (B, V) bool matrix of
    allowed ids; a row with nothing allowed gets <eos> in its mask, as AbcConstraint.mask."""

    def __init__(self, allowed: torch.Tensor):
        self.allowed = allowed
        self.masks = 0

    def mask(self, b: int):
        self.masks += 1
        m = self.allowed[b].clone()
        if not m.any():
            m[0] = True
        return m.numpy()

    def allows(self, b: int, t: int) -> bool:
        return bool(self.allowed[b, t])

    takes = allows

    def forced(self) -> dict[int, int]:
        return {}  # (no bar plans)

    def in_header(self) -> list[int]:
        return []  # (no tune header)


def masked_choice(chooser: TokenChooser, logits: torch.Tensor, grammar: FakeGrammar):
    rows = range(logits.shape[0])
    allowed = torch.stack([torch.from_numpy(grammar.mask(b)) for b in rows])
    return chooser.choose(logits.masked_fill(~allowed, float("-inf")))


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), batch=st.integers(1, 6), vocab=st.integers(2, 40),
       density=st.floats(0.0, 1.0), spread=st.floats(0.1, 8.0),
       setting=st.sampled_from(SETTINGS))
def test_the_choice_equals_masking_first_for_any_logits_and_allowed_set(seed, batch, vocab,
                                                                     density, spread, setting):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, vocab, generator=gen) * spread
    allowed = torch.rand(batch, vocab, generator=gen) < density
    cfg = dict(temperature=1.0, top_k=0, top_p=1.0) | setting
    grammar = FakeGrammar(allowed)
    want = masked_choice(TokenChooser(**cfg, generator=torch.Generator().manual_seed(seed)),
                         logits, grammar)
    lazy = ConstrainedChooser(TokenChooser(**cfg, generator=torch.Generator().manual_seed(seed)),
                              grammar)
    got = lazy.choose(logits, torch.empty(batch, dtype=torch.long))
    assert got.tolist() == want.tolist()


def tiny_model(seed: int, scale: float):
    torch.manual_seed(seed)
    cfg = ModelConfig(kind="lstm", vocab_size=TOK.vocab_size, hidden_size=32, num_layers=1,
                      embed_dim=8)
    model = build_model(cfg).eval()
    with torch.no_grad():  # larger weights: peakier distributions, as a trained model's
        model.head.weight.mul_(scale)
    return model


@pytest.mark.parametrize("batch", [4, 1])  # (one stream takes the quick test in Python floats)
@pytest.mark.parametrize("setting", SETTINGS)
def test_generate_gives_the_same_tunes_as_masking_every_step(monkeypatch, setting, batch):
    counts = {True: 0, False: 0}  # masks computed, with and without full_masks
    mask = ConstrainedBatch.mask

    def counted(self, b):
        counts[Sampler.full_masks] += 1
        return mask(self, b)

    monkeypatch.setattr(ConstrainedBatch, "mask", counted)
    for scale in (1.0, 30.0):  # a flat and a peaked model
        model = tiny_model(1, scale)
        cfg = SampleConfig(length=150, num_samples=batch, constrain="abc", **setting)
        texts = {}
        for full in (True, False):
            monkeypatch.setattr(Sampler, "full_masks", full)
            samples = generate(model, TOK, "X:", cfg, torch.Generator().manual_seed(7))
            texts[full] = [s.tokens for s in samples]
        assert texts[False] == texts[True]
    assert counts[False] < counts[True]  # (this untrained model often wants a refused token)


def test_the_look_ahead_keeps_every_character_in_its_learnt_orders():
    """The dead-end look-ahead reorders, per position, the characters it tries as it learns
    which answer; each order must stay a permutation of the vocabulary's characters (a lost
    one would make a live state read as a dead end: a refused token the mask allows)."""
    from seqgen.music.grammar import engine

    engine._CACHE.clear()  # (a constraint of its own, its orders learnt here)
    for scale in (1.0, 30.0):
        generate(tiny_model(2, scale), TOK, "X:",
                 SampleConfig(length=300, num_samples=3, constrain="abc", top_p=1.0),
                 torch.Generator().manual_seed(5))
    [grammar] = engine._CACHE.values()
    moved = [order for order in grammar._probes.values() if order != grammar._probe]
    assert moved  # (the orders were learnt: the test reads what it means to)
    for order in grammar._probes.values():
        assert sorted(order) == sorted(grammar._probe)


def test_nucleus_reads_only_what_decides_it():
    reads = []

    def allows(t):
        reads.append(t)
        return t != 1

    # the first token holds 0.95 of the mass: with p = 0.9 nothing after it can be in
    kept = sampling._nucleus([0, 1, 2, 3], [0.95, 0.03, 0.01, 0.01], [4.0, 0.5, 0.0, 0.0],
                             allows, 0, 0.9, False)
    assert kept == [0] and reads == [0]
    reads.clear()  # top-k 2 with token 1 refused: tokens 0 and 2
    assert sampling._nucleus([0, 1, 2, 3], [0.4, 0.3, 0.2, 0.1], [3.0, 2.0, 1.0, 0.0], allows,
                             2, 1.0, False) == [0, 2]
    assert reads == [0, 1, 2]
    # nothing settles within a window that is not the whole vocabulary: the mask decides
    assert sampling._nucleus([1], [0.9], [1.0], allows, 0, 0.9, False) is None


def test_nucleus_stops_once_the_choice_is_certain():
    """Top-p alone: a flat tail would take every token to settle the nucleus, but once the
    best-scoring allowed token surely in it outscores every token that may still be in it, the
    choice is made (the argmax over the allowed nucleus is that token whatever the rest holds)."""
    probs = [0.5, 0.3] + [0.2 / 8] * 8
    ids, vals = list(range(10)), [float(-i) for i in range(10)]
    reads = []

    def allows(t):
        reads.append(t)
        return True

    scores = [5.0, 1.0] + [0.0] * 8  # token 0 outscores all
    beyond = [max(scores[i:], default=float("-inf")) for i in range(11)]
    assert sampling._nucleus(ids, probs, vals, allows, 0, 0.87, True, scores, beyond) == [0]
    assert reads == [0]  # (0.5 of the mass read: token 0 is in the nucleus whatever follows)
    reads.clear()  # without scores: read until the unread mass cannot matter
    assert sampling._nucleus(ids, probs, vals, allows, 0, 0.87, True) == [0, 1, 2, 3, 4]
    assert len(reads) == 10
    reads.clear()  # an unread token that may be in the nucleus and scores higher: read on
    scores = [5.0, 1.0, 6.0] + [0.0] * 7
    beyond = [max(scores[i:], default=float("-inf")) for i in range(11)]
    # (token 2 is surely in once 0.925 of the mass is read: 0.8 before it < 0.87 x 0.925)
    assert sampling._nucleus(ids, probs, vals, allows, 0, 0.87, True, scores, beyond) == [2]
    assert reads == [0, 1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("setting", [dict(), dict(top_p=0.9)])
def test_a_form_tune_gives_the_same_tunes_as_masking_every_step(monkeypatch, setting):
    """With --form and a tonic cadence the last bar's note letters are not alike: the draw-first
    path must read them as the full mask does (a tune ends on the tonic either way)."""
    model = tiny_model(3, 30.0)
    cfg = SampleConfig(length=400, num_samples=4, constrain="abc", form="AB", bars=1, **setting)
    texts = {}
    for full in (True, False):
        monkeypatch.setattr(Sampler, "full_masks", full)
        samples = generate(model, TOK, "X:1\nM:2/4\nL:1/8\nK:D\n", cfg,
                           torch.Generator().manual_seed(5))
        texts[full] = [s.text for s in samples]
    assert texts[False] == texts[True]
    assert any(t.rstrip().endswith(("|]", "||")) for t in texts[True])  # some tunes got to the end


def test_bounded_caches_give_the_same_tunes(monkeypatch):
    """The grammar's caches are emptied when full (engine.CACHE_LIMIT): they only save work, so
    a limit small enough to empty them every few characters gives the same tunes; forms drawn
    per tune (each stream switching constraint) included."""
    from seqgen.music.grammar import engine

    forms = {"version": 1, "tunes": 2, "groups": [
        {"meter": "2/4", "rhythm": "", "tunes": 2, "forms": {"AB": {"6,6": 1}, "AABB": {"5,5": 1}}}]}
    model = tiny_model(3, 30.0)
    texts = {}
    full = engine.CACHE_LIMIT
    for limit in (full, 7):
        monkeypatch.setattr(engine, "CACHE_LIMIT", limit)
        engine._CACHE.clear()  # (fresh constraints: none keeps the other run's caches)
        for form, kw in ((None, {}), ("corpus", {"corpus_forms": forms})):
            cfg = SampleConfig(length=400, num_samples=4, constrain="abc", top_p=0.9, form=form,
                               **kw)
            samples = generate(model, TOK, "X:1\nM:2/4\nL:1/8\nK:D\n", cfg,
                               torch.Generator().manual_seed(3))
            texts[(limit, form)] = [s.text for s in samples]
        assert all(len(c._moves) <= limit for c in engine._CACHE.values())
    assert texts[(full, None)] == texts[(7, None)]
    assert texts[(full, "corpus")] == texts[(7, "corpus")]
    assert texts[(full, None)] != texts[(full, "corpus")]  # (the drawn forms made a difference)


@pytest.mark.parametrize("setting", [dict(top_p=0.9), dict(top_k=3, whole_header=False)])
def test_bar_plans_and_the_whole_header_give_the_same_tunes_as_masking_every_step(monkeypatch,
                                                                                  setting):
    """Streams that copy a bar (their bar plan) and streams in a tune's header (drawn without
    the filter) choose alike on both paths."""
    forms = {"version": 1, "tunes": 2, "groups": [
        {"meter": "2/4", "rhythm": "", "tunes": 2, "forms": {"AB": {"6,6": 1}, "AABB": {"5,5": 1}},
         "plans": {"AB 6,6": {"2=0 3=1 11=5": 1}, "AABB 5,5": {"5=0 9=4": 1}}}]}
    from seqgen.music.grammar.copies import BarCopier

    copiers = []
    init = BarCopier.__init__

    def kept(self, *a, **k):
        init(self, *a, **k)
        copiers.append(self)

    monkeypatch.setattr(BarCopier, "__init__", kept)
    model = tiny_model(3, 30.0)
    texts = {}
    for full in (True, False):
        monkeypatch.setattr(Sampler, "full_masks", full)
        cfg = SampleConfig(length=600, num_samples=4, constrain="abc", form="corpus",
                           corpus_forms=forms, **setting)
        texts[full] = [s.text for s in generate(model, TOK, "X:1\n", cfg,
                                                torch.Generator().manual_seed(3))]
    assert texts[False] == texts[True]
    assert len(copiers) == 8 and any(c.copied for c in copiers)  # (bars were copied)
