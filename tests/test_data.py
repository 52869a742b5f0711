from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqgen.data import (
    BUNDLED,
    Corpus,
    check_window,
    encode_cached,
    load_corpus,
    prepare_data,
    split_corpus,
)
from seqgen.errors import DataError, UsageError
from seqgen.music.abc import split_tunes
from seqgen.tokenizer import EOS_ID, Tokenizer

ABC = """%abc-2.1 file header, belongs to no tune

X:1
T:First
M:6/8
K:D

|:dfa afd:|

X:2
T:Second
M:4/4
K:G
GABc d4|]
"""


def test_abc_files_split_into_tunes_at_x_headers(tmp_path):
    f = tmp_path / "tunes.abc"
    f.write_text(ABC)
    c = load_corpus(str(f))
    assert c.kind == "abc"
    assert len(c.documents) == 2
    assert c.documents[0].startswith("X:1") and "|:dfa afd:|" in c.documents[0]  # blank line kept
    assert c.documents[1].endswith("GABc d4|]")


def test_split_tunes_keeps_blank_lines_inside_a_tune():
    tunes = split_tunes("X:1\nK:D\n\nabc|\n\nX:2\nK:G\nd|")
    assert tunes == ["X:1\nK:D\n\nabc|", "X:2\nK:G\nd|"]


def test_text_file_is_one_document_unless_split_asked(tmp_path):
    f = tmp_path / "poems.txt"
    f.write_text("first poem\nline two\n\nsecond poem\n\n\nthird\r\n")
    assert load_corpus(str(f)).documents == ["first poem\nline two\n\nsecond poem\n\n\nthird\n"]
    docs = load_corpus(str(f), split_docs=True).documents
    assert docs == ["first poem\nline two", "second poem", "third"]


def test_directory_with_glob(tmp_path):
    (tmp_path / "a.abc").write_text("X:1\nK:D\nabc|\n")
    (tmp_path / "b.abc").write_text("X:1\nK:G\ndef|\n")
    (tmp_path / "notes.txt").write_text("not music")
    c = load_corpus(str(tmp_path), glob="*.abc")
    assert c.kind == "abc" and len(c.documents) == 2 and len(c.files) == 2
    assert load_corpus(str(tmp_path)).kind == "text"  # all three files


