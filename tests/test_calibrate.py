"""`--preset auto` on a time budget: the calibration, its rule, and what a run records.

The rule is tested on given measurements and the timing with a fake clock: no assertion here
depends on how fast this machine is."""

from __future__ import annotations

import itertools
import json

import pytest
import torch

from seqgen import checkpoint as ck
from seqgen.errors import Interrupted
from seqgen.train import TrainConfig, Trainer, train
from seqgen.train import calibrate as cal_mod
from seqgen.train.calibrate import (
    MIN_BUDGET_S,
    RNN_CANDIDATES,
    TOKENS_PER_PARAM,
    Calibration,
    Measured,
    calibrate,
    calibrates,
    choose,
    measure,
)
from tests.test_training import make_text

PARAMS = [90_000, 350_000, 720_000, 1_220_000, 2_600_000]  # about the RNN candidates'


def measured(rates, kind="lstm"):
    names = [c.name for c in cal_mod.candidates(kind)]
    return [Measured(n, p, r) for n, p, r in zip(names, PARAMS, rates, strict=False)]


def chosen(rates, budget_s=90.0, chars=1_000_000, seconds=4.0):
    c = Calibration("lstm", "bf16", 1, budget_s, seconds, measured(rates))
    return choose(c, chars)


# --------------------------------------------------------------------------------- the rule
def test_a_faster_machine_gets_a_larger_model():
    slow = chosen([60_000, 15_000, 5_000, 2_500, 1_000])  # 86 s left to train
    fast = chosen([240_000, 90_000, 60_000, 45_000, 12_000])
    assert slow.chosen == "1x256" and fast.chosen == "1x512"
    # each the largest that reads TOKENS_PER_PARAM tokens per parameter
    for c in (slow, fast):
        i = [m.name for m in c.measured].index(c.chosen)
        m = c.measured[i]
        assert m.tokens_per_s * 86 >= TOKENS_PER_PARAM * m.params
        if i + 1 < len(c.measured):
            n = c.measured[i + 1]
            assert n.tokens_per_s * 86 < TOKENS_PER_PARAM * n.params
    assert fast.values["hidden_size"] == 512 and fast.values["lr"] < slow.values["lr"]


def test_a_longer_budget_gets_a_larger_model_and_many_passes_get_dropout():
    rates = [240_000, 90_000, 60_000, 45_000, 12_000]
    short, long = chosen(rates, budget_s=90, chars=2_000_000), chosen(rates, budget_s=30 * 60)
    assert short.values["dropout"] == 0.0 and short.passes < 3  # few passes: no dropout
    assert long.chosen == "1x768" and long.passes > 10
    assert long.values["dropout"] == cal_mod.MAX_DROPOUT["rnn"]
    # the RNN kinds drop their inputs as much; few passes drop neither
    assert long.values["input_dropout"] == long.values["dropout"]
    assert short.values["input_dropout"] == 0.0
    assert "dropout 0.35 (output and inputs)" in long.reason


def test_a_small_corpus_caps_the_model_size():
    c = chosen([240_000, 90_000, 45_000, 30_000, 12_000], budget_s=600, chars=100_000)
    assert c.chosen == "1x384"  # 720K parameters; the next has more than 10 per character


def test_when_none_reads_enough_the_smallest_with_a_small_batch():
    c = chosen([1_000, 500])
    assert c.chosen == "1x128" and "none, so the smallest" in c.reason
    assert c.values["batch_size"] == cal_mod.SMALL_BATCH


def test_a_budget_under_10_s_takes_the_smallest_and_says_so():
    c = calibrate("lstm", 40, 50_000, MIN_BUDGET_S - 1, "fp32", "cpu", 1)
    assert c.seconds == 0 and all(m.tokens_per_s is None for m in c.measured)
    assert c.chosen == RNN_CANDIDATES[0].name
    assert "a budget under 10 s is too short to calibrate" in c.message()
    t = calibrate("transformer", 40, 50_000, 5, "fp32", "cpu", 1)
    assert t.chosen == "2x64" and t.values["context_length"] == 64


def test_the_start_line_says_what_was_measured_and_why():
    c = chosen([240_000, 90_000, 60_000, 45_000, 12_000])
    m = c.message()
    assert m.startswith("auto: timed 1x128 240,000, 1x256 90,000")
    assert "-> 1x512" in m and "tokens per parameter" in m and "passes over 1,000,000" in m
    assert json.loads(json.dumps(c.to_dict()))["chosen"] == "1x512"


# --------------------------------------------------------------------------------- timing
def fake_clock(step=0.25):
    """A clock that moves `step` seconds at each reading."""
    ticks = itertools.count()
    return lambda: next(ticks) * step


@pytest.fixture
def small_candidates(monkeypatch):
    """Candidates of a few units and rows, so that timing them takes no time to speak of."""
    small = tuple(cal_mod.Candidate(f"1x{h}", dict(hidden_size=h, num_layers=1, embed_dim=4),
                                    1e-3, batch_size=2) for h in (8, 16, 24, 32, 40))
    monkeypatch.setattr(cal_mod, "RNN_CANDIDATES", small)
    return small


def test_timing_stops_at_its_limit_and_always_times_the_smallest(small_candidates):
    rows, spent = measure("lstm", 30, "fp32", "cpu", 0.1, clock=fake_clock())
    assert rows[0].tokens_per_s is not None  # over the limit, but the smallest is timed
    assert all(r.tokens_per_s is None for r in rows[1:]) and spent > 0.1


