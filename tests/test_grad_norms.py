"""Gradient norms in training: every step's with --log-grad-norms, the largest and the clipped
share per log point, and the second panel of loss.png."""

from __future__ import annotations

import json
import math
import struct

import pytest
import torch
from typer.testing import CliRunner

from seqgen import checkpoint as ck
from seqgen.cli.app import app
from seqgen.errors import TrainingError
from seqgen.train import RandomWindows, StreamBatches, TrainConfig, plot_loss_curve, train


def corpus(tmp_path, n=300):
    p = tmp_path / "poem.txt"
    p.write_text("".join(f"line {i % 17}: the sea, the stars and the wind.\n" for i in range(n)))
    return p


def tiny(tmp_path, **kw) -> TrainConfig:
    base = dict(corpus=str(corpus(tmp_path)), preset="tiny", hidden_size=24,
                num_layers=1, batch_size=4, seq_len=16, steps=5,
                eval_every=5, log_every=2, warmup_steps=2, out=str(tmp_path / "run"),
                device="cpu", precision="fp32", eval_tokens=256, threads=1, dropout=0.0)
    if kw.get("kind") == "transformer":  # (options of the other kinds are refused)
        base.update(num_heads=2, context_length=16)
    else:
        base.update(embed_dim=8)
    base.update(kw)
    return TrainConfig(**base)


def records(out):
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


def norms(hist):
    """{step: grad norm} from metrics records; fails on a step logged twice."""
    seen = {}
    for h in hist:
        if "grad_norm" in h:
            assert h["step"] not in seen, f"step {h['step']} logged twice"
            seen[h["step"]] = h["grad_norm"]
    return seen


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])  # (width, height) in pixels


def first_step_norm(res, seed):
    """The loop's first step by hand: same seed, same first batch, same loss, clip_grad_norm_."""
    from seqgen.data import load_corpus, prepare_data
    from seqgen.models import build_model

    cfg = res.config
    data = prepare_data(load_corpus(cfg.corpus), None, cfg.val_fraction, cfg.seed)
    torch.manual_seed(seed)
    model = build_model(res.model_config)
    model.train()
    Batches = RandomWindows if cfg.kind == "transformer" else StreamBatches
    x, y, _ = Batches(data.train_ids, cfg.batch_size, cfg.seq_len, cfg.seed).next()
    logits, _ = model(x, None)  # (B, T, V)
    loss = torch.nn.functional.cross_entropy(logits.float().view(-1, logits.shape[-1]),
                                             y.view(-1))
    loss.backward()
    return float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["lstm", "transformer"])
def test_every_step_is_logged_with_what_clip_grad_norm_returns(tmp_path, kind):
    res = train(tiny(tmp_path, kind=kind, log_grad_norms=True, seed=7))
    hist = records(res.out)
    assert hist == json.loads(json.dumps(res.history))  # the file holds what the plot is fed
    per_step = norms(hist)
    assert sorted(per_step) == [1, 2, 3, 4, 5]  # one norm per step, none twice
    assert all(math.isfinite(v) and v > 0 for v in per_step.values())
    assert per_step[1] == pytest.approx(first_step_norm(res, 7), rel=1e-5)
    # per log point: the largest norm and the clipped share of the steps since the last one
    logs = {h["step"]: h for h in hist if "train_loss" in h and "val_loss" not in h}
    assert sorted(logs) == [2, 4]
    for step, window in ((2, (1, 2)), (4, (3, 4))):
        assert logs[step]["grad_norm"] == per_step[step]
        assert logs[step]["grad_norm_max"] == max(per_step[s] for s in window)
        assert logs[step]["clipped_fraction"] == pytest.approx(
            sum(per_step[s] > 1.0 for s in window) / 2)
    assert ck.load_checkpoint(res.out).train_config["log_grad_norms"] is True


@pytest.mark.parametrize("clip, fraction", [(1e-6, 1.0), (1e6, 0.0), (0.0, 0.0)])
def test_clipped_fraction_follows_grad_clip(tmp_path, clip, fraction):
    res = train(tiny(tmp_path, grad_clip=clip, steps=4))
    logs = [h for h in res.history if "clipped_fraction" in h]
    assert [h["step"] for h in logs] == [2, 4]
    assert all(h["clipped_fraction"] == fraction for h in logs)
    assert all(h["grad_norm_max"] >= h["grad_norm"] > 0 for h in logs)
    assert sorted(norms(res.history)) == [2, 4]  # without --log-grad-norms: log points only


def test_an_explosion_is_on_record_up_to_the_step_that_failed(tmp_path, scale_training_loss):
    scale_training_loss(lambda n: 10.0 ** (2 * n) if n < 7 else math.inf)
    with pytest.raises(TrainingError, match="at step 7"):
        train(tiny(tmp_path, log_grad_norms=True, steps=10, eval_every=4))
    hist = records(tmp_path / "run")
    per_step = norms(hist)
    assert sorted(per_step) == list(range(1, 8))
    growing = [per_step[s] for s in range(1, 7)]
    assert all(b > 10 * a for a, b in zip(growing[:-1], growing[1:], strict=True))  # growing
    assert per_step[7] is None and hist[-1]["nonfinite"] == "loss"
    assert ck.load_checkpoint(tmp_path / "run").step == 4  # the good checkpoint is untouched


@pytest.mark.slow
def test_loss_png_has_a_gradient_panel_only_when_there_are_norms(tmp_path):
    res = train(tiny(tmp_path, log_grad_norms=True, grad_clip=0.5))
    with_norms = plot_loss_curve(res.history, tmp_path / "a.png", grad_clip=0.5)
    losses_only = [{k: v for k, v in h.items() if not k.startswith(("grad_norm", "clipped"))}
                   for h in res.history if "train_loss" in h]
    without = plot_loss_curve(losses_only, tmp_path / "b.png")
    (w1, h1), (w2, h2) = png_size(with_norms), png_size(without)
    assert w1 == w2 and h1 > 1.4 * h2  # a second panel below the losses


@pytest.mark.slow
def test_cli_option_is_saved_resumable_and_plotted(tmp_path):
    runner = CliRunner()
    args = ["train", str(corpus(tmp_path)), "--preset", "tiny", "--hidden-size", "24",
            "--embed-dim", "8", "--batch-size", "4", "--seq-len", "16", "--eval-every", "4",
            "--log-every", "2", "--warmup-steps", "2", "--device", "cpu", "--eval-tokens", "256",
            "--threads", "1", "--out", str(tmp_path / "run")]
    r = runner.invoke(app, [*args, "--steps", "4"])
    assert r.exit_code == 0, r.output
    assert sorted(norms(records(tmp_path / "run"))) == [2, 4]  # log points only
    r = runner.invoke(app, ["train", "--resume", str(tmp_path / "run"), "--steps", "7",
                            "--log-grad-norms", "--threads", "1"])
    assert r.exit_code == 0 and "Traceback" not in r.output, r.output
    assert sorted(norms(records(tmp_path / "run"))) == [2, 4, 5, 6, 7]
    assert ck.load_checkpoint(tmp_path / "run").train_config["log_grad_norms"] is True
    w, h = png_size(tmp_path / "run" / "loss.png")
    assert h > 0.8 * w  # 7 x 6 inches with the gradient panel (7 x 4 without)
