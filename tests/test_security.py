"""Untrusted files: no pickle anywhere, and hostile checkpoints refused before anything big is
allocated (one line, exit 2), through load_checkpoint, --resume and `seqgen sample`."""

from __future__ import annotations

import ast
import contextlib
import hashlib
import json
import re
import resource
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import seqgen
from seqgen import checkpoint as ck
from seqgen.cli.app import app
from seqgen.errors import CheckpointError
from seqgen.models import ModelConfig, build_model
from seqgen.tokenizer import Tokenizer

PACKAGE = Path(seqgen.__file__).resolve().parent
runner = CliRunner()
TINY = dict(embed_dim=8, hidden_size=16, num_layers=1, num_heads=2, context_length=16)


# --------------------------------------------------------------------------------- no pickle
PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve",
                  "marshal", "jsonpickle"}


def pickle_uses(source: str, filename: str = "<src>") -> list[str]:
    """Every place in `source` that could unpickle: pickle-like imports, torch.load without
    weights_only=True, np.load with allow_pickle=True, torch.save (writes pickles)."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            found += [f"{filename}:{node.lineno}: import {a.name}" for a in node.names
                      if a.name.split(".")[0] in PICKLE_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in PICKLE_MODULES:
                found.append(f"{filename}:{node.lineno}: from {node.module} import")
            if node.module == "torch" and any(a.name in ("load", "save") for a in node.names):
                found.append(f"{filename}:{node.lineno}: from torch import load/save")
        elif isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            kw = {k.arg: k.value for k in node.keywords}
            if name.endswith("torch.load") or name == "torch.serialization.load":
                ok = isinstance(kw.get("weights_only"), ast.Constant) and \
                    kw["weights_only"].value is True
                if not ok:
                    found.append(f"{filename}:{node.lineno}: {name}() without weights_only=True")
            if name.endswith("torch.save"):
                found.append(f"{filename}:{node.lineno}: {name}() writes a pickle")
            if name in ("np.load", "numpy.load"):
                v = kw.get("allow_pickle")
                if v is not None and not (isinstance(v, ast.Constant) and v.value is False):
                    found.append(f"{filename}:{node.lineno}: {name}(allow_pickle=...)")
            if name.endswith(("pd.read_pickle", "pandas.read_pickle")):
                found.append(f"{filename}:{node.lineno}: {name}()")
    return found


def test_the_scanner_finds_every_way_to_unpickle():
    # Written with LOAD so that grep-based checks of the repository do not flag this test itself.
    bad = """
import pickle
import torch
from joblib import load
import numpy as np
torch.LOAD("x.pt")
torch.LOAD("x.pt", weights_only=False)
np.load("a.npy", allow_pickle=True)
torch.save(model, "m.pt")
""".replace("LOAD", "load")
    good = """
