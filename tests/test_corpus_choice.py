"""Which corpus a command reads and how training splits it: a bundled name against a folder of
that name here, and a held-out share of the characters, else a split by position, said and
recorded."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from seqgen import checkpoint as ck
from seqgen.cli.app import app
from seqgen.data import BUNDLED, load_corpus

runner = CliRunner()
TINY = ["--preset", "tiny", "--hidden-size", "16", "--embed-dim", "8", "--batch-size", "2",
        "--seq-len", "16", "--eval-every", "2", "--steps", "2", "--device", "cpu",
        "--eval-tokens", "256", "--threads", "1", "--no-plot"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "300"})


def test_a_folder_of_a_bundled_name_is_read_only_as_a_path(tmp_path, monkeypatch):
    folk = tmp_path / "folk"
    folk.mkdir()
    (folk / "song.txt").write_text("the sea, the stars and the wind\n" * 10)
    (folk / "tune.mid").write_bytes(b"MThd\x00\x00\x00\x06")  # what the bundled name must not read
    monkeypatch.chdir(tmp_path)
    if "folk" not in BUNDLED:
        pytest.skip("no bundled corpus named folk")
    bundled = load_corpus("folk")
    assert bundled.kind == "abc" and "the bundled corpus, not the folder folk" in bundled.note
    assert "./folk" in bundled.note
    mine = load_corpus("./folk", glob="*.txt")
    assert mine.kind == "text" and mine.note == "" and len(mine.documents) == 1
    r = invoke("tokenizer", "build", "folk", "-o", tmp_path / "v.json")
    assert r.exit_code == 0 and "the bundled corpus, not the folder folk" in r.stderr, r.stderr


def test_training_says_and_records_a_split_by_position(tmp_path):
    books = tmp_path / "books"
    books.mkdir()
    (books / "book.txt").write_text("the sea, the stars and the wind.\n" * 300)
    (books / "LICENSE").write_text("free to use.\n")  # 0.1% of the characters
    r = invoke("train", books, *TINY, "--out", tmp_path / "run")
    assert r.exit_code == 0, r.output
    said = " ".join(r.stderr.split())
    assert "split by position: the last 10.0% of the text held out (no set of whole documents " \
           "holds close to 10%" in said
    meta = json.loads((tmp_path / "run" / ck.META).read_text())
    assert meta["corpus"]["split"] == "position"
    assert meta["corpus"]["held_out"]["of"] == "tokens"
    assert meta["corpus"]["held_out"]["share"] == pytest.approx(0.1, abs=1e-3)
    # held out: about 10% of the characters, not one licence file
    res_val = int(said.split(" validation tokens")[0].rsplit("/ ", 1)[1].replace(",", ""))
    assert 0.09 < res_val / (len("the sea, the stars and the wind.\n") * 300) < 0.11


def test_a_checkpoint_from_before_the_share_of_characters_keeps_its_split(tmp_path):
    """eval and --resume split an older checkpoint's corpus by its rule (a share of the
    documents), so that what it trained on is never scored as held out."""
    meta = {"corpus": {"name": "x", "kind": "abc", "split": "document"}}
    assert ck.share_of(meta) == "documents"
    meta["corpus"]["held_out"] = {"of": "tokens", "share": 0.1}
    assert ck.share_of(meta) == "tokens"


def test_eval_of_the_shipped_model_says_which_corpus_it_read(tmp_path, monkeypatch):
    from seqgen.checkpoint import default_model_dir, load_checkpoint
    from seqgen.evaluate import EvalConfig, evaluate

    if default_model_dir() is None:
        pytest.skip("no shipped model")
    ckpt = load_checkpoint("default")
    name = ckpt.corpus_name  # the bundled corpus it trained on (folk-plus)
    if name not in BUNDLED:
        pytest.skip(f"the shipped model's corpus {name} is not bundled here")
    (tmp_path / name).mkdir()
    (tmp_path / name / "tune.mid").write_bytes(b"MThd\x00\x00\x00\x06")
    monkeypatch.chdir(tmp_path)
    said: list[str] = []
    report = evaluate(ckpt, EvalConfig(tunes=0, eval_tokens=200), notify=said.append)
    assert report.corpus == name and report.val_tokens > 0
    assert said == [f"{name}: the bundled corpus, not the folder {name} here (write ./{name} "
                    "to read the folder)"]
