"""ABC notation as text: splitting files into tunes and reading headers. No music21 here."""

from __future__ import annotations

import re

_X_LINE = re.compile(r"^X:", re.MULTILINE)


def split_tunes(text: str) -> list[str]:
    """The tunes of an ABC file, in order, each starting at its ``X:`` line.

    A tune runs from one ``X:`` header to the next; blank lines inside it (one right after ``K:``,
    say) do not end it. Text before the first ``X:`` (a file header) belongs to no tune. Each tune
    is returned without trailing white space.
    """
    starts = [m.start() for m in _X_LINE.finditer(text)]
    tunes = []
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(text)
        tune = text[start:end].rstrip()
        if tune:
            tunes.append(tune)
    return tunes


def looks_like_abc(text: str) -> bool:
    """True when `text` has at least one ``X:`` header followed later by a ``K:`` header."""
    m = _X_LINE.search(text)
    return m is not None and re.search(r"^K:", text[m.start():], re.MULTILINE) is not None
