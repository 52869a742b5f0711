"""Bars that return (seqgen.music.grammar.copies): a tune follows the bar plan drawn with its
form, copying earlier bars through the grammar; --no-repeat-bars and --whole-header."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from seqgen.checkpoint import load_checkpoint
from seqgen.cli.app import app
from seqgen.evaluate import default_model_dir
from seqgen.music.form import bar_events, read_form
from seqgen.music.grammar import abc_constraint
from seqgen.music.grammar.copies import BarCopier
from seqgen.sampling import SampleConfig, Sampler, generate

runner = CliRunner()
HEADER = "X:1\nM:C|\nL:1/8\nR:reel\nK:D\n"
A = ["d2fd adfd", "g2eg bgeg", "f2df afdf", "edcB A2FA", "d2fd a2fd", "gfga bgeg", "fdec dBAF",
     "E2FD D3A"]


@pytest.fixture(scope="module")
def shipped():
    if default_model_dir() is None:
        pytest.skip("no shipped model in this checkout")
    return load_checkpoint(default_model_dir())


def plans(plan: str) -> dict:
    """A form distribution of one reel group whose AABB 8,8 tunes all have `plan`."""
    return {"version": 1, "tunes": 1, "groups": [
        {"meter": "C|", "rhythm": "reel", "tunes": 1, "forms": {"AABB": {"8,8": 1}},
         "plans": {"AABB 8,8": {plan: 1}}}]}


def feed(c, copier, state, text):
    """`text` through the grammar and the copier; the tokens the copier asked for on the way."""
    asked = []
    for ch in text:
        t = copier.next(state, c)
        asked.append(None if t is None else c.itos[t])
        nxt = c.advance(state, c.stoi[ch])
        assert nxt is not None, (ch, text)
        copier.step(state, nxt, ch)
        state = nxt
    return state, asked


def test_the_copier_writes_the_planned_bar_where_the_plan_puts_it(shipped):
    tok = shipped.tokenizer
    c = abc_constraint(tok, form="AABB", bars=8)
    s = c.feed_text(c.start(), HEADER, lenient=True)
    copier = BarCopier({4: 0, 5: 1}, 8, c.stoi)
    s, asked = feed(c, copier, s, "|:" + "|".join(A[:4]) + "|")
    assert not any(asked)  # nothing to copy before bar 4
    # each with its closing barline's first character (bar 3 is not closed yet)
    assert copier.sources == {0: A[0] + "|", 1: A[1] + "|", 2: A[2] + "|"}
    # the grammar ends the line after 4 bars: the copy waits for the line break
    s, asked = feed(c, copier, s, "\n")
    assert asked == [None] and copier.sources[3] == A[3] + "|" and copier.copied == []
    # then bar 4 is bar 0 again, character by character, to its barline
    s, asked = feed(c, copier, s, A[0] + "|")
    assert asked == list(A[0] + "|") and copier.copied == [4]
    # the stream takes another character than bar 1's first: the copy ends there
    s, asked = feed(c, copier, s, "f")
    assert asked == ["g"]
    s, asked = feed(c, copier, s, "2df afdf|")
    assert not any(asked) and copier.copied == [4, 5]


def test_bars_that_cannot_be_copied_are_not_sources(shipped):
    c = abc_constraint(shipped.tokenizer, form="AABB", bars=8)
    s = c.feed_text(c.start(), HEADER, lenient=True)
    copier = BarCopier({4: 0, 5: 1, 6: 2}, 8, c.stoi)
    # a pickup (not a full bar) and a bar broken over two lines are not; a bar with a '!'
    # decoration is
    feed(c, copier, s, "A|:d2fd\\\nadfd|g2eg !trill!bgeg|f2df afdf|edcB A2FA|\n")
    assert copier.sources == {1: "g2eg !trill!bgeg|", 2: "f2df afdf|", 3: "edcB A2FA|"}


def test_sampled_tunes_repeat_the_planned_bars(shipped):
    """The shipped model with a plan that every tune of its form repeats bars 0-1 as bars 4-5:
    the tunes do, as music21's reading of their notes and durations says (a copy the grammar
    refuses half-way may leave one out: the exact tokens differ from one CPU to another), and
    without the plan they do not."""
    def repeating(repeat_bars: bool) -> int:
        cfg = SampleConfig(length=1500, num_samples=8, constrain="abc", top_p=0.9,
                           form="AABB", bars=8, corpus_forms=plans("4=0 5=1"),
                           repeat_bars=repeat_bars)
        sampler = Sampler(shipped.model, shipped.tokenizer, HEADER, cfg,
                          torch.Generator().manual_seed(4))
        # (the prompt holds the header: each stream's plan is drawn at once)
        assert sampler.constraint is not None
        assert any(sampler.constraint.copiers) == repeat_bars  # (--no-repeat-bars: none)
        for _ in sampler:
            pass
        n = 0
        for s in sampler.samples:
            assert read_form(HEADER + s.text).form == "AABB", s.text
            ev = bar_events(HEADER + s.text)
            n += ev[4] == ev[0] and ev[5] == ev[1]
        return n

    assert repeating(True) >= 6
    assert repeating(False) <= 2


def test_the_header_is_drawn_from_the_whole_distribution(shipped):
    """--whole-header: at top-p 0.3 the header is the one top-p 1 draws at the same seed (the
    same noise, no filter); the body is filtered."""
    def tunes(top_p, whole=True):
        cfg = SampleConfig(length=1500, num_samples=8, constrain="abc", top_p=top_p,
                           whole_header=whole)
        return [s.text for s in generate(shipped.model, shipped.tokenizer, "X:", cfg,
                                         torch.Generator().manual_seed(11))]

    def header(t):
        return t[: t.index("\nK:") + t[t.index("\nK:") + 1:].index("\n") + 2]

    full, whole, filtered = tunes(1.0), tunes(0.3), tunes(0.3, whole=False)
    assert [header(t) for t in whole] == [header(t) for t in full]
    assert whole != full  # the bodies differ: top-p applies there
    assert [header(t) for t in filtered] != [header(t) for t in full]


def test_cli_repeat_bars_options(shipped, tmp_path):
    r = runner.invoke(app, ["sample", "default", "--tunes", "2", "--seed", "3"])
    assert r.exit_code == 0, r.output
    assert "bars repeated as one of them repeats its own" in r.stderr
    r = runner.invoke(app, ["sample", "default", "--tunes", "2", "--seed", "3",
                            "--no-repeat-bars", "--no-whole-header"])
    assert r.exit_code == 0, r.output
    assert "bars repeated" not in r.stderr and r.stdout.count("X:") == 2


def test_a_letter_that_returns_repeats_its_part():
    from seqgen.music.form import cadence_parts, letter_plan

    assert letter_plan("AABA", 2) == {4: 0, 5: 1}
    assert letter_plan("ABAC", 2) == {4: 0, 5: 1}
    assert letter_plan("AABB", 8) == {} and letter_plan("ABCA", 1) == {3: 0}
    # the tune ends with part A's last bar: part A ends on the tonic too
    assert cadence_parts(letter_plan("AABA", 8), "AABA", 8) == (0,)
    assert cadence_parts({15: 7}, "AABB", 8) == (0,) and cadence_parts({15: 6}, "AABB", 8) == ()


@pytest.mark.parametrize("forms", [None, plans("4=0")])
def test_sampled_aaba_tunes_read_as_aaba(shipped, forms):
    """--form AABA: the last part repeats part A's bars, so music21's reading letters it A,
    with the checkpoint's plans or without any."""
    cfg = SampleConfig(length=2000, num_samples=6, constrain="abc", top_p=0.95, form="AABA",
                       bars=8, corpus_forms=forms)
    samples = generate(shipped.model, shipped.tokenizer, HEADER, cfg,
                       torch.Generator().manual_seed(2))
    got = [read_form(HEADER + s.text).form for s in samples]
    assert got.count("AABA") >= 4, got  # (91% of 300 tunes: a refused copy leaves a C)
    assert all(f.startswith("AAB") for f in got), got
