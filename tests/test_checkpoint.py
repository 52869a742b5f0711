"""Checkpoints: round trips for every model kind, and refusal of bad, corrupt or newer ones."""

from __future__ import annotations

import json
import math

import pytest
import torch

from seqgen import checkpoint as ck
from seqgen.errors import CheckpointError
from seqgen.fileio import WriteError
from seqgen.models import KINDS, ModelConfig, build_model
from seqgen.tokenizer import Tokenizer

TINY = dict(embed_dim=8, hidden_size=16, num_layers=1, num_heads=2, context_length=16)


def _save(tmp_path, kind="lstm", name="run", step=7, **extra):
    tok = Tokenizer.build(["X:1\nK:G\nabc|def|\n", "hello, world"])
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind=kind, vocab_size=tok.vocab_size, **TINY))
    d = ck.save_checkpoint(tmp_path / name, model, tok, {"lr": 0.01, "kind": kind}, "tiny.abc",
                           "abc", step, {"val_loss": 1.5}, **extra)
    return d, model, tok


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_round_trip_gives_the_same_model_and_outputs(tmp_path, kind):
    d, model, tok = _save(tmp_path, kind)
    c = ck.load_checkpoint(d)
    assert c.tokenizer == tok
    assert c.model_config == model.config
    assert (c.step, c.corpus_kind, c.corpus_name) == (7, "abc", "tiny.abc")
    assert c.train_config == {"lr": 0.01, "kind": kind}
    assert c.metrics == {"val_loss": 1.5}
    assert not c.model.training
    for k, v in model.state_dict().items():
        assert torch.equal(c.model.state_dict()[k], v), k
    x = torch.randint(0, tok.vocab_size, (2, 5))
    model.eval()
    torch.testing.assert_close(c.model(x)[0], model(x)[0], rtol=0, atol=0)


def test_a_device_this_machine_lacks_is_a_usage_error(tmp_path):
    from seqgen.errors import UsageError

    d, _, _ = _save(tmp_path)
    assert ck.load_checkpoint(d, device=torch.device("cpu")).step == 7  # a torch.device too
    with pytest.raises(UsageError, match="device must be auto, cpu"):
        ck.load_checkpoint(d, device="foo")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="CUDA is not available here"):
            ck.load_checkpoint(d, device="cuda")


def test_files_are_json_and_safetensors_not_pickle(tmp_path):
    from safetensors.torch import load_file

    d, model, _ = _save(tmp_path)
    meta = json.loads((d / ck.META).read_text())
    assert meta["format"] == "seqgen-checkpoint" and meta["version"] == ck.VERSION
    assert set(load_file(str(d / ck.WEIGHTS))) == set(model.state_dict())
    assert (d / ck.WEIGHTS).read_bytes()[:2] != b"\x80\x04"  # not a pickle stream


def test_loads_from_a_run_dir_whose_best_is_the_only_checkpoint(tmp_path):
    d, _, _ = _save(tmp_path, name="run/best")
    assert ck.load_checkpoint(tmp_path / "run").path == d
    assert ck.load_checkpoint(d / ck.META).path == d


def test_newer_format_version_is_refused(tmp_path):
    d, _, _ = _save(tmp_path)
    meta = json.loads((d / ck.META).read_text())
    meta["version"] = ck.VERSION + 1
    (d / ck.META).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="newer than this seqgen"):
        ck.load_checkpoint(d)


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete", "garbage"])
def test_damaged_weights_are_refused(tmp_path, damage):
    d, _, _ = _save(tmp_path)
    w = d / ck.WEIGHTS
    data = w.read_bytes()
    if damage == "truncate":
        w.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        w.write_bytes(data[:-5] + bytes([data[-5] ^ 0xFF]) + data[-4:])
    elif damage == "delete":
        w.unlink()
    else:
        w.write_bytes(b"not a safetensors file at all")
    with pytest.raises(CheckpointError, match="model.safetensors"):
        ck.load_checkpoint(d)


def test_consistent_but_invalid_safetensors_is_refused(tmp_path):
    """A safetensors file whose hash is recorded but whose content is not safetensors."""
    d, _, _ = _save(tmp_path)
    (d / ck.WEIGHTS).write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")
    meta = json.loads((d / ck.META).read_text())
    meta["files"][ck.WEIGHTS] = ck._file_entry(d / ck.WEIGHTS)
    (d / ck.META).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        ck.load_checkpoint(d)