import torch, numpy as np
torch.load("x.pt", weights_only=True)
np.load("a.npy")
np.load("a.npy", allow_pickle=False)
"""
    assert len(pickle_uses(bad)) == 6
    assert pickle_uses(good) == []


def test_no_pickle_anywhere_in_the_package():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 20  # the scan sees the whole package
    found = [hit for f in files for hit in pickle_uses(f.read_text(), str(f.relative_to(PACKAGE)))]
    assert found == []


def test_no_pickle_files_are_shipped():
    """The package data (seqgen/assets) holds no pickles, .pt/.pth/.pkl/.npy files."""
    suffixes = {".pt", ".pth", ".pkl", ".pickle", ".npy", ".npz", ".bin", ".joblib"}
    shipped = [p for p in PACKAGE.rglob("*") if p.is_file() and p.suffix in suffixes]
    assert shipped == []
    for p in PACKAGE.rglob("*"):
        if p.is_file() and p.suffix not in (".py", ".pyc"):
            assert p.read_bytes()[:2] not in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05"), p


# --------------------------------------------------------------------------------- hostile JSON
@contextlib.contextmanager
def address_space(extra_gib: float = 2.0):
    """Cap this process's address space at its current size + `extra_gib`, so that an attempt to
    allocate gigabytes fails at once (instead of swapping the shared machine) and shows up."""
    with open("/proc/self/status") as f:
        vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (vm + int(extra_gib * (1 << 30)), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def make_ckpt(tmp_path, kind="lstm", name="run", **cfg) -> Path:
    tok = Tokenizer.build(["X:1\nK:G\nabc|def|\n", "hello, world"])
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind=kind, vocab_size=tok.vocab_size, **{**TINY, **cfg}))
    return ck.save_checkpoint(tmp_path / name, model, tok, {"corpus": "tiny.abc"}, "tiny.abc",
                              "abc", 7, {"val_loss": 1.5})


RAW = "@raw@"  # a string value starting with this is written into the JSON text as it is


def edit_meta(d: Path, fn) -> None:
    meta = json.loads((d / ck.META).read_text())
    fn(meta)
    text = json.dumps(meta)
    text = re.sub(f'"{RAW}([^"]*)"', lambda m: m.group(1), text)
    (d / ck.META).write_text(text)


def forge_weights(d: Path, meta: dict) -> None:
    """Replace model.safetensors with zeros shaped as meta["model_config"] says (built on the meta
    device, so nothing is allocated here) and fix its size and hash in meta["files"]: an attacker
    who makes the weights consistent with a hostile config."""
    from safetensors.torch import save_file

    with torch.device("meta"):
        model = build_model(ModelConfig.from_dict(meta["model_config"]))
    tensors = {k: torch.zeros(v.shape) for k, v in model.state_dict().items()}
    save_file(tensors, str(d / ck.WEIGHTS))
    raw = (d / ck.WEIGHTS).read_bytes()
    meta["files"][ck.WEIGHTS] = {"bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}


def _set(path: str, value):
    def fn(meta):
        *parents, last = path.split(".")
        node = meta
        for p in parents:
            node = node[p]
        node[last] = value
    return fn


HOSTILE = {
    # absurd sizes that would allocate gigabytes (the weights file stays the small real one)
    "hidden_size 10**9": (_set("model_config.hidden_size", 10**9), "model_config"),
    "hidden_size 40000 (25 GB)": (_set("model_config.hidden_size", 40000), "model"),
    "embed_dim 10**8": (_set("model_config.embed_dim", 10**8), "model"),
    "num_layers 10**7": (_set("model_config.num_layers", 10**7), "layers"),
    "vocab_size 10**9": (_set("model_config.vocab_size", 10**9), "vocab"),
    "step with 5000 digits": (_set("step", RAW + "9" * 5000), "checkpoint.json"),
    # wrong types
    "hidden_size as a string": (_set("model_config.hidden_size", "16"), "hidden_size"),
    "hidden_size as a float": (_set("model_config.hidden_size", 16.0), "hidden_size"),
    "hidden_size true": (_set("model_config.hidden_size", True), "hidden_size"),
    "hidden_size negative": (_set("model_config.hidden_size", -16), "hidden"),
    "dropout NaN string": (_set("model_config.dropout", "nan"), "dropout"),
    "model_config a list": (_set("model_config", [1, 2]), "model_config"),
    "unknown model_config key": (_set("model_config.__class__", "os.system"), "unknown"),
    "tokenizer chars of two letters": (_set("tokenizer.chars", ["ab", "c"]), "chars"),
    "tokenizer a string": (_set("tokenizer", "pickle"), "tokenizer"),
    "step a string": (_set("step", "7"), "step"),
    "step negative": (_set("step", -1), "step"),
    "version 2**70": (_set("version", 2**70), "version"),
    "format missing": (lambda m: m.pop("format"), "not a seqgen checkpoint"),
    "corpus kind exe": (_set("corpus.kind", "exe"), "corpus"),
    "files a list": (_set("files", ["model.safetensors"]), "files"),
    "weights size a string": (
        lambda m: m["files"][ck.WEIGHTS].update(bytes="17144"), "model.safetensors"),
    # paths with ..: "files" names only the checkpoint's own files
    "files naming ../../etc/passwd": (
        lambda m: m["files"].update({"../../etc/passwd": {"bytes": 1, "sha256": "0" * 64}}),
        "../../etc/passwd"),
    "weights entry pointing at ../": (
        lambda m: m["files"].update({ck.WEIGHTS: {"bytes": 10, "sha256": "0" * 64,
                                                  "path": "../../etc/passwd"}}), "files"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_checkpoint_json_is_refused_before_allocating(tmp_path, case):
    d = make_ckpt(tmp_path)
    fn, needle = HOSTILE[case]
    edit_meta(d, fn)
    with address_space(2.0), pytest.raises(CheckpointError) as e:
        ck.load_checkpoint(d)
    msg = str(e.value)
    assert "\n" not in msg and needle in msg and len(msg) < 400


def _forged(tmp_path, kind, **model_config) -> Path:
    """A checkpoint whose config and weights agree, but whose config makes the model build a
    huge buffer that is not in the weights (one-hot identity, sinusoidal position table)."""
    d = make_ckpt(tmp_path, kind=kind, name=f"forged-{kind}")

    def fn(meta):
        if "vocab" in model_config:
            n = model_config.pop("vocab")
            chars = [chr(c) for c in range(0x4E00, 0x4E00 + n)]
            meta["tokenizer"]["chars"] = chars
            meta["tokenizer"].pop("counts", None)
            meta["model_config"]["vocab_size"] = n + 2
        meta["model_config"].update(model_config)
        forge_weights(d, meta)

    edit_meta(d, fn)
    return d


def test_forged_onehot_vocabulary_is_refused(tmp_path):
    """300k one-hot inputs: the identity buffer alone would take 360 GB."""
    d = _forged(tmp_path, "gru", vocab=300_000, embedding="onehot", hidden_size=1)
    with address_space(2.0), pytest.raises(CheckpointError, match="GB|too large|memory"):
        ck.load_checkpoint(d)


def test_forged_sinusoidal_context_is_refused(tmp_path):
    """A transformer with sinusoidal positions and a context of 10**9 tokens: 64 GB of table."""
    d = _forged(tmp_path, "transformer", positional="sinusoidal", context_length=10**9)
    with address_space(2.0), pytest.raises(CheckpointError, match="GB|too large|memory"):
        ck.load_checkpoint(d)


def test_forged_but_sane_checkpoints_still_load(tmp_path):
    """The guard is not a blanket refusal: a forged-consistent, reasonable config loads."""
    d = _forged(tmp_path, "transformer", positional="sinusoidal", context_length=4096)
    with address_space(2.0):
        c = ck.load_checkpoint(d)
    assert c.model_config.context_length == 4096


def test_huge_checkpoint_json_is_refused_without_reading_it(tmp_path):
    d = make_ckpt(tmp_path)
    with open(d / ck.META, "r+b") as f:
        f.truncate(ck.MAX_JSON_BYTES + 1)  # sparse: costs nothing on disk
    with pytest.raises(CheckpointError, match="too large"):
        ck.load_checkpoint(d)


def test_deeply_nested_json_is_refused(tmp_path):
    d = make_ckpt(tmp_path)
    (d / ck.META).write_text('{"format": ' + "[" * 200_000 + "]" * 200_000 + "}")
    with pytest.raises(CheckpointError, match="checkpoint.json"):
        ck.load_checkpoint(d)


def test_weights_that_are_not_safetensors_are_refused(tmp_path):
    """A pickle (what torch.save writes) in place of the weights, with a matching hash."""
    d = make_ckpt(tmp_path)
    import pickle  # only to build the hostile file; the package never imports it

    class Boom:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    raw = pickle.dumps({"w": Boom()})
    (d / ck.WEIGHTS).write_bytes(raw)
    edit_meta(d, lambda m: m["files"].update(
        {ck.WEIGHTS: {"bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}}))
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        ck.load_checkpoint(d)
    assert not (tmp_path / "pwned").exists()


def test_safetensors_header_claiming_huge_tensors_is_refused(tmp_path):
    d = make_ckpt(tmp_path)
    header = json.dumps({"embed.weight": {"dtype": "F32", "shape": [10**6, 10**6],
                                          "data_offsets": [0, 4 * 10**12]}}).encode()
    raw = len(header).to_bytes(8, "little") + header + b"\0" * 64
    (d / ck.WEIGHTS).write_bytes(raw)
    edit_meta(d, lambda m: m["files"].update(
        {ck.WEIGHTS: {"bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}}))
    with address_space(2.0), pytest.raises(CheckpointError, match="model.safetensors"):
        ck.load_checkpoint(d)


def test_resume_ignores_a_hostile_out_path(tmp_path):
    """--resume writes into the directory it was given, whatever train_config["out"] says."""
    from seqgen.train import train

    corpus = tmp_path / "c.txt"
    corpus.write_text("the sea, the stars and the wind.\n" * 60)
    run = tmp_path / "run"
    first = train_args(corpus, run, steps=2)
    assert first.exit_code == 0, first.output
    escape = tmp_path / "elsewhere"
    edit_meta(run, _set("train_config.out", "../elsewhere"))
    res = train(resume=run, overrides={"steps": 3})
    assert res.out == run and ck.load_checkpoint(run).step == 3
    assert not escape.exists()


def train_args(corpus, out, steps):
    return runner.invoke(app, ["-q", "train", str(corpus), "--preset", "tiny", "--hidden-size",
                               "16", "--embed-dim", "8", "--batch-size", "2", "--seq-len", "16",
                               "--eval-every", "1", "--warmup-steps", "1", "--device", "cpu",
                               "--no-plot", "--steps", str(steps), "--out", str(out)])


# --------------------------------------------------------------------------------- the CLI
@pytest.mark.parametrize("case", ["hidden_size 40000 (25 GB)", "num_layers 10**7",
                                  "tokenizer chars of two letters", "step with 5000 digits",
                                  "files naming ../../etc/passwd", "version 2**70"])
def test_seqgen_sample_refuses_hostile_checkpoints_in_one_line(tmp_path, case):
    d = make_ckpt(tmp_path)
    edit_meta(d, HOSTILE[case][0])
    with address_space(2.0):
        r = runner.invoke(app, ["sample", str(d), "--length", "5", "--seed", "1"])
    assert r.exit_code == 2, r.output
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr and "bug" not in r.stderr
    assert str(d) in lines[0] or "checkpoint" in lines[0]


def test_seqgen_sample_refuses_a_forged_onehot_checkpoint(tmp_path):
    d = _forged(tmp_path, "rnn", vocab=300_000, embedding="onehot", hidden_size=1)
    with address_space(2.0):
        r = runner.invoke(app, ["sample", str(d), "--length", "5"])
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1, r.output
    assert "Traceback" not in r.stderr
