"""Workarounds for music21 10.5.1's ABC reader, one per behaviour of music21 that seqgen works
around; `seqgen.music.convert.parse_tune` applies them all.

- `quiet`: music21 prints its ABC warnings, re-bars over-full bars and raises Python warnings
  (and beams notes nobody looks at);
- `handler_class`: music21's ABCHandler drops or misreads some tokens (annotations, inline
  fields, fields after barlines, a slur after a broken rhythm);
- `prepare_text`: music21 drops notes after the fermata ``H`` and drops invisible rests ``x``.

music21 is imported inside the functions only: importing this module is cheap.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

from seqgen.music.abc import parse_header


# ------------------------------------------------------------------------------ quieting
@contextlib.contextmanager
def quiet(warnings_out: list[str], beams: bool = True) -> Iterator[None]:
    """All of the below while music21 parses one tune: its ABC warnings collected into
    `warnings_out`, over-full bars kept, Python warnings ignored; without `beams`, no beaming."""
    import warnings

    with contextlib.ExitStack() as stack:
        stack.enter_context(collected_warnings(warnings_out))
        stack.enter_context(bars_as_written())
        if not beams:
            stack.enter_context(no_beams())
        stack.enter_context(warnings.catch_warnings())
        warnings.simplefilter("ignore")
        yield


@contextlib.contextmanager
def collected_warnings(warnings_out: list[str]) -> Iterator[None]:
    """music21's ABC reader prints its warnings (a note without pitch, a bad field) through its
    environment objects: they are collected into `warnings_out` instead (the music check reads
    them), and nothing reaches the user's terminal."""
    from music21 import abcFormat
    from music21.abcFormat import translate

    def collect(msg: Any, header: Any = None) -> None:
        warnings_out.append(" ".join(map(str, msg)) if isinstance(msg, list | tuple) else str(msg))

    envs = [abcFormat.environLocal, translate.environLocal]
    saved = [e.__dict__.get("warn") for e in envs]
    try:
        for e in envs:
            e.warn = collect  # type: ignore[method-assign]  # music21 warns through it
        yield
    finally:
        for e, w in zip(envs, saved, strict=True):
            if w is None:
                e.__dict__.pop("warn", None)
            else:
                e.warn = w  # type: ignore[method-assign]


def _no_rebar(part: Any, inPlace: bool = False) -> None:  # noqa: N803 (music21's name)
    """translate.reBar's stand-in: the bars stay as written."""


@contextlib.contextmanager
def bars_as_written() -> Iterator[None]:
    """music21 re-bars a tune whose bars are over-full (translate.reBar): that hides bad bar
    lengths from the music check and invents time signatures. Switched off: bars stay as
    written."""
    from music21.abcFormat import translate

    saved = translate.reBar
    try:
        translate.reBar = _no_rebar
        yield
    finally:
        translate.reBar = saved


@contextlib.contextmanager
def no_beams() -> Iterator[None]:
    """music21 beams every parsed stream, a third of the parsing time, which only notation
    (MusicXML) needs: switched off for MIDI and checks."""
    from music21.stream import base as stream_base

    saved = stream_base.Stream.makeBeams
    try:
        stream_base.Stream.makeBeams = lambda self, *a, **k: None  # type: ignore[method-assign]
        yield
    finally:
        stream_base.Stream.makeBeams = saved  # type: ignore[method-assign]


# ------------------------------------------------------------------------- the token list
_INLINE_FIELD = re.compile(r"^\[([A-Za-z]):(.*)\]$", re.DOTALL)
_ANNOTATION = re.compile(r'"[\^_<>@][^"]*"')
_HANDLER: Any = None


