"""Faults: a full or read-only disk during a checkpoint save, and two runs into one directory.

A full disk is simulated two ways: os.replace / os.fsync raising ENOSPC at each point of a save
(always), and a real 512 KiB tmpfs filled up, then remounted read-only (when the tests run as root
and may mount, as in CI; skipped otherwise). Running as root, chmod cannot make a directory
read-only, hence the remount.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from seqgen import checkpoint as ck
from seqgen.cli.app import app
from seqgen.errors import Interrupted
from seqgen.fileio import LOCK_NAME, Locked, WriteError, directory_lock, is_locked
from seqgen.models import ModelConfig, build_model
from seqgen.tokenizer import Tokenizer
from seqgen.train import TrainConfig, Trainer, default_out

runner = CliRunner()
TINY = ["--preset", "tiny", "--hidden-size", "16", "--embed-dim", "8", "--batch-size", "2",
        "--seq-len", "16", "--eval-every", "1", "--warmup-steps", "1", "--device", "cpu",
        "--eval-tokens", "256", "--threads", "1", "--no-plot"]


def corpus(tmp_path: Path, n: int = 80) -> Path:
    p = tmp_path / "c.txt"
    p.write_text("".join(f"line {i % 13}: the sea, the stars and the wind.\n" for i in range(n)))
    return p


def train_cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_line(r) -> str:
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    return lines[0]


# --------------------------------------------------------------------------------- disk trouble
def _model_and_tok():
    tok = Tokenizer.build(["the sea, the stars"])
    torch.manual_seed(0)
    return build_model(ModelConfig(kind="gru", vocab_size=tok.vocab_size, embed_dim=8,
                                   hidden_size=16, num_layers=1)), tok


def _save(d: Path, step: int, model, tok):
    state = ck.TrainState({"m": torch.full((3,), float(step))}, {"step": step})
    return ck.save_checkpoint(d, model, tok, {"steps": 9}, "c.txt", "text", step, {},
                              train_state=state)


def _leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name.startswith(".") and p.name != LOCK_NAME)


@pytest.mark.slow
@pytest.mark.parametrize("call, fail_at", [("replace", k) for k in range(1, 8)]
                         + [("fsync", k) for k in range(1, 9)])
def test_a_full_disk_at_any_point_of_a_save_keeps_a_loadable_checkpoint(tmp_path, monkeypatch,
                                                                         call, fail_at):
    """ENOSPC from the k-th rename or fsync of a save: a one-line WriteError naming the file, and
    the directory still loads, as the old checkpoint or (once committed) the new one, weights and
    training state agreeing; the next save succeeds and leaves no stray files."""
    model, tok = _model_and_tok()
    d = _save(tmp_path / "run", 1, model, tok)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    real = getattr(os, call)
    count = 0

    def failing(*a, **kw):
        nonlocal count
        count += 1
        if count == fail_at:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(*a, **kw)

    monkeypatch.setattr(os, call, failing)
    try:
        _save(d, 2, model, tok)
    except WriteError as e:
        msg = str(e)
        assert "No space left on device" in msg and str(d) in msg and "\n" not in msg
    else:
        pytest.fail(f"the save did not fail ({count} {call} calls)")
    monkeypatch.setattr(os, call, real)
    c = ck.load_checkpoint(d)
    _, _, state = ck.load_train_state(d)
    assert c.step in (1, 2) and state.meta["step"] == c.step
    assert float(state.tensors["m"][0]) == c.step
    w = next(iter(c.model.state_dict().values()))
    expected = next(iter(model.state_dict().values())) - (1.0 if c.step == 1 else 0.0)
    torch.testing.assert_close(w, expected, rtol=0, atol=1e-6)
    _save(d, 3, model, tok)
    assert ck.load_checkpoint(d).step == 3 and _leftovers(d) == []


@contextlib.contextmanager
def tiny_tmpfs(tmp_path: Path, size: str = "512k"):
    mnt = tmp_path / f"tmpfs-{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _fill(mnt: Path) -> None:
    with contextlib.suppress(OSError), open(mnt / "filler", "wb") as f:
        while True:
            f.write(b"\0" * 4096)
            f.flush()


def test_real_full_then_read_only_disk_keeps_the_checkpoint(tmp_path):
    """On a real tmpfs: train into it, fill it, --resume fails with a one-line error and exit 1;
    remount it read-only, same again; every time the checkpoint still loads at the same step."""
    src = corpus(tmp_path)
    with tiny_tmpfs(tmp_path) as mnt:
        out = mnt / "run"
        r = train_cli("-q", "train", src, *TINY, "--steps", "2", "--out", out)
        assert r.exit_code == 0, r.output
        before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
        _fill(mnt)
        r = train_cli("train", "--resume", out, "--steps", "4")
        assert r.exit_code == 1, r.output
        assert "No space left on device" in one_line(r) and "cannot write" in r.stderr
        assert "bug" not in r.stderr
        assert ck.load_checkpoint(out).step == 2 and ck.load_train_state(out)[2].meta["step"] == 2
        (mnt / "filler").unlink()
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        r = train_cli("train", "--resume", out, "--steps", "4")
        assert r.exit_code == 1, r.output
        assert "Read-only file system" in one_line(r)
        assert ck.load_checkpoint(out).step == 2
        after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
        assert after == before  # nothing lost, nothing half-written


def test_a_full_disk_under_safetensors_is_a_write_error(tmp_path, monkeypatch):
    """safetensors reports a failed write as its own SafetensorError, not an OSError: it must
    still be the one-line 'cannot write FILE: No space left on device', the old file kept."""
    import safetensors.torch
    from safetensors import SafetensorError

    model, tok = _model_and_tok()
    d = _save(tmp_path / "run", 1, model, tok)

    def full(*a, **k):
        raise SafetensorError("Error while serializing: I/O error: No space left on device "
                              "(os error 28)")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    with pytest.raises(WriteError, match=r"cannot write .*model.safetensors\S*: No space left "
                                         r"on device$"):
        _save(d, 2, model, tok)
    monkeypatch.undo()
    assert ck.load_checkpoint(d).step == 1 and _leftovers(d) == []


def test_a_save_into_a_read_only_directory_fails_clearly(tmp_path, monkeypatch):
    """Read-only as seen by a non-root user (EACCES when creating the temporary file)."""
    model, tok = _model_and_tok()
    d = _save(tmp_path / "run", 1, model, tok)
    real = os.open

    def denied(path, flags, *a, **kw):
        if flags & os.O_CREAT and str(path).startswith(str(d)):
            raise OSError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real(path, flags, *a, **kw)

    monkeypatch.setattr(os, "open", denied)
    with pytest.raises(WriteError, match="Permission denied"):
        _save(d, 2, model, tok)
    monkeypatch.setattr(os, "open", real)
    assert ck.load_checkpoint(d).step == 1 and _leftovers(d) == []


# --------------------------------------------------------------------------------- concurrency
@pytest.mark.slow
def test_a_second_run_into_the_same_out_is_refused(tmp_path):
    """A real `seqgen train` process holds --out; a second run (fresh, --overwrite or --resume)
    is refused in one line naming its pid, the checkpoint loads at any moment while the run saves
    into it, and the first run is not disturbed: SIGTERM saves and exits 130, and the lock goes
    with it."""
    src, out = corpus(tmp_path, 400), tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "seqgen", "-q", "train", str(src), *TINY,
                             "--steps", "100000", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while not (out / ck.META).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert is_locked(out)
        r = train_cli("train", src, "--out", out, *TINY[:2], "--steps", "3")
        assert r.exit_code == 2 and "already holds a checkpoint" in one_line(r)
        for extra in ([src, "--out", out, "--overwrite"], ["--resume", out]):
            r = train_cli("train", *extra, *TINY[:2], "--steps", "3")
            assert r.exit_code == 2, r.output
            line = one_line(r)
            assert f"pid {proc.pid}" in line and "is writing to it" in line and str(out) in line
        # sampling from a run directory while it trains: every load succeeds, steps go forward
        steps, t_end = [], time.monotonic() + 4
        while time.monotonic() < t_end:
            steps.append(ck.load_checkpoint(out).step)
            ck.load_checkpoint(out / ck.BEST)
        assert steps == sorted(steps) and steps[-1] > steps[0], steps
        step = steps[-1]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "resume with: seqgen train --resume" in stderr
    assert ck.load_checkpoint(out).step >= step
    assert not (out / LOCK_NAME).exists() and not is_locked(out)


def test_a_stale_lock_from_a_killed_run_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its pid is no longer running
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK_NAME).write_text(f"{dead.pid} {os.uname().nodename} 2026-01-01T00:00:00\n")
    assert not is_locked(out)
    r = train_cli("train", corpus(tmp_path), *TINY, "--steps", "2", "--out", out)
    assert r.exit_code == 0, r.output
    assert f"took over the lock left by pid {dead.pid}" in r.stderr
    assert ck.load_checkpoint(out).step == 2 and not (out / LOCK_NAME).exists()


def test_the_lock_is_held_for_the_whole_run_and_released_on_errors(tmp_path, monkeypatch):
    out = tmp_path / "run"
    seen = []

    def callback(ev):
        seen.append(is_locked(out))
        if ev.kind == "step" and ev.step == 2:
            raise RuntimeError("boom")

    cfg = TrainConfig(corpus=str(corpus(tmp_path)), preset="tiny", hidden_size=16,
                      embed_dim=8, batch_size=2, seq_len=16, eval_every=1,
                      warmup_steps=1, steps=5, out=str(out), threads=1)
    with pytest.raises(RuntimeError, match="boom"):
        Trainer(cfg, callback).run()
    assert seen and all(seen)
    assert not is_locked(out) and not (out / LOCK_NAME).exists()
    # Interrupted (Ctrl-C) releases it too, after saving
    trainer = Trainer(TrainConfig(**{**cfg.to_dict(), "overwrite": True}))
    trainer.callback = lambda ev: ev.step == 1 and trainer.request_stop()
    with pytest.raises(Interrupted):
        trainer.run()
    assert not is_locked(out) and ck.load_checkpoint(out).step == 1


def test_the_default_out_skips_a_directory_another_run_is_starting_in(tmp_path):
    with directory_lock(tmp_path / "checkpoints" / "poem"):
        assert default_out("poem.txt", str(tmp_path / "checkpoints")).name == "poem-2"
    assert default_out("poem.txt", str(tmp_path / "checkpoints")).name == "poem"


def test_lock_file_records_the_holder(tmp_path):
    with directory_lock(tmp_path / "d") as stale:
        assert stale is None
        pid, host, _ = (tmp_path / "d" / LOCK_NAME).read_text().split()
        assert int(pid) == os.getpid() and host == os.uname().nodename
        with pytest.raises(Locked, match=f"pid {os.getpid()}"):
            with directory_lock(tmp_path / "d"):
                pass
    assert not (tmp_path / "d" / LOCK_NAME).exists()


def test_the_checkpoint_json_lists_only_complete_files(tmp_path):
    """After a normal save no pending or temporary file is left, and files{} names only
    the checkpoint's own files."""
    model, tok = _model_and_tok()
    d = _save(tmp_path / "run", 1, model, tok)
    meta = json.loads((d / ck.META).read_text())
    assert set(meta["files"]) == {ck.WEIGHTS, ck.STATE_TENSORS, ck.STATE_META}
    assert _leftovers(d) == []


@pytest.mark.slow
def test_a_signal_handled_where_python_drops_exceptions_still_stops_the_command(tmp_path):
    """SIGTERM (or Ctrl-C) whose KeyboardInterrupt is raised inside a __del__ (or a weakref
    callback, or a fork's hooks), where Python prints "Exception ignored" and goes on: `seqgen`
    interrupts again, so that the command still stops."""
    script = tmp_path / "dropped.py"
    script.write_text('''
import os, signal
from seqgen.cli.app import stop_on_signals
stop_on_signals()
class Finalized:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # the handler runs here, inside __del__
            pass
try:
    Finalized()
    for _ in range(10**7):
        pass
    print("ran on")
except KeyboardInterrupt:
    print("interrupted")
''')
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == "interrupted", (r.stdout, r.stderr)
    assert "Exception ignored" not in r.stderr
