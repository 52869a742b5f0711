"""An ABC linter: the faults that make abc2midi, abcm2ps or music21 reject a tune, found in the
text alone (no tool is run), each with its line, column and what to do about it.

    from seqgen.music.lint import lint_tune
    for f in lint_tune(tune_text):
        print(f.line, f.col, f.message, "->", f.tool)

`lint_tune` walks one tune the way the tools read it: header fields, then the music lines
character by character (notes with their pitch and length, rests, chords, grace notes,
tuplets, broken rhythm, ties, slurs, barlines, repeats and endings, quoted strings, decorations,
inline fields, ``\\`` continuations, ``!`` marks, ``%`` comments). It keeps the state abc2midi
keeps (key signature and accidentals in the bar, unit length, the last notes for broken rhythm,
the open chord, grace group and tuplet) and replays repeats as abc2midi plays them. Each
`Fault` names the tool message it predicts (`tool`), so that the prediction can be checked
against the tools themselves (bench/bench_check.py does, tune by tune).

An ``error`` fault is one a tool reports as an error (abc2midi prints an ``Error`` line,
abcm2ps an ``error:`` line, music21 raises); a ``warning`` is something the tools accept that a
musician may still want to look at. Line numbers are 1-based and count from the tune's ``X:``
line; columns are 1-based (0: the whole line).

No music21 here: this module works on the text alone and is fast (about a millisecond a tune).
The music21-specific faults that need a parse (re-barring of over-full bars, repeats music21
cannot expand) are found in seqgen/music/convert.py from the parsed score.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class Fault:
    """One fault of a tune: where (line and column in the tune, 1-based; col 0: the whole line),
    a short `code`, a `message` a musician can act on, and the `tool` message it predicts
    (``"abc2midi: Could not find note to be tied"``); `severity` is ``error`` (a tool rejects
    the tune) or ``warning`` (the tools accept it)."""

    line: int
    col: int
    code: str
    message: str
    tool: str
    severity: str = ERROR

    def where(self) -> str:
        return f"line {self.line}" + (f", col {self.col}" if self.col else "")

    def __str__(self) -> str:
        return f"{self.where()}: {self.message}" if self.line else self.message


def errors(faults: list[Fault]) -> list[Fault]:
    return [f for f in faults if f.severity == ERROR]


# ------------------------------------------------------------------------------------ tables
# abc2midi's decoration characters, in the order of its decorator flags
_DECOS = ".MLRH~Tuv'OPS"
_STACCATO, _ROLL, _FERMATA, _ORNAMENT, _TRILL, _BREATH = 0, 3, 4, 5, 6, 9
# abcm2ps: letters that are decoration shortcuts, and those it defines (the others are errors)
_M2PS_DECO_CLASS = set("HIJKLMNOPQRSTUVWYhijklmnopqrstuvw~.")
_M2PS_DECO_DEFINED = set(".~HLMOPSTuvJR")
# abcm2ps's standard !decoration! names
_M2PS_DECO_NAMES = set(
    "dot roll fermata emphasis lowermordent coda dacoda uppermordent segno trill upbow downbow "
    "gmark slide tenuto breath longphrase mediumphrase shortphrase invertedfermata invertedturn "
    "invertedturnx 0 1 2 3 4 5 plus + accent > marcato ^ D.C. D.C.alcoda D.C.alfine dacapo D.S. "
    "D.S.alcoda D.S.alfine fine f ff fff ffff mf mp mordent open p pp ppp pppp pralltriller sfz "
    "ped ped-up turn wedge turnx trill( trill) snap thumb arpeggio crescendo( crescendo) <( <) "
    "diminuendo( diminuendo) >( >) -( -) ~( ~) 8va( 8va) 8vb( 8vb) invisible beamon trem1 "
    "trem2 trem3 trem4 xstem beambr1 beambr2 rbstop / // /// beam-accel beam-rall stemless "
    "rbend".split())
# abc2midi's chord names (after the root and its accidental)
_CHORD_NAMES = set("m 7 m7 m7b5 maj7 M7 6 m6 aug + aug7 dim dim7 9 m9 maj9 M9 11 dim9 sus sus4 "
                   "sus9 sus2 7sus2 7sus4 7sus9 5".split()) | {""}
# abc2midi's modes: name prefix -> shift of the key signature (in fifths)
_MODES = {"maj": 0, "min": -3, "m": -3, "aeo": -3, "loc": -5, "ion": 0, "dor": -2, "phr": -4,
          "lyd": 1, "mix": -1}
_SHARP_ORDER = "fcgdaeb"
_STEPS = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}
# abc2midi: I: keys it reads or leaves to abcm2ps (any other key is an error)
_I_KEYS = {"octave", "MIDI", "MIDIx", "volinc", "vol"}
_I_KEYS_ANY_CASE = {"setbarnb"}
# abc2midi's tempo names (Q:"Allegro")
_TEMPO_NAMES = set("larghissimo adagissimo lentissimo largo adagio lento larghetto adagietto "
                   "andante andantino moderato allegretto allegro vivace vivo presto "
                   "allegrissimo vivacissimo prestissimo".split())
# fields abc2midi accepts in a tune body
_BODY_FIELDS = set("EIKLMPQTVdrswW+")
# fields abc2midi reads as fields at all (other letters before ':' are music)
_FIELD_LETTERS = set("ABCDEFGHIKLMNOPQRSTUVdwsWXZ+")
# abcm2ps: the info fields it treats (lower-case ones and the rest are errors in a tune)
_M2PS_INFO = set("ABCDFGHIKLMNOPQRSTUVWXZmrswI") | {"+"}

# bar feature kinds (abc2midi's)
SINGLE, DOUBLE, BAR_REP, REP_BAR, DOUBLE_REP, PLAY_ON_REP = (
    "|", "||", "|:", ":|", "::", "[N")


@dataclass
class _Feature:
    """One item of the tune as abc2midi stores it: a note, rest, chord edge, grace edge, tie,
    bar or ending. `pitch` includes the key signature and the bar's accidentals; `step` is the
    staff position (letter and octave: what a tie joins once a barline passed)."""

    kind: str  # note rest tie chord_on chord_off grace_on grace_off bar
    line: int
    col: int
    pitch: int = 0
    step: int = 0
    acc: str = ""
    length: Fraction = Fraction(0)
    bar: str = ""  # for kind "bar": one of the bar kinds above
    rep: str = ""  # for PLAY_ON_REP: the list, e.g. "1" or "1,3"
    staccato: bool = False
    short: bool = False  # a staccato note in a chord: abc2midi stores it at half the chord's length


@dataclass
class _Voice:
    """abc2midi's per-voice state while reading the body."""

    unit: Fraction = Fraction(1, 8)
    meter: tuple[int, int] = (4, 4)
    keymap: dict[str, int] = field(default_factory=dict)  # letter -> semitones
    barmap: dict[tuple[str, int], int] = field(default_factory=dict)  # (letter, octave) -> semis
    in_chord: bool = False
    chord_line: int = 0
    chord_col: int = 0
    chord_notes: int = 0
    in_grace: bool = False
    grace_line: int = 0
    grace_col: int = 0
    tuple_count: int = 0
    tuple_fact: Fraction = Fraction(1)
    # broken rhythm: lengths of the last two notes (None: no note; "chord": a chord)
    last: Fraction | str | None = None  # the previous note's length, or "chord"
    this: Fraction | str | None = None
    pending: int = -1
    broken_at: tuple[int, int] = (0, 0)
    ratio: tuple[int, int] = (6, 2)  # how a pending broken rhythm shares out its two notes
    bar_pos: Fraction = Fraction(0)  # where in the bar (whole notes), for hornpipe rhythm
    horn_last: tuple[int, int] | None = None  # the last note's (num, den), for hornpipes
    saved: tuple = ()
    in_slur: bool = False
    m2ps_sym: str = "eoln"  # abcm2ps: the kind of the last symbol (note rest bar eoln ...)
    m2ps_note: str = ""  # abcm2ps: the kind of the last note or rest ("" before any)


# --------------------------------------------------------------------------------- the walker
_FIELD_LINE = re.compile(r"^([A-Za-z+])[ \t]*:")


