"""The words of the ABC grammar (meters, unit lengths, keys, note lengths, chord symbols...) and
`Lexicon`: the part of them one tokenizer's vocabulary can spell, which is what the rules read.

No torch, no numpy: plain Python values, so that the rules stay cheap to call.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fractions import Fraction

from seqgen.errors import UsageError

EOS_ID = 0
UNK_ID = 1
TICKS = 192  # body durations are counted in ticks: 192 per whole note (1/64 notes and triplets)

# ------------------------------------------------------------------------------ header values
METERS: dict[str, Fraction] = {
    "2/4": Fraction(2, 4), "3/4": Fraction(3, 4), "4/4": Fraction(1), "6/8": Fraction(6, 8),
    "9/8": Fraction(9, 8), "12/8": Fraction(12, 8), "3/8": Fraction(3, 8), "2/2": Fraction(1),
    "3/2": Fraction(3, 2), "6/4": Fraction(6, 4), "C": Fraction(1), "C|": Fraction(1),
}
UNIT_LENGTHS: dict[str, Fraction] = {"1/4": Fraction(1, 4), "1/8": Fraction(1, 8),
                                     "1/16": Fraction(1, 16)}
TONICS = ("C", "D", "E", "F", "G", "A", "B", "Bb", "Eb", "Ab", "F#", "C#")
MODES = ("", "m", "min", "maj", "mix", "Mix", "dor", "Dor", "phr", "lyd", " Major", " Minor",
         " Mixolydian", " Dorian", " Lydian", " Phrygian")
KEYS: tuple[str, ...] = tuple(t + m for t in TONICS for m in MODES)
FREE_FIELDS = "TCORNBZSH"  # header fields with free text
# Characters of free header text: letters, digits and punctuation that cannot be read as ABC
# ('\\' would continue the line, '%' start a comment, '[' ']' '|' look like music).
TEXT_PUNCTUATION = " .,'-!?()&/;\"@"
MAX_FREE_LINES = 10
MAX_FIELD_CHARS = 80

# ------------------------------------------------------------------------------- body values
# Written note lengths (multiples of the unit L:) a note may carry.
LENGTHS: dict[str, Fraction] = {
    "": Fraction(1), "2": Fraction(2), "3": Fraction(3), "4": Fraction(4), "6": Fraction(6),
    "8": Fraction(8), "12": Fraction(12), "16": Fraction(16), "/": Fraction(1, 2),
    "/2": Fraction(1, 2), "//": Fraction(1, 4), "/4": Fraction(1, 4), "3/2": Fraction(3, 2),
}
NOTE_LETTERS = "ABCDEFGabcdefg"
DECORATIONS = ".~Tuv"  # not H: music21 drops the note after it
# Every character some body rule may take; the others are refused in the body at once.
BODY_CHARS = frozenset(NOTE_LETTERS + "z^_=',/0123456789()[]{}|: \n-<>\"KLM" + DECORATIONS)
# Chord symbols: "G", "F#m", "Bbmaj7", "D7/F#": a root, then one of these, then maybe /bass.
CHORD_ROOTS = "ABCDEFG"
CHORD_KINDS = ("", "m", "7", "m7", "maj7", "dim", "dim7", "aug", "sus4", "6", "m6", "9")
CHORD_SUFFIXES = tuple(a + k for a in ("", "#", "b") for k in CHORD_KINDS)
# Words written in quotes where ABC 2.1 has decorations (!D.C.!): navigation marks, as in
# O'Neill's. Like chord symbols they are not played (seqgen's MIDI does not jump).
QUOTED_WORDS = ("D.C.", "D.S.", "Fine", "Segno", "Coda")
# Annotations: text in quotes after a placement character ("^fine", ">"); seqgen's converter
# drops them before music21 reads the tune.
ANNOTATION_PLACES = "^_<>@"
MAX_ANNOTATION_CHARS = 20
MAX_CHORD_NOTES = 4
INLINE_FIELDS = "MLK"  # [M:3/4], [L:1/16], [K:G] at the start of a bar
SECTION_BARS = ("||", "|]", "|:", ":|")
# The characters the grammar cannot do without (checked against the tokenizer).
REQUIRED_CHARS = "XMLK:\n|/18"


class ConstraintError(UsageError):
    """A prompt the ABC constraint cannot continue (or a vocabulary it cannot work with)."""


def prefixes(words: Iterable[str]) -> frozenset[str]:
    """Every prefix of every word, the empty one included."""
    return frozenset(w[:i] for w in words for i in range(len(w) + 1))


class Lexicon:
    """What one vocabulary lets the grammar write, and the tune's length limits in bars.

    Only values the vocabulary can spell to the end are kept (a dead end half-way through a
    meter would strand the sampler); chord symbols, annotations, chords and inline fields only
    when the vocabulary can close them. ConstraintError when the vocabulary cannot write a tune
    at all, or cannot write `key` (``seqgen sample --key`` without ``--meter``: then K: and
    [K:] take only that key).
    """

    def __init__(self, itos: Sequence[str], min_bars: int = 8, max_bars: int = 64,
                 key: str | None = None):
        if min_bars < 1 or max_bars < min_bars:
            raise UsageError("the ABC constraint needs 1 <= min_bars <= max_bars")
        self.itos = list(itos)
        self.min_bars, self.max_bars = min_bars, max_bars
        self.stoi = {c: i for i, c in enumerate(self.itos) if i > UNK_ID}
        missing = [c for c in REQUIRED_CHARS if c not in self.stoi]
        if not any(c in self.stoi for c in NOTE_LETTERS):
            missing.append("A")
        if missing:
            shown = "".join(sorted(set(missing)))  # (its repr shows a newline as \\n)
            raise ConstraintError(
                f"the model's vocabulary lacks characters the ABC constraint needs ({shown!r})")
        spellable = self.spellable
        self.meters = {k: v for k, v in METERS.items() if spellable(k)}
        self.units = {k: v for k, v in UNIT_LENGTHS.items() if spellable(k)}
        self.keys = frozenset(k for k in KEYS if spellable(k))
        if key is not None:
            self.keys = frozenset((self._only_key(key),))
        self.lengths = {k: v for k, v in LENGTHS.items() if spellable(k)}
        self.l4 = {k: int(v * 4) for k, v in self.lengths.items()}  # in quarters of the unit
        self.min_l4 = min(self.l4.values())
        if not (self.meters and self.units and self.keys):
            raise ConstraintError("the model's vocabulary cannot spell an ABC meter, unit length "
                                  "and key for the ABC constraint")
        self.value_prefixes = {"M": prefixes(self.meters), "L": prefixes(self.units),
                               "K": prefixes(self.keys)}
        self.length_prefixes = prefixes(self.lengths)
        quote = '"' in self.stoi
        self.roots = "".join(r for r in CHORD_ROOTS if r in self.stoi) if quote else ""
        self.suffix_words = frozenset(w for w in CHORD_SUFFIXES if spellable(w))
        self.suffix_prefixes = prefixes(self.suffix_words)
        self.words = frozenset(w for w in QUOTED_WORDS if spellable(w)) if quote else frozenset()
        self.word_prefixes = prefixes(self.words) - {""}
        self.places = "".join(c for c in ANNOTATION_PLACES if c in self.stoi) if quote else ""
        self.chords = "]" in self.stoi
        self.inline = "".join(f for f in INLINE_FIELDS if f in self.stoi) if self.chords else ""

    def spellable(self, word: str) -> bool:
        return all(ch in self.stoi for ch in word)

    def _only_key(self, key: str) -> str:
        if key not in KEYS:
            raise ConstraintError(f"--key {key!r}: not a key the ABC constraint writes; give "
                                  "one such as D, Em, Ador, Dmix or Bb (or add --meter)")
        if not self.spellable(key):
            missing = "".join(sorted({ch for ch in key if ch not in self.stoi}))
            raise ConstraintError(f"--key {key!r}: the model's vocabulary has no "
                                  f"{missing!r}, so it cannot write this key")
        return key
