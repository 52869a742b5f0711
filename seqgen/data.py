"""Corpora: reading text and ABC files, bundled corpora, the train/validation split, encoded caches.

A corpus argument is one of:
- a text or ABC file;
- a directory, with a glob (default ``*``) choosing its files;
- the name of a corpus bundled in an installed package (``folk``, ``ryans``, ... see BUNDLED).

A bundled name means the bundled corpus even where a file or folder of that name is in the working
directory (``Corpus.note`` says so); ``./folk`` means the folder.

A corpus is a list of documents. ABC files are split into tunes at ``X:`` headers; a text file is one
document, or one per blank-line separated block when asked (``split_docs``). Training reads ABC
tunes with their headers cut down to the fields that shape the music (``abc_headers="music"``),
normalised first (``abc_normalise=True``: seqgen.music.normalise repairs what has one right
reading and drops the tunes the ABC tools would reject; the result is cached).
The validation split holds out whole documents (chosen with a seed) whose characters come to
about ``val_fraction`` of the corpus's; where no such set of documents exists (one document, or
a few of very different sizes), the text is split by position, the last part held out, as nanoGPT
does with tinyshakespeare. ``Split.why`` says which and why.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seqgen.errors import DataError, SeqgenError, UsageError
from seqgen.fileio import read_bytes
from seqgen.music.abc import looks_like_abc, music_headers, split_tunes

if TYPE_CHECKING:
    import numpy as np

    from seqgen.tokenizer import Tokenizer

DEFAULT_CORPUS = "folk"
ABC_HEADERS = ("music", "all")  # what load_corpus keeps of ABC headers (see music_headers)
MAX_FILE_BYTES = 4 << 30  # refuse to read a single file larger than 4 GiB


@dataclass(frozen=True)
class BundledCorpus:
    name: str
    description: str
    package: str
    paths: tuple[str, ...]  # files or directories inside the package
    glob: str = "*.abc"


BUNDLED: dict[str, BundledCorpus] = {
    c.name: c
    for c in [
        BundledCorpus("folk", "O'Neill's Music of Ireland (1850): Irish dance tunes and airs",
                      "music21", ("corpus/oneills1850",)),
        BundledCorpus("ryans", "Ryan's Mammoth Collection (1883): reels, jigs, hornpipes",
                      "music21", ("corpus/ryansMammoth",)),
        BundledCorpus("aird", "Aird's Selection of Scotch, English, Irish and Foreign Airs (1782-97)",
                      "music21", ("corpus/airdsAirs",)),
        BundledCorpus("folk-plus", "folk + ryans + aird: O'Neill, Ryan's Mammoth and Aird's Airs",
                      "music21", ("corpus/oneills1850", "corpus/ryansMammoth", "corpus/airdsAirs")),
        BundledCorpus("essen", "Essen folk song collection (German and other European songs)",
                      "music21", ("corpus/essenFolksong",)),
        BundledCorpus("fife", "American fife tunes and Northumbrian minstrelsy",
                      "music21", ("corpus/miscFolk",)),
    ]
}


@dataclass
class Corpus:
    """Documents read from one corpus argument."""

    name: str  # the bundled name, or the path as given
    documents: list[str]
    kind: str  # "abc" (documents are tunes) or "text"
    files: list[Path] = field(default_factory=list)
    note: str = ""  # what a user should know about where it was read from (a shadowed path)
    normalised: Any = None  # the NormaliseReport, when ABC tunes were normalised

    @property
    def num_chars(self) -> int:
        return sum(len(d) for d in self.documents)


# --------------------------------------------------------------------------------- reading
def decode_text(raw: bytes, name: str | os.PathLike) -> str:
    """UTF-8 bytes (a file's, or stdin's) as text with line ends normalised; DataError naming
    `name`, the line and the byte for anything else."""
    if b"\x00" in raw:
        raise DataError(f"{name}: looks like a binary file (it contains NUL bytes); expected UTF-8 text")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(
            f"{name}: line {line}: invalid UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start}); "
            f"convert the {'text' if str(name) == 'stdin' else 'file'} to UTF-8"
        ) from None
    return text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


def read_text_file(path: Path) -> str:
    """The UTF-8 text of `path`, with line ends normalised; DataError for anything unusable."""
    raw = read_bytes(path, DataError, "text file", "no such file or directory", MAX_FILE_BYTES,
                     lambda size: f"file is {size / 2**30:.1f} GiB, larger than the 4 GiB limit")
    text = decode_text(raw, path)
    if not text.strip():
        raise DataError(f"{path}: the file is empty")
    return text


def _documents_of(path: Path, text: str, split_docs: bool) -> tuple[list[str], str]:
    if path.suffix.lower() == ".abc" or looks_like_abc(text):
        tunes = split_tunes(text)
        if not tunes:
            raise DataError(f"{path}: no tunes found (an ABC tune starts with an 'X:' line)")
        return tunes, "abc"
    if split_docs:
        docs = [d.strip("\n") for d in re.split(r"\n[ \t]*\n", text)]
        return [d for d in docs if d.strip()], "text"
    return [text], "text"


def package_dir(package: str) -> Path:
    """Where an installed package lives, found without importing it (music21 is slow to import)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"package {package!r} is not installed; install it with pip install {package}")
    return Path(next(iter(spec.submodule_search_locations)))