def _key_map(value: str) -> tuple[dict[str, int] | None, str | None]:
    """The semitone shift of each letter under a K: value (abc2midi's reading), and an
    error for a mode abc2midi does not know. None when the value names no key."""
    words = value.replace("\t", " ").split()
    km: dict[str, int] = {}
    found = False
    err = None
    i = 0
    while i < len(words):
        w = words[i]
        low = w.lower()
        if "=" in w or low.startswith(("clef", "middle", "transpose", "octave", "stafflines",
                                        "treble", "bass", "alto", "tenor", "perc")):
            i += 1
            continue
        if low in ("none", "hp", "exp"):
            found = found or low != "exp"
            i += 1
            continue
        if w[0] in "ABCDEFG" and not found:
            found = True
            sf = "FCGDAEB".index(w[0]) - 1
            j = 1
            if w[1:2] == "#":
                sf, j = sf + 7, 2
            elif w[1:2] == "b":
                sf, j = sf - 7, 2
            mode = w[j:].lower()
            if not mode and i + 1 < len(words):
                nxt = words[i + 1].lower()
                shift = next((s for m, s in _MODES.items() if nxt[:3] == m), None)
                if shift is not None:
                    sf += shift
                    i += 1
            elif mode:
                shift = next((s for m, s in _MODES.items() if mode[:3] == m), None)
                if shift is None:
                    err = f"Unknown mode '{w[j:]}'"
                else:
                    sf += shift
            if sf > 7:
                sf -= 12
            if sf < -7:
                sf += 12
            for k in range(abs(sf)):
                letter = _SHARP_ORDER[k] if sf > 0 else _SHARP_ORDER[6 - k]
                km[letter] = 1 if sf > 0 else -1
            i += 1
            continue
        m = re.match(r"^(\^\^|__|\^|_|=)([a-gA-G])$", w)
        if m:
            acc = {"^": 1, "^^": 2, "_": -1, "__": -2, "=": 0}[m.group(1)]
            km[m.group(2).lower()] = acc
        i += 1
    return (km if found else None), err


def _meter(value: str) -> tuple[int, int] | None:
    v = value.strip()
    if v[:4].lower() == "none":
        return None
    if v[:2] in ("C|", "c|"):
        return (2, 2)
    if v[:1] in ("C", "c"):
        return (4, 4)
    m = re.match(r"^\(?\s*(\d+(?:\s*\+\s*\d+)*)\s*\)?\s*/\s*(\d+)", v)
    if not m:
        return None
    num = sum(int(x) for x in re.findall(r"\d+", m.group(1)))
    return (num, int(m.group(2))) if num and int(m.group(2)) else None


def _default_unit(meter: tuple[int, int] | None) -> Fraction:
    if meter is None:
        return Fraction(1, 8)
    return Fraction(1, 8) if 4 * meter[0] // meter[1] >= 3 else Fraction(1, 16)


def _pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def _digits(s: str, p: int) -> tuple[int, int]:
    """The number written at `p` (0 when none) and the position after it."""
    q = p
    while q < len(s) and s[q].isdigit():
        q += 1
    return (int(s[p:q]) if q > p else 0), q