@pytest.mark.parametrize("edit", [
    lambda m: m.pop("model_config"),
    lambda m: m.__setitem__("format", "something-else"),
    lambda m: m["model_config"].__setitem__("hidden_size", 32),  # weights no longer fit
    lambda m: m["model_config"].__setitem__("vocab_size", 3),
    lambda m: m["tokenizer"].__setitem__("chars", ["a", "a"]),
    lambda m: m.__setitem__("step", -1),
    lambda m: m["corpus"].__setitem__("kind", "midi"),
])
def test_bad_metadata_is_refused(tmp_path, edit):
    d, _, _ = _save(tmp_path)
    meta = json.loads((d / ck.META).read_text())
    edit(meta)
    (d / ck.META).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError):
        ck.load_checkpoint(d)


def test_truncated_json_and_non_checkpoints_are_refused(tmp_path):
    d, _, _ = _save(tmp_path)
    text = (d / ck.META).read_text()
    (d / ck.META).write_text(text[: len(text) // 2])
    with pytest.raises(CheckpointError, match="invalid JSON"):
        ck.load_checkpoint(d)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="not a seqgen checkpoint"):
        ck.load_checkpoint(tmp_path / "empty")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        ck.load_checkpoint(tmp_path / "missing")
    (tmp_path / "file.txt").write_text("hi")
    with pytest.raises(CheckpointError, match="not a checkpoint directory"):
        ck.load_checkpoint(tmp_path / "file.txt")


def test_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    d, model, tok = _save(tmp_path, step=3)
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    import safetensors.torch

    def broken(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", broken)
    with pytest.raises(WriteError, match="No space left"):
        ck.save_checkpoint(d, model, tok, {}, "x", "text", 4)
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before
    assert ck.load_checkpoint(d).step == 3


@pytest.mark.slow
def test_pack_state_round_trips_optimizer_state_through_json():
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1, betas=(0.8, 0.9))
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    sd = opt.state_dict()
    sd["param_groups"][0]["odd"] = [math.inf, (1, 2), None]
    tensors: dict = {}
    packed = json.loads(json.dumps(ck.pack_state(sd, tensors, "opt")))
    back = ck.unpack_state(packed, tensors)
    assert back["param_groups"] == sd["param_groups"]
    assert set(back["state"]) == {0, 1}  # int keys stay ints
    for i in (0, 1):
        for k, v in sd["state"][i].items():
            assert torch.equal(back["state"][i][k], v)
    opt2 = torch.optim.AdamW(model.parameters())
    opt2.load_state_dict(back)
    with pytest.raises(CheckpointError, match="missing tensor"):
        ck.unpack_state(packed, {})


def test_training_state_round_trip_and_best_has_none(tmp_path):
    tensors = {"a": torch.arange(4.0)}
    d, _, _ = _save(tmp_path, train_state=ck.TrainState(tensors, {"step": 7, "x": [1, 2]}))
    directory, meta, state = ck.load_train_state(d)
    assert directory == d and state.meta == {"step": 7, "x": [1, 2]}
    assert torch.equal(state.tensors["a"], tensors["a"])
    best, _, _ = _save(tmp_path, name="run2/best")
    with pytest.raises(CheckpointError, match="not a seqgen checkpoint"):
        ck.load_train_state(tmp_path / "run2")
    with pytest.raises(CheckpointError, match="no training state"):
        ck.load_train_state(best)


def test_find_latest_checkpoint(tmp_path):
    import os

    assert ck.find_latest_checkpoint(tmp_path / "nothing") is None
    a, _, _ = _save(tmp_path, name="a")
    b, _, _ = _save(tmp_path, name="b")
    os.utime(a / ck.META, ns=(2_000_000_000 * 10**9, 2_000_000_000 * 10**9))
    assert ck.find_latest_checkpoint(tmp_path) == a
    (tmp_path / "not-a-run").mkdir()
    assert ck.find_latest_checkpoint(tmp_path) == a


def test_checkpoint_files_get_the_usual_mode(tmp_path):
    """Every file of a checkpoint, weights included, is readable as any file the user writes
    (0666 less the umask), not 0600: safetensors' writer creates its file 0600."""
    import os
    import stat

    old = os.umask(0o022)
    try:
        d, model, _ = _save(tmp_path, train_state=ck.TrainState({"x": torch.zeros(2)}, {"step": 7}))
    finally:
        os.umask(old)
    files = sorted(p for p in d.iterdir() if p.is_file())
    assert {p.name for p in files} >= {ck.META, ck.WEIGHTS, ck.STATE_TENSORS}
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) == 0o644, p.name