def bundled_files(corpus: BundledCorpus) -> list[Path]:
    base = package_dir(corpus.package)
    files: list[Path] = []
    for rel in corpus.paths:
        p = base / rel
        if p.is_dir():
            files += sorted(q for q in p.glob(corpus.glob) if q.is_file())
        elif p.is_file():
            files.append(p)
    if not files:
        raise DataError(
            f"bundled corpus {corpus.name!r}: no files under {base}; is {corpus.package} complete?"
        )
    return files


def _looks_like_name(spec: str) -> bool:
    return re.fullmatch(r"[A-Za-z][\w-]*", spec) is not None


def check_abc_headers(value: str) -> None:
    """UsageError naming `abc_headers` unless `value` is one of ABC_HEADERS."""
    from seqgen.config import Rule, check_value

    check_value("abc_headers", value, Rule(choices=ABC_HEADERS))


def corpus_path(spec: str) -> Path | None:
    """The file or directory a corpus argument names, or None for a bundled corpus's name (which
    means the bundled corpus even where a path of that name exists: ``./folk`` is the folder)."""
    return None if spec in BUNDLED else Path(spec).expanduser()


def check_glob(spec: str | None, glob: str | None) -> None:
    """UsageError when --glob is given for a corpus that is not a directory (it would do nothing)."""
    path = corpus_path(DEFAULT_CORPUS if spec is None else spec)
    if glob is not None and not (path is not None and path.is_dir()):
        raise UsageError(f"`glob` chooses the files of a directory corpus; "
                         f"{spec or DEFAULT_CORPUS!r} is not a directory", params=True)


def load_corpus(spec: str | None = None, glob: str | None = None, split_docs: bool = False,
                abc_headers: str = "all", abc_normalise: bool = False) -> Corpus:
    """Read the corpus named by `spec` (a file, a directory or a bundled name; default: folk).

    abc_normalise=True normalises the tunes of an ABC corpus first (normalise_abc); then
    abc_headers="music" rewrites the header of every tune with
    ``seqgen.music.abc.music_headers`` (the fields that shape the music, in one order); "all"
    keeps the tunes as written.
    """
    check_abc_headers(abc_headers)
    spec = DEFAULT_CORPUS if spec is None else spec
    path = corpus_path(spec)
    note = ""
    if path is None:
        files = bundled_files(BUNDLED[spec])
        name = spec
        if Path(spec).exists():
            what = "folder" if Path(spec).is_dir() else "file"
            note = (f"{spec}: the bundled corpus, not the {what} {spec} here "
                    f"(write ./{spec} to read the {what})")
    elif path.exists():
        if path.is_dir():
            pattern = glob or "*"
            files = sorted(p for p in path.glob(pattern) if p.is_file() and not p.name.startswith("."))
            if not files:
                raise DataError(f"{path}: no files match {pattern!r} in this directory; try `glob`",
                                params=True)
        else:
            files = [path]
        name = spec
    elif _looks_like_name(spec) and not path.suffix:
        raise DataError(
            f"{spec!r} is neither a file nor a bundled corpus; bundled corpora: "
            f"{', '.join(BUNDLED)} (see 'seqgen tokenizer corpora')"
        )
    else:
        raise DataError(f"{path}: no such file or directory")

    documents: list[str] = []
    kinds = set()
    for f in files:
        docs, kind = _documents_of(f, read_text_file(f), split_docs)
        documents += docs
        kinds.add(kind)
    if not documents:
        raise DataError(f"{spec}: the corpus has no documents")
    kind = "abc" if kinds == {"abc"} else "text"
    report = None
    if kind == "abc" and abc_normalise:
        documents, report = normalise_abc(documents)
        if not documents:
            raise DataError(f"{spec}: normalising dropped every tune ({report.summary()}); "
                            "train on the tunes as written with --no-abc-normalise")
    if kind == "abc" and abc_headers == "music":
        documents = [music_headers(d) for d in documents]
    return Corpus(name=name, documents=documents, kind=kind, files=files, note=note,
                  normalised=report)


