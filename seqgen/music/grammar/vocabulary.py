"""The words of the ABC grammar (meters, unit lengths, keys, note lengths, chord symbols...) and
`Lexicon`: the part of them one tokenizer's vocabulary can spell, which is what the rules read.

No torch, no numpy: plain Python values, so that the rules stay cheap to call.
"""

from __future__ import annotations

import re
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
FREE_FIELDS = "TCONBZSH"  # header fields with free text (R: is listed: RHYTHMS)
# Characters of free header text: letters, digits and punctuation that cannot be read as ABC
# ('\\' would continue the line, '%' start a comment, '[' ']' '|' look like music).
TEXT_PUNCTUATION = " .,'-!?()&/;\"@"
# R: (rhythm) values per meter: those the bundled corpora (folk, ryans, aird; irish.abc has no
# R:) write at least twice under that meter, counted case-blind, as they spell them (4/4 and C,
# 2/2 and C| together), less "hornpipe" outside 2/4 and 4/4, which abc2midi refuses ("Hornpipe
# must be in 2/4 or 4/4 time"; the corpora have 207 under C|). `python bench/tune_form.py`
# prints the counts. A meter not listed takes no R:.
_COMMON_TIME = ("strathspey", "Strathspey", "hornpipe", "Hornpipe", "air", "reel")
_CUT_TIME = ("reel", "Reel", "REEL", "clog", "highland fling", "jig", "fling")
RHYTHMS: dict[str, tuple[str, ...]] = {
    "2/4": ("reel", "Reel", "REEL", "hornpipe", "Hornpipe", "air", "jig", "fling", "walkaround"),
    "C": _COMMON_TIME, "4/4": _COMMON_TIME, "C|": _CUT_TIME, "2/2": _CUT_TIME,
    "6/8": ("jig", "Jig", "JIG", "double jig", "air"),
    "9/8": ("slip jig", "slipjig", "jig"),
    "12/8": ("slide", "Slide"),
    "3/4": ("waltz", "air"),
    "3/8": ("air",),
}
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
# not before a chord: abc2midi "Rolls and trills not supported in chords"
TRILLS = ("~", "T", "!trill!")
# Every character some body rule may take; the others are refused in the body at once.
BODY_CHARS = frozenset(NOTE_LETTERS + "z^_=',/0123456789()[]{}|: \n-<>\"KLM!\\" + DECORATIONS)
# Chord symbols: "G", "F#m", "Bbmaj7", "D7/F#": a root, then one of these, then maybe /bass.
CHORD_ROOTS = "ABCDEFG"
CHORD_KINDS = ("", "m", "7", "m7", "maj7", "dim", "dim7", "aug", "sus4", "6", "m6", "9")
CHORD_SUFFIXES = tuple(a + k for a in ("", "#", "b") for k in CHORD_KINDS)
# Annotations: text in quotes after a placement character ("^fine", ">"). Not '@' (abcm2ps wants
# coordinates after it: "Error in annotation"), no ',' in the text (music21's stock reader takes
# "^x,y" for a chord symbol: "Cannot make a step out of '^'"), no '!' (music21 reads the text
# from it to the next '!' as a decoration, quotes or not).
ANNOTATION_PLACES = "^_<>"
ANNOTATION_PUNCTUATION = "".join(c for c in TEXT_PUNCTUATION if c not in ',"!')
MAX_ANNOTATION_CHARS = 10  # (abcm2ps spaces notes to fit their text)
# Decorations written !trill!, when the vocabulary has '!': the ones abcm2ps defines (it refuses
# others, e.g. !sf!: "Decoration !sf! not defined") that the bundled corpora use or that mark
# the same things (fingerings 0-5 as in Ryan's). Not ABC 2.0's +trill+: music21's reader takes
# its letters for notes (and fails on +coda+).
DECORATION_NAMES = ("trill", "fermata", "segno", "coda", "D.C.", "D.S.", "fine", "roll",
                    "mordent", "turn", "upbow", "downbow", "accent", "emphasis", "tenuto",
                    "p", "pp", "mp", "mf", "f", "ff", "0", "1", "2", "3", "4", "5")
