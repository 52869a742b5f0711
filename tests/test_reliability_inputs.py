"""Bad input across every command: one line on stderr, the right exit code, no traceback, nothing
on stdout, nothing written.

The same cases make the table in docs/reliability.md, from real runs:

    python tests/test_reliability_inputs.py            # print the Markdown table
    python tests/test_reliability_inputs.py --write    # and replace it in docs/reliability.md
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

DOC = Path(__file__).resolve().parents[1] / "docs" / "reliability.md"
BEGIN, END = "<!-- bad-input-table: begin -->", "<!-- bad-input-table: end -->"
runner = CliRunner()

TUNE = "X:1\nT:Test\nM:4/4\nL:1/8\nK:G\nGABc dedB|dedB dedB|c2ec B2dB|1 A2F2 G4:|\n"

# (input, command line): exit code. Paths are relative to a workspace made by `workspace()`.
CASES: list[tuple[str, list[str], int]] = [
    # seqgen tokenizer
    ("missing corpus file", ["tokenizer", "build", "missing.txt"], 2),
    ("unknown bundled corpus name", ["tokenizer", "build", "shakespear"], 2),
    ("binary file as corpus", ["tokenizer", "build", "binary.txt"], 2),
    ("invalid UTF-8 corpus", ["tokenizer", "build", "latin1.txt"], 2),
    ("empty corpus file", ["tokenizer", "build", "empty.txt"], 2),
    ("vocabulary that is not JSON", ["tokenizer", "show", "notjson.json"], 2),
    ("vocabulary of the wrong shape", ["tokenizer", "show", "wrong.json"], 2),
    ("text with unknown characters", ["tokenizer", "encode", "vocab.json", "hello €"], 2),
    ("text and --file both", ["tokenizer", "encode", "vocab.json", "--file", "poem.txt", "sea"], 2),
    ("--glob for a single file", ["tokenizer", "build", "poem.txt", "--glob", "*.txt"], 2),
    ("token id out of range", ["tokenizer", "decode", "vocab.json", "5", "99999"], 2),
    ("token id that is not a number", ["tokenizer", "decode", "vocab.json", "5", "x"], 2),
    ("token id of superscript digits", ["tokenizer", "decode", "vocab.json", "\u00b2"], 2),
    # seqgen train
    ("missing corpus", ["train", "missing.txt", "--steps", "1"], 2),
    ("unknown model kind", ["train", "poem.txt", "--model", "cnn", "--steps", "1"], 2),
    ("zero hidden size", ["train", "poem.txt", "--hidden-size", "0", "--steps", "1"], 2),
    ("dropout out of range", ["train", "poem.txt", "--dropout", "1.5", "--steps", "1"], 2),
    ("negative learning rate", ["train", "poem.txt", "--lr", "-1", "--steps", "1"], 2),
    ("option that is not a number", ["train", "poem.txt", "--steps", "many"], 2),
    ("corpus too small for the window",
     ["train", "tiny.txt", "--seq-len", "512", "--steps", "1"], 2),
    ("--out holding a checkpoint", ["train", "poem.txt", "--out", "ckpt", "--steps", "1"], 2),
    ("--out that is a file", ["train", "poem.txt", "--out", "poem.txt", "--overwrite",
                              "--steps", "1"], 2),
    ("--out another run is writing to", ["train", "poem.txt", "--out", "busy", "--steps", "1"], 2),
    ("--resume of a directory without a checkpoint", ["train", "--resume", "emptydir"], 2),
    ("--resume of best/ (no training state)", ["train", "--resume", "ckpt/best"], 2),
    ("--resume changing the model", ["train", "--resume", "ckpt", "--hidden-size", "64"], 2),
    ("--resume of a finished run", ["train", "--resume", "ckpt", "--steps", "2"], 2),
    ("--device cuda without CUDA", ["train", "poem.txt", "--device", "cuda", "--steps", "1"], 2),
    ("--init-from with new characters", ["train", "latin.txt", "--init-from", "ckpt",
                                         "--steps", "1"], 2),
    ("a transformer option for an LSTM", ["train", "poem.txt", "--model", "lstm",
                                          "--num-heads", "2", "--steps", "1"], 2),
    ("--init-from with another size", ["train", "poem.txt", "--init-from", "ckpt",
                                       "--hidden-size", "64", "--steps", "1"], 2),
    ("--init-from with --model", ["train", "poem.txt", "--init-from", "ckpt", "--model", "gru",
                                  "--steps", "1"], 2),
    ("a short option of another command", ["train", "poem.txt", "-t", "1"], 2),
    ("more threads than sane", ["train", "poem.txt", "--threads", "100000", "--steps", "1"], 2),
    ("an unknown option", ["train", "poem.txt", "--stpes", "1"], 2),
    # seqgen sample
    ("missing checkpoint", ["sample", "nothere"], 2),
    ("directory that is not a checkpoint", ["sample", "emptydir"], 2),
    ("truncated weights", ["sample", "truncated"], 2),
    ("checkpoint from a newer seqgen", ["sample", "newer"], 2),
    ("hostile config (25 GB model)", ["sample", "hostile"], 2),
    ("prompt with unknown characters", ["sample", "ckpt", "--prompt", "€uro"], 2),
    ("temperature below zero", ["sample", "ckpt", "--temperature", "-1"], 2),
    ("top-p above 1", ["sample", "ckpt", "--top-p", "2"], 2),
    ("--tunes from a text model", ["sample", "ckpt", "--tunes", "2"], 2),
    ("missing prompt file", ["sample", "ckpt", "--prompt-file", "nothere.txt"], 2),
    ("a device torch does not know", ["sample", "ckpt", "--device", "tpu"], 2),
    ("a file as the tunes directory", ["sample", "ckpt", "--tunes", "1", "--out", "poem.txt"], 2),
    ("a file name for the tunes directory", ["sample", "ckpt", "--tunes", "1", "--out",
                                             "mine.abc"], 2),
    ("--no-midi without --out", ["sample", "ckpt", "--no-midi"], 2),
    ("--tunes with --num-samples", ["sample", "ckpt", "--tunes", "2", "--num-samples", "2"], 2),
    # seqgen abc2midi / convert
    ("missing ABC file", ["abc2midi", "nothere.abc"], 2),
    ("binary file as ABC", ["abc2midi", "binary.txt"], 2),
    ("text with no tunes", ["abc2midi", "poem.txt"], 2),
    ("tune over --max-chars", ["abc2midi", "tune.abc", "--max-chars", "10"], 2),
    ("--timeout 0", ["abc2midi", "tune.abc", "--timeout", "0"], 2),
    ("--check with an output", ["abc2midi", "tune.abc", "--check", "-o", "out.mid"], 2),
    ("unknown --to format", ["convert", "tune.abc", "--to", "mp3"], 2),
    ("an output name of another format", ["convert", "tune.abc", "--to", "midi", "-o",
                                          "tune.wav"], 2),
    ("a --soundfont for MIDI output", ["convert", "tune.abc", "--to", "midi", "--soundfont",
                                       "vocab.json"], 2),
    # seqgen models / inspect / eval
    ("vocabulary that is not JSON", ["models", "--vocab", "notjson.json"], 2),
    ("vocabulary size 0", ["models", "--vocab-size", "0"], 2),
    ("a vocabulary and a size", ["models", "--vocab", "vocab.json", "--vocab-size", "50"], 2),
    ("a fresh model's size for a checkpoint", ["inspect", "gradients", "ckpt", "--hidden-size",
                                               "64"], 2),
    ("inspect a missing checkpoint", ["inspect", "gradients", "nothere"], 2),
    ("attention maps of an LSTM", ["inspect", "attention", "ckpt", "--prompt", "the sea"], 2),
    ("eval of a missing checkpoint", ["eval", "nothere"], 2),
    ("eval on a corpus with new characters", ["eval", "ckpt", "--corpus", "latin.txt"], 2),
    ("eval's tune options for a text model", ["eval", "ckpt", "--tunes", "5"], 2),
]


def workspace(root: Path) -> Path:
    """The files the cases refer to, in `root`."""
    import shutil

    from seqgen import checkpoint as ck
    from seqgen.cli.app import app
    from seqgen.tokenizer import Tokenizer

    poem = "".join(f"line {i % 13}: the sea, the stars and the wind.\n" for i in range(200))
    (root / "poem.txt").write_text(poem)
    (root / "tiny.txt").write_text("the sea\n")
    (root / "latin.txt").write_text("caf\u00e9 cr\u00e8me \u00e0 la mer\n" * 50)
    (root / "binary.txt").write_bytes(b"\x00\x01\x02PK\x03\x04" * 20)
    (root / "latin1.txt").write_bytes("caf\u00e9\n".encode("latin-1"))
    (root / "empty.txt").write_text("")
    (root / "notjson.json").write_text("{chars: [a, b")
    (root / "wrong.json").write_text(json.dumps({"format": "seqgen-vocab", "version": 1,
                                                 "specials": ["<eos>", "<unk>"],
                                                 "chars": ["ab", 3]}))
    (root / "tune.abc").write_text(TUNE)
    (root / "emptydir").mkdir()
    Tokenizer.build([poem]).save(root / "vocab.json")
    old = os.getcwd()
    os.chdir(root)
    try:  # a real run: 2 steps of a tiny LSTM
        r = runner.invoke(app, ["-q", "train", "poem.txt", "--preset", "tiny", "--hidden-size",
                                "16", "--embed-dim", "8", "--batch-size", "2", "--seq-len", "16",
                                "--eval-every", "1", "--warmup-steps", "1", "--device", "cpu",
                                "--threads", "1", "--no-plot", "--steps", "2", "--out", "ckpt"])
    finally:
        os.chdir(old)
    assert r.exit_code == 0, r.output
    for name in ("truncated", "newer", "hostile"):
        shutil.copytree(root / "ckpt" / "best", root / name)
    w = root / "truncated" / ck.WEIGHTS
    w.write_bytes(w.read_bytes()[:100])
    for name, key, value in (("newer", "version", 99), ("hostile", "model_config", None)):
        meta = json.loads((root / name / ck.META).read_text())
        if value is None:
            meta["model_config"]["hidden_size"] = 40000
        else:
            meta[key] = value
        (root / name / ck.META).write_text(json.dumps(meta))
    (root / "busy").mkdir()
    return root


@contextlib.contextmanager
def busy_lock(root: Path):
    """Hold the lock of busy/ as another live run would."""
    from seqgen.fileio import directory_lock

    with directory_lock(root / "busy"):
        yield


def run_case(root: Path, args: list[str]):
    from seqgen.cli.app import app

    old = os.getcwd()
    os.chdir(root)
    try:
        with busy_lock(root):
            before = {str(p): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()
                      and p.name != ".seqgen.lock"}
            r = runner.invoke(app, args)
            after = {str(p): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()
                     and p.name != ".seqgen.lock"}
    finally:
        os.chdir(old)
    return r, before, after


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return workspace(tmp_path_factory.mktemp("ws"))


@pytest.mark.parametrize("what, args, code", CASES, ids=[f"{c[1][0]}: {c[0]}" for c in CASES])
def test_bad_input_is_one_line_with_its_exit_code(ws, what, args, code):
    r, before, after = run_case(ws, args)
    assert r.exit_code == code, r.output
    lines = r.stderr.strip().splitlines()
    # one error line, last (progress lines may come before it); or Typer's own usage error
    errors = [line for line in lines if line.startswith(("error:", "Error:"))]
    assert len(errors) == 1 and (lines[-1] == errors[0] or errors[0].startswith("Error:")), r.stderr
    assert "Traceback" not in r.output and "bug in seqgen" not in r.stderr
    assert r.stdout == ""
    assert after == before  # nothing written, changed or removed


def table() -> str:
    rows = ["| input | command | message (stderr) | exit |", "|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("SEQGEN_CACHE_DIR", str(Path(tmp) / "cache"))
        root = workspace(Path(tmp))
        for what, args, _ in CASES:
            r, _, _ = run_case(root, args)
            msg = " ".join(r.stderr.split()).replace("|", "\\|")
            cmd = "seqgen " + " ".join(a if " " not in a else f"'{a}'" for a in args)
            rows.append(f"| {what} | `{cmd}` | {msg} | {r.exit_code} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    text = table()
    print(text)
    if "--write" in sys.argv:
        doc = DOC.read_text()
        a, b = doc.index(BEGIN) + len(BEGIN), doc.index(END)
        DOC.write_text(doc[:a] + "\n" + text + doc[b:])
        print(f"wrote {DOC}")