def test_timing_stops_once_a_candidate_is_too_big(small_candidates):
    rows, _ = measure("gru", 30, "fp32", "cpu", 60.0, enough=lambda m: m.name == "1x16",
                      clock=fake_clock(0.01))
    assert [r.tokens_per_s is not None for r in rows] == [True, True, False, False, False]
    rows, _ = measure("gru", 30, "fp32", "cpu", 60.0, clock=fake_clock(0.01))
    assert all(r.tokens_per_s is not None for r in rows)


def test_timing_leaves_torchs_random_state_as_it_was():
    torch.manual_seed(5)
    before = torch.get_rng_state()
    measure("transformer", 30, "fp32", "cpu", 60.0, enough=lambda m: True,
            clock=fake_clock(0.01))
    assert torch.equal(before, torch.get_rng_state())


# --------------------------------------------------------------------------------- runs
def test_which_runs_calibrate():
    base = TrainConfig(minutes=1)
    assert calibrates(base, False, False, "cpu")
    for cfg in (TrainConfig(minutes=1, steps=100), TrainConfig(minutes=1, threads=1),
                TrainConfig(minutes=1, preset="small"), TrainConfig(init_from="x"),
                TrainConfig(minutes=1, hidden_size=192), TrainConfig(minutes=1, num_layers=2)):
        assert not calibrates(cfg, False, False, "cpu")
    assert not calibrates(base, True, False, "cpu")  # --resume
    assert not calibrates(base, False, True, "cpu")  # torchrun
    assert not calibrates(base, False, False, "cuda")


def test_a_calibrated_run_trains_the_choice_records_it_and_resumes(tmp_path, monkeypatch):
    corpus = make_text(tmp_path / "c.txt", n_chars=80_000)  # (up to 800K parameters)
    rates = [200_000, 100_000, 1, 1, 1]  # as if timed: the rule picks 1x256

    def fake_measure(kind, vocab, precision, device, limit, enough=None, clock=None):
        return [Measured(c.name, p, r) for c, p, r in
                zip(RNN_CANDIDATES, PARAMS, rates, strict=True)], 0.5

    monkeypatch.setattr(cal_mod, "measure", fake_measure)
    starts = []

    def callback(ev):
        if ev.kind == "start":
            starts.append(ev.message)
        if ev.step == 3:
            trainer.request_stop()

    trainer = Trainer(TrainConfig(corpus=str(corpus), minutes=10, out=str(tmp_path / "run"),
                                  eval_tokens=256), callback)
    with pytest.raises(Interrupted):
        trainer.run()
    assert "auto: timed 1x128 200,000" in starts[0] and "-> 1x256" in starts[0]
    c = ck.load_checkpoint(tmp_path / "run")
    assert c.model_config.hidden_size == 256 and c.train_config["preset"] == "auto"
    assert c.meta["calibration"]["chosen"] == "1x256"
    assert c.meta["calibration"]["measured"][0]["tokens_per_s"] == 200_000
    more = train(resume=tmp_path / "run", overrides={"steps": 5})
    assert more.step == 5 and more.model_config.hidden_size == 256
    assert ck.load_checkpoint(tmp_path / "run").meta["calibration"]["chosen"] == "1x256"


@pytest.mark.slow
def test_a_budget_under_10_s_trains_the_smallest_and_says_so(tmp_path):
    corpus = make_text(tmp_path / "c.txt", n_chars=30_000)
    starts = []
    res = train(TrainConfig(corpus=str(corpus), minutes=0.05, out=str(tmp_path / "run"),
                            eval_tokens=256),
                callback=lambda ev: ev.kind == "start" and starts.append(ev.message))
    assert "auto: 1x128, the smallest: a budget under 10 s" in starts[0]
    assert res.model_config.hidden_size == 128
    assert ck.load_checkpoint(res.out).meta["calibration"]["seconds"] == 0


def test_threads_or_steps_or_a_preset_skip_calibration(tmp_path):
    corpus = make_text(tmp_path / "c.txt", n_chars=30_000)
    for i, kw in enumerate([dict(steps=2), dict(steps=2, preset="small")]):
        res = train(TrainConfig(corpus=str(corpus), out=str(tmp_path / str(i)),
                                eval_tokens=256, **kw))
        assert "calibration" not in ck.load_checkpoint(res.out).meta
        assert res.config.preset in ("tiny", "small", "medium")


def test_each_candidate_keeps_its_faster_precision_and_the_run_takes_the_chosens(monkeypatch):
    """The transformer is timed at bf16 and fp32 where the CPU has native bf16: small models
    ran faster in fp32 there, large ones in bf16."""
    fast = {("2x64", "fp32"): 90_000, ("2x64", "bf16"): 40_000,
            ("4x128", "fp32"): 20_000, ("4x128", "bf16"): 30_000}

    def fake_rate(model, c, mcfg, precision, *args, **kw):
        return fast.get((c.name, precision))

    monkeypatch.setattr(cal_mod, "_rate", fake_rate)
    rows, _ = measure("transformer", 30, ("bf16", "fp32"), "cpu", 60.0,
                      enough=lambda m: m.name == "4x128")
    assert [(r.name, r.precision, r.tokens_per_s) for r in rows[:2]] == [
        ("2x64", "fp32", 90_000), ("4x128", "bf16", 30_000)]
    c = Calibration("transformer", "bf16", 1, 600.0, 1.0, rows)
    c = choose(c, 10**6)
    assert c.chosen == "4x128" and c.precision == "bf16"
    assert "2x64 90,000 fp32, 4x128 30,000 bf16" in c.message()
    c = choose(Calibration("transformer", "bf16", 1, 30.0, 1.0, rows), 10**6)
    assert c.chosen == "2x64" and c.precision == "fp32"
