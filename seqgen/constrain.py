"""The ABC constraint: which next characters keep a sampled tune well formed (``--constrain abc``).

While a tune is decoded, the sampler asks for a mask of the characters allowed next and sets the
logits of all others to -inf before choosing (one mask per stream of the batch). The grammar is a
strict, common subset of ABC 2.1, the part that seqgen's music check (``seqgen abc2midi --check``)
and music21 read without complaint:

Header, one field per line, ``X:`` first and ``K:`` last:
    ``X:`` a number; then any of ``T C O R N B Z S H`` (free text of letters, digits and plain
    punctuation, at most 80 characters, at most 10 such lines), ``M:`` (one of METERS), ``L:`` (one
    of UNIT_LENGTHS) and ``Q:`` (a tempo in beats per minute, ``Q:80``), each at most once; ``K:``
    (one of the keys in KEYS) only once ``M:`` and ``L:`` are there. One space may follow the colon.
Body, a sequence of bars:
    notes ``[^^|^|_|__|=]? [A-Ga-g] [',]* length?`` and rests ``z length?``, where length is one
    of LENGTHS (``2``, ``3/2``, ``/``, ``//``...); decorations ``. ~ T u v`` before a note; ties
    ``-`` after one; broken rhythm ``A>B`` / ``A<B`` (both notes the same written length);
    triplets ``(3`` (three notes of the same written length); slurs ``( )`` closed within the bar
    (one level); grace notes ``{gf}`` before a note; single spaces between notes.
    Chords ``[CEg]`` (2 to 4 notes without lengths, the length after ``]``) count as one note.
    Before a note, rest or chord: a chord symbol (``"G"``, ``"F#m7"``, ``"D7/F#"``: a root,
    a kind of CHORD_KINDS, maybe a bass), an annotation (``"^fine"``, ``">"``: a placement
    character and short plain text) or one of QUOTED_WORDS (``"D.C."``); none of them takes time.
    Barlines ``|  ||  |]  |:  :|`` (not ``::``, around which music21 loses notes in some
    tunes); endings ``[1`` after a barline and ``[2`` after ``:|``; inline fields
    ``[M:3/4]``, ``[L:1/16]``, ``[K:G]`` at the start of a bar (values as in the header; a new
    meter or unit counts from that bar on); a line break only right after a barline; no blank
    lines or comments; a line never starts with a letter and a colon (ABC would read it as a
    header field). A decoration after a chord symbol precedes a note, not a chord.
    ``|]`` ends the tune; ``<eos>`` only right after a barline (so the tune ends with one), once
    the tune has at least `min_bars` bars; after `max_bars` bars the next barline ends it.
Bar lengths under ``L:`` and ``M:``: the constraint tracks the duration of the current bar (a
    triplet counts as two of its notes, a broken pair as two equal notes) and forbids any note
    that would overfill the bar; a plain ``|`` may close a bar only when the bar is full, or it is
    the first bar (a pickup) or follows a section barline (``|| |] |: :|``); otherwise a short
    bar must end a section (``||``, ``|]``, ``:|``...), as the music check allows.

Every state of the grammar keeps a way to finish (tested by exhaustive search), so a stream can
never get stuck. A prompt (``X:1\\nM:6/8\\nK:D\\n``) is read leniently (fields in any order, ``M:``
and ``L:`` optional, any values; without ``L:`` the ABC default unit applies) and its body strictly.

Speed: states are small immutable tuples; both the mask of a state and the transition
(state, character) -> state are cached, so after warm-up a character costs two dictionary
lookups. No torch here: masks are numpy bool arrays over the tokenizer's ids (``<eos>`` = id 0).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from fractions import Fraction
from typing import TYPE_CHECKING, NamedTuple

from seqgen.errors import UsageError
from seqgen.music.abc import parse_meter, parse_unit

if TYPE_CHECKING:
    import numpy as np

    from seqgen.tokenizer import Tokenizer

EOS_ID = 0
UNK_ID = 1
TICKS = 192  # body durations are counted in ticks: 192 per whole note (1/64 notes and triplets)

# ------------------------------------------------------------------------------ the vocabulary
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
# Written note lengths (multiples of the unit L:) a note may carry.
LENGTHS: dict[str, Fraction] = {
    "": Fraction(1), "2": Fraction(2), "3": Fraction(3), "4": Fraction(4), "6": Fraction(6),
    "8": Fraction(8), "12": Fraction(12), "16": Fraction(16), "/": Fraction(1, 2),
    "/2": Fraction(1, 2), "//": Fraction(1, 4), "/4": Fraction(1, 4), "3/2": Fraction(3, 2),
}
FREE_FIELDS = "TCORNBZSH"  # header fields with free text
# Characters of free header text: letters, digits and punctuation that cannot be read as ABC
# ('\\' would continue the line, '%' start a comment, '[' ']' '|' look like music).
TEXT_PUNCTUATION = " .,'-!?()&/;\"@"
MAX_FREE_LINES = 10
MAX_FIELD_CHARS = 80
NOTE_LETTERS = "ABCDEFGabcdefg"
DECORATIONS = ".~Tuv"  # not H: music21 drops the note after it
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
# Body states inside a chord symbol, an annotation or an inline field, where letters are text,
# not notes.
TEXT_STATES = frozenset(("cs", "csr", "csb", "csbr", "ann", "inl1", "inlv"))
INLINE_FIELDS = "MLK"  # [M:3/4], [L:1/16], [K:G] at the start of a bar
SECTION_BARS = ("||", "|]", "|:", ":|")
# The characters the grammar cannot do without (checked against the tokenizer).
REQUIRED_CHARS = "XMLK:\n|/18"


def _prefixes(words) -> frozenset[str]:
    return frozenset(w[:i] for w in words for i in range(len(w) + 1))


class ConstraintError(UsageError):
    """A prompt the ABC constraint cannot continue (or a vocabulary it cannot work with)."""


# ---------------------------------------------------------------------------------- the state
class State(NamedTuple):
    """Where a tune is in the grammar. Immutable and hashable (masks and moves are cached)."""

    phase: int = 0  # 0 header, 1 body, 2 ended
    # header
    hl: str = "X"  # "X" doc start | "line" line start | "colon" letter read | "value"
    letter: str = ""
    val: str = ""  # value so far (X, M, L, K) ; free text keeps only its length in vlen
    vlen: int = 0
    seen: str = ""  # the fields of X M L K read so far
    nfree: int = 0
    meter: str | None = None  # header: the M: value read (strings hash fast)
    unit: str = ""  # header: the L: value read ("" none)
    # body
    e: str = "start"  # element state, see AbcConstraint._body
    p: str = ""  # partial token: length suffix so far, accidental, barline start
    oct: int = 0  # octave marks on the current note
    tb: int | None = None  # body: the bar length in ticks (TICKS per whole note); None: free
    tq: int = 6  # body: ticks of a quarter of the unit length (note lengths are n/4 units)
    dur: int = 0  # body: duration of the current bar so far, in ticks
    notes: bool = False  # the current bar holds a note
    bars: int = 0  # bars with notes closed so far
    edge: bool = True  # the current bar starts a section (or the tune)
    tup: int = 0  # notes of a triplet still to come
    force: str | None = None  # the length every coming note of a triplet / broken pair must have
    mult: int = 1  # the current note counts this many times (2: first note of a triplet)
    last: str | None = None  # length of the note just finished (for '>' and '<'), else None
    slur: int = 0  # 0 none, 1 open without a note, 2 open with a note
    prev: str = ""  # the last barline
    lead: bool = False  # the current body line so far is one note letter ('b' then ':' = a field)
    lenient: int = 0  # 1: reading a prompt's header; 2: the prompt's last header line
    cn: int = 0  # body: notes of the chord [...] so far, or characters of an annotation


class AbcConstraint:
    """The ABC grammar over one tokenizer's vocabulary (see the module docstring).

    ``start()`` is the state at the start of a document; ``mask(state)`` the allowed ids (numpy
    bool, size vocab_size, ``<eos>`` included); ``advance(state, id)`` the next state, None when
    the id is not allowed. Masks and moves are cached per state.
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
            shown = "".join(sorted(set(missing))).replace("\n", "\\n")
            raise ConstraintError(
                f"the model's vocabulary lacks characters the ABC constraint needs ({shown!r})")
        self._chars = [(i, c) for i, c in enumerate(self.itos) if i > UNK_ID]
        letters = [i for i, c in self._chars if c in NOTE_LETTERS]
        # body: note letters share one move; characters no body state takes are refused at once
        self._note_rep = {i: letters[0] for i in letters}
        self._note_rep.update({i: i for i, c in self._chars if c in BODY_CHARS})
        self._note_rep[EOS_ID] = EOS_ID
        self._ids = [i for i, _ in self._chars]
        self._body_ids = [i for i, c in self._chars if c in BODY_CHARS]  # the rest: never
        text = [i for i, c in self._chars if c != " " and (c.isalnum() or c in TEXT_PUNCTUATION)]
        self._text_rep = {i: text[0] for i in text} if text else {}

        def spellable(w: str) -> bool:
            return all(ch in self.stoi for ch in w)

        # only values the vocabulary can spell to the end (no dead end half-way)
        self.meters = {k: v for k, v in METERS.items() if spellable(k)}
        self.units = {k: v for k, v in UNIT_LENGTHS.items() if spellable(k)}
        self.keys = frozenset(k for k in KEYS if spellable(k))
        if key is not None:  # `seqgen sample --key` without --meter: K: (and [K:]) take only it
            if key not in KEYS:
                raise ConstraintError(f"--key {key!r}: not a key the ABC constraint writes; give "
                                      "one such as D, Em, Ador, Dmix or Bb (or add --meter)")
            if key not in self.keys:
                missing = "".join(sorted({ch for ch in key if ch not in self.stoi}))
                raise ConstraintError(f"--key {key!r}: the model's vocabulary has no "
                                      f"{missing!r}, so it cannot write this key")
            self.keys = frozenset((key,))
        self.lengths = {k: v for k, v in LENGTHS.items() if spellable(k)}
        self.l4 = {k: int(v * 4) for k, v in self.lengths.items()}  # in quarters of the unit
        self.min_l4 = min(self.l4.values())
        if not (self.meters and self.units and self.keys):
            raise ConstraintError("the model's vocabulary cannot spell an ABC meter, unit length "
                                  "and key for the ABC constraint")
        self._value_prefixes = {"M": _prefixes(self.meters), "L": _prefixes(self.units),
                                "K": _prefixes(self.keys)}
        self._length_prefixes = _prefixes(self.lengths)
        # chord symbols, annotations and chords only when the vocabulary can close them
        quote = '"' in self.stoi
        self.roots = "".join(r for r in CHORD_ROOTS if r in self.stoi) if quote else ""
        self._suffix_words = frozenset(w for w in CHORD_SUFFIXES if spellable(w))
        self._suffix_prefixes = _prefixes(self._suffix_words)
        self._words = frozenset(w for w in QUOTED_WORDS if spellable(w)) if quote else frozenset()
        self._word_prefixes = _prefixes(self._words) - {""}
        self.places = "".join(c for c in ANNOTATION_PLACES if c in self.stoi) if quote else ""
        self.chords = "]" in self.stoi
        self.inline = "".join(f for f in INLINE_FIELDS if f in self.stoi) if self.chords else ""
        # the order in which _live tries characters: the ones most states allow first
        likely = "abcdefgABCDEFG|\n z2"
        self._probe = sorted((c for _, c in self._chars),
                             key=lambda c: likely.index(c) if c in likely else len(likely))
        self._masks: dict[State, np.ndarray] = {}
        self._moves: dict[tuple[State, int], State | None] = {}
        self._alive: dict[State, bool] = {}
        self._sigs: dict[State, State] = {}

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    # ------------------------------------------------------------------------- public API
    def start(self) -> State:
        return State()

    def advance(self, s: State, token: int) -> State | None:
        """The state after `token` (an id), or None when the grammar does not allow it."""
        key = (s, token)
        try:
            return self._moves[key]
        except KeyError:
            pass
        rep = None
        if s.phase == 1 and s.e not in TEXT_STATES:
            # in the body every note letter moves alike: share the first one's move
            rep = self._note_rep.get(token, -1)
        elif s.hl == "value" and s.letter == "T":  # so does every character of free text
            rep = self._text_rep.get(token)
        if rep is not None and rep != token:
            nxt = None if rep < 0 else self.advance(s, rep)
        elif token == EOS_ID:
            nxt = self._eos(s)
        elif token == UNK_ID or token >= len(self.itos) or token < 0:
            nxt = None
        else:
            nxt = self.step(s, self.itos[token])
            if nxt is not None and not self._live(nxt):
                nxt = None  # a move into a dead end (one step of look-ahead)
        self._moves[key] = nxt
        return nxt

    def _sig(self, s: State) -> State:
        """A representative of the states whose masks equal that of `s`: the bar count matters
        only as 0, below min_bars - 1, min_bars - 1, up to max_bars - 2, max_bars - 1 and beyond
        (the barlines `_close_bar` allows change at those counts), and the length of
        free header text only as empty, under the limit or at it. Masks are cached per
        representative, so a new bar or title seldom needs a new mask."""
        r = self._sigs.get(s)
        if r is None:
            r = self._sigs[s] = self._representative(s)
        return r

    def _representative(self, s: State) -> State:
        if s.phase == 1:
            b = s.bars
            if b == 0:
                return s
            if b >= self.max_bars:
                rb = self.max_bars
            elif b == self.max_bars - 1:
                rb = b
            elif b < self.min_bars - 1:
                rb = 1
            elif b == self.min_bars - 1:  # the next barline may be the final '|]'
                rb = b
            else:
                rb = self.min_bars
            return s if rb == b else s._replace(bars=rb)
        if s.hl == "value" and s.letter == "T" and not s.lenient and 1 < s.vlen < MAX_FIELD_CHARS:
            return s._replace(vlen=1)
        return s

    def _live(self, s: State) -> bool:
        """Some character or <eos> may follow state `s`."""
        s = self._sig(s)
        live = self._alive.get(s)
        if live is None:
            live = self._eos(s) is not None or any(
                self.step(s, c) is not None for c in self._probe)
            self._alive[s] = live
        return live

    def mask(self, s: State) -> np.ndarray:
        """The ids allowed after state `s` (bool array of vocab_size; never all False)."""
        s = self._sig(s)
        m = self._masks.get(s)
        if m is None:
            import numpy as np

            m = np.zeros(len(self.itos), dtype=bool)
            for i in self._body_ids if s.phase == 1 and s.e not in TEXT_STATES else self._ids:
                m[i] = self.advance(s, i) is not None
            m[EOS_ID] = self.advance(s, EOS_ID) is not None
            if not m.any():  # never happens for states the grammar reaches (tested)
                m[EOS_ID] = True
            m.flags.writeable = False
            self._masks[s] = m
        return m

    def allowed_chars(self, s: State) -> str:
        """The allowed characters as a string ('\\x00' standing for <eos>), for tests and errors."""
        m = self.mask(s)
        return ("\x00" if m[EOS_ID] else "") + "".join(c for i, c in self._chars if m[i])

    def feed_text(self, s: State, text: str, lenient: bool = False) -> State:
        """The state after the characters of `text`; ConstraintError naming the first character
        the grammar refuses. `lenient` reads a header in any order and with any values (prompts)."""
        if lenient and s.phase == 0:
            s = s._replace(lenient=1)
        line, col = 1, 0
        for ch in text:
            col += 1
            nxt = self.step(s, ch)
            if nxt is None:
                raise ConstraintError(
                    f"the prompt breaks the ABC grammar at line {line}, column {col} ({ch!r}"
                    f" where {self._describe(s)}); fix it or sample with --constrain none")
            s = nxt
            if ch == "\n":
                line, col = line + 1, 0
        if s.lenient:
            # generation is strict; a prompt that ends inside a header line the strict grammar
            # cannot finish ('M:7/') finishes that line leniently
            strict = s._replace(lenient=0)
            s = strict if self._viable(strict) else s._replace(lenient=2)
        return s

    def _viable(self, s: State) -> bool:
        return any(self.advance(s, i) is not None for i in range(len(self.itos)))

    def _describe(self, s: State) -> str:
        allowed = self.allowed_chars(s._replace(lenient=0)).replace("\n", "\\n")
        allowed = allowed.replace("\x00", "<eos>")
        return f"the grammar allows {allowed[:40]!r}" if allowed else "nothing may follow"

    # --------------------------------------------------------------------------- grammar
    def step(self, s: State, ch: str) -> State | None:
        """The state after character `ch`, or None when it is not allowed."""
        if s.phase == 0:
            return self._header(s, ch)
        if s.phase == 1:
            if s.lead and ch == ":":
                return None
            nxt = self._body(s, ch)
            if nxt is not None and s.lead:
                nxt = nxt._replace(lead=False)
            return nxt
        return None

    # header ------------------------------------------------------------------------
    def _header(self, s: State, ch: str) -> State | None:
        if s.hl == "X":
            return s._replace(hl="colon", letter="X") if ch == "X" else None
        if s.hl == "line":
            if s.lenient:
                if ch.isalpha() and ch.isascii():
                    return s._replace(hl="colon", letter=ch)
                return None
            if ch in ("M", "L", "Q") and ch not in s.seen:
                return s._replace(hl="colon", letter=ch)
            if ch == "K" and "M" in s.seen and "L" in s.seen:
                return s._replace(hl="colon", letter=ch)
            if ch in FREE_FIELDS and s.nfree < MAX_FREE_LINES:
                return s._replace(hl="colon", letter="T")  # all free-text fields read alike
            return None
        if s.hl == "colon":
            return s._replace(hl="value", val="", vlen=0) if ch == ":" else None
        # a field's value
        letter = s.letter
        if ch == "\n":
            return self._end_field(s)
        if ch == " " and s.vlen == 0 and not s.val:
            return s._replace(vlen=-1) if not s.lenient or letter not in "XMLK" else s
        if s.lenient:
            if letter in "XMLK":
                return s._replace(val=s.val + ch) if len(s.val) < MAX_FIELD_CHARS else None
            return s._replace(vlen=max(s.vlen, 0) + 1) if s.vlen < MAX_FIELD_CHARS else None
        if letter in "XQ":  # a number: the tune's, or the tempo in beats per minute
            if ch.isdigit() and len(s.val) < (4 if letter == "X" else 3) and (s.val or ch != "0"):
                return s._replace(val=s.val + ch, vlen=max(s.vlen, 0))
            return None
        prefixes = self._value_prefixes.get(letter)
        if prefixes is not None:
            v = s.val + ch
            return s._replace(val=v, vlen=max(s.vlen, 0)) if v in prefixes else None
        # free text: letters, digits, plain punctuation; no leading double space
        if not (ch.isalnum() or ch in TEXT_PUNCTUATION) or (ch == " " and s.vlen <= 0):
            return None
        n = max(s.vlen, 0) + 1
        return s._replace(vlen=n) if n <= MAX_FIELD_CHARS else None

    def _end_field(self, s: State) -> State | None:
        letter, v = s.letter, s.val.strip()
        if s.lenient:
            pass  # a prompt's header: any value
        elif letter in "XQ":
            if not v:
                return None
        elif letter == "M":
            if v not in self.meters:
                return None
        elif letter == "L":
            if v not in self.units:
                return None
        elif letter == "K":
            if v not in self.keys:
                return None
        elif s.vlen <= 0:
            return None  # an empty free-text field
        seen = s.seen + letter if letter in "XMLKQ" and letter not in s.seen else s.seen
        s = s._replace(hl="line", letter="", val="", vlen=0, seen=seen,
                       nfree=s.nfree + (letter not in "XMLKQ"), lenient=1 if s.lenient == 1 else 0)
        if letter == "M":
            s = s._replace(meter=v)
        elif letter == "L":
            s = s._replace(unit=v)
        elif letter == "K":
            return self._body_start(s)
        return s

    # body --------------------------------------------------------------------------
    @staticmethod
    def _body_start(s: State) -> State:
        """Into the body: durations become integer ticks (fast to add, compare and hash)."""
        bar = parse_meter(s.meter) if s.meter is not None else None
        tq = parse_unit(s.unit, bar) * TICKS / 4
        tb = bar * TICKS if bar is not None else None
        if tq.denominator != 1 or (tb is not None and tb.denominator != 1):
            tb, tq = None, Fraction(1)  # a unit or meter finer than the ticks: no steering
        return s._replace(phase=1, hl="", e="start", edge=True, tq=int(tq),
                          tb=int(tb) if tb is not None else None)

    def _fits(self, s: State, mult: int = 1) -> bool:
        """A new note (of the shortest length) still fits in the bar."""
        if s.force is not None:
            return True
        if s.tb is None:
            return True
        return s.dur + self.min_l4 * s.tq * mult <= s.tb

    def _can_start_note(self, s: State) -> bool:
        return self._fits(s, 2 if s.tup == 3 else 1) and s.bars < self.max_bars

    def _start_element(self, s: State, ch: str) -> State | None:
        """`ch` as the first character of a note, rest, decoration, triplet, slur or grace group,
        from a point between elements (not checking barlines)."""
        if not self._can_start_note(s):
            return None
        if ch in NOTE_LETTERS or ch == "z":
            return s._replace(e="note" if ch != "z" else "rest", p="", oct=0, last=None,
                              mult=2 if s.tup == 3 else 1, notes=True, slur=2 if s.slur else 0,
                              lead=s.e in ("nl", "start"))
        if ch in "^_=":
            return s._replace(e="acc", p=ch, last=None)
        if ch == "[" and self.chords and s.e != "acc":  # a chord: notes sounding together
            return s._replace(e="chord", p="", oct=0, cn=0, last=None,
                              mult=2 if s.tup == 3 else 1, notes=True, slur=2 if s.slur else 0)
        if s.e in ("dec", "acc", "broken"):
            return None
        if ch == '"' and s.e not in ("sym", "grace_done") and (self.roots or self.places):
            return s._replace(e="cs", p="", cn=0, last=None)  # a chord symbol or annotation
        if ch in DECORATIONS:
            # after a quoted string a decoration may not precede a chord: music21 reads the
            # '~' of '"G"~[CE]' as a note
            return s._replace(e="dec" if s.e != "sym" else "symdec", last=None)
        if s.e == "grace_done":
            return None
        if ch == "{" and s.tup == 0 and s.e != "sym" and "}" in self.stoi:
            return s._replace(e="grace", p="", last=None)
        if ch == "(" and s.slur == 0:
            return s._replace(e="paren", last=None)
        return None

    def _finish_note(self, s: State) -> State | None:
        """The note whose length suffix is s.p is complete: account for its duration."""
        if s.p not in self.lengths:
            return None
        if s.force is not None:
            if s.p != s.force:
                return None
            tup = max(s.tup - 1, 0)
            return s._replace(e="after", p="", force=s.force if tup else None, tup=tup,
                              last=None, mult=1)
        d = s.dur + self.l4[s.p] * s.tq * s.mult
        if s.tb is not None and d > s.tb:
            return None
        if s.tup == 3:  # the first note of a triplet sets the length of the other two
            return s._replace(e="after", p="", dur=d, tup=2, force=s.p, last=None, mult=1)
        return s._replace(e="after", p="", dur=d, last=s.p, mult=1)

    def _length_ok(self, s: State, p: str) -> bool:
        """`p` can grow into a length the bar still has room for."""
        if s.force is not None:
            return s.force.startswith(p)
        if p not in self._length_prefixes:
            return False
        if s.tb is None:
            return True
        room = s.tb - s.dur
        return any(k.startswith(p) and v * s.tq * s.mult <= room for k, v in self.l4.items())

    def _close_bar(self, s: State, kind: str) -> State | None:
        """A barline `kind` closes the current bar (None when it may not)."""
        if s.slur or s.tup or s.force is not None:
            return None
        full = s.tb is None or s.dur == s.tb
        if not s.notes:
            # an opening repeat at the start of the tune or of a line
            if kind == "|:" and s.bars == 0 and s.e == "start":
                return s._replace(e="bar", prev="|:", edge=True, dur=0)
            if kind == "|:" and s.e == "nl" and s.prev != "|:":
                return s._replace(e="bar", prev="|:", edge=True, dur=0)
            return None
        if not full and not (s.edge or kind in SECTION_BARS):
            return None
        if kind == "|:" and s.bars + 1 >= self.max_bars:
            return None  # the tune must end at this barline: not with an opening repeat
        if kind == "|]" and s.bars + 1 < self.min_bars:
            return None  # '|]' ends the tune, which is not long enough yet
        return s._replace(e="bar", p="", prev=kind, edge=kind in SECTION_BARS,
                          dur=0, notes=False, bars=s.bars + 1, last=None)

    def _between(self, s: State, ch: str) -> State | None:
        """`ch` at a point between elements: after a note, a space, a tie, a line start."""
        if ch in "|:":
            kinds = ("|", "||", "|]", "|:") if ch == "|" else (":|",)
            if any(self._close_bar(s, k) is not None for k in kinds):
                return s._replace(e="bar1", p=ch)
            return None
        return self._start_element(s, ch)

    def _body(self, s: State, ch: str) -> State | None:
        e = s.e
        if e in ("note", "rest", "chordlen"):
            if e == "note" and not s.p and ch in "',":
                if s.oct >= 2:
                    return None
                return s._replace(oct=s.oct + 1)
            p = s.p + ch
            if self._length_ok(s, p):
                return s._replace(p=p)
            done = self._finish_note(s)
            return None if done is None else self._body(done, ch)
        if e == "acc":
            if ch == s.p[-1] and ch in "^_" and len(s.p) == 1:
                return s._replace(p=s.p + ch)
            if ch in NOTE_LETTERS:
                return s._replace(e="note", p="", oct=0, last=None,
                                  mult=2 if s.tup == 3 else 1, notes=True,
                                  slur=2 if s.slur else 0)
            return None
        if e in ("dec", "symdec"):
            if ch in NOTE_LETTERS or ch in "^_=" or ch == "z" or (ch == "[" and e == "dec"):
                return self._start_element(s._replace(e="decnote"), ch)
            return None
        if e in ("chord", "cacc", "cnote"):  # inside [...]: notes without lengths
            return self._chord(s, ch)
        if e in ("inl1", "inlv"):
            return self._inline(s, ch)
        if e in TEXT_STATES:
            return self._quoted(s, ch)
        if e == "inl_done":  # after an inline field: another, or (after one space) a note
            if ch == "[":
                return s._replace(e="inlbr")
            return s._replace(e="endsp2") if ch == " " else self._start_element(s, ch)
        if e == "inlbr":  # '[' right after an inline field: another field or a chord
            if ch in self.inline:
                return self._inline(s._replace(e="ending"), ch)
            return self._chord_start(s, ch)
        if e == "sym":  # after a chord symbol or annotation: the note it belongs to
            return self._start_element(s, ch)
        if e == "paren":
            if ch == "3" and s.tup == 0 and s.force is None and self._fits(s, 2):
                # room for three notes of the shortest length in the time of two
                return s._replace(e="tuplet", tup=3)
            opened = s._replace(e="slur_open", slur=1)
            if ch in "({" or ")" not in self.stoi:
                return None
            return self._start_element(opened, ch)
        if e == "tuplet":
            if ch == "(" and s.slur == 0 and ")" in self.stoi:
                return s._replace(e="slur_open", slur=1)
            return self._start_element(s, ch) if ch != "{" else None
        if e == "slur_open":
            if ch in "(":
                return None
            return self._start_element(s, ch) if ch != "{" else None
        if e == "grace":  # inside {...}: notes without lengths
            if ch in NOTE_LETTERS:
                return s._replace(e="gnote", oct=0)
            if ch in "^_=":
                return s._replace(e="gacc")
            return None
        if e == "gacc":
            return s._replace(e="gnote", oct=0) if ch in NOTE_LETTERS else None
        if e == "gnote":
            if ch in "'," and s.oct < 2:
                return s._replace(oct=s.oct + 1)
            if ch == "}":
                return s._replace(e="grace_done")
            if ch in NOTE_LETTERS and len(s.p) < 3:
                return s._replace(oct=0, p=s.p + "g")
            if ch in "^_=" and len(s.p) < 3:
                return s._replace(e="gacc", p=s.p + "g")
            return None
        if e == "grace_done":
            if ch in NOTE_LETTERS or ch in "^_=" or ch == "z":
                return self._start_element(s._replace(p=""), ch)
            return None
        if e == "after":  # a note is complete
            if ch == "-":
                return s._replace(e="tie", last=None)
            if ch in "><" and s.last is not None and s.tup == 0:
                extra = self.l4[s.last] * s.tq
                if s.tb is not None and s.dur + extra > s.tb:
                    return None
                return s._replace(e="broken", force=s.last, last=None, dur=s.dur + extra)
            if ch == ")" and s.slur == 2:
                return s._replace(slur=0, last=None)
            if ch == " ":
                if s.tup or s.force is not None or s.slur:
                    return None
                return s._replace(e="space", last=None)
            return self._between(s._replace(last=None), ch)
        if e == "tie":
            if ch == " ":
                return s._replace(e="space") if not (s.tup or s.force is not None or s.slur) else None
            return self._between(s, ch)
        if e == "broken":
            return self._start_element(s, ch) if ch not in "({" else None
        if e == "space":
            if ch == " ":
                return None
            return self._between(s, ch)
        if e == "bar1":  # a barline's first character was read
            if s.p == "|":
                if ch in "|]:":
                    return self._close_bar(s, "|" + ch)
                done = self._close_bar(s, "|")
                return None if done is None else self._body(done, ch)
            if s.p == ":":
                # not '::': music21 loses the notes around one in some tunes
                return self._close_bar(s, ":|") if ch == "|" else None
            return None
        if e in ("bar", "nl", "start"):
            if s.bars >= self.max_bars or s.prev == "|]":  # the tune is over
                return s._replace(e="nl") if ch == "\n" and e == "bar" else None
            if e == "bar":
                if ch == "\n":
                    return s._replace(e="nl")
                if ch == " ":
                    return s._replace(e="barsp")
            if ch == "[":
                return self._bracket(s)
            if ch == "|" and e in ("start", "nl"):
                return s._replace(e="open")
            if ch in "|:":
                return None
            return self._start_element(s, ch)
        if e == "barsp":
            if ch == "[":
                return self._bracket(s)
            if ch in " |:\n":
                return None
            return self._start_element(s, ch)
        if e == "open":  # '|' at the start of the tune or of a line: only '|:'
            return self._close_bar(s._replace(e="start" if s.bars == 0 and s.prev == "" else "nl"),
                                   "|:") if ch == ":" else None
        if e == "ending":  # '[' at the start of a bar: an ending, or a chord
            if ch == "1" and s.prev != ":|" and self._ending_ok(s):
                return s._replace(e="endsp", prev="[1")
            if ch == "2" and s.prev == ":|":
                return s._replace(e="endsp", prev="[2")
            return self._inline(s, ch) if ch in self.inline else self._chord_start(s, ch)
        if e == "endsp":
            if ch == " ":
                return s._replace(e="endsp2")
            return self._start_element(s, ch)
        if e == "endsp2":
            return self._start_element(s, ch) if ch != " " else None
        return None

    def _bracket(self, s: State) -> State | None:
        """'[' at the start of a bar: an ending ('[1', '[2'), an inline field or a chord follows."""
        if (self._ending_ok(s) or self._start_element(s, "[") is not None
                or (self.inline and s.tb is not None)):
            return s._replace(e="ending")
        return None

    def _inline(self, s: State, ch: str) -> State | None:
        """`ch` in an inline field at the start of a bar (``[M:3/4]``, ``[L:1/16]``, ``[K:G]``,
        values as in the header): a new meter or unit counts from this bar on. Only in tunes
        whose bars are measured (a prompt may have switched that off)."""
        if s.e == "ending":
            if ch in self.inline and s.tb is not None:
                return s._replace(e="inl1", letter=ch, val="")
            return None
        if s.e == "inl1":
            return s._replace(e="inlv") if ch == ":" else None
        v = s.val + ch
        if v in self._value_prefixes[s.letter]:
            return s._replace(val=v)
        if ch != "]":
            return None
        done = s._replace(e="inl_done", letter="", val="")
        if s.letter == "K":
            return done if s.val in self.keys else None
        if s.letter == "M" and s.val in self.meters:  # (the body counts in ticks only)
            return done._replace(tb=int(self.meters[s.val] * TICKS))
        if s.letter == "L" and s.val in self.units:
            return done._replace(tq=int(self.units[s.val] * TICKS / 4))
        return None

    def _chord_start(self, s: State, ch: str) -> State | None:
        """`ch` after a '[' that opens a chord."""
        chord = self._start_element(s, "[")
        return None if chord is None else self._chord(chord, ch)

    def _chord(self, s: State, ch: str) -> State | None:
        """`ch` inside a chord ``[CEG]``: 2 to MAX_CHORD_NOTES notes with accidentals and octave
        marks, no lengths; after ']' the chord's length, which counts as one note's."""
        e = s.e
        if e == "cacc":
            if ch == s.p and ch in "^_" and len(s.p) == 1:
                return s._replace(p=s.p + ch)
            return s._replace(e="cnote", p="", oct=0, cn=s.cn + 1) if ch in NOTE_LETTERS else None
        if e == "cnote":
            if ch in "'," and s.oct < 2:
                return s._replace(oct=s.oct + 1)
            if ch == "]" and s.cn >= 2:
                return s._replace(e="chordlen", p="", oct=0, cn=0)
        if s.cn >= MAX_CHORD_NOTES:
            return None
        if ch in NOTE_LETTERS:
            return s._replace(e="cnote", p="", oct=0, cn=s.cn + 1)
        if ch in "^_=":
            return s._replace(e="cacc", p=ch)
        return None

    def _quoted(self, s: State, ch: str) -> State | None:
        """`ch` inside quotes: a chord symbol (root, kind, /bass: "D7/F#") or an annotation (a
        placement character, then up to MAX_ANNOTATION_CHARS of plain text: "^fine", ">")."""
        e, done = s.e, s._replace(e="sym", p="", cn=0)
        if e == "cs":
            if ch in self.roots or ch in self._word_prefixes:
                return s._replace(e="csr", p=ch)
            return s._replace(e="ann", cn=0) if ch in self.places else None
        if e == "ann":
            if ch == '"':
                return done
            if s.cn < MAX_ANNOTATION_CHARS and (ch.isalnum() or ch in TEXT_PUNCTUATION):
                return s._replace(cn=s.cn + 1)
            return None
        if e == "csr":  # p: the root and kind so far, or a word
            chord = s.p[0] in self.roots
            p = s.p + ch
            if (chord and p[1:] in self._suffix_prefixes) or p in self._word_prefixes:
                return s._replace(p=p)
            if ch == '"' and ((chord and s.p[1:] in self._suffix_words) or s.p in self._words):
                return done
            if ch == "/" and chord and s.p[1:] in self._suffix_words:
                return s._replace(e="csb", p="")
            return None
        if e == "csb":
            return s._replace(e="csbr", p="") if ch in self.roots else None
        if e == "csbr":
            if ch in "#b" and not s.p:
                return s._replace(p=ch)
            return done if ch == '"' else None
        return None

    def _ending_ok(self, s: State) -> bool:
        if s.prev == ":|":
            return True
        return s.prev in ("|", "||") and s.bars > 0

    def _eos(self, s: State) -> State | None:
        if s.phase != 1 or s.bars < self.min_bars:
            return None
        if s.e == "bar1" and s.p == "|":
            s = self._close_bar(s, "|")
            if s is None:
                return None
        if s.e in ("bar", "nl") and s.prev != "|:":
            return s._replace(phase=2, e="end")
        return None