def handler_class() -> Any:
    """music21's ABCHandler with its token list fixed by the functions below, in order (made
    once)."""
    global _HANDLER
    if _HANDLER is not None:
        return _HANDLER
    from music21 import abcFormat

    class FixedHandler(abcFormat.ABCHandler):
        def tokenize(self, strSrc: str) -> None:
            super().tokenize(strSrc)
            fixed: list[Any] = []
            for t in self.tokens:
                _drop_annotation(t, abcFormat)
                t = _inline_field(t, abcFormat)
                _field_after_bar(fixed, t, abcFormat)
                if _slur_after_broken_rhythm(fixed, t, abcFormat):
                    continue
                fixed.append(t)
            self.tokens = fixed

    _HANDLER = FixedHandler
    return _HANDLER


def _drop_annotation(t: Any, abcFormat: Any) -> None:
    """music21 silently drops a note with an annotation such as ``">"D`` (text to the right of
    the note), bar lengths and all. Annotations (quoted text starting with ^ _ < > @) are text,
    not music: removed from the note's source before music21 reads it."""
    if isinstance(t, abcFormat.ABCNote) and '"' in t.src:
        t.src = _ANNOTATION.sub("", t.src)


def _inline_field(t: Any, abcFormat: Any) -> Any:
    """music21 reads an inline field such as ``[M:3/4]`` or ``[K:D]`` as a chord (and loses
    it): it becomes the field it is."""
    if isinstance(t, abcFormat.ABCChord):
        m = _INLINE_FIELD.match(t.src.strip())
        if m:
            return abcFormat.ABCMetadata(f"{m.group(1)}:{m.group(2).strip()}")
    return t


def _field_after_bar(fixed: list[Any], t: Any, abcFormat: Any) -> None:
    """music21 clips the first token of a measure that starts with a field when it splits the
    tune into measures, so a field right after a barline (an ``M:`` line after ``:|``, say) is
    lost: it is given a copy to clip, so that meter, key and tempo changes take effect."""
    if isinstance(t, abcFormat.ABCMetadata) and fixed and isinstance(fixed[-1], abcFormat.ABCBar):
        fixed.append(abcFormat.ABCMetadata(t.src))


def _slur_after_broken_rhythm(fixed: list[Any], t: Any, abcFormat: Any) -> bool:
    """music21 applies a broken rhythm only between adjacent notes, so in ``g>(a`` the ``>`` is
    ignored: the slur (notation only) opens one note early instead. True when `t` was placed."""
    if (isinstance(t, abcFormat.ABCSlurStart) and fixed
            and isinstance(fixed[-1], abcFormat.ABCBrokenRhythmMarker)):
        fixed.insert(max(0, len(fixed) - 2), t)
        return True
    return False


# ------------------------------------------------------------------------------- the text
_NOTE_START = set("^_=ABCDEFGabcdefg[")


def prepare_text(text: str) -> str:
    """Work around music21 dropping notes silently, by editing decorations only (the notes,
    bars and repeats are left as written, and line numbers are kept):

    - music21 drops a note right after the fermata shorthand ``H`` (``HA2``): the ``H`` goes;
    - music21 drops an invisible rest ``x`` with its length: it becomes a rest ``z``.
    """
    lines = text.split("\n")
    body = parse_header(text).body_line - 1
    for k in range(body, len(lines)):
        line = lines[k]
        if ("H" not in line and "x" not in line) or re.match(r"^\s*[A-Za-z+]:", line):
            continue
        out, i, n = [], 0, len(line)
        while i < n:
            c = line[i]
            if c == "%":
                out.append(line[i:])
                break
            if c in "\"!+" or (c == "[" and re.match(r"\[[A-Za-z]:", line[i:i + 3])):
                close = "]" if c == "[" else c
                j = line.find(close, i + 1)
                j = n - 1 if j < 0 else j
                out.append(line[i:j + 1])
                i = j + 1
                continue
            if c == "H" and i + 1 < n and line[i + 1] in _NOTE_START:
                i += 1
                continue
            out.append("z" if c == "x" else c)
            i += 1
        lines[k] = "".join(out)
    return "\n".join(lines)