def test_bundled_default_corpus_is_oneills_collection():
    c = load_corpus()
    assert c.name == "folk" and c.kind == "abc"
    assert len(c.documents) > 1500  # O'Neill's 1850 has about two thousand tunes
    assert all(d.startswith("X:") for d in c.documents)
    assert any("T: The Enchanted Valley" in d for d in c.documents[:3])


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_every_bundled_corpus_loads(name):
    c = load_corpus(name)
    assert c.kind == "abc" and len(c.documents) > 50


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d / "missing.txt", "no such file"),
        (lambda d: _write(d / "empty.txt", b""), "the file is empty"),
        (lambda d: _write(d / "blank.txt", b"\n  \n"), "the file is empty"),
        (lambda d: _write(d / "x.bin", b"\x89PNG\x00\x01"), "binary file"),
        (lambda d: _write(d / "latin1.txt", b"ok\ncaf\xe9\n"), r"line 2: invalid UTF-8"),
        (lambda d: _mkdir(d / "nothing"), "no files match"),
    ],
)
def test_bad_corpora_name_the_path(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(DataError, match=message) as e:
        load_corpus(str(path))
    assert str(path) in str(e.value)


def test_unknown_bundled_name_lists_the_bundled_ones():
    with pytest.raises(DataError, match="neither a file nor a bundled corpus.*folk"):
        load_corpus("irishtunes")


def test_corpus_shorter_than_a_window():
    with pytest.raises(DataError, match="fewer than one training window"):
        check_window(10, 64, "training split of tiny.txt")
    check_window(65, 64, "ok")


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


# ------------------------------------------------------------------------------- splitting
@settings(max_examples=100, deadline=None)
@given(n=st.integers(2, 300), frac=st.floats(0.01, 0.9), seed=st.integers(0, 10**6))
def test_split_never_puts_a_document_in_both_halves(n, frac, seed):
    docs = [f"tune {i}" for i in range(n)]
    s = split_corpus(Corpus("c", docs, "abc"), frac, seed)
    assert s.by == "document"
    assert set(s.train).isdisjoint(s.val)
    assert sorted(s.train + s.val) == sorted(docs)
    assert 1 <= len(s.val) < n
    assert split_corpus(Corpus("c", docs, "abc"), frac, seed) == s  # deterministic


def test_single_document_is_split_by_position_like_nanogpt():
    text = "".join(chr(97 + i % 26) for i in range(1000))
    s = split_corpus(Corpus("c", [text], "text"), 0.1)
    assert s.by == "position"
    assert s.train == [text[:900]] and s.val == [text[900:]]


def test_bad_val_fraction():
    with pytest.raises(UsageError, match="val_fraction"):
        split_corpus(Corpus("c", ["a", "b"], "abc"), 1.5)


# ------------------------------------------------------------------------------- encoding
def test_prepare_data_encodes_documents_with_eos(tmp_path):
    docs = [f"X:{i}\nK:D\nabc|" for i in range(20)]
    data = prepare_data(Corpus("c", docs, "abc"), val_fraction=0.1, seed=3)
    assert int((np.asarray(data.train_ids) == EOS_ID).sum()) == 18
    assert int((np.asarray(data.val_ids) == EOS_ID).sum()) == 2
    assert data.tokenizer.decode(data.val_ids, eos="\0").split("\0")[:-1] == data.split.val


def test_encoded_corpus_is_cached_and_reused(tmp_path):
    tok = Tokenizer.build(["abc"])
    first = encode_cached(["abc", "cab"], tok, cache_dir=tmp_path)
    files = list((tmp_path / "encoded").glob("*.npy"))
    assert len(files) == 1
    assert isinstance(first, np.memmap)
    mtime = files[0].stat().st_mtime_ns
    again = encode_cached(["abc", "cab"], tok, cache_dir=tmp_path)
    assert files[0].stat().st_mtime_ns == mtime  # read back, not rewritten
    assert again.tolist() == first.tolist()
    encode_cached(["abc", "cac"], tok, cache_dir=tmp_path)  # other content, other key
    assert len(list((tmp_path / "encoded").glob("*.npy"))) == 2


def test_damaged_cache_entry_is_rebuilt(tmp_path):
    tok = Tokenizer.build(["abc"])
    encode_cached(["abc"], tok, cache_dir=tmp_path)
    (f,) = (tmp_path / "encoded").glob("*.npy")
    f.write_bytes(b"garbage")
    assert encode_cached(["abc"], tok, cache_dir=tmp_path).tolist() == tok.encode("abc") + [EOS_ID]


def test_abc_headers_music_rewrites_abc_tunes_and_leaves_text_alone(tmp_path):
    abc = tmp_path / "t.abc"
    abc.write_text("X:1\nT:One\nZ:transcriber@example.com\nM:6/8\nK:G\nGAB c2d|\n\n"
                   "X:2\nT:Two\nB:a book\nM:C\nL:1/8\nK:D\nA2FA dAFA|\n")
    kept = load_corpus(str(abc))
    assert "Z:transcriber@example.com" in kept.documents[0]
    music = load_corpus(str(abc), abc_headers="music")
    assert music.documents[0].startswith("X:1\nT:One\nM:6/8\nL:1/8\nK:G\nGAB c2d|")
    assert "B:a book" not in music.documents[1]
    text = tmp_path / "t.txt"
    text.write_text("Z: not a header in plain text\n")
    assert load_corpus(str(text), abc_headers="music").documents == ["Z: not a header in plain text\n"]
    with pytest.raises(UsageError, match="abc_headers"):
        load_corpus(str(abc), abc_headers="some")