# ------------------------------------------------------------------------------ streams
class ConstrainedBatch:
    """The constraint for the streams of one batch: the masks of all streams as one array, and
    moving every stream on by its chosen token. A stream whose constraint is off (`active` False)
    allows everything."""

    def __init__(self, constraint: AbcConstraint, batch: int, prompt: str = ""):
        import numpy as np

        self.constraint = constraint
        s0 = constraint.feed_text(constraint.start(), prompt, lenient=True)
        self.states: list[State | None] = [s0] * batch
        self._all = np.ones(constraint.vocab_size, dtype=bool)

    def masks(self) -> np.ndarray:
        """(B, V) bool: the ids each stream may take next."""
        import numpy as np

        c = self.constraint
        return np.stack([c.mask(s) if s is not None else self._all for s in self.states])

    def advance(self, tokens: Sequence[int]) -> None:
        """Move every stream on by its token (a stream given a refused token switches off)."""
        c = self.constraint
        for b, t in enumerate(tokens):
            s = self.states[b]
            if s is not None:
                self.states[b] = c.advance(s, int(t))


_CACHE: dict[tuple[tuple[str, ...], int, int, str | None], AbcConstraint] = {}


def abc_constraint(tokenizer: Tokenizer, min_bars: int = 8, max_bars: int = 64,
                   key: str | None = None) -> AbcConstraint:
    """The AbcConstraint of a tokenizer's vocabulary (with K: fixed to `key` when given), shared
    (with its caches) by every sampler in this process that uses the same vocabulary."""
    ident = (tuple(tokenizer.itos), min_bars, max_bars, key)
    c = _CACHE.get(ident)
    if c is None:
        if len(_CACHE) > 8:
            _CACHE.clear()
        c = _CACHE[ident] = AbcConstraint(tokenizer.itos, min_bars, max_bars, key)
    return c


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
