"""The --minutes budget (final validation and save included, no validation twice in a row), the
speed figures (the bar's and the summary's are one figure), and --resume with a new budget.

The budget tests run on a fake clock: a step takes STEP_S seconds and a validation EVAL_S, so
that what they check does not depend on the machine's speed."""

from __future__ import annotations

import time

import pytest
from test_training import tiny

from seqgen.errors import UsageError
from seqgen.train import Trainer, train
from seqgen.train.runstate import RunState

STEP_S, EVAL_S = 0.1, 1.0


@pytest.fixture
def fake_clock(monkeypatch):
    """time.perf_counter moves only by STEP_S a training step and EVAL_S a validation."""
    now = [1000.0]
    monkeypatch.setattr(time, "perf_counter", lambda: now[0])
    step, evaluate = Trainer._step, RunState.evaluate

    def slow_step(self, run, meter):
        now[0] += STEP_S
        return step(self, run, meter)

    def slow_evaluate(self):
        now[0] += EVAL_S
        return evaluate(self)

    monkeypatch.setattr(Trainer, "_step", slow_step)
    monkeypatch.setattr(RunState, "evaluate", slow_evaluate)
    return now


def run_with_events(cfg):
    events = []
    res = Trainer(cfg, events.append).run()
    return res, events


def test_budget_holds_the_final_validation_when_none_came_before(tmp_path, fake_clock):
    # 60 steps fit 6 s; the only validation is the final one, which must fit too
    res, _ = run_with_events(tiny(tmp_path, steps=None, minutes=0.1, eval_every=10_000,
                                  eval_tokens=4096))
    assert res.stop_reason == "time"
    assert res.elapsed_s <= 6.0 + 1e-9, res.elapsed_s


def test_no_validation_at_two_steps_in_a_row(tmp_path, fake_clock):
    # validations at steps 10, 20, ...: 1 s of steps and 1 s of validation per 10 steps. With
    # 4.5 s, the run validated at step 20 (done at 4.0 s) only for one more step to end it,
    # validating again at step 21 (and past its budget); it must end at step 20 instead.
    res, _ = run_with_events(tiny(tmp_path, steps=None, minutes=4.5 / 60, eval_every=10))
    vals = [h["step"] for h in res.history if "val_loss" in h]
    assert all(b - a > 1 for a, b in zip(vals, vals[1:], strict=False)), vals
    assert res.elapsed_s <= 4.5 + 1e-9 and res.stop_reason == "time"


def test_bar_and_summary_tokens_per_second_are_the_same_mean(tmp_path, fake_clock):
    res, events = run_with_events(tiny(tmp_path, steps=30, eval_every=10))
    steps = [e for e in events if e.kind == "step"]
    assert steps[-1].tokens_per_s == pytest.approx(res.tokens_per_s)
    assert [e for e in events if e.kind == "end"][0].tokens_per_s == pytest.approx(res.tokens_per_s)
    # the mean over the training steps, validations not counted: 4 x 16 tokens each 0.1 s
    assert res.tokens_per_s == pytest.approx(4 * 16 / STEP_S) and res.train_steps == 30


def test_resume_of_a_finished_step_count_with_minutes(tmp_path):
    first = train(tiny(tmp_path, steps=4))
    with pytest.raises(UsageError, match="minutes.*the run's time in all: pass more than"):
        train(resume=first.out, overrides={"minutes": 1e-6})
    more = train(resume=first.out, overrides={"minutes": first.elapsed_s / 60 + 0.01})
    assert more.step > 4 and more.stop_reason == "time" and more.config.steps is None


def test_a_fine_tune_summary_names_the_model_it_started_from(tmp_path):
    from test_training_cli import TINY, corpus, run

    base = tmp_path / "base"
    assert run("train", corpus(tmp_path), *TINY, "--steps", "2", "--out", base).exit_code == 0
    r = runner_wide("train", corpus(tmp_path), "--init-from", base, "--preset", "small",
                    "--steps", "2", "--out", tmp_path / "tuned", "--device", "cpu",
                    "--batch-size", "4", "--seq-len", "16", "--eval-tokens", "512")
    assert r.exit_code == 0, r.output
    summary = " ".join(r.stderr.split())
    assert f"model of --init-from {base}" in summary and "lstm 1x24" in summary
    assert ", preset small" not in summary  # (a small preset is 1x256: not this model)


def runner_wide(*args):
    from typer.testing import CliRunner

    from seqgen.cli.app import app

    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "300"})
