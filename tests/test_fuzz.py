"""Fuzzing with hypothesis: the tokenizer, the corpus reader, checkpoint metadata and the ABC
command line never fail with anything but a one-line SeqgenError.

The ABC converter's own parser is fuzzed with corrupted tunes in tests/test_music_convert.py
(test_corrupted_tunes_never_crash_or_hang); here only arbitrary bytes through `seqgen abc2midi`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from seqgen import checkpoint as ck
from seqgen.cli.app import app
from seqgen.data import load_corpus, prepare_data
from seqgen.errors import CheckpointError, DataError, VocabularyError
from seqgen.models import ModelConfig, build_model
from seqgen.tokenizer import Tokenizer

runner = CliRunner()
FAST = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                      HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


# --------------------------------------------------------------------------------- tokenizer
@pytest.mark.slow
@settings(FAST, max_examples=300)
@given(st.lists(st.text(min_size=1), min_size=1, max_size=4), st.text())
def test_tokenizer_round_trips_any_text(docs, other):
    """Any Unicode (NUL, lone surrogates, newlines, emoji): what the vocabulary knows decodes
    back exactly; unknown characters are a VocabularyError, or <unk> with errors="replace"."""
    tok = Tokenizer.build(docs)
    for d in docs:
        assert tok.decode(tok.encode(d)) == d
        assert tok.encode_array(d).tolist() == tok.encode(d)
    assert Tokenizer.from_dict(json.loads(tok.to_json())) == tok
    unknown = set(other) - set(tok.chars)
    if unknown:
        with pytest.raises(VocabularyError):
            tok.encode(other)
        ids = tok.encode(other, errors="replace")
        assert len(ids) == len(other) and ids.count(1) == sum(c in unknown for c in other)
    else:
        assert tok.decode(tok.encode(other)) == other


@pytest.mark.slow
@settings(FAST, max_examples=300)
@given(st.one_of(json_values, st.fixed_dictionaries(
    {"format": st.just("seqgen-vocab"), "version": st.integers(-2, 3) | json_values,
     "specials": st.just(["<eos>", "<unk>"]) | json_values,
     "chars": st.lists(st.text(max_size=2), max_size=6) | json_values},
    optional={"counts": st.lists(st.integers(-3, 5), max_size=6) | json_values})))
def test_vocabulary_json_is_validated(d):
    try:
        tok = Tokenizer.from_dict(d)
    except VocabularyError as e:
        assert "\n" not in str(e)
        return
    assert tok.vocab_size == len(d["chars"]) + 2
    assert tok.chars == sorted(d["chars"], key=ord)  # ids in code point order, as built
    text = "".join(d["chars"])
    assert tok.decode(tok.encode(text)) == text


@pytest.mark.slow
@settings(FAST, max_examples=150)
@given(st.binary(max_size=300))
def test_vocabulary_file_of_any_bytes(tmp_path, raw):
    p = tmp_path / "vocab.json"
    p.write_bytes(raw)
    try:
        Tokenizer.load(p)
    except VocabularyError as e:
        assert "\n" not in str(e) and str(p) in str(e)


# --------------------------------------------------------------------------------- corpus reader
_ABCISH = st.text(alphabet=st.sampled_from(list("X:T:K:M:L:1\n|abcdefgABCDEFG ,'/2\r\t\x00é\ufeff")),
                  max_size=200)


@pytest.mark.slow
@settings(FAST, max_examples=200)
@given(st.one_of(st.binary(max_size=400), _ABCISH.map(str.encode),
                 st.text(max_size=300).map(lambda s: s.encode("utf-8", "surrogatepass"))),
       st.sampled_from(["c.txt", "c.abc", "c"]), st.booleans())
def test_corpus_reader_accepts_or_refuses_any_file(tmp_path, raw, name, split_docs):
    d = tmp_path / "fz"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir()
    p = d / name
    p.write_bytes(raw)
    try:
        corpus = load_corpus(str(p), split_docs=split_docs)
    except DataError as e:
        assert "\n" not in str(e) and str(p) in str(e)
        return
    assert corpus.kind in ("abc", "text") and corpus.documents
    assert all(isinstance(doc, str) and doc for doc in corpus.documents)
    assert "\r" not in "".join(corpus.documents)
    try:
        data = prepare_data(corpus, val_fraction=0.1, seed=1)
    except DataError as e:
        assert "\n" not in str(e)
        return
    text = "".join(corpus.documents)
    # (a split by position trains on the documents joined by line breaks: split_corpus)
    joined = "\n" if data.split.by == "position" and len(corpus.documents) > 1 else ""
    assert set(data.tokenizer.chars) == set(text) | set(joined)
    ids = [*data.train_ids.tolist(), *data.val_ids.tolist()]
    assert 0 < len(ids) <= len(text) + len(corpus.documents)
    assert max(ids) < data.tokenizer.vocab_size


# --------------------------------------------------------------------------------- checkpoints
@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory) -> Path:
    tok = Tokenizer.build(["X:1\nK:G\nabc|\n"])
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="transformer", vocab_size=tok.vocab_size,
                                    hidden_size=8, num_layers=1, num_heads=2, context_length=8))
    return ck.save_checkpoint(tmp_path_factory.mktemp("ck") / "run", model, tok, {"lr": 1.0},
                              "x.abc", "abc", 3, {})


@pytest.mark.slow
@settings(FAST, max_examples=120)
@given(data=st.data())
def test_checkpoint_metadata_mutations_are_refused_or_load(tmp_path, good_checkpoint, data):
    """Replace any value (at any depth) of a valid checkpoint.json by arbitrary JSON: loading
    gives the model or a one-line CheckpointError, never another exception."""
    d = tmp_path / "m"
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(good_checkpoint, d)
    meta = json.loads((d / ck.META).read_text())
    node, path = meta, []
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            break
        k = data.draw(st.sampled_from(keys))
        path.append(k)
        if isinstance(node[k], (dict, list)) and node[k] and data.draw(st.booleans()):
            node = node[k]
            continue
        node[k] = data.draw(json_values)
        break
    (d / ck.META).write_text(json.dumps(meta))
    try:
        c = ck.load_checkpoint(d)
    except CheckpointError as e:
        assert "\n" not in str(e) and len(str(e)) < 600
        return
    x = torch.zeros(1, 2, dtype=torch.long)
    assert c.model(x)[0].shape == (1, 2, c.tokenizer.vocab_size)


# --------------------------------------------------------------------------------- ABC CLI
@pytest.mark.slow
@settings(FAST, max_examples=6)
@given(st.one_of(st.binary(max_size=200), _ABCISH.map(lambda s: ("X:1\n" + s).encode())))
def test_abc2midi_of_any_file_is_one_line_or_a_midi(tmp_path, raw):
    src = tmp_path / "in.abc"
    src.write_bytes(raw)
    out = tmp_path / "out"
    shutil.rmtree(out, ignore_errors=True)
    r = runner.invoke(app, ["abc2midi", str(src), "--output", str(out), "--timeout", "10"])
    assert "Traceback" not in r.output and "bug in seqgen" not in r.output
    assert r.exit_code in (0, 1, 2), r.output
    if r.exit_code == 0:
        assert any(p.suffix == ".mid" for p in out.rglob("*"))