MAX_CHORD_NOTES = 4
# Form (bench/tune_form.py measures the bundled corpora and irish.abc, music21 reading them):
# - 92-95% of the parts of each corpus have 4, 8, 12 or 16 bars (a pickup not counted), 79-90%
#   have 4 or 8 (69-87% have 8); a part that repeats (':|', endings) has 4 or 8 bars in 92-97%
#   of them; parts of fewer than 4 bars are under 5% in every meter. A part has 4 or 8 bars:
#   allowed 12 and 16, models trained for a minute ran their parts to the longest (their tunes
#   of 28-32 bars against the corpora's 18; bench/bench_grammar.py), and 16 bars are written
#   as two parts of 8;
# - 78-92% of the tunes have 2 parts, 83-94% 2 or 3 (O'Neill's 70% and 20%, Ryan's 78% and
#   16%, Aird's 66% and 17%), 4 or more 4-10%: a tune has 2 or 3 parts (allowed 4, models
#   trained for a minute on O'Neill's wrote 4 parts in a sixth of their tunes, 23 bars a tune
#   against the corpus's 18);
# - the 99th percentile of bars per score line is 9 in folk, Ryan's and Aird's (8 in irish.abc).
PART_LENGTHS = (4, 8)
REPEAT_PART_LENGTHS = (4, 8)
MIN_PARTS, MAX_PARTS = 2, 3
MAX_LINE_BARS = 9
# A score line ends at the first barline after LINE_WIDTH notes, rests and chords, a bar
# counting BAR_WIDTH more for its barline: abcm2ps fails on a line a little too wide for its
# page ("Line too much shrunk": about 64 sixteenths, 50 dotted eighths). So the line of a reel
# or a jig has 4 bars, as in the corpora (their median line: 24-30 notes, 4 bars; 95th
# percentile 33-46 notes; bench/tune_form.py).
LINE_WIDTH = 32
BAR_WIDTH = 2
# ... and a bar holds at most MAX_BAR_NOTES notes, rests and chords (a triplet counts 3), none
# shorter than a 1/32 note, so that no line grows much past the corpora's.
MAX_BAR_NOTES = 16
# ... and what widens a line besides its notes stays within LINE_EXTRAS (in about half a note's
# width): an accidental, a broken-rhythm dot, a grace note, a decoration !trill!, a character of
# an annotation count 1; a quoted text 2 more, a chord symbol 6 in all.
LINE_EXTRAS = 24
CHORD_SYMBOL_WIDTH = 4
MIN_NOTE_TICKS = TICKS // 32
INLINE_FIELDS = "MLK"  # [M:3/4], [L:1/16], [K:G] at the start of a bar
# The characters the grammar cannot do without (checked against the tokenizer).
REQUIRED_CHARS = "XMLK:\n|/18"


class ConstraintError(UsageError):
    """A prompt the ABC constraint cannot continue (or a vocabulary it cannot work with)."""


MAX_FORM_BARS = 64  # --bars: bars per part, at most
CADENCES = ("tonic", "free")
# --form corpus: each tune's form drawn from the training corpus's (seqgen.music.form.FormDraw)
FORM_CORPUS = "corpus"
FORM_FREE = "free"  # --form free: no form (the grammar's own limits on parts and bars)


def form_problem(form: str) -> str | None:
    """What is wrong with a form such as 'AABB' (`seqgen sample --form`), or None: letters A-Z
    are parts, a letter doubled is a repeated part, a letter seen before returns (AABA); new
    letters come in order (A, then B...), and a letter at most twice in a row."""
    if not form or not all("A" <= c <= "Z" for c in form):
        return "give letters A-Z, one a part, a letter doubled for a repeated part (AABB, AB, AABA)"
    runs = [m.group(0) for m in re.finditer(r"(.)\1*", form)]
    if any(len(r) > 2 for r in runs):
        return "give a letter at most twice in a row (doubled, it is a repeated part)"
    seen = ""
    for c in form:
        if c not in seen:
            if c != chr(ord("A") + len(seen)):
                return f"letter new parts in order (A, then B, ...): {c!r} comes early"
            seen += c
    return None


def form_option_problem(form: str) -> str | None:
    """form_problem, "corpus" and "free" allowed (`seqgen sample --form`)."""
    if form in (FORM_CORPUS, FORM_FREE):
        return None
    problem = form_problem(form)
    return problem and f"{problem}; or corpus (drawn from the training tunes) or free (none)"


def tonic_letter(key: str) -> str:
    """The letter of a key's tonic, upper case ('Ador' -> 'A', 'F#m' -> 'F'); '' for none."""
    from seqgen.music.keys import read_key

    k = read_key(key)
    return k.tonic[0] if k is not None else ""


def form_parts(form: str) -> tuple[bool, ...]:
    """The parts of a form as written (each: repeated or not): 'AABA' -> (True, False, False)."""
    return tuple(len(m.group(0)) == 2 for m in _PART.finditer(form))


def form_letters(form: str) -> tuple[str, ...]:
    """The letter of each part of a form as written: 'AABA' -> ('A', 'B', 'A')."""
    return tuple(m.group(1) for m in _PART.finditer(form))