_NORMALISED: dict[str, tuple[list[str], Any]] = {}  # digest -> (kept, report), this process


def normalise_abc(tunes: list[str], cache: bool = True) -> tuple[list[str], Any]:
    """seqgen.music.normalise.normalise_tunes, cached by the tunes' digest and the normaliser's
    version in this process and under the cache directory (normalising a corpus takes
    seconds)."""
    import json

    from seqgen.fileio import atomic_write_text
    from seqgen.music.normalise import VERSION, NormaliseReport, normalise_tunes

    h = hashlib.blake2b(digest_size=16)
    h.update(f"normalise {VERSION}\n".encode())
    for t in tunes:
        h.update(t.encode("utf-8", "surrogatepass") + b"\0")
    key = h.hexdigest()
    if cache and key in _NORMALISED:  # this process normalised these tunes already
        kept, report = _NORMALISED[key]
        return list(kept), report
    path = default_cache_dir() / f"normalised-{key}.json"
    if cache and path.is_file():
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
            kept, report = d["tunes"], NormaliseReport.from_dict(d["report"])
            _NORMALISED[key] = (kept, report)
            return list(kept), report
        except (OSError, ValueError, KeyError, TypeError):
            pass  # a damaged cache entry is rebuilt
    kept, report = normalise_tunes(tunes)
    if cache:
        if len(_NORMALISED) >= 4:
            _NORMALISED.pop(next(iter(_NORMALISED)))
        _NORMALISED[key] = (kept, report)
        try:
            atomic_write_text(path, json.dumps({"tunes": kept, "report": report.to_dict()}))
        except (OSError, SeqgenError):
            pass  # no cache: normalised again next time
    return kept, report


# --------------------------------------------------------------------------------- splitting
@dataclass
class Split:
    train: list[str]
    val: list[str]
    by: str  # "document" (whole documents held out) or "position" (the last part held out)
    share: float = 0.0  # the held-out share of the corpus's characters
    why: str = ""  # which split and why, in words (training prints it)


SHARE_OF = ("tokens", "documents")  # what val_fraction is a share of: see split_corpus
TOLERANCE = 2.0  # a document split holds out between val_fraction / this and x this


def split_corpus(corpus: Corpus, val_fraction: float = 0.1, seed: int = 1337,
                 share_of: str = "tokens", joiner: str = "\n") -> Split:
    """Hold out whole documents (chosen with `seed`) whose characters come to about
    `val_fraction` of the corpus's (between val_fraction / TOLERANCE and x TOLERANCE); where no
    such set exists (one document, or a few of very different sizes), split by position: the
    documents one text (`joiner` after each that does not end a line), its last part held out.

    share_of="documents" is the rule of checkpoints written before this one (their
    checkpoint.json has no "corpus" "held_out"): `val_fraction` of the documents, whatever
    their sizes, so that eval and --resume read their split as they trained on it."""
    if not 0.0 <= val_fraction < 1.0:
        raise UsageError(f"`val_fraction` must be at least 0 and below 1, got {val_fraction}",
                         params=True)
    docs = corpus.documents
    if len(docs) == 1:
        return _position_split(docs, val_fraction, joiner, "one document")
    if val_fraction == 0:
        return Split(list(docs), [], "document", 0.0, "by document: nothing held out "
                     "(`val_fraction` 0)")
    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    if share_of == "documents":
        n_val = min(len(docs) - 1, max(1, round(len(docs) * val_fraction)))
        held = set(order[:n_val])
    else:
        held = _held_out(docs, order, val_fraction)
    total = sum(len(d) for d in docs) or 1
    share = sum(len(docs[i]) for i in held) / total
    if share_of == "tokens" and not val_fraction / TOLERANCE <= share <= val_fraction * TOLERANCE:
        largest = max(len(d) for d in docs) / total
        return _position_split(docs, val_fraction, joiner,
                               f"no set of whole documents holds close to {val_fraction:.0%} of "
                               f"the characters; the largest of the {len(docs)} documents holds "
                               f"{largest:.0%}")
    return Split([d for i, d in enumerate(docs) if i not in held],
                 [d for i, d in enumerate(docs) if i in held], "document", share,
                 f"by document: {len(held)} of {len(docs)} documents held out, {share:.1%} of "
                 "the characters")


def _held_out(docs: list[str], order: list[int], val_fraction: float) -> set[int]:
    """Documents in `order` each taken when it brings the held-out characters closer to
    val_fraction of them all; one document at least stays for training."""
    target = val_fraction * sum(len(d) for d in docs)
    held: set[int] = set()
    size = 0
    for i in order:
        if len(held) == len(docs) - 1:
            break
        if abs(size + len(docs[i]) - target) < abs(size - target):
            held.add(i)
            size += len(docs[i])
    return held


