"""Quoted text before a note: chord symbols ("G", "F#m7", "D7/F#") and annotations ("^fine",
">"). None of them takes time. Nothing else: abc2midi reads any other quoted text as a chord
symbol and fails ("D.C.": "Unrecognized chord name", "nd": "Guitar chord does not start with
A-G")."""

from __future__ import annotations

from seqgen.music.grammar.rules.elements import more
from seqgen.music.grammar.state import Body, State
from seqgen.music.grammar.vocabulary import (
    ANNOTATION_PUNCTUATION,
    CHORD_SYMBOL_WIDTH,
    MAX_ANNOTATION_CHARS,
    Lexicon,
)


def _closed(s: State) -> State:
    return s._replace(body=Body.AFTER_SYMBOL, partial="", inner=0)


def quote(lx: Lexicon, s: State, ch: str) -> State | None:
    """Body.QUOTE: a chord root, or an annotation's placement character."""
    if ch in lx.roots:
        return more(s._replace(body=Body.SYMBOL, partial=ch), CHORD_SYMBOL_WIDTH)
    return s._replace(body=Body.ANNOTATION, inner=0) if ch in lx.places else None


def annotation(lx: Lexicon, s: State, ch: str) -> State | None:
    """Body.ANNOTATION: up to MAX_ANNOTATION_CHARS of plain text (no ','), then the closing
    quote."""
    if ch == '"':
        return _closed(s)
    if s.inner < MAX_ANNOTATION_CHARS and (ch.isalnum() or ch in ANNOTATION_PUNCTUATION):
        return more(s._replace(inner=s.inner + 1))
    return None


def symbol(lx: Lexicon, s: State, ch: str) -> State | None:
    """Body.SYMBOL (partial: the root and kind so far): the chord's kind, then '/' and a bass
    or the closing quote."""
    p = s.partial + ch
    if p[1:] in lx.suffix_prefixes:
        return s._replace(partial=p)
    kind_done = s.partial[1:] in lx.suffix_words
    if ch == '"' and kind_done:
        return _closed(s)
    if ch == "/" and kind_done:
        return s._replace(body=Body.SYMBOL_SLASH, partial="")
    return None


def symbol_slash(lx: Lexicon, s: State, ch: str) -> State | None:
    """Body.SYMBOL_SLASH: the bass note's root."""
    return s._replace(body=Body.SYMBOL_BASS, partial="") if ch in lx.roots else None


def symbol_bass(lx: Lexicon, s: State, ch: str) -> State | None:
    """Body.SYMBOL_BASS: a sharp or flat, then the closing quote."""
    if ch in "#b" and not s.partial:
        return s._replace(partial=ch)
    return _closed(s) if ch == '"' else None