_PART = re.compile(r"(.)\1?")  # a part as a form writes it: its letter, doubled when repeated


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
                 key: str | None = None, form: str | None = None, bars: int = 8,
                 cadence: str = "tonic", cadence_parts: tuple[int, ...] = ()):
        if min_bars < 1 or max_bars < min_bars:
            raise UsageError("the ABC constraint needs 1 <= min_bars <= max_bars")
        # --form: the parts (each repeated or not), each exactly `bars` bars long
        self.form = form_parts(form) if form else ()
        if self.form:
            # the parts make the length (min_bars would only blur the signature's bar
            # classes); a pickup closes a bar of its own, a second ending up to `bars` more
            min_bars, max_bars = 1, len(self.form) * (bars + 1) + bars * sum(self.form)
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
        # --cadence tonic: the tune's last note is the tonic of K: (rules/form.py final_bar)
        self.cadence = bool(self.form) and cadence == "tonic"
        # the parts whose last bar is a cadence: the last, and `cadence_parts` (a bar plan that
        # ends the tune with the end of another part: seqgen.music.form.FormDraw)
        self.cadence_parts = frozenset((len(self.form) - 1, *cadence_parts)) \
            if self.cadence else frozenset()
        if self.cadence:  # keys whose tonic letter the vocabulary has
            self.keys = frozenset(k for k in self.keys if spellable(tonic_letter(k)) or
                                  spellable(tonic_letter(k).lower()))
        if key is not None:
            self.keys = frozenset((self._only_key(key),))
        self.lengths = {k: v for k, v in LENGTHS.items() if spellable(k)}
        self.l4 = {k: int(v * 4) for k, v in self.lengths.items()}  # in quarters of the unit
        self.fill_cache: dict[tuple[int, int], int] = {}  # (rules/timing.py's fill_count)
        self.fits_cache: dict[tuple[int, int, int, int, int, bool], bool] = {}  # (its fits)
        self._playable: dict[int, tuple[int, ...]] = {}
        if not (self.meters and self.units and self.keys):
            raise ConstraintError("the model's vocabulary cannot spell an ABC meter, unit length "
                                  "and key for the ABC constraint")
        self.value_prefixes = {"M": prefixes(self.meters), "L": prefixes(self.units),
                               "K": prefixes(self.keys)}
        self.rhythms = {m: frozenset(r for r in rs if spellable(r))
                        for m, rs in RHYTHMS.items() if m in self.meters}
        self.rhythm_prefixes = {m: prefixes(rs) for m, rs in self.rhythms.items() if rs}
        # the lengths a part may have (PART_LENGTHS) in a tune of max_bars
        self.part_lengths = tuple(n for n in PART_LENGTHS if n <= max_bars) or (max_bars,)
        self.repeat_lengths = tuple(n for n in REPEAT_PART_LENGTHS
                                    if n <= max_bars) or self.part_lengths[:1]
        self.min_parts = max(1, min(MIN_PARTS, max_bars // self.part_lengths[0]))
        self.max_parts = MAX_PARTS
        if self.form:
            self.part_lengths = self.repeat_lengths = (bars,)
            self.min_parts = self.max_parts = len(self.form)
        self.length_prefixes = prefixes(self.lengths)
        quote = '"' in self.stoi
        self.roots = "".join(r for r in CHORD_ROOTS if r in self.stoi) if quote else ""
        self.suffix_words = frozenset(w for w in CHORD_SUFFIXES if spellable(w))
        self.suffix_prefixes = prefixes(self.suffix_words)
        self.places = "".join(c for c in ANNOTATION_PLACES if c in self.stoi) if quote else ""
        # !trill! when the vocabulary has '!'; '!' alone also ends a line (|!)
        self.bang = "!" in self.stoi
        self.decorations = {m: frozenset(m + d + m for d in DECORATION_NAMES if spellable(d))
                            for m in "!" if m in self.stoi}
        self.continuation = "\\" in self.stoi  # a line ending in '\\' goes on on the next
        self.chords = "]" in self.stoi
        self.inline = "".join(f for f in INLINE_FIELDS if f in self.stoi) if self.chords else ""
        if self.cadence:  # (one key to end in)
            self.inline = self.inline.replace("K", "")

    def playable(self, step: int) -> tuple[int, ...]:
        """The lengths (in quarters of the unit, l4) a note may take when a quarter of the unit
        lasts `step` ticks: none shorter than a 1/32 note (MIN_NOTE_TICKS)."""
        p = self._playable.get(step)
        if p is None:
            p = self._playable[step] = tuple(sorted(
                {v for v in self.l4.values() if v * step >= MIN_NOTE_TICKS}, reverse=True))
        return p

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
