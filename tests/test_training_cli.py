"""`seqgen train` from the command line: outputs, resume, Ctrl-C, and bad input exiting 2."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from typer.testing import CliRunner

from seqgen import checkpoint as ck
from seqgen.cli.app import app

runner = CliRunner()
TINY = ["--preset", "tiny", "--hidden-size", "24", "--embed-dim", "8", "--batch-size", "4",
        "--seq-len", "16", "--eval-every", "4", "--warmup-steps", "2", "--device", "cpu",
        "--eval-tokens", "512", "--threads", "1"]


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def corpus(tmp_path, n=300):
    p = tmp_path / "poem.txt"
    p.write_text("".join(f"line {i % 17}: the sea, the stars and the wind.\n" for i in range(n)))
    return p


def no_traceback(r):
    return "Traceback" not in r.output and "Traceback" not in r.stderr


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trained")
    r = run("train", corpus(tmp), *TINY, "--steps", "8", "--out", tmp / "run")
    assert r.exit_code == 0, r.output
    return tmp / "run", r


def test_train_writes_a_checkpoint_and_prints_its_path(trained):
    out, r = trained
    assert r.stdout.strip() == str(out)  # stdout: only the result
    for name in ("model.safetensors", "checkpoint.json", "metrics.jsonl", "loss.png",
                 "train_state.safetensors", "best/model.safetensors"):
        assert (out / name).is_file(), name
    assert "training summary" in r.stderr and "nats/char" in r.stderr
    c = ck.load_checkpoint(out)
    assert c.step == 8 and c.corpus_kind == "text" and c.corpus_name.endswith("poem.txt")
    assert c.train_config["hidden_size"] == 24 and c.train_config["preset"] == "tiny"
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if "val_loss" in x] == [4, 8]


def test_resume_with_a_larger_budget(trained, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(trained[0], out)
    r = run("train", "--resume", out, "--steps", "12")
    assert r.exit_code == 0, r.output
    assert ck.load_checkpoint(out).step == 12
    r = run("train", "--resume", out, "--steps", "16", "--hidden-size", "64")
    assert r.exit_code == 2 and "--hidden-size cannot change when resuming" in r.stderr


def test_a_loss_plot_that_cannot_be_written_does_not_fail_the_run(tmp_path, monkeypatch):
    import errno

    from matplotlib.figure import Figure

    def full(*a, **k):  # the disk fills up while the picture is written
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", full)
    out = tmp_path / "run"
    r = run("train", corpus(tmp_path), *TINY, "--steps", "4", "--out", out)
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == str(out) and ck.load_checkpoint(out).step == 4
    assert f"warning: {out / 'loss.png'} not written: No space left on device" in r.stderr
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []  # no temp file


def _corrupt(run_dir, tmp_path, how):
    d = tmp_path / "bad"
    shutil.copytree(run_dir, d)
    if how == "truncated":
        w = d / "model.safetensors"
        w.write_bytes(w.read_bytes()[:100])
    elif how == "newer":
        meta = json.loads((d / "checkpoint.json").read_text())
        meta["version"] = 99
        (d / "checkpoint.json").write_text(json.dumps(meta))
    elif how == "state":
        (d / "train_state.safetensors").write_bytes(b"garbage")
    elif how in ("shape", "vocab"):
        meta = json.loads((d / "checkpoint.json").read_text())
        if how == "shape":
            meta["model_config"]["hidden_size"] = 32
        else:
            meta["tokenizer"]["chars"] = "not a list"
        (d / "checkpoint.json").write_text(json.dumps(meta))
    return d


@pytest.mark.parametrize("args, message", [
    (["--model", "cnn"], "--model must be one of"),
    (["--preset", "huge"], "--preset must be one of"),
    (["--hidden-size", "0"], "--hidden-size must be > 0"),
    (["--batch-size", "-3"], "--batch-size must be > 0"),
    (["--seq-len", "100000"], "fewer than one training window"),
    (["--resume", "{tmp}"], "not a seqgen checkpoint"),
    (["--resume", "{tmp}/nope"], "no such checkpoint directory"),
    (["--resume", "{truncated}"], "truncated"),
    (["--resume", "{newer}"], "newer than this seqgen"),
    (["--resume", "{state}"], "train_state.safetensors"),
    (["--resume", "{shape}"], "model.safetensors: tensor rnn.weight_ih_l0 has shape (96, 8)"),
    (["--resume", "{vocab}"], "checkpoint.json \"tokenizer\""),
    (["--init-from", "{tmp}/nope"], "no such checkpoint directory"),
    (["--init-from", "{run}", "--model", "gru"], "--model: --init-from"),
    (["--device", "cuda"], "CUDA is not available"),
    (["--device", "tpu"], "--device must be one of"),
    (["--abc-headers", "none"], "--abc-headers must be one of"),
    (["--threads", "100000"], "--threads must be between 1 and"),
    (["--model", "lstm", "--num-heads", "2"], "--num-heads applies to the transformer only"),
    (["--model", "transformer", "--embed-dim", "8"], "--embed-dim applies to the RNN kinds"),
    (["--glob", "*.txt"], "--glob chooses the files of a directory corpus"),
])
def test_bad_input_is_one_line_and_exit_2(trained, tmp_path, args, message):
    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    subs = {"tmp": tmp_path, "run": trained[0]}
    for how in ("truncated", "newer", "state", "shape", "vocab"):
        if "{" + how + "}" in " ".join(args):
            subs[how] = _corrupt(trained[0], tmp_path, how)
    args = [a.format(**subs) for a in args]
    if args[0] != "--resume":
        args = [corpus(tmp_path), *TINY, "--steps", "2", "--out", tmp_path / "o", *args]
    r = run("train", *args)
    assert r.exit_code == 2, r.output
    assert message in r.stderr and no_traceback(r)
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr  # one line only
    assert r.stdout == ""


@pytest.mark.parametrize("args,message", [
    (["train", "--steps", "abc"], "Invalid value for '--steps'"),
    (["train", "--no-such-option"], "No such option: --no-such-option"),
    (["no-such-command"], "No such command 'no-such-command'"),
    (["train", "-t", "1"], "No such option: -t (-t is --temperature in eval, sample)"),
    (["tokenizer", "encode", "v.json", "-f", "x"], "(-f is --format in eval, sample)"),
])
def test_parser_errors_are_one_line_with_where_to_look(args, message):
    r = run(*args)
    assert r.exit_code == 2 and message in r.stderr and no_traceback(r)
    assert len(r.stderr.strip().splitlines()) == 1 and "-h')" in r.stderr, r.stderr


def test_missing_corpus_exit_2(tmp_path):
    r = run("train", tmp_path / "missing.txt", "--steps", "1")
    assert r.exit_code == 2 and "no such file" in r.stderr and no_traceback(r)


@pytest.mark.slow
def test_sigint_saves_and_exits_130_then_resumes(tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, COLUMNS="120")
    cmd = [sys.executable, "-m", "seqgen", "train", str(corpus(tmp_path, 2000)), *TINY,
           "--steps", "100000", "--eval-every", "3", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 60
    while not (out / "checkpoint.json").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert f"seqgen train --resume {out}" in stderr and "Traceback" not in stderr
    assert "error" not in stderr and "interrupted at step" in stderr  # a normal stop
    assert stdout == ""
    step = ck.load_checkpoint(out).step
    assert step >= 3
    r = run("train", "--resume", out, "--steps", step + 2)
    assert r.exit_code == 0, r.output
    assert f"resuming {out} at step {step}" in r.stderr
    assert ck.load_checkpoint(out).step == step + 2
