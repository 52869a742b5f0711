"""`seqgen tokenizer`: build, show, encode and decode character vocabularies; list bundled corpora."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path

import typer

from seqgen.cli.console import console, info, plural, result, unescape

app = typer.Typer(
    no_args_is_help=True,
    help="Character vocabularies: build one from a corpus, show, encode and decode; list corpora.",
)


class Unknown(str, Enum):
    strict = "strict"
    replace = "replace"
    skip = "skip"


CORPUS_HELP = (
    "A text or ABC file, a directory (see --glob), or a bundled corpus name "
    "('seqgen tokenizer corpora' lists them)."
)


@app.command()
def build(
    corpus: str = typer.Argument("folk", help=CORPUS_HELP),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write the vocabulary JSON here (default: print it to stdout)."
    ),
    glob: str | None = typer.Option(None, help="Which files of a directory corpus to read, e.g. '*.abc' (default: all)."),
    split_docs: bool = typer.Option(False, "--split-docs", help="Treat blank-line separated blocks of a text file as separate documents."),
    abc_headers: str = typer.Option(
        "music", help="ABC corpora: music (the header fields 'seqgen train' keeps by default: X T "
        "M L Q R P V K) or all (the tunes as written)."),
    abc_normalise: bool = typer.Option(
        True, "--abc-normalise/--no-abc-normalise",
        help="ABC corpora: normalise the tunes as 'seqgen train' does by default (repair what "
        "has one right reading, drop what the ABC tools would reject)."),
) -> None:
    """Build a character vocabulary from every character of CORPUS (read as 'seqgen train'
    reads it, so the vocabulary is the one a run on CORPUS would get)."""
    from seqgen.data import check_glob, load_corpus
    from seqgen.tokenizer import Tokenizer

    check_glob(corpus, glob)
    c = load_corpus(corpus, glob=glob, split_docs=split_docs, abc_headers=abc_headers,
                    abc_normalise=abc_normalise)
    if c.normalised is not None:
        info(c.normalised.summary())
    if c.note:
        info(c.note)
    tok = Tokenizer.build(c.documents)
    noun = plural(len(c.documents), "tune" if c.kind == "abc" else "document")
    info(f"{c.name}: {noun}, {plural(c.num_chars, 'character')}, "
         f"{len(tok.chars)} distinct characters + {len(tok.specials)} special tokens")
    if output is None:
        sys.stdout.write(tok.to_json())
    else:
        tok.save(output)
        result(str(output))


def _printable(ch: str) -> str:
    names = {" ": "space", "\n": "\\n (newline)", "\t": "\\t (tab)"}
    if ch in names:
        return names[ch]
    return ch if ch.isprintable() else repr(ch)[1:-1]


VOCAB_HELP = "A vocabulary JSON file, or a checkpoint directory (its vocabulary)."


def load_vocab(path: Path):
    """The vocabulary of a JSON file, or the one inside a checkpoint directory."""
    from seqgen.tokenizer import Tokenizer

    if path.is_dir():
        from seqgen.checkpoint import META, read_meta

        if not (path / META).is_file():
            from seqgen.errors import VocabularyError

            raise VocabularyError(f"{path}: is a directory without a {META}; give a vocabulary "
                                  "JSON file or a checkpoint directory")
        directory, meta = read_meta(path)
        return Tokenizer.from_dict(meta["tokenizer"], source=str(directory / META))
    return Tokenizer.load(path)


@app.command()
def show(vocab: Path = typer.Argument(..., help=VOCAB_HELP)) -> None:
    """Show a vocabulary as a table: id, character, code point and count in its corpus."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    tok = load_vocab(vocab)
    total = sum(tok.counts) if tok.counts else 0
    table = Table(title=f"{vocab}: {tok.vocab_size} tokens", title_justify="left")
    table.add_column("id", justify="right")
    table.add_column("character")
    table.add_column("code point")
    table.add_column("count", justify="right")
    table.add_column("share", justify="right")
    for i, s in enumerate(tok.specials):
        table.add_row(str(i), escape(s), "special", "", "")
    for j, ch in enumerate(tok.chars):
        n = tok.counts[j] if tok.counts else None
        table.add_row(
            str(j + len(tok.specials)),
            escape(_printable(ch)),
            f"U+{ord(ch):04X}",
            f"{n:,}" if n is not None else "",
            f"{100 * n / total:.2f}%" if n is not None and total else "",
        )
    Console(highlight=False).print(table)


def _read_input(text: str | None, file: Path | None) -> tuple[str, str]:
    from seqgen.data import decode_text, read_text_file

    if file is not None:
        if text is not None:
            from seqgen.errors import UsageError

            raise UsageError("give TEXT or --file, not both")
        return read_text_file(file), str(file)
    if text is None or text == "-":
        return decode_text(sys.stdin.buffer.read(), "stdin"), "stdin"
    return unescape(text), "text"


@app.command()
def encode(
    vocab: Path = typer.Argument(..., help=VOCAB_HELP),
    text: str | None = typer.Argument(None, help="Text to encode, with \\n, \\t, \\\\ for "
                                      "newline, tab, backslash (default, or '-': read stdin)."),
    file: Path | None = typer.Option(None, "--file", help="Encode this UTF-8 file instead."),
    unknown: Unknown = typer.Option(
        Unknown.strict, help="Characters not in the vocabulary: strict (error), replace (<unk>), or skip."
    ),
    eos: bool = typer.Option(False, "--eos", help="End the ids with the end-of-document token."),
) -> None:
    """Print the token ids of TEXT, separated by spaces."""
    from seqgen.tokenizer import EOS_ID

    tok = load_vocab(vocab)
    s, source = _read_input(text, file)
    ids = tok.encode(s, errors=unknown.value, source=source)
    if eos:
        ids.append(EOS_ID)
    result(" ".join(map(str, ids)))


@app.command()
def decode(
    vocab: Path = typer.Argument(..., help=VOCAB_HELP),
    ids: list[str] | None = typer.Argument(None, help="Token ids (default: read them from stdin)."),
) -> None:
    """Print the text of token IDS (separated by spaces or commas)."""
    from seqgen.errors import UsageError

    tok = load_vocab(vocab)
    words = " ".join(ids) if ids else sys.stdin.read()
    nums = []
    for w in words.replace(",", " ").split():
        try:
            nums.append(int(w))
        except ValueError:
            raise UsageError(f"IDS: {w!r} is not an integer token id") from None
    sys.stdout.write(tok.decode(nums))
    sys.stdout.flush()


@app.command()
def corpora() -> None:
    """List the bundled corpora with their tune and character counts."""
    from rich.console import Console
    from rich.table import Table

    from seqgen.data import BUNDLED, DEFAULT_CORPUS, load_corpus

    table = Table(title="Bundled corpora (use the name wherever a corpus is asked for)", title_justify="left")
    for col, just in [("name", "left"), ("tunes", "right"), ("characters", "right"),
                      ("distinct", "right"), ("description", "left")]:
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    with console.status("reading corpora..."):
        for name, b in BUNDLED.items():
            c = load_corpus(name)
            label = f"{name} (default)" if name == DEFAULT_CORPUS else name
            table.add_row(label, f"{len(c.documents):,}", f"{c.num_chars:,}",
                          str(len(set("".join(c.documents)))), b.description)
    Console(highlight=False).print(table)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="tokenizer")
