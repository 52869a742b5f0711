"""Tunes: the prompts tunes start from.

No torch and no music21 at import.
"""

from __future__ import annotations

import re

from seqgen.errors import UsageError
from seqgen.music.abc import parse_meter

_KEY_ARG = re.compile(r"^[A-G][#b]?(m|min|maj|mix|dor|phr|lyd|loc|aeo|ion)?$", re.IGNORECASE)


def header_prompt(meter: str | None = None, key: str | None = None, title: str | None = None,
                  unit: str = "1/8") -> str:
    """The start of a tune for ``seqgen sample --meter 6/8 --key Dmix --title "..."``:
    ``X:1``, ``T:`` title, ``M:`` meter with ``L:`` unit, ``K:`` key (each when given; the model
    writes the rest of the header). A key without a meter is not written here: K: ends the
    header, and the model has to write M: and L: first; the ABC constraint then fixes the key
    (``abc_constraint(..., key=...)``). UsageError naming the option for a bad value."""
    lines = ["X:1"]
    if title is not None:
        title = " ".join(title.split())
        if not title:
            raise UsageError("--title must not be empty")
        lines.append(f"T:{title}")
    if meter is not None:
        meter = meter.strip()
        if parse_meter(meter) is None:
            raise UsageError(f"--meter must be a meter such as 6/8, 3/4, 2/4, C or C|, "
                             f"not {meter!r}")
        lines += [f"M:{meter}", f"L:{unit}"]
    if key is not None:
        key = key.strip()
        if not _KEY_ARG.match(key):
            raise UsageError(f"--key must be a key such as D, Em, Ador or Dmix, not {key!r}")
        if meter is not None:
            lines.append(f"K:{key}")
    return "\n".join(lines) + "\n"
