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
from seqgen.train import TrainConfig, train

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
    # (fp32: under bf16 autocast, which `auto` gives CPUs with native bf16, the rounding of two
    # half batches differs from that of one whole batch by more than float32's)
    opts = dict(preset="tiny", hidden_size=24, embed_dim=8, batch_size=4, seq_len=16,
                eval_every=4, warmup_steps=2, device="cpu", steps=8, kind=kind, precision="fp32")
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


# rank 0 asks to stop after step 4 (as Ctrl-C does); the request goes round with step 5's
# all-reduce, so both processes stop and save together after step 5
# It also checks that no DistributedDataParallel wrapper is left when the process group is
# destroyed: one freed later (it sits in a reference cycle) could abort the process at exit,
# after a run that had finished and saved (gloo: "terminate called without an active exception").
STOP_AT_5 = """
import gc, json, sys
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from seqgen.errors import Interrupted
from seqgen.train import TrainConfig, Trainer
destroy = dist.destroy_process_group
def checked_destroy(*args, **kwargs):
    if any(isinstance(o, DistributedDataParallel) for o in gc.get_objects()):
        sys.exit("a DistributedDataParallel wrapper outlives the run")
    destroy(*args, **kwargs)
dist.destroy_process_group = checked_destroy
trainer = Trainer(TrainConfig(**json.loads(sys.argv[1])))
trainer.callback = lambda ev: ev.step == 4 and trainer.request_stop()
try:
    trainer.run()
except Interrupted:
    pass
"""


@pytest.mark.slow
def test_torchrun_resume_continues_exactly(tmp_path):
    """2 processes, dropout on: 8 steps straight == stop at 5 (as Ctrl-C does), resume, 3 more.
    Every process gets back its own dropout RNG and its rows of the carried LSTM state."""
    import json

    corpus = tmp_path / "poem.txt"
    corpus.write_text("".join(f"line {i % 17}: the sea, the stars and the wind.\n"
                              for i in range(600)))
    opts = dict(corpus=str(corpus), preset="tiny", hidden_size=24, embed_dim=8, batch_size=6,
                seq_len=16, eval_every=4, warmup_steps=2, device="cpu", steps=8, dropout=0.3)
    run = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    env = dict(os.environ, OMP_NUM_THREADS="1")

    def torchrun(*args):
        p = subprocess.run([*run, *map(str, args)], capture_output=True, text=True, env=env,
                           timeout=120)
        assert p.returncode == 0, p.stderr[-3000:]

    args = []
    for k, v in {**opts, "out": tmp_path / "straight"}.items():
        args += ["--model" if k == "kind" else f"--{k.replace('_', '-')}", v]
    args[0:2] = [opts["corpus"]]  # the corpus is an argument, not an option
    torchrun("-m", "seqgen", "train", *args, "--no-plot")
    script = tmp_path / "stop_at_5.py"
    script.write_text(STOP_AT_5)
    torchrun(script, json.dumps({**opts, "out": str(tmp_path / "resumed")}))
    assert ck.load_checkpoint(tmp_path / "resumed").step == 5
    torchrun("-m", "seqgen", "train", "--resume", tmp_path / "resumed", "--no-plot")

    a = ck.load_checkpoint(tmp_path / "straight")
    b = ck.load_checkpoint(tmp_path / "resumed")
    assert a.step == b.step == 8
    for k, v in a.model.state_dict().items():
        assert torch.equal(b.model.state_dict()[k], v), k