def _position_split(docs: list[str], val_fraction: float, joiner: str, why: str) -> Split:
    text = "".join(d if d.endswith("\n") or i == len(docs) - 1 else d + joiner
                   for i, d in enumerate(docs))
    cut = len(text) - int(round(len(text) * val_fraction))
    share = (len(text) - cut) / max(len(text), 1)
    return Split([text[:cut]], [text[cut:]] if cut < len(text) else [], "position", share,
                 f"by position: the last {share:.1%} of the text held out ({why})")


# --------------------------------------------------------------------------------- encoding
def default_cache_dir() -> Path:
    if os.environ.get("SEQGEN_CACHE_DIR"):
        return Path(os.environ["SEQGEN_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "seqgen"


def encode_cached(
    docs: list[str], tokenizer: Tokenizer, add_eos: bool = True, cache_dir: Path | None = None
) -> np.ndarray:
    """Encode `docs` (each followed by <eos> when `add_eos`), reusing a cached array when the same
    documents were encoded with the same vocabulary before. The cache entry (a .npy file under
    `cache_dir`, default: default_cache_dir()) is keyed by a hash of the vocabulary and the text, and
    returned memory-mapped: training reads its windows from the page cache instead of holding a
    copy of the token ids (the text itself is still read into memory once per run, to hash it).
    """
    import numpy as np

    from seqgen.fileio import atomic_path

    h = hashlib.sha256(tokenizer.to_json().encode("utf-8"))
    h.update(b"eos" if add_eos else b"noeos")
    for d in docs:
        b = d.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    cache_dir = default_cache_dir() if cache_dir is None else cache_dir
    path = cache_dir / "encoded" / f"{h.hexdigest()[:40]}.npy"
    if path.is_file():
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError):
            pass  # a damaged cache entry is rebuilt below
    ids = tokenizer.encode_documents(docs) if add_eos else tokenizer.encode_array("".join(docs))
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, ids, allow_pickle=False)
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception:
        return ids  # an unwritable cache only costs speed


@dataclass
class PreparedData:
    """A corpus split and encoded, ready for training."""

    corpus: Corpus
    split: Split
    tokenizer: Tokenizer
    train_ids: np.ndarray
    val_ids: np.ndarray
    share_of: str = "tokens"  # what val_fraction was a share of (split_corpus)

    def digest(self) -> str:
        """A fingerprint of the training and validation tokens (whatever their integer dtype),
        so that --resume can tell whether a corpus is the one a run trained on."""
        import numpy as np

        h = hashlib.blake2b(digest_size=16)
        for ids in (self.train_ids, self.val_ids):
            ids = () if ids is None else ids
            h.update(len(ids).to_bytes(8, "little"))
            for i in range(0, len(ids), 1 << 20):  # in slices: a memory map stays on disk
                h.update(np.asarray(ids[i : i + (1 << 20)], dtype="<i4").tobytes())
        return h.hexdigest()


def prepare_data(
    corpus: Corpus,
    tokenizer: Tokenizer | None = None,
    val_fraction: float = 0.1,
    seed: int = 1337,
    cache: bool = True,
    share_of: str = "tokens",
) -> PreparedData:
    """Split `corpus` (see split_corpus; `share_of` as the checkpoint recorded it), build a
    vocabulary from all of it (unless `tokenizer` is given) and encode both halves. Documents
    end with <eos>; a position split adds none."""
    from seqgen.tokenizer import Tokenizer

    joiner = "\n" if tokenizer is None or "\n" in tokenizer.chars else ""
    split = split_corpus(corpus, val_fraction, seed, share_of, joiner)
    if tokenizer is None:
        tokenizer = Tokenizer.build(split.train + split.val or corpus.documents)
    add_eos = split.by == "document"
    cache_dir = default_cache_dir() if cache else None

    def enc(docs: list[str]) -> np.ndarray:
        if cache:
            return encode_cached(docs, tokenizer, add_eos, cache_dir)
        return tokenizer.encode_documents(docs) if add_eos else tokenizer.encode_array("".join(docs))

    return PreparedData(corpus, split, tokenizer, enc(split.train), enc(split.val), share_of)


def check_window(ids_len: int, seq_len: int, what: str) -> None:
    """DataError when a split is too short to hold one training window of `seq_len` tokens."""
    if ids_len < seq_len + 1:
        raise DataError(
            f"{what} has {ids_len} tokens, fewer than one training window ({seq_len + 1}); "
            "use a smaller `seq_len` or a larger corpus", params=True
        )
