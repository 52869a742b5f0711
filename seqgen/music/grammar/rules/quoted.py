"""Quoted text before a note: chord symbols ("G", "F#m7", "D7/F#"), annotations ("^fine", ">")
and navigation words ("D.C."). None of them takes time."""

from __future__ import annotations

from seqgen.music.grammar.state import Body, State
from seqgen.music.grammar.vocabulary import MAX_ANNOTATION_CHARS, TEXT_PUNCTUATION, Lexicon


def _closed(s: State) -> State:
    return s._replace(body=Body.AFTER_SYMBOL, partial="", inner=0)


def quote(lx: Lexicon, s: State, ch: str) -> State | None:
    """Body.QUOTE: a chord root, the start of a word, or an annotation's placement character."""
    if ch in lx.roots or ch in lx.word_prefixes:
        return s._replace(body=Body.SYMBOL, partial=ch)
    return s._replace(body=Body.ANNOTATION, inner=0) if ch in lx.places else None


def annotation(lx: Lexicon, s: State, ch: str) -> State | None:
    """Body.ANNOTATION: up to MAX_ANNOTATION_CHARS of plain text, then the closing quote."""
    if ch == '"':
        return _closed(s)
    if s.inner < MAX_ANNOTATION_CHARS and (ch.isalnum() or ch in TEXT_PUNCTUATION):
        return s._replace(inner=s.inner + 1)
    return None


def symbol(lx: Lexicon, s: State, ch: str) -> State | None:
    """Body.SYMBOL (partial: the root and kind so far, or a word): the chord's kind, then
    '/' and a bass or the closing quote; a word, then the closing quote."""
    is_chord = s.partial[0] in lx.roots
    p = s.partial + ch
    if (is_chord and p[1:] in lx.suffix_prefixes) or p in lx.word_prefixes:
        return s._replace(partial=p)
    kind_done = is_chord and s.partial[1:] in lx.suffix_words
    if ch == '"' and (kind_done or s.partial in lx.words):
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
