"""Character-level tokenizer: one id per Unicode code point, plus a few special tokens.

Ids 0 and 1 are special: ``<eos>`` ends a document (a tune, a poem) so that training sees where
documents stop and sampling can stop there too; ``<unk>`` stands for characters the vocabulary does
not know when the caller asks for replacement. Characters follow, sorted by code point.

The JSON format (documented in docs/tokenizer.md)::

    {"format": "seqgen-vocab", "version": 1,
     "specials": ["<eos>", "<unk>"],
     "chars": ["\\n", " ", "!", ...],
     "counts": [1234, 5678, 3, ...]}        # optional, occurrences in the corpus it was built from
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from seqgen.errors import VocabularyError
from seqgen.fileio import atomic_write_text, read_json_object

if TYPE_CHECKING:
    import numpy as np

FORMAT = "seqgen-vocab"
VERSION = 1
SPECIALS = ("<eos>", "<unk>")
EOS_ID = 0
UNK_ID = 1
MAX_VOCAB = 1 << 20  # more code points than Unicode has: anything larger is not a vocabulary

Errors = Literal["strict", "replace", "skip"]


def _show(chars: Iterable[str], limit: int = 12) -> str:
    chars = list(chars)
    shown = ", ".join(repr(c) for c in chars[:limit])
    return shown + (f" and {len(chars) - limit} more" if len(chars) > limit else "")


class Tokenizer:
    """Maps text to integer ids and back, one id per character."""

    def __init__(self, chars: Sequence[str], counts: Sequence[int] | None = None):
        chars = list(chars)
        if any(not isinstance(c, str) or len(c) != 1 for c in chars):
            raise VocabularyError("every vocabulary entry must be a single character")
        if len(set(chars)) != len(chars):
            raise VocabularyError("the vocabulary lists a character twice")
        order = sorted(range(len(chars)), key=lambda i: ord(chars[i]))
        self.chars: list[str] = [chars[i] for i in order]
        self.counts: list[int] | None = [int(counts[i]) for i in order] if counts is not None else None
        self.specials: tuple[str, ...] = SPECIALS
        self.itos: list[str] = list(SPECIALS) + self.chars
        self.stoi: dict[str, int] = {c: i + len(SPECIALS) for i, c in enumerate(self.chars)}
        # sorted code points as a numpy array, built on first vectorised use
        self._codes: np.ndarray | None = None

    # ----------------------------------------------------------------------------- construction
    @classmethod
    def build(cls, texts: Iterable[str]) -> Tokenizer:
        """A vocabulary of every character in `texts`, with counts."""
        counter: Counter[str] = Counter()
        for text in texts:
            counter.update(text)
        if not counter:
            raise VocabularyError("cannot build a vocabulary from empty text")
        chars = sorted(counter, key=ord)
        return cls(chars, [counter[c] for c in chars])

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    @property
    def eos_id(self) -> int:
        return EOS_ID

    @property
    def unk_id(self) -> int:
        return UNK_ID

    def __len__(self) -> int:
        return self.vocab_size

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tokenizer) and self.itos == other.itos

    def __repr__(self) -> str:
        return f"Tokenizer({len(self.chars)} characters + {len(self.specials)} specials)"

    # ----------------------------------------------------------------------------- encoding
    def unknown_chars(self, text: str) -> list[str]:
        """The distinct characters of `text` that are not in the vocabulary, sorted."""
        return sorted(set(text) - self.stoi.keys(), key=ord)

    def encode(self, text: str, errors: Errors = "strict", source: str | None = None) -> list[int]:
        """Ids of the characters of `text`.

        errors: "strict" raises VocabularyError listing unknown characters, "replace" maps them to
        ``<unk>``, "skip" drops them.
        """
        if errors not in ("strict", "replace", "skip"):
            raise VocabularyError(f"errors must be strict, replace or skip, not {errors!r}")
        stoi = self.stoi
        try:
            return [stoi[c] for c in text]
        except KeyError:
            pass
        unknown = self.unknown_chars(text)
        if errors == "strict":
            where = f"{source}: " if source else ""
            raise VocabularyError(
                f"{where}{len(unknown)} character(s) not in the vocabulary: {_show(unknown)}"
            )
        if errors == "replace":
            return [stoi.get(c, UNK_ID) for c in text]
        return [stoi[c] for c in text if c in stoi]  # "skip"

    def encode_array(
        self, text: str, errors: Errors = "strict", source: str | None = None
    ) -> np.ndarray:
        """Like encode, vectorised with numpy for large texts; returns the smallest integer dtype."""
        import numpy as np

        if self._codes is None:
            self._codes = np.array([ord(c) for c in self.chars], dtype=np.uint32)
        table = self._codes
        dtype = np.uint16 if self.vocab_size <= 1 << 16 else np.int32
        chunk = 1 << 22
        parts = []
        unknown: set[int] = set()
        for start in range(0, len(text), chunk):
            codes = np.frombuffer(text[start : start + chunk].encode("utf-32-le", "surrogatepass"), dtype="<u4")
            idx = np.searchsorted(table, codes)
            idx = np.minimum(idx, len(table) - 1) if len(table) else idx
            found = table[idx] == codes if len(table) else np.zeros(len(codes), bool)
            ids = (idx + len(self.specials)).astype(dtype)
            if not found.all():
                unknown.update(np.unique(codes[~found]).tolist())
                if errors == "replace":
                    ids[~found] = UNK_ID
                elif errors == "skip":
                    ids = ids[found]
            parts.append(ids)
        if unknown and errors == "strict":
            where = f"{source}: " if source else ""
            chars = [chr(c) for c in sorted(unknown)]
            raise VocabularyError(
                f"{where}{len(chars)} character(s) not in the vocabulary: {_show(chars)}"
            )
        return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)

    def encode_documents(self, docs: Iterable[str], errors: Errors = "strict") -> np.ndarray:
        """One id stream for several documents, each followed by ``<eos>``."""
        import numpy as np

        eos = None
        parts = []
        for doc in docs:
            ids = self.encode_array(doc, errors)
            if eos is None:
                eos = np.array([EOS_ID], dtype=ids.dtype)
            parts += [ids, eos]
        return np.concatenate(parts) if parts else self.encode_array("")

    def decode(self, ids: Iterable[int], eos: str = "") -> str:
        """Text of `ids`; ``<eos>`` becomes `eos` (default: nothing) and ``<unk>`` becomes U+FFFD."""
        itos = self.itos
        out = []
        for i in ids:
            i = int(i)
            if i == EOS_ID:
                out.append(eos)
            elif i == UNK_ID:
                out.append("\ufffd")
            elif 0 <= i < len(itos):
                out.append(itos[i])
            else:
                raise VocabularyError(f"id {i} is outside the vocabulary (size {self.vocab_size})")
        return "".join(out)

    # ----------------------------------------------------------------------------- persistence
    def to_dict(self) -> dict:
        d: dict = {"format": FORMAT, "version": VERSION, "specials": list(self.specials),
                   "chars": self.chars}
        if self.counts is not None:
            d["counts"] = self.counts
        return d

    @classmethod
    def from_dict(cls, d: object, source: str = "vocabulary") -> Tokenizer:
        """Validate and load the dict form; every problem is a VocabularyError naming `source`."""
        if not isinstance(d, dict):
            raise VocabularyError(f"{source}: expected a JSON object, found {type(d).__name__}")
        if d.get("format") != FORMAT:
            raise VocabularyError(f"{source}: not a seqgen vocabulary (\"format\" is not {FORMAT!r})")
        version = d.get("version")
        if not isinstance(version, int) or version < 1:
            raise VocabularyError(f"{source}: \"version\" must be a positive integer")
        if version > VERSION:
            raise VocabularyError(
                f"{source}: vocabulary format version {version} is newer than this seqgen "
                f"understands ({VERSION}); upgrade seqgen"
            )
        if d.get("specials") != list(SPECIALS):
            raise VocabularyError(f"{source}: \"specials\" must be {list(SPECIALS)}")
        chars = d.get("chars")
        if not isinstance(chars, list) or len(chars) > MAX_VOCAB:
            raise VocabularyError(f"{source}: \"chars\" must be a list of single characters")
        bad = [c for c in chars if not isinstance(c, str) or len(c) != 1]
        if bad:
            raise VocabularyError(
                f"{source}: \"chars\" must hold single characters, found {_show(map(str, bad), 3)}"
            )
        if len(set(chars)) != len(chars):
            raise VocabularyError(f"{source}: \"chars\" lists a character twice")
        counts = d.get("counts")
        if counts is not None and (
            not isinstance(counts, list)
            or len(counts) != len(chars)
            or any(type(n) is not int or n < 0 for n in counts)
        ):
            raise VocabularyError(
                f"{source}: \"counts\" must be a list of non-negative integers, one per character"
            )
        return cls(chars, counts)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=1) + "\n"

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_text(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Tokenizer:
        d = read_json_object(Path(path), VocabularyError, "vocabulary JSON file", "no such file")
        return cls.from_dict(d, source=str(path))
