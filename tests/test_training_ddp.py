"""Distributed training: 2 CPU processes under torchrun (gloo) match one process at the same
global batch."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import torch

from seqgen import checkpoint as ck
from seqgen.training import TrainConfig, train

# Gradients are averaged over processes by an all-reduce, so the sums run in a different order
# than in one process: float32 rounding differences only.
TOLERANCE = 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["lstm"])
def test_torchrun_two_processes_match_one(tmp_path, kind):
    if shutil.which("torchrun") is None and not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available")
    corpus = tmp_path / "poem.txt"
    corpus.write_text("".join(f"line {i % 17}: the sea, the stars and the wind.\n"
                              for i in range(600)))
    opts = dict(preset="tiny", hidden_size=24, embed_dim=8, batch_size=4, seq_len=16,
                eval_every=4, warmup_steps=2, device="cpu", steps=8, kind=kind)
    args = [str(corpus)]
    for k, v in opts.items():
        args += [f"--{k.replace('_', '-')}" if k != "kind" else "--model", str(v)]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "seqgen", "train", *args, "--out", str(tmp_path / "ddp"), "--no-plot"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.strip() == str(tmp_path / "ddp")  # rank 0 alone prints the result
    assert p.stderr.count("training summary") == 1
    single = train(TrainConfig(corpus=str(corpus), out=str(tmp_path / "one"), **opts))

    a = ck.load_checkpoint(tmp_path / "ddp")
    b = ck.load_checkpoint(single.out)
    assert a.step == b.step == 8
    assert "2 processes" in p.stderr
    for k, v in b.model.state_dict().items():
        torch.testing.assert_close(a.model.state_dict()[k], v, rtol=0, atol=TOLERANCE)
    assert abs(a.metrics["val_loss"] - b.metrics["val_loss"]) < TOLERANCE
