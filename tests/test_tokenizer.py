import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqgen.errors import VocabularyError
from seqgen.tokenizer import EOS_ID, UNK_ID, Tokenizer

TEXT = "X:1\nT:Tune\nK:D\n|:d2 fa|\n"
# A vocabulary over some ASCII, accents, a non-BMP character and a combining mark.
ALPHABET = "ab c\n\tXé€😀\u0301"


def test_build_assigns_specials_then_sorted_characters():
    tok = Tokenizer.build([TEXT])
    assert tok.itos[:2] == ["<eos>", "<unk>"]
    assert tok.chars == sorted(set(TEXT), key=ord)
    assert tok.vocab_size == len(set(TEXT)) + 2
    assert sum(tok.counts) == len(TEXT)
    assert tok.counts[tok.chars.index("\n")] == TEXT.count("\n")


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=ALPHABET))
def test_decode_inverts_encode_for_any_string_over_the_vocabulary(s):
    tok = Tokenizer.build([ALPHABET])
    assert tok.decode(tok.encode(s)) == s
    assert tok.decode(tok.encode_array(s)) == s
    assert tok.encode_array(s).tolist() == tok.encode(s)


def test_unknown_characters_are_listed_in_the_error():
    tok = Tokenizer.build(["abc"])
    with pytest.raises(VocabularyError, match=r"2 character\(s\) not in the vocabulary: 'é', '€'"):
        tok.encode("a€bé", source="prompt")
    with pytest.raises(VocabularyError, match="prompt: "):
        tok.encode_array("a€bé", source="prompt")


def test_replace_and_skip_modes():
    tok = Tokenizer.build(["abc"])
    ids = tok.encode("aéb", errors="replace")
    assert ids[1] == UNK_ID and tok.decode(ids) == "a\ufffdb"
    assert tok.decode(tok.encode("aéb", errors="skip")) == "ab"
    assert tok.encode_array("aéb", errors="replace").tolist() == ids
    assert tok.decode(tok.encode_array("aéb", errors="skip")) == "ab"
    # a lone surrogate (from a bad decode upstream) is an unknown character on both paths
    assert tok.encode_array("a\ud800", errors="replace").tolist() == tok.encode(
        "a\ud800", errors="replace") == [tok.stoi["a"], UNK_ID]
    with pytest.raises(VocabularyError, match="errors must be strict, replace or skip"):
        tok.encode("ab", errors="ignore")  # said even when every character is known


def test_documents_are_separated_by_eos():
    tok = Tokenizer.build(["ab"])
    ids = tok.encode_documents(["ab", "b"])
    assert ids.tolist() == tok.encode("ab") + [EOS_ID] + tok.encode("b") + [EOS_ID]
    assert ids.dtype == np.uint16
    assert tok.decode(ids, eos="|") == "ab|b|"


def test_save_and_load_round_trip_utf8(tmp_path):
    tok = Tokenizer.build([ALPHABET])
    path = tmp_path / "v.json"
    tok.save(path)
    assert "€" in path.read_text(encoding="utf-8")  # stored as UTF-8, not escaped
    again = Tokenizer.load(path)
    assert again == tok and again.counts == tok.counts
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left no temp file


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", r"line 1: invalid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"counts": [' + "9" * 5000 + "]}", "exceeds the limit"),
        (b"\xff\xfe{}", "not UTF-8"),
        ('{"format": "other"}', "not a seqgen vocabulary"),
        ('{"format": "seqgen-vocab", "version": 99, "specials": ["<eos>", "<unk>"], "chars": []}',
         "newer than this seqgen"),
        ('{"format": "seqgen-vocab", "version": 1, "specials": ["<eos>", "<unk>"], "chars": ["ab"]}',
         "single characters"),
        ('{"format": "seqgen-vocab", "version": 1, "specials": ["<eos>", "<unk>"], "chars": ["a", "a"]}',
         "twice"),
        ('{"format": "seqgen-vocab", "version": 1, "specials": ["<eos>", "<unk>"], "chars": ["a"],'
         ' "counts": [-1]}', "non-negative"),
        ('{"format": "seqgen-vocab", "version": 1, "specials": [], "chars": ["a"]}', "specials"),
    ],
)
def test_bad_vocabulary_files_are_refused_with_the_path(tmp_path, content, message):
    path = tmp_path / "vocab.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    with pytest.raises(VocabularyError, match=message) as e:
        Tokenizer.load(path)
    assert str(path) in str(e.value)


def test_missing_vocabulary_file(tmp_path):
    with pytest.raises(VocabularyError, match="no such file"):
        Tokenizer.load(tmp_path / "nope.json")


def test_dict_form_is_plain_json():
    tok = Tokenizer.build(["hello"])
    d = json.loads(tok.to_json())
    assert d["format"] == "seqgen-vocab" and d["chars"] == ["e", "h", "l", "o"]
    assert Tokenizer.from_dict(d) == tok