class _Linter:
    """One tune, read as abc2midi and abcm2ps read it; `faults` collects what they would say."""

    def __init__(self, text: str):
        self.lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        self.faults: list[Fault] = []
        self.feats: list[_Feature] = []
        self.v = _Voice()
        self.in_body = False
        self.meter: tuple[int, int] | None = None
        self.unit: Fraction | None = None
        self.rhythm = ""
        self.key_line = 0
        self.line = 0
        self.line_text = ""
        self.passback: set[int] = set()
        self.m2ps_syms: list[list[list]] = []  # abcm2ps: [line, col, length] of each head
        self.m2ps_factor = Fraction(1)  # abcm2ps: broken rhythm share of the next note
        self.m2ps_tuplet = 0  # abcm2ps: notes still to come in the open tuplet
        self.m2ps_tuplet_at = (0, 0)
        self.hornpipe = False  # abc2midi's hornpipe rhythm (R:hornpipe in 2/4 or 4/4)
        # music21's measures: (line, col, length in whole notes, meter, meter set in it)
        self.measures: list[tuple[int, int, Fraction, tuple[int, int] | None, bool]] = []
        self.m21_start = (0, 0)
        self.m21_meter_here = True  # the header's M: is in the first measure
        self.regular_bars = 0
        self.m21_drop_at = -1  # the column of a note music21 would drop (after an annotation)
        self.m21_dropped = Fraction(0)  # the length music21 dropped in this measure
        self.m21_tuplet = 0  # notes music21 still counts into the open tuplet
        self.horn_ratio = False  # R:hornpipe anywhere: '>' shares 2:1, not 3:1
        self.voices = False
        self.parts = False
        self.part_order = ""  # the header's P: (the order abc2midi plays the parts in)
        self.m2ps_tie_pending = False

    # ------------------------------------------------------------------------------ helpers
    def fault(self, col: int, code: str, message: str, tool: str,
              severity: str = ERROR, line: int | None = None) -> None:
        self.faults.append(Fault(self.line if line is None else line, col, code, message, tool,
                                 severity))

    def run(self) -> list[Fault]:
        for i, raw in enumerate(self.lines):
            self.line = i + 1
            if i == 0:
                continue  # the X: line
            if not raw.strip():
                break  # a blank line ends the tune for abc2midi and abcm2ps
            self.read_line(raw.rstrip())
        end = self.line
        if not self.in_body:
            self.fault(0, "no-key", "the tune has no K: line (the key, which ends the header and "
                       "starts the music): add one, e.g. K:D", "abc2midi: No valid K: field found "
                       "at start of tune", line=1)
        else:
            self.finish(end)
        seen: set[tuple] = set()
        out = []
        for f in self.faults:  # one fault per place and kind
            k = (f.line, f.col, f.code)
            if k not in seen:
                seen.add(k)
                out.append(f)
        return sorted(out, key=lambda f: (f.line, f.col))

    def read_line(self, raw: str) -> None:
        if raw[:1] in (" ", "\t") and raw[1:2] == ":" and self.in_body:
            self.fault(1, "field-space", "a music line starting with a space and ':' reads as "
                       "a field to abcm2ps: remove the space", "abcm2ps: tune info ' :' not "
                       "treated")
        s = raw.lstrip(" \t")
        if s.startswith("%") or s.startswith("\\"):
            return
        if len(s) > 1 and s[1] == ":" and s[0] not in "|:" and (
                s[0].islower() and s[0] not in "drsuw"):
            where = "header" if not self.in_body else "tune"
            self.fault(1, "field-lower", "header fields are upper-case: write "
                       f"`{s[0].upper()}:{s[2:].strip()}`" if s[0].upper() in "MLKQTRPVCNOSZBH"
                       else f"`{s[:2]}` is not a field (field letters are upper-case) nor music: "
                       "remove the line", f"abcm2ps: {where} info '{s[0]}:' not treated")
            if not self.in_body:
                return
        m = _FIELD_LINE.match(s)
        if m and m.group(1) in _FIELD_LETTERS and s[m.end():m.end() + 1] not in (":", "|"):
            self.field(m.group(1), s[m.end():], inline=False, col=1)
        elif self.in_body:
            self.music_line(raw)

    # ------------------------------------------------------------------------------- fields
    def field(self, letter: str, value: str, inline: bool, col: int) -> None:
        value = value.split("%", 1)[0].strip()
        if self.in_body and letter not in _BODY_FIELDS and letter != "X":
            self.fault(col, "field-body", f"the {letter}: field is not allowed in the music "
                       "(abc2midi): move it to the header, before K:",
                       "abc2midi: Field not allowed in tune body")
            return
        if letter == "K":
            self.key_field(value, col)
        elif letter == "M":
            self.meter_field(value, col)
        elif letter == "L":
            self.unit_field(value, col)
        elif letter == "I":
            self.info_field(value, col)
        elif letter == "Q":
            self.tempo_field(value, col)
        elif letter == "R" and not self.in_body:
            self.rhythm = value
            self.horn_ratio = self.horn_ratio or value.startswith(("Hornpipe", "hornpipe"))
        elif letter == "V":
            self.voices = True
        elif letter == "P":
            self.part_field(value, col)

    def key_field(self, value: str, col: int) -> None:
        km, err = _key_map(value)
        if err:
            self.fault(col, "key-mode", f"K:{value}: abc2midi does not know this mode; use one "
                       "of maj, m, min, dor, phr, lyd, mix, aeo, loc (e.g. K:Dmix)",
                       f"abc2midi: {err}")
        if not self.in_body:
            if km is None:
                self.fault(col, "key-none", f"K:{value} names no key: write the key, e.g. K:G",
                           "abc2midi: First K: field must specify key signature")
                return
            self.start_body()
        if km is not None:
            self.v.keymap = km
            self.v.barmap = {}

    def start_body(self) -> None:
        self.in_body = True
        self.key_line = self.line
        if self.unit is None:
            self.unit = _default_unit(self.meter)
        self.v.unit = self.unit
        self.v.meter = self.meter or (4, 4)
        r = self.rhythm.lstrip()
        self.hornpipe = r.startswith(("Hornpipe", "hornpipe"))
        if self.hornpipe and self.v.meter not in ((2, 4), (4, 4)):
            self.hornpipe = False
            m = f"{self.meter[0]}/{self.meter[1]}" if self.meter else "no meter"
            if self.meter == (2, 2):
                m = "C| (2/2)"
            self.fault(0, "hornpipe", f"R:{self.rhythm} in {m}: abc2midi plays hornpipes only "
                       "in 2/4 or 4/4 (write M:4/4, or R:reel if it is one)",
                       "abc2midi: Hornpipe must be in 2/4 or 4/4 time",
                       line=self.key_line)

    def meter_field(self, value: str, col: int) -> None:
        m = _meter(value)
        v = value.strip()
        err = _m2ps_meter_error(v)
        if err:
            extra = re.sub(r"^[\dC|/ ]+", "", v).strip()
            why = (f"the field line goes on after the meter ('{extra[:20]}'): a field takes the "
                   "whole line; put the music on its own line, or write the change as an "
                   f"inline field [M:{m[0]}/{m[1]}]" if m and extra else
                   f"M:{value} is not a meter abcm2ps reads: write e.g. M:6/8, M:C or M:none")
            self.fault(col, "meter", why, f"abcm2ps: {err}")
        if m is None and v[:4].lower() != "none" and re.match(r"^\(?\s*\d", v):
            self.fault(col, "meter", f"M:{value} is not a meter: write it as N/D, e.g. M:6/8",
                       "abc2midi: Expecting fraction in form A/B")
        if m is not None and not _pow2(m[1]):
            self.fault(col, "meter", f"M:{value}: the bottom of a meter is 1, 2, 4, 8, 16...",
                       f"abc2midi: {m[1]} b is not a power of 2")
        if not self.in_body:
            self.meter = m
        else:
            self.m21_meter_here = True
            self.body_meter = m
            if m is not None:
                self.v.meter = m

    def unit_field(self, value: str, col: int) -> None:
        mm = re.match(r"^(\d*)\s*(/\s*(\d*))?", value)
        num = int(mm.group(1)) if mm and mm.group(1) else 1
        den = int(mm.group(3)) if mm and mm.group(3) else 0
        if not mm or not mm.group(2) or num != 1 or not _pow2(den):
            self.fault(col, "unit", f"L:{value} is not a unit note length: write 1/N with N "
                       "1, 2, 4, 8, 16... (e.g. L:1/8)", "abc2midi: Default length must be 1/X")
            return
        if self.in_body:
            self.v.unit = Fraction(1, den)
        else:
            self.unit = Fraction(1, den)

    def info_field(self, value: str, col: int) -> None:
        keys = re.findall(r"(\S+?)\s*=", value) if "=" in value.split(None, 1)[0] or re.match(
            r"^\S+\s*=", value) else [value.split(None, 1)[0] if value.split() else ""]
        for k in keys:
            if k in _I_KEYS or k.lower() in _I_KEYS_ANY_CASE:
                continue
            self.fault(col, "info-key", f"I:{value}: abc2midi does not know the instruction "
                       f"'{k}'; remove the line (or make it a %% comment)",
                       f"abc2midi: I: key ' {k}' not recognized")

    def part_field(self, value: str, col: int) -> None:
        """P: in the header is the order of the parts (abc2midi reads A-Z ( ) . + - digits and
        spaces); in the body, a part label A-Z."""
        if self.in_body:
            if not self.part_order:
                return  # abc2midi ignores parts in the music when the header names none
            self.parts = True
            self.feats.append(_Feature("part", self.line, col, rep=value[:1]))
            if not value[:1].isupper():
                self.fault(col, "part", f"P:{value}: a part label in the music is one capital "
                           "letter, e.g. P:B", "abc2midi: Part must be one of A-Z")
            return
        self.part_order = value
        bad = next((c for c in value if not (c.isupper() or c.isdigit() or c in "().+- ")), None)
        if bad is not None:
            self.fault(col, "part", f"P:{value}: the parts' order is written with capital letters, "
                       "digits and ( ) . (e.g. P:AABB); put other text in an N: line",
                       f"abc2midi: illegal character '{bad}' in part specification.")

    def tempo_field(self, value: str, col: int) -> None:
        p = value
        pre = ""
        if p.startswith('"'):
            end = p.find('"', 1)
            pre = p[1:end] if end > 0 else p[1:]
            p = p[end + 1:] if end > 0 else ""
        if "=" in p:
            p = p.split("=", 1)[1]
        m = re.match(r"\s*(\d+)", p)
        if (m is None or int(m.group(1)) == 0) and pre.strip().lower() not in _TEMPO_NAMES:
            self.fault(col, "tempo", f"Q:{value} gives no tempo abc2midi can read: write "
                       "beats per minute, e.g. Q:1/4=120", "abc2midi: malformed Q: field ignored")

    # --------------------------------------------------------------------------- music lines
    def music_line(self, raw: str) -> None:
        s = raw.split("%", 1)[0]  # abc2midi and abcm2ps: a comment runs from the first '%'
        self.line_text = s
        if not self.feats or self.feats[0].kind != "start":
            self.feats.insert(0, _Feature("start", self.line, 1))
        p = len(s) - len(s.lstrip(" \t"))
        n = len(s)
        while p < n:
            c = s[p]
            nxt = s[p + 1] if p + 1 < n else ""
            if c == "." and nxt == "(":
                self.slur_on()
                p += 2
                continue
            if c == "." and nxt == "|":
                p += 1
                continue
            if c in "ABCDEFGabcdefg_^=" or c in _DECOS:
                p = self.note(s, p)
                continue
            p = self.symbol(s, p, c, nxt)
        self.v.m2ps_sym = "eoln"
        if self.m2ps_tuplet > 0 and not s.rstrip().endswith("\\"):
            line, col = self.m2ps_tuplet_at
            self.fault(col, "tuplet-eol", "a tuplet runs past the end of its line: keep its "
                       "notes on one line (or end the line with '\\')",
                       "abcm2ps: End of line found inside a tuplet", line=line)
            self.m2ps_tuplet = 0
        if self.v.in_grace:
            self.fault(len(s), "grace-eol", "a grace note group '{...}' is not closed on its "
                       "line: close it with '}'", "abcm2ps: EOLN in grace note sequence")

    def symbol(self, s: str, p: int, c: str, nxt: str) -> int:
        """Everything but notes: one symbol at `p`; returns the position after it."""
        col = p + 1
        if c == '"':
            return self.quoted(s, p)
        if c in "|:" or (c == "[" and nxt == "|") or (c == "]" and nxt == "|"
                                                       and not self.v.in_chord):
            return self.barline(s, p)
        if c == "[":
            if nxt.isdigit():
                q = p + 1
                while q < len(s) and (s[q].isdigit() or (s[q] in ",-" and q + 1 < len(s)
                                                         and s[q + 1].isdigit())):
                    q += 1
                self.add_bar(PLAY_ON_REP, col, s[p + 1:q])
                return q
            if nxt.isalpha() and s[p + 2:p + 3] == ":":
                return self.inline_field(s, p)
            self.chord_on(col)
            return p + 1
        if c == "]":
            q, num, den = self.read_len(s, p + 1)
            self.chord_off(col, Fraction(num, den))
            return q
        if c in " \t":
            return p + 1
        if c == "(":
            return self.paren(s, p)
        if c == ")":
            self.v.in_slur = False
            if self.v.m2ps_sym not in ("note", "rest"):
                self.bad_char_m2ps(col, c)
            return p + 1
        if c == "{":
            self.grace_on(col)
            return p + 1
        if c == "}":
            self.grace_off(col)
            return p + 1
        if c in "zxyZX":
            return self.rest(s, p, c)
        if c in "<>":
            return self.broken(s, p, c)
        if c == "-":
            self.tie(col)
            return p + 1
        if c in "\\*":
            q = p + 1
            while c == "*" and q < len(s) and s[q] == "*":
                q += 1
            if c == "*":
                self.fault(col, "star", "'*' has no meaning in ABC music: remove it",
                           "abcm2ps: Bad character")
            if s[q:].strip():
                tool = ("abc2midi: '\\' in middle of line ignored" if c == "\\"
                        else "abc2midi: *'s in middle of line ignored")
                self.fault(col, "stray-" + ("backslash" if c == "\\" else "star"),
                           f"'{c}' in the middle of a line: '\\' continues a line only at its "
                           "end; remove it", tool)
                if c == "\\":
                    self.fault(col, "stray-backslash-m2ps", "'\\' in the middle of a line",
                               "abcm2ps: '\\' ignored")
            return q
        if c in "!+":
            return self.deco_mark(s, p, c)
        return self.other(s, p, c)

    def other(self, s: str, p: int, c: str) -> int:
        col = p + 1
        if c == "/":
            if not self.v.in_grace:
                self.fault(col, "stray-slash", "'/' is not after a note: a length is written "
                           "right after its note (A/2, A/), remove the '/' or join it to the note",
                           "abc2midi: stray / not in grace sequence")
            return p + 1
        if c == "$":
            self.fault(col, "dollar", "'$' (a score line break) is not read by abcm2ps: "
                       "remove it", "abcm2ps: Bad character")
            return p + 1
        if c in "&`":
            return p + 1
        if "A" <= c <= "z":  # abc2midi: a reserved letter (ignored with a warning)
            if c in _M2PS_DECO_CLASS and c not in _M2PS_DECO_DEFINED:
                self.fault(col, "deco-letter", f"'{c}' is not a note, rest or decoration: "
                           "remove it (or write the text as an annotation, \"^text\")",
                           f"abcm2ps: Bad character '{c}'")
            return p + 1
        shown = c if c.isprintable() and c.isascii() else repr(c)
        self.fault(col, "bad-char", f"'{shown}' has no meaning in ABC music: remove it (a "
                   "length goes right after its note; text goes in quotes, \"^text\")",
                   f"abc2midi: Unrecognized character: {c}")
        self.fault(col, "bad-char-m2ps", f"'{shown}' has no meaning in ABC music",
                   "abcm2ps: Bad character")
        return p + 1

    def bad_char_m2ps(self, col: int, c: str) -> None:
        what = {")": "a slur ')' that closes no slur after a note",
                "-": "a tie '-' not after a note",
                ">": "a broken rhythm '>' not after a note",
                "<": "a broken rhythm '<' not after a note"}.get(c, f"'{c}'")
        self.fault(col, "bad-char-m2ps", f"{what}: remove it or put it right after its note",
                   "abcm2ps: Bad character")

    # -------------------------------------------------------------------------------- notes
    def read_len(self, s: str, p: int) -> tuple[int, int, int]:
        """abc2midi's readlen: (position after, numerator, denominator) of a length."""
        q = p
        while q < len(s) and s[q].isdigit():
            q += 1
        num = int(s[p:q]) if q > p else 1
        num = num or 1
        den = 1
        if q < len(s) and s[q] == "/":
            q += 1
            r = q
            while q < len(s) and s[q].isdigit():
                q += 1
            den = int(s[r:q]) if q > r else 0
            if den == 0:
                den = 2
                while q < len(s) and s[q] == "/":
                    den *= 2
                    q += 1
        if not _pow2(den):
            self.fault(p + 1, "length", f"the length '{s[p:q]}' divides by {den}: ABC lengths "
                       "divide by 2, 4, 8...; for three notes in the time of two write a "
                       "triplet (3ABC", f"abc2midi: {den} b is not a power of 2")
            den = 1
        return q, num, den

    def note(self, s: str, p: int) -> int:
        """abc2midi's parsenote: decorations, then a chord, rest or note with its length."""
        start = p
        decos: set[int] = set(self.passback)
        if not self.v.in_chord:
            self.passback = set()
        while p < len(s) and s[p] in _DECOS:
            decos.add(_DECOS.index(s[p]))
            c = s[p]
            if c in _M2PS_DECO_CLASS and c not in _M2PS_DECO_DEFINED:
                self.fault(p + 1, "deco-letter", f"'{c}' is not a note, rest or decoration: "
                           "remove it", f"abcm2ps: Bad character '{c}'")
            if c == "'":
                self.fault(p + 1, "bad-char-m2ps", "a stray \"'\": an octave mark goes right "
                           "after its note (c'), remove it", "abcm2ps: Bad character")
            p += 1
        if p < len(s) and s[p] == "[":
            self.chord_on(p + 1)
            p += 1
            while p < len(s) and s[p] in " \t":
                p += 1
        if p < len(s) and s[p] in "zx":
            if self.v.in_chord:
                self.fault(p + 1, "chord-rest", "a rest inside a chord '[...]': a chord holds "
                           "notes only; move the rest out", "abcm2ps: Not a note")
            q, num, den = self.read_len(s, p + 1)
            self.event_rest(p + 1, Fraction(num, den), decos)
            return q
        acc = ""
        if p < len(s) and s[p] in "^_=":
            a = s[p]
            acc = s[p:p + 2] if s[p + 1:p + 2] == a and a != "=" else a
            p += len(acc)
        letter = s[p] if p < len(s) and s[p] in "ABCDEFGabcdefg" else ""
        if not letter:
            self.malformed(s, start, p, acc)
            return p
        octave = 1 if letter.islower() else 0
        p += 1
        while p < len(s) and s[p] in "',":
            if (s[p] == "," and letter.islower()) or (s[p] == "'" and letter.isupper()):
                self.fault(p + 1, "octave-mark", f"'{letter}{s[p]}': {s[p]!r} after a "
                           f"{'lower' if letter.islower() else 'upper'}-case note; "
                           f"write {'an upper-case note' if s[p] == ',' else 'a lower-case note'}"
                           " for that octave", f"abc2midi: Bad pitch specifier {s[p]} after "
                           f"note {letter}")
            octave += 1 if s[p] == "'" else -1
            p += 1
        q, num, den = self.read_len(s, p)
        self.event_note(start + 1, acc, letter.lower(), octave, (num, den), decos)
        return q

    def malformed(self, s: str, start: int, p: int, acc: str) -> None:
        what = s[start:p]
        nxt = s[p:p + 1]
        if acc:
            self.fault(p, "no-note", f"'{what}' is an accidental with no note after it: write "
                       f"the note (e.g. {acc}c) or remove it",
                       "abc2midi: Malformed note : expecting a-g or A-G")
            self.fault(p + 1, "no-note-m2ps", "an accidental with no note after it",
                       "abcm2ps: Missing note after accidental")
            return
        shown = f"'{what}' before '{nxt}'" if nxt else f"'{what}' at the end of the line"
        self.fault(start + 1, "deco-no-note", f"the decoration {shown}: a decoration "
                   f"({', '.join(sorted(set(what)))}) goes right before a note; remove it or "
                   "move it onto the note", "abc2midi: Malformed note : expecting a-g or A-G")

    def pitch(self, acc: str, letter: str, octave: int) -> int:
        key = (letter, octave)
        if acc:
            semis = {"^": 1, "^^": 2, "_": -1, "__": -2, "=": 0}[acc]
            self.v.barmap[key] = semis
        else:
            semis = self.v.barmap.get(key, self.v.keymap.get(letter, 0))
        return 60 + 12 * octave + _STEPS[letter] + semis

    def rest(self, s: str, p: int, c: str) -> int:
        if self.v.in_chord and c in "zx":
            self.fault(p + 1, "chord-rest", "a rest inside a chord '[...]': a chord holds "
                       "notes only; move the rest out", "abcm2ps: Not a note")
        q, num, den = self.read_len(s, p + 1)
        if c == "y":
            return q
        if c in "ZX":
            if den != 1:
                self.fault(p + 1, "mrest", f"'{s[p:q]}': a multi-bar rest takes a whole "
                           "number of bars (Z2)", "abc2midi: X or Z must be followed by a whole "
                           "integer")
            bar = Fraction(self.v.meter[0], self.v.meter[1]) / self.v.unit
            for i in range(num):
                self.event_rest(p + 1, bar, set())
                if i != num - 1:
                    self.add_bar(SINGLE, p + 1)
            return q
        decos = set(self.passback)
        self.passback = set()
        self.event_rest(p + 1, Fraction(num, den), decos)
        return q

    # ------------------------------------------------------------------ quoted text, marks
    def quoted(self, s: str, p: int) -> int:
        col = p + 1
        q = p + 1
        while q < len(s) and s[q] != '"':
            q += 2 if s[q] == "\\" else 1
        if self.v.in_grace:
            self.fault(col, "grace-quote", "quoted text inside a grace group '{...}': move it "
                       "before the '{'", "abcm2ps: Bad character in grace note sequence")
        if q >= len(s):
            self.fault(col, "quote-open", f"the quoted text {s[p:p + 12]!r}... is not closed on "
                       "its line: add the closing '\"'", "abc2midi: Guitar chord name not "
                       "properly closed")
            return len(s)
        for part in s[p + 1:q].split(";"):
            self.chord_symbol(part, col)
        # music21 drops a note that an annotation (text placed with ^ _ < > @) is attached to
        self.m21_drop_at = q + 1 if s[p + 1:p + 2] in tuple("^_<>@") else -1
        return q + 1

    def chord_symbol(self, text: str, col: int) -> None:
        """abc2midi's reading of quoted text: a fingering (0-5), an annotation (^ _ < > @) or a
        chord symbol it must know."""
        if text[:1] in "012345" and text:
            return
        t = text[1:] if text.startswith("(") else text
        if not t or t[0] in "_^<>@":
            return
        if t[0] not in "ABCDEFGabcdefg":
            self.fault(col, "chord-name", f'"{text}" is neither a chord symbol nor an '
                       f'annotation: write text as an annotation, "^{text}" (above the '
                       'staff), or a chord as A-G with its kind ("Am", "D7")',
                       "abc2midi: Guitar chord does not start with A-G or a-g")
            return
        i = 1
        for _ in range(2):
            if t[i:i + 1] in ("#", "b"):
                i += 1
        m = re.match(r"[^ (/)]{0,9}", t[i:])
        name = m.group(0) if m else ""
        rest = t[i + len(name):]
        if rest.startswith("/") and rest[1:2] not in tuple("ABCDEFGabcdefg"):
            self.fault(col, "chord-bass", f'"{text}": the bass note after "/" must be a '
                       'note (A-G), e.g. "D/F#"',
                       "abc2midi:  / must be followed by A-G or a-g in gchord")
        if name not in _CHORD_NAMES:
            word = {".C.": "D.C.", ".S.": "D.S.", "ine": "Fine", "oda": "Coda"}.get(name)
            hint = (f'"{word}" is a direction, not a chord: write it as an annotation, '
                    f'"^{word}"' if word else f'"{text}" is not a chord abc2midi knows (kinds: '
                    'm 7 m7 maj7 dim aug sus4 6 9 ...): write text as an annotation, '
                    f'"^{text}"')
            self.fault(col, "chord-kind", hint, f'abc2midi: Unrecognized chord name "{name}"')

    def deco_mark(self, s: str, p: int, c: str) -> int:
        """'!trill!' or '+trill+': a decoration by name (or, at a line end, a line break)."""
        q = s.find(c, p + 1)
        linebreak = c == "!" and _m2ps_line_break(s[p + 1:])
        if q < 0:
            if s[p + 1:].strip():
                self.fault(p + 1, "deco-open", f"'{c}' opens a decoration that is not closed on "
                           f"its line: write {c}name{c}, or remove it",
                           "abc2midi: '!' or '+' in middle of line ignored")
                if not linebreak:
                    self.fault(p + 1, "deco-open-m2ps", f"'{c}' opens a decoration that is not "
                               "closed", "abcm2ps: Decoration not terminated")
            return len(s)
        name = s[p + 1:q]
        if linebreak:  # abcm2ps reads what follows as music
            for k, ch in enumerate(name):
                if ch in _M2PS_DECO_CLASS and ch not in _M2PS_DECO_DEFINED:
                    self.fault(p + 2 + k, "deco-letter", f"'{c}{name}{c}': abcm2ps reads the "
                               f"'{c}' as a line break and '{ch}' as a decoration it does not "
                               "know; write the decoration without spaces or ':' "
                               f"({c}fermata{c})", f"abcm2ps: Bad character '{ch}'")
        elif name not in _M2PS_DECO_NAMES:
            self.fault(p + 1, "deco-name", f"{c}{name}{c} is not a decoration abcm2ps knows "
                       "(e.g. !trill! !fermata! !segno! !coda! !D.C.!): fix the name or remove "
                       "it", f"abcm2ps: Decoration !{name}! not defined")
        for part in name.split(";"):
            part = part.strip().split(" ")[0]
            if part == "fermata":
                self.passback.add(_FERMATA)
            elif part == "trill":
                self.passback.add(_TRILL)
            elif part == "breath":
                self.passback.add(_BREATH)
        return q + 1

    def inline_field(self, s: str, p: int) -> int:
        q = s.find("]", p)
        if q < 0:
            self.fault(p + 1, "inline-open", f"the inline field '{s[p:p + 8]}' is not closed: "
                       "add ']'", "abc2midi: missing closing ]")
            q = len(s)
        letter, value = s[p + 1], s[p + 3:q]
        self.field(letter, value, inline=True, col=p + 1)
        return q + 1

    def paren(self, s: str, p: int) -> int:
        """'(' : a slur, or a tuplet '(p:q:r' (abc2midi's reading)."""
        t, r = _digits(s, p + 1)
        if t == 0:
            if s[r:r + 1] == "&":
                return r + 1
            self.slur_on()
            return p + 1
        nq = nr = 0
        if s[r:r + 1] == ":":
            nq, r = _digits(s, r + 1)
            if s[r:r + 1] == ":":
                nr, r = _digits(s, r + 1)
        self.event_tuple(p + 1, t, nq, nr)
        return r

    def slur_on(self) -> None:
        self.v.in_slur = True

    # ------------------------------------------------------------------------------ barlines
    def barline(self, s: str, p: int) -> int:
        """abc2midi's reading of a barline at `p`; returns the position after it."""
        col = p + 1
        c = s[p]
        nxt = s[p + 1:p + 2]
        if self.v.in_grace:
            self.fault(col, "grace-bar", "a barline inside a grace group '{...}': close the "
                       "group with '}' first", "abcm2ps: Bad character in grace note sequence")
        if c == "|":
            if nxt == ":":
                self.add_bar(BAR_REP, col)
                return p + 2
            if nxt == "|":  # ('||:' is '||' and ':' to abc2midi 4.84; later ones read '|:')
                self.add_bar(DOUBLE, col)
                return p + 2
            if nxt == "]":
                self.add_bar(DOUBLE, col)
                return p + 2
            q = self.rep_list(s, p + 1)
            self.add_bar(SINGLE, col, s[p + 1:q])
            return q
        if c == ":":
            if nxt == ":":
                self.add_bar(DOUBLE_REP, col)
                return p + 2
            if nxt == "|":
                q = self.rep_list(s, p + 2)
                self.add_bar(REP_BAR, col, s[p + 2:q])
                return q + 1 if s[q:q + 1] == "]" else q
            self.add_bar(DOUBLE, col)
            return p + 1
        if c == "[":  # '[|'
            self.add_bar(DOUBLE, col)
            if s[p + 2:p + 3] == ":":
                self.add_bar(BAR_REP, col)
                return p + 3
            return p + 2
        self.add_bar(DOUBLE, col)  # ']|'
        return p + 2

    @staticmethod
    def rep_list(s: str, q: int) -> int:
        while q < len(s) and (s[q].isdigit() or (s[q] in ",-" and q > 0 and s[q - 1].isdigit()
                                                 and s[q + 1:q + 2].isdigit())):
            q += 1
        return q

    def add_bar(self, kind: str, col: int, rep: str = "") -> None:
        if kind == PLAY_ON_REP:
            self.feats.append(_Feature("bar", self.line, col, bar=PLAY_ON_REP, rep=rep))
            return
        self.feats.append(_Feature("bar", self.line, col, bar=kind))
        self.end_measure(col)
        self.regular_bars += kind == SINGLE and not rep
        self.v.barmap = {}
        self.v.bar_pos = Fraction(0)
        self.v.m2ps_sym = "bar"
        if rep:
            self.feats.append(_Feature("bar", self.line, col, bar=PLAY_ON_REP, rep=rep))

    # ------------------------------------------------------------- events (abc2midi's store)
    def end_measure(self, col: int) -> None:
        """A barline ends a measure for music21 (its length: what abc2midi counted)."""
        v = self.v
        if v.bar_pos or self.m21_start != (0, 0):
            meter = getattr(self, "body_meter", self.meter) if self.in_body else self.meter
            self.measures.append((*self.m21_start, v.bar_pos - self.m21_dropped, meter,
                                  self.m21_meter_here))
            self.m21_meter_here = False
        self.m21_dropped = Fraction(0)
        self.m21_start = (self.line, col)

    def music21_rebar(self) -> None:
        """music21 re-bars an over-full measure (not the last) and, unless the next measure
        sets its own meter, puts one time signature object in two measures: its MIDI writer then
        fails ("... is already found in this Stream") unless the tune has repeats (expanding
        them copies each measure on its own). It makes measures only from two plain barlines
        on."""
        if self.v.bar_pos:
            self.end_measure(0)
        ms = [m for m in self.measures if m[2]]  # music21 makes no empty measures
        if self.regular_bars < 2 or any(f.kind == "bar" and f.bar != SINGLE and f.bar != DOUBLE
                                        for f in self.feats):
            return  # no measures; or repeats, whose expansion copies each measure on its own
        for i, (line, col, length, meter, _) in enumerate(ms[:-1]):
            if meter is None:
                continue
            bar = Fraction(*meter)
            if length > bar and length - bar != bar and not ms[i + 1][4]:
                self.fault(col, "m21-rebar", f"this bar is over-full ({length.numerator}/"
                           f"{length.denominator} where the meter wants {meter[0]}/{meter[1]}): "
                           "music21's own converter re-bars it and then fails; make the bar "
                           "fit the meter (or change the meter there, [M:...])",
                           "music21: StreamException: TimeSignature ... is already found in "
                           "this Stream", line=line or self.key_line + 1)
                return

    def chord_on(self, col: int) -> None:
        v = self.v
        if v.in_chord:
            self.fault(col, "chord-nested", "a chord '[' inside a chord: close the first "
                       "one with ']'", "abc2midi: Attempt to nest chords")
            return
        self.feats.append(_Feature("chord_on", self.line, col))
        v.in_chord, v.chord_line, v.chord_col, v.chord_notes = True, self.line, col, 0
        v.horn_last = None
        v.last, v.this = v.this, "chord"  # marknotestart: a chord compares equal to anything

    def chord_off(self, col: int, length: Fraction) -> None:
        v = self.v
        if not v.in_chord:
            self.fault(col, "chord-close", "']' closes no chord: remove it, or open the chord "
                       "with '['", "abc2midi: Chord already finished")
            return
        self.feats.append(_Feature("chord_off", self.line, col, length=length))
        if v.chord_notes and self.m2ps_syms:
            for head in self.m2ps_syms[-1]:
                head[2] *= length
            self.m2ps_factor = Fraction(1)
            self.m2ps_count()
        v.in_chord = False
        v.m2ps_sym = v.m2ps_note = "note"
        self.note_end()
        if v.tuple_count > 0:
            v.tuple_count -= 1

    def grace_on(self, col: int) -> None:
        v = self.v
        if v.in_grace:
            self.fault(col, "grace-nested", "a grace group '{' inside a grace group: close the "
                       "first with '}'", "abc2midi: Nested grace notes not allowed")
            return
        if v.in_chord:
            self.fault(col, "grace-chord", "grace notes '{...}' inside a chord: put them before "
                       "the '['", "abc2midi: Grace notes not allowed in chord")
            return
        self.feats.append(_Feature("grace_on", self.line, col))
        v.in_grace, v.grace_line, v.grace_col = True, self.line, col
        v.saved = (v.last, v.this, v.pending, v.ratio)
        v.last = v.this = None
        v.pending = -1

    def grace_off(self, col: int) -> None:
        v = self.v
        if not v.in_grace:
            self.fault(col, "grace-close", "'}' closes no grace group: remove it, or open the "
                       "group with '{'", "abc2midi: } without matching {")
            self.fault(col, "grace-close-m2ps", "'}' closes no grace group",
                       "abcm2ps: Bad character")
            return
        self.feats.append(_Feature("grace_off", self.line, col))
        v.in_grace = False
        if v.pending != -1:
            self.fault(col, "broken-grace", "a broken rhythm '>' inside grace notes: remove it",
                       "abc2midi: Unresolved broken rhythm in grace notes")
        v.last, v.this, v.pending, v.ratio = v.saved

    def broken(self, s: str, p: int, c: str) -> int:
        q = p
        while q < len(s) and s[q] == c:
            q += 1
        n = q - p
        v = self.v
        if not v.m2ps_note:
            self.bad_char_m2ps(p + 1, c)
        self.m2ps_broken(min(n, 3), c)
        if n > 3:
            self.fault(p + 1, "broken-many", f"'{s[p:q]}': at most three {c} in a broken "
                       "rhythm", f"abc2midi: Too many {c}'s")
        elif v.in_chord:
            self.fault(p + 1, "broken-chord", f"a broken rhythm '{c}' inside a chord: put it "
                       "after the ']'", "abc2midi: Broken rhythm not allowed in chord")
        elif v.in_grace:
            self.fault(p + 1, "broken-grace", f"a broken rhythm '{c}' inside grace notes: "
                       "remove it", "abc2midi: Broken rhythm not allowed in grace notes")
        else:
            v.pending = 0
            v.broken_at = (self.line, p + 1)
            r = ((4, 2) if self.horn_ratio else (6, 2), (7, 1), (15, 1))[n - 1]
            v.ratio = r if c == ">" else (r[1], r[0])
        return q

    def tie(self, col: int) -> None:
        if self.v.m2ps_note != "note":
            self.bad_char_m2ps(col, "-")
        self.feats.append(_Feature("tie", self.line, col))

    def event_tuple(self, col: int, n: int, q: int, r: int) -> None:
        v = self.v
        v.m2ps_sym = "tuplet"
        if not v.in_grace:
            self.m2ps_tuplet = r or n
            self.m2ps_tuplet_at = (self.line, col)
            self.m21_tuplet = r or n
        if v.tuple_count > 0:
            self.fault(col, "tuplet-nested", f"'({n}' starts a tuplet before the last one has "
                       "all its notes: count the notes of the tuplet before it",
                       "abc2midi: nested tuples")
            return
        v.tuple_count = r or n
        if q:
            v.tuple_fact = Fraction(q, n)
        elif not 2 <= n <= 9:
            self.fault(col, "tuplet", f"'({n}': tuplets run from (2 to (9",
                       "abc2midi: Only tuples (2 - (9 allowed")
            v.tuple_count, v.tuple_fact = 0, Fraction(1)
        else:
            tq = 3 if n in (2, 4, 8) else 2 if n in (3, 6) else (3 if v.meter[0] % 3 == 0 else 2)
            v.tuple_fact = Fraction(tq, n)

    def in_tuple(self, length: Fraction) -> Fraction:
        v = self.v
        if v.tuple_count > 0:
            length *= v.tuple_fact
            if not v.in_grace and not v.in_chord:
                v.tuple_count -= 1
        return length

    def hornp(self, num: int, den: int) -> None:
        """abc2midi's hornpipe rhythm: two equal eighth notes starting on the beat are played
        as if written A>B."""
        v = self.v
        if not self.hornpipe:
            return
        last = v.horn_last
        tnum = (self.meter or (4, 4))[0]
        if last and num * last[1] == last[0] * den and num == 1 and den * tnum == 32 and (
                (tnum == 4 and v.bar_pos.denominator == 8)
                or (tnum == 2 and v.bar_pos.denominator == 16)):
            v.pending = 0
            v.ratio = (4, 2)
            v.broken_at = (self.line, 0)
        v.horn_last = (num, den)

    def note_start(self, length: Fraction) -> None:
        self.v.last, self.v.this = self.v.this, length

    def note_end(self, any_length: bool = False) -> None:
        v = self.v
        if v.pending == -1:
            return
        v.pending += 1
        if v.pending == 1:
            v.pending = -1
            a, b = v.last, v.this
            if any_length:  # abc2midi accepts any note with '~' after a broken rhythm
                return
            if a is not None and b is not None and (a == "chord" or b == "chord" or a == b):
                r1, r2 = v.ratio  # abc2midi changes the lengths it compares next time
                v.this = b if isinstance(b, str) else b * Fraction(r2, (r1 + r2) // 2)
                return
            if a is None or b is None or (a != "chord" and b != "chord" and a != b):
                line, col = v.broken_at
                self.fault(col, "broken-unequal", "a broken rhythm '>' or '<' joins two notes of "
                           "different written lengths (or a note with none before it): write "
                           "A>B with A and B of one length, or write the lengths out (A3B)",
                           "abc2midi: Cannot apply broken rhythm. Notes not equal durations",
                           line=line)

    def event_note(self, col: int, acc: str, letter: str, octave: int, nm: tuple[int, int],
                   decos: set[int]) -> None:
        v = self.v
        if v.in_chord:
            v.chord_notes += 1
        written = Fraction(*nm)
        tf = v.tuple_fact if v.tuple_count > 0 else Fraction(1)
        length = self.in_tuple(written) * v.unit
        if not v.in_chord or v.chord_notes == 1:
            # music21 counts grace notes among a tuplet's notes: the last real ones are left
            # at their written length
            if not v.in_grace and tf != 1 and self.m21_tuplet == 0:
                self.m21_dropped -= written * v.unit - length
            self.m21_tuplet = max(0, self.m21_tuplet - 1)
        if not v.in_grace and not v.in_chord:
            self.hornp(nm[0] * tf.numerator, nm[1] * tf.denominator * v.unit.denominator)
        if not v.in_grace and (not v.in_chord or v.chord_notes == 1):
            v.bar_pos += length
            # music21 drops a note after the fermata shorthand H, or with an annotation
            deco = re.match(r"[.MLRH~Tuv'OPS]*", self.line_text[col - 1:])
            if col - 1 == self.m21_drop_at or (deco is not None and "H" in deco.group(0)):
                self.m21_dropped += length
        if _FERMATA in decos:
            length *= 2
        pitch = self.pitch(acc, letter, octave)
        step = 7 * octave + "cdefgab".index(letter)
        staccato = bool(decos & {_STACCATO, _BREATH}) and not decos & {_ROLL, _ORNAMENT, _TRILL}
        if decos & {_ROLL, _ORNAMENT, _TRILL} and v.in_chord:
            self.fault(col, "roll-chord", "a roll or trill (~ R T) on a note inside a chord: "
                       "put it before the '[' of the chord", "abc2midi: Rolls and trills not "
                       "supported in chords")
        ornament = _ORNAMENT in decos and not v.in_chord
        if ornament:  # abc2midi plays '~' as grace notes before the note
            self.feats.append(_Feature("ornament", self.line, col))
        self.feats.append(_Feature("note", self.line, col, pitch=pitch, step=step, acc=acc,
                                   length=length, staccato=staccato and not v.in_chord,
                                   short=staccato and v.in_chord))
        v.m2ps_sym = v.m2ps_note = "note"
        if not v.in_chord:
            self.note_start(length / 2 if staccato else length)
            self.note_end(any_length=ornament)
        self.m2ps_head(col, written * v.unit)

    def event_rest(self, col: int, written: Fraction, decos: set[int]) -> None:
        v = self.v
        if v.in_grace:
            self.fault(col, "grace-rest", "a rest inside a grace group '{...}': grace notes are "
                       "notes only", "abcm2ps: Not a note in grace note sequence")
        length = self.in_tuple(written) * v.unit
        if not v.in_grace and (not v.in_chord or v.chord_notes == 0):
            v.bar_pos += length
            if self.line_text[col - 1:col] == "x":  # music21 drops invisible rests
                self.m21_dropped += length
        v.horn_last = None
        if _FERMATA in decos:
            length *= 2
        self.feats.append(_Feature("rest", self.line, col, length=length))
        v.m2ps_sym = v.m2ps_note = "rest"
        self.m2ps_head(col, written * v.unit, rest=True)
        if not v.in_chord:
            self.note_start(length)
            self.note_end()

    def m2ps_head(self, col: int, length: Fraction, rest: bool = False) -> None:
        """A note head (or rest) for abcm2ps's length check; a chord's heads form one symbol."""
        v = self.v
        if v.in_grace:
            return
        head = [self.line, col, length * self.m2ps_factor]
        if v.in_chord and v.chord_notes > 1 and self.m2ps_syms:
            self.m2ps_syms[-1].append(head)
        else:
            self.m2ps_syms.append([head])
            if not v.in_chord:
                self.m2ps_factor = Fraction(1)
                self.m2ps_count()

    def m2ps_count(self) -> None:
        if self.m2ps_tuplet > 0:
            self.m2ps_tuplet -= 1

    def m2ps_broken(self, n: int, c: str) -> None:
        """abcm2ps shares out a broken rhythm between the symbols on either side."""
        if not self.m2ps_syms:
            return
        a = Fraction((2 ** (n + 1) - 1), 2 ** n)
        b = 2 - a
        first, second = (a, b) if c == ">" else (b, a)
        for head in self.m2ps_syms[-1]:
            head[2] *= first
        self.m2ps_factor = second

    def m2ps_durations(self) -> None:
        """abcm2ps draws a note as a head with up to three dots; other lengths are errors."""
        for sym in self.m2ps_syms:
            for line, col, length in sym:
                dur = length * 1536
                if dur.denominator != 1 or dur.numerator % 12:
                    continue
                d = dur.numerator // 12
                while d and not d & 1:
                    d >>= 1
                if (d >> 1) not in (0, 1, 3, 7):
                    self.fault(col, "too-dotted", f"a note of {length.numerator}/"
                               f"{length.denominator} of a whole note (broken rhythm included) "
                               "cannot be drawn as one note with dots: write it as two tied "
                               "notes (e.g. A4-A for A5)", "abcm2ps: Note too much dotted",
                               line=line)

    # --------------------------------------------------------------------- after the tune
    def finish(self, end: int) -> None:
        v = self.v
        if v.in_chord:
            self.fault(v.chord_col, "chord-open", "a chord '[' is never closed: close it with "
                       "']'", "abc2midi: Too many notes in chord - probably missing ']' or '+'",
                       line=v.chord_line)
        self.m2ps_durations()
        if self.m2ps_tuplet > 0:
            line, col = self.m2ps_tuplet_at
            self.fault(col, "tuplet-end", "a tuplet is not complete when the tune ends: give it "
                       "all its notes", "abcm2ps: End of tune found inside a tuplet", line=line)
        self.music21_rebar()
        self.ties_abc2midi()
        self.ties_abcm2ps()
        self.graces()
        _Repeats(self).run()

    def tied_notes(self, j: int, m2ps: bool = False) -> tuple[list[_Feature], bool] | None:
        """The notes a tie at feats[j] starts from, and whether they are in a chord; None when
        the tie follows no note (abc2midi then reports an error). `m2ps`: as abcm2ps sees it
        (the note before a grace group, a staccato note)."""
        f = self.feats
        if j > 0 and f[j - 1].kind == "chord_off":
            k = j - 2
            notes = []
            while k >= 0 and f[k].kind != "chord_on":
                if f[k].kind == "note":
                    notes.append(f[k])
                k -= 1
            return (notes, True) if notes else None
        k = j - 1
        while k >= 0 and f[k].kind not in ("note", "rest"):
            if m2ps and f[k].kind == "grace_off":
                while k >= 0 and f[k].kind != "grace_on":
                    k -= 1
            k -= 1
        if k < 0 or f[k].kind == "rest" or (f[k].staccato and not m2ps):
            return None
        depth = sum(1 if x.kind == "chord_on" else -1 if x.kind == "chord_off" else 0
                    for x in f[:j])
        return [f[k]], depth > 0

    def ties_abc2midi(self) -> None:
        f = self.feats
        for j, t in enumerate(f):
            if t.kind != "tie":
                continue
            tied = self.tied_notes(j)
            if tied is None:
                self.fault(t.col, "tie-none", "a tie '-' that follows no note (a rest, a "
                           "staccato note or nothing): remove it", "abc2midi: Cannot find note "
                           "before tie", line=t.line)
                continue
            notes, in_chord = tied
            for n in notes:  # a tie after ']' ties each note, its chord already closed
                why = self.tie_target(j, n, in_chord and f[j - 1].kind != "chord_off")
                if n.short:  # the note is shorter than its chord: the tie ends before it
                    why = ("a tie '-' after a staccato chord: abc2midi plays the chord's notes "
                           "short, so nothing is left to tie; remove the '.' or the '-'")
                if why:
                    self.fault(t.col, "tie-pitch", why, "abc2midi: Could not find note to be "
                               "tied", line=t.line)
                    break

    def tie_target(self, j: int, n: _Feature, in_chord: bool) -> str | None:
        """abc2midi's search for the note a tie ends on: None when found, else why not."""
        own_chord = in_chord
        inchord = in_chord
        newbar = False
        last_note = None
        for f in self.feats[j + 1:]:
            if f.kind == "bar" and f.bar in (SINGLE, BAR_REP, REP_BAR, DOUBLE):
                newbar = True
            elif f.kind == "chord_on":
                inchord = True
            elif f.kind == "note":
                last_note = f
                if (f.pitch == n.pitch or (newbar and f.step == n.step)) and not own_chord:
                    return None
                if not inchord:
                    return (f"a tie '-' joins two different notes (line {n.line}, col {n.col} "
                            f"to line {f.line}, col {f.col}): a tie joins a note to the same "
                            "pitch; for different pitches use a slur, (AB)")
            elif f.kind == "rest" and not inchord:
                return "a tie '-' is followed by a rest: a tie joins a note to the same pitch"
            elif f.kind == "ornament" and not inchord:
                return ("a tie '-' into a note with '~': abc2midi plays the '~' as grace notes, "
                        "which break the tie; remove the tie or the '~'")
            elif f.kind == "chord_off":
                inchord = False
                if own_chord:
                    own_chord = False
                    continue
                return ("a tie '-' joins a note to a chord without that pitch: a tie joins a "
                        "note to the same pitch; for different pitches use a slur, (AB)")
            elif f.kind == "tie" and last_note is None:
                return "two ties in a row ('--'): remove one"
        return "a tie '-' at the end of the tune: remove it (it joins nothing)"

    def ties_abcm2ps(self) -> None:
        """abcm2ps ties a note head to a head on the same staff line (or one step off with
        another accidental) in the next note or chord; a rest there, or no such head, is a
        'Bad tie'."""
        f = self.feats
        for j, t in enumerate(f):
            if t.kind != "tie":
                continue
            tied = self.tied_notes(j, m2ps=True)
            if tied is None:
                continue
            heads, in_chord = tied
            k = j + 1
            if in_chord and f[j - 1].kind != "chord_off":
                while k < len(f) and f[k].kind != "chord_off":
                    k += 1
                k += 1
            while k < len(f) and f[k].kind in ("tie", "bar", "start", "ornament"):
                k += 1
            if k < len(f) and f[k].kind == "grace_on":
                while k < len(f) and f[k].kind != "grace_off":
                    k += 1
                k += 1
            if k >= len(f):
                continue
            target: list[_Feature] = []
            if f[k].kind == "rest":
                bad = True
            else:
                if f[k].kind == "chord_on":
                    k += 1
                    while k < len(f) and f[k].kind != "chord_off":
                        if f[k].kind == "note":
                            target.append(f[k])
                        k += 1
                elif f[k].kind == "note":
                    target = [f[k]]
                bad = not target or any(
                    not any(h.step == g.step or (abs(h.step - g.step) == 1 and h.acc != g.acc)
                            for g in target) for h in heads)
            if bad:
                self.fault(t.col, "tie-pitch-m2ps", "a tie '-' joins different notes (or a "
                           "note and a rest): a tie joins a note to the same pitch; for "
                           "different pitches use a slur, (AB)", "abcm2ps: Bad tie",
                           line=t.line)

    def graces(self) -> None:
        f = self.feats
        for j, g in enumerate(f):
            if g.kind != "grace_off":
                continue
            for h in f[j + 1:]:
                if h.kind == "bar" and h.bar in (SINGLE, DOUBLE):
                    break
                if h.kind in ("note", "rest"):
                    break
                if h.kind in ("grace_on", "ornament"):
                    self.fault(h.col, "grace-twice", "two grace groups '{...}{...}' with no "
                               "note between them: join them into one", "abc2midi: Intervening "
                               "note needed between grace notes", line=h.line)
                    break
            else:
                self.fault(g.col, "grace-end", "grace notes '{...}' at the end of the tune: "
                           "grace notes go before a note", "abc2midi: No note found to follow "
                           "grace notes", line=g.line)


class _Repeats:
    """abc2midi's handling of repeats: it adds a missing first '|:' (scan_for_missing_repeats),
    mends a few more (fixreps), then plays the bars in order (genmidi), reporting what it
    cannot play."""

    def __init__(self, lt: _Linter):
        self.lt = lt
        self.bars = [f for f in lt.feats if f.kind in ("bar", "start")]

    def fault(self, f: _Feature, code: str, message: str, tool: str) -> None:
        self.lt.fault(f.col, code, message, f"abc2midi: {tool}", line=f.line)

    def run(self) -> None:
        if self.lt.voices or not self.bars:
            return
        if self.lt.parts:
            self.run_parts()
            return
        b = self.bars
        if b[0].kind == "start":
            b[0] = _Feature("bar", b[0].line, b[0].col, bar=DOUBLE)
        first_close = next((i for i, f in enumerate(b) if f.bar in (REP_BAR, DOUBLE_REP)), None)
        first_open = next((i for i, f in enumerate(b) if f.bar == BAR_REP), None)
        if first_close is not None and (first_open is None or first_open > first_close):
            b.insert(1, _Feature("bar", b[0].line, b[0].col, bar=BAR_REP))
        self.fixreps()
        self.play()

    def run_parts(self) -> None:
        """With parts (P:A ... P:B in the music), abc2midi adds a missing '|:' at the start of
        each part, mends nothing else, and plays the parts in the header's P: order (else as
        written), one repeat state carried from part to part."""
        parts: dict[str, list[_Feature]] = {}
        order: list[str] = []
        cur: list[_Feature] = []
        for f in self.lt.feats:
            if f.kind == "part":
                cur = parts.setdefault(f.rep, [])
                order.append(f.rep)
            elif f.kind == "bar" and (cur or f.rep or order):
                cur.append(f)
        for label, bars in parts.items():
            first_close = next((i for i, f in enumerate(bars) if f.bar in (REP_BAR, DOUBLE_REP)),
                               None)
            first_open = next((i for i, f in enumerate(bars) if f.bar == BAR_REP), None)
            if first_close is not None and (first_open is None or first_open > first_close):
                at = bars[first_close]
                bars.insert(0, _Feature("bar", at.line, at.col, bar=BAR_REP))
            parts[label] = [_Feature("part", 0, 0)] + bars
        played = [c for c in self.lt.part_order if c in parts] or order
        self.bars = [f for label in played for f in parts[label]]
        self.play()

    def fixreps(self) -> None:
        b = self.bars
        rep_point = 0
        expect = False
        nplays = 0
        for j, f in enumerate(b):
            k = f.bar
            if k == DOUBLE:
                rep_point = j
            elif k == BAR_REP:
                if expect:
                    self.fault(f, "repeat-open-twice", "'|:' opens a repeat inside a repeat "
                               "that is not closed: close the first with ':|' (or make this "
                               "'::')", " found another |: after a |:")
                    b[j] = _Feature("bar", f.line, f.col, bar=DOUBLE_REP)
                expect = True
            elif k == REP_BAR:
                if not expect and nplays < 1:
                    self.start_rep(rep_point)
                expect = False
                rep_point = j
            elif k == PLAY_ON_REP:
                if nplays == 0 and not expect:
                    self.fault(f, "ending-no-repeat", f"the ending '[{f.rep}' is not inside a "
                               "repeat: open the repeated part with '|:' (before the bars the "
                               "endings follow)", " found [1 or like before |:")
                    self.start_rep(rep_point)
                nplays += 1
            elif k == DOUBLE_REP:
                if not expect:
                    self.fault(f, "repeat-double", "'::' with no '|:' before it: open the part "
                               "with '|:'", " found :: before |:")
                    self.start_rep(rep_point)
                expect = True

    def start_rep(self, j: int) -> None:
        f = self.bars[j]
        if f.bar in (DOUBLE, SINGLE):
            self.bars[j] = _Feature("bar", f.line, f.col, bar=BAR_REP)
        elif f.bar == REP_BAR:
            self.bars[j] = _Feature("bar", f.line, f.col, bar=DOUBLE_REP)
        elif f.bar in (BAR_REP, DOUBLE_REP):
            self.fault(f, "repeat-many-ends", "more ':|' than '|:': check the repeat signs",
                       "Too many end repeats")

    @staticmethod
    def in_list(rep: str, n: int) -> bool:
        for part in rep.split(","):
            a, _, b = part.partition("-")
            try:
                lo, hi = int(a), int(b or a)
            except ValueError:
                continue
            if lo <= n <= hi:
                return True
        return False

    def play(self) -> None:
        """genmidi's pass over the bars: repeats, endings and what it cannot play."""
        b = self.bars
        pas, expect, in_var, maxpass, saved, j = 1, False, False, 2, 0, 0
        steps = 0
        while j < len(b) and steps < 50 * len(b) + 50:
            steps += 1
            f = b[j]
            k = f.bar
            if k == DOUBLE or f.kind == "part":
                in_var = False
            elif k == BAR_REP:
                in_var = False
                if pas == 1 and expect:
                    self.fault(f, "repeat-not-closed", "'|:' opens a repeat before the last one "
                               "was closed: close it with ':|' (or write '::')",
                               "Expected end repeat not found at |:")
                saved, expect, pas, maxpass = j, True, 1, 2
            elif k == REP_BAR:
                in_var = False
                if pas == 1:
                    if expect:
                        pas, j, expect = pas + 1, saved, False
                    else:
                        self.fault(f, "repeat-close", "':|' closes a repeat that was never "
                                   "opened: open it with '|:'", "Found unexpected :|")
                elif pas < maxpass:
                    expect, pas, j = False, pas + 1, saved
            elif k == PLAY_ON_REP:
                j = self.ending(j, f, pas, expect, in_var)
                if j < 0:
                    j = -j
                    in_var = True
                    if maxpass < 4:
                        maxpass = pas + 1
            elif k == DOUBLE_REP:
                in_var = False
                if pas > 1:
                    saved, expect, pas, maxpass = j, True, 1, 2
                elif not expect:
                    self.fault(f, "repeat-double", "'::' with no '|:' before it: open the part "
                               "with '|:'", "Found unexpected ::")
                    saved, expect, pas = j, True, 1
                else:
                    j, pas = saved, pas + 1
            j += 1
        if expect and pas == 1:
            f = b[saved]
            self.fault(f, "repeat-open-end", "a repeat opened with '|:' (or '::') is never "
                       "closed: end it with ':|' (a tune whose last part is not repeated ends "
                       "with '|]')", "Missing :| at end of tune")

    def ending(self, j: int, f: _Feature, pas: int, expect: bool, in_var: bool) -> int:
        """An ending '[N' met on pass `pas`: -j when it is played, else the index of the bar
        the skip stops at."""
        if in_var:
            self.fault(f, "ending-not-closed", f"the ending '[{f.rep}' starts before the last "
                       "ending was closed: end an ending with ':|', '||' or '|:'",
                       "Need || |: :| or ::  to mark end of variant ending")
        passnum = pas if (expect or pas > 1) else -1
        if passnum == -1:
            self.fault(f, "ending-no-repeat", f"the ending '[{f.rep}' is not inside a repeat: "
                       "open the repeated part with '|:'", "multiple endings do not follow |: "
                       "or ::")
            passnum = 1
        if self.in_list(f.rep, passnum):
            return -j
        b = self.bars
        j += 1
        while j < len(b) and b[j].bar not in (REP_BAR, BAR_REP, DOUBLE, PLAY_ON_REP):
            j += 1
        if j >= len(b):
            self.fault(f, "ending-open", f"the ending '[{f.rep}' is not closed: end it with "
                       "':|', '||' or '|]'", "Cannot find :| || [| or |] to close variant "
                       "ending")
        return j


def lint_tune(text: str) -> list[Fault]:
    """The faults of one ABC tune (its text from its ``X:`` line), in line order."""
    return _Linter(text).run()


def _m2ps_line_break(rest: str) -> bool:
    """abcm2ps reads a '!' as a line break (not a decoration) when a space or barline comes
    before the next '!' (check_nl)."""
    for ch in rest:
        if ch == "!":
            return False
        if ch in "|[:] \t":
            return True
    return True


def _m2ps_meter_error(p: str) -> str | None:
    """abcm2ps's reading of an M: value (parse_meter): its error, or None."""
    top_err = "Cannot identify meter top"
    if not p:
        return "Empty meter string"
    i = 0
    if p.startswith("none"):
        i = 4
    n = len(p)
    num = re.compile(r"\s*[-+]?\d+")
    while i < n and not p.startswith("none"):
        c = p[i]
        if c == "=":
            break
        if c == "C":
            i += 2 if p[i + 1:i + 2] == "|" else 1
        elif c in "co":
            i += 2 if p[i + 1:i + 2] == "." else 1
        elif c in "()":
            if c == "(":
                if p[i + 1:i + 2] == "(":
                    i += 1
                m = re.match(r"[^)/]*", p[i + 1:])
                q = i + 1 + (m.end() if m else 0)
                if p[q:q + 1] == ")" and p[q + 1:q + 2] == "/":
                    i += 1
                    continue
            i += 1
            continue
        else:
            m = num.match(p, i)
            if not m or int(m.group(0)) <= 0:
                return top_err
            while True:
                while i < n and p[i].isdigit():
                    i += 1
                if p[i:i + 1] == ")":
                    if p[i + 1:i + 2] != "/":
                        break
                    i += 1
                if p[i:i + 1] == "/":
                    i += 1
                    m = num.match(p, i)
                    if not m or int(m.group(0)) <= 0:
                        return "Cannot identify meter bottom"
                    while i < n and p[i].isdigit():
                        i += 1
                    break
                if p[i:i + 1] not in (" ", "+") or i >= n or p[i + 1:i + 2] == "(":
                    break
                i += 1
                m = num.match(p, i)
                if not m or int(m.group(0)) <= 0:
                    return top_err
        if p[i:i + 1] in (" ", "+"):
            i += 1
    if p[i:i + 1] == "=" and not re.match(r"=\s*\d+/\d+", p[i:]):
        return "Cannot identify meter explicit duration"
    return None
