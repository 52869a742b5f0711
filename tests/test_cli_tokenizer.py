import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from seqgen import __version__
from seqgen.cli.app import app
from seqgen.errors import VocabularyError

runner = CliRunner()


def run(*args, input=None):
    return runner.invoke(app, list(args), input=input)


def test_version():
    r = run("--version")
    assert r.exit_code == 0 and r.stdout.strip() == f"seqgen {__version__}"


def test_help_does_not_import_heavy_modules():
    code = (
        "import sys; from typer.testing import CliRunner; from seqgen.cli.app import app;"
        "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output;"
        "heavy = [m for m in ('torch', 'music21', 'numpy', 'matplotlib', 'verovio', 'cairosvg',"
        " 'soundfile') if m in sys.modules];"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_build_show_encode_decode_on_the_default_corpus(tmp_path):
    vocab = tmp_path / "v.json"
    r = run("tokenizer", "build", "folk", "-o", str(vocab))
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == str(vocab)  # stdout: only the path written
    assert "2,009 tunes" in r.stderr
    d = json.loads(vocab.read_text())
    assert d["format"] == "seqgen-vocab" and "K" in d["chars"]

    r = run("tokenizer", "show", str(vocab))
    assert r.exit_code == 0 and "<eos>" in r.stdout and "newline" in r.stdout

    r = run("tokenizer", "encode", str(vocab), "K:D\n|abc|")
    ids = r.stdout.split()
    assert r.exit_code == 0 and len(ids) == 9
    r = run("tokenizer", "decode", str(vocab), *ids)
    assert r.exit_code == 0 and r.stdout == "K:D\n|abc|"
    # typed in a shell, \n is read as a newline, as in seqgen sample --prompt
    assert run("tokenizer", "encode", str(vocab), "K:D\\n|abc|").stdout.split() == ids
    for bad in ("x7", "\u00b2", "--5"):  # '\u00b2' (superscript two) passes str.isdigit
        r = run("tokenizer", "decode", str(vocab), "--", ids[0], bad)
        assert r.exit_code == 2 and f"IDS: {bad!r} is not an integer token id" in r.stderr


def test_build_reads_abc_as_train_does(tmp_path):
    """By default the vocabulary is the one 'seqgen train' would build: bibliographic header
    fields (here a Z: line with '@') are left out, as training leaves them out."""
    abc = tmp_path / "t.abc"
    abc.write_text("X:1\nT:A\nZ:me@example.org\nM:2/4\nL:1/8\nK:D\nABcd|]\n\n"
                   "X:2\nT:B\nM:2/4\nL:1/8\nK:G\nGABc|]\n")
    for headers, has_at in (("music", False), ("all", True)):
        vocab = tmp_path / f"{headers}.json"
        r = run("tokenizer", "build", str(abc), "--abc-headers", headers, "-o", str(vocab))
        assert r.exit_code == 0, r.output
        assert ("@" in json.loads(vocab.read_text())["chars"]) == has_at
    assert json.loads((tmp_path / "music.json").read_text()) == json.loads(
        run("tokenizer", "build", str(abc)).stdout)


def test_quiet_silences_logs_but_not_results(tmp_path):
    vocab = tmp_path / "v.json"
    r = run("--quiet", "tokenizer", "build", "folk", "-o", str(vocab))
    assert r.exit_code == 0 and r.stderr == "" and r.stdout.strip() == str(vocab)


def test_encode_unknown_characters(tmp_path):
    vocab = tmp_path / "v.json"
    run("tokenizer", "build", "folk", "-o", str(vocab))
    r = run("tokenizer", "encode", str(vocab), "K:D €")
    assert r.exit_code == 2 and "'€'" in r.stderr and "Traceback" not in r.output
    r = run("tokenizer", "encode", str(vocab), "K:D €", "--unknown", "skip")
    assert r.exit_code == 0
    assert run("tokenizer", "decode", str(vocab), *r.stdout.split()).stdout == "K:D "


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda d: d / "missing.txt", "no such file"),
        (lambda d: _w(d / "empty.txt", b""), "empty"),
        (lambda d: _w(d / "a.bin", b"\x00\x01\x02"), "binary"),
        (lambda d: _w(d / "bad.txt", b"\xff\xfe"), "invalid UTF-8"),
        (lambda d: (d / "dir").mkdir() or d / "dir", "no files match"),
        (lambda d: "nosuchcorpus", "neither a file nor a bundled corpus"),
    ],
)
def test_build_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, setup, message):
    corpus = setup(tmp_path)
    out = tmp_path / "out" / "v.json"
    r = run("tokenizer", "build", str(corpus), "-o", str(out))
    assert r.exit_code == 2, r.output
    assert message in r.stderr and str(corpus) in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.output
    assert r.stdout == "" and not out.exists()


def test_stdin_must_be_utf8_like_a_file(tmp_path):
    vocab = tmp_path / "v.json"
    assert run("tokenizer", "build", "folk", "-o", str(vocab)).exit_code == 0
    r = CliRunner().invoke(app, ["tokenizer", "encode", str(vocab)], input=b"ab\xff")
    assert r.exit_code == 2 and "stdin: line 1: invalid UTF-8 (byte 0xff at offset 2)" in r.stderr
    r = CliRunner().invoke(app, ["tokenizer", "encode", str(vocab)], input=b"K:D\r\n")
    assert r.exit_code == 0 and len(r.stdout.split()) == 4  # \r\n read as one newline


def test_a_checkpoint_directory_gives_its_vocabulary(tmp_path):
    from seqgen.checkpoint import save_checkpoint
    from seqgen.models import ModelConfig, build_model
    from seqgen.tokenizer import Tokenizer

    tok = Tokenizer.build(["K:D\n|abc|"])
    model = build_model(ModelConfig(kind="rnn", vocab_size=tok.vocab_size, hidden_size=4,
                                    num_layers=1, embed_dim=4))
    ckpt = save_checkpoint(tmp_path / "run", model, tok, {}, "t", "abc", step=0)
    r = run("tokenizer", "encode", str(ckpt), "abc")
    assert r.exit_code == 0 and r.stdout.split() == [str(i) for i in tok.encode("abc")]
    r = run("tokenizer", "show", str(ckpt))
    assert r.exit_code == 0 and "<eos>" in r.stdout
    r = run("tokenizer", "show", str(tmp_path))  # a directory, but no checkpoint
    assert r.exit_code == 2 and "without a checkpoint.json" in r.stderr


@pytest.mark.parametrize("content", ["{oops", '{"format": "seqgen-vocab"}'])
def test_show_bad_vocabulary_file(tmp_path, content):
    vocab = tmp_path / "v.json"
    vocab.write_text(content)
    r = run("tokenizer", "show", str(vocab))
    assert r.exit_code == 2 and str(vocab) in r.stderr and "Traceback" not in r.output


def test_debug_shows_the_traceback(tmp_path):
    r = run("--debug", "tokenizer", "show", str(tmp_path / "none.json"))
    assert isinstance(r.exception, VocabularyError)  # re-raised for the traceback
    r = run("tokenizer", "show", str(tmp_path / "none.json"))
    assert isinstance(r.exception, SystemExit) and r.exit_code == 2  # without --debug: a message


@pytest.mark.slow
def test_corpora_lists_bundled_collections():
    r = run("tokenizer", "corpora")
    assert r.exit_code == 0
    assert "folk (default)" in r.stdout and "ryans" in r.stdout and "2,009" in r.stdout


def _w(path, data):
    path.write_bytes(data)
    return path
