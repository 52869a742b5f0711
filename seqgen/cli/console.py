"""The shared rich consoles (stdout carries only results; logs, progress and errors go to
stderr), and how command-line text is read."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from seqgen.errors import SeqgenError

# Logs and progress: silenced by --quiet.
console = Console(stderr=True, highlight=False)
# Errors: always shown.
err_console = Console(stderr=True, highlight=False)


def set_quiet(quiet: bool) -> None:
    console.quiet = quiet


def message(e: SeqgenError) -> str:
    """The message of a library error, each config field it names shown as its option
    (``top_p`` -> ``--top-p``), as the field's declaration says (seqgen/config.py)."""
    from seqgen.config import flag_of

    return e.spelled(lambda name: flag_of(e.config, name))


def error(message: str) -> None:
    """One red line on stderr (line breaks from a file's contents shown as \\n)."""
    message = message.replace("\r", "\\r").replace("\n", "\\n")
    err_console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)


def warn(message: str) -> None:
    console.print(f"[yellow]warning:[/] {escape(message)}", soft_wrap=True)


def info(message: str) -> None:
    console.print(escape(message), soft_wrap=True)


def result(text: str) -> None:
    """A result for stdout (a path written, a table meant for the user's pipe).

    While a spinner runs on a terminal, rich replaces sys.stdout with a proxy that prints
    through the stderr console (so that lines and spinner do not overwrite each other). A
    result goes through that proxy only when stdout is that terminal and the console is not
    silenced; otherwise straight to the real stdout, so that a pipe, a redirect or --quiet
    never loses it."""
    import sys

    out = sys.stdout
    real = getattr(out, "rich_proxied_file", None)
    if real is not None and (console.quiet or not real.isatty()):
        out = real
    out.write(text + ("" if text.endswith("\n") else "\n"))
    out.flush()


_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\"}


def unescape(s: str) -> str:
    """Read \\n, \\t and \\\\ in a command-line string as newline, tab and backslash."""
    import re

    return re.sub(r"\\([nt\\])", lambda m: _ESCAPES[m.group(1)], s)
