"""The ABC grammar: which next characters keep a sampled tune well formed (``--constrain abc``).

While a tune is decoded, the sampler asks for a mask of the characters allowed next and sets the
logits of all others to -inf before choosing (one mask per stream of the batch). The grammar is a
strict, common subset of ABC 2.1, the part that seqgen's music check (``seqgen abc2midi --check``)
and music21 read without complaint; rules/__init__.py lists its rules.

    from seqgen.music.grammar import abc_constraint
    c = abc_constraint(tokenizer)
    s = c.feed_text(c.start(), "X:1\\nM:6/8\\nL:1/8\\nK:D\\n", lenient=True)
    c.allowed_chars(s)          # what may come next; c.mask(s): the same as a bool array of ids

Every state of the grammar keeps a way to finish (tested by exhaustive search), so a stream can
never get stuck. A prompt (``X:1\\nM:6/8\\nK:D\\n``) is read leniently (fields in any order,
``M:`` and ``L:`` optional, any values; without ``L:`` the ABC default unit applies) and its body
strictly.

- vocabulary.py: the words of the grammar (METERS, KEYS, LENGTHS, ...) and `Lexicon`, the part of
  them a tokenizer's vocabulary can spell;
- state.py: `State` and the enums of its positions (`Phase`, `Header`, `Body`);
- rules/: what may follow what, one function per position (header, notes, groups, quoted text,
  inline fields, barlines);
- engine.py: `AbcConstraint` (masks, moves, their caches, prompts), `ConstrainedBatch` (the
  streams of a batch), `abc_constraint` (one shared instance per vocabulary).
"""

from seqgen.music.grammar.engine import AbcConstraint, ConstrainedBatch, abc_constraint
from seqgen.music.grammar.state import TEXT_STATES, Body, Header, Phase, State
from seqgen.music.grammar.vocabulary import (
    EOS_ID,
    KEYS,
    LENGTHS,
    METERS,
    TICKS,
    UNIT_LENGTHS,
    UNK_ID,
    ConstraintError,
    Lexicon,
)

__all__ = [
    "EOS_ID", "KEYS", "LENGTHS", "METERS", "TEXT_STATES", "TICKS", "UNIT_LENGTHS", "UNK_ID",
    "AbcConstraint", "Body", "ConstrainedBatch", "ConstraintError", "Header", "Lexicon", "Phase",
    "State", "abc_constraint",
]
