"""Normalising ABC tunes for training: repair what has one right reading, drop what cannot be
repaired, so that a model learns ABC that abc2midi, abcm2ps and music21 all accept.

    from seqgen.music.normalise import normalise_tunes
    kept, report = normalise_tunes(tunes)
    print(report.summary())          # normalised 2,009 tunes: 915 ties ... made slurs, ...

Each tune is checked with the ABC linter (seqgen.music.lint); the faults it finds are repaired
where the music they mean is clear, the tune is checked again (up to four rounds), and a tune
that still has a fault is dropped, with the reason. Repairs:

- a tie between two different notes is a slur: ``(G4-F2)`` -> ``(G4F2)``, ``G-A`` -> ``(GA)``;
  a tie after a rest or staccato note, or into a note with ``~`` (which abc2midi plays as grace
  notes), loses the ``-`` (or the ``~``);
- quoted text that is not a chord symbol becomes an annotation, ``"D.C."`` -> ``"^D.C."``;
  a chord kind written another way is spelled as abc2midi knows it (``"Gmaj"`` -> ``"G"``);
  fingerings (``"4"``) are removed;
- an ``I:`` line abc2midi rejects is removed;
- a decoration letter with no note after it (``u"4"e``, ``H|``) moves onto its note or goes;
  a decoration letter or ``!name!`` abcm2ps does not know goes; a stray ``*``, ``$``, ``!`` or
  ``\\`` inside a line goes;
- a broken rhythm between notes of different lengths (``A2>B``, ``A>.B``) is written out with
  the lengths it means (``A3B/``, ``A3/.B/``);
- ``R:Hornpipe`` in a meter abc2midi cannot play hornpipes in: ``M:C|`` becomes ``M:C`` (the
  same bar length), other meters lose the ``R:`` line;
- first and second endings with no ``|:`` before them get one where their part starts;
- an octave mark on the wrong case (``c,`` -> ``C``, ``C'`` -> ``c``);
- a note too long to draw as one note with dots (``A5``) is written as two tied notes (``A4-A``);
- a ``\\`` that continues a music line on the next goes (each line is a staff line; joined lines
  can be too long for abcm2ps).

Everything else (unbalanced repeats and chords, stray characters, over-full bars that music21
cannot re-bar, ...) drops the tune. No music21 here: the linter works on the text alone.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction

from seqgen.music.abc import parse_header
from seqgen.music.lint import Fault, errors, lint_tune

ROUNDS = 4
VERSION = 5  # bump when the repairs change (cached normalised corpora are keyed by it)

# what each repair is called in the summary
REPAIRS = {
    "tie-slur": "ties between different notes made slurs",
    "tie-drop": "ties that join nothing removed",
    "ornament-drop": "'~' on tied-to notes removed",
    "annotation": "quoted words that are not chords made annotations",
    "chord-spelling": "chord kinds respelled",
    "fingering": "fingerings removed",
    "info-line": "I: lines abc2midi rejects removed",
    "deco-move": "decorations moved onto their note",
    "deco-drop": "decorations with no note, or unknown, removed",
    "stray-drop": "stray characters removed",
    "broken": "broken rhythms between unequal notes written out",
    "hornpipe-meter": "hornpipes in C| written in C",
    "hornpipe-rhythm": "R:hornpipe lines in other meters removed",
    "ending-repeat": "missing |: before endings added",
    "octave": "octave marks moved to the note's case",
    "split-note": "over-long notes written as two tied notes",
    "final-repeat": "final '|:|' or '::' written ':|'",
    "continuation": "line continuations '\\' removed (layout only)",
}
_CHORD_ALIASES = {"maj": "", "M": "", "min": "m", "mi": "m", "-": "m", "7th": "7", "o": "dim",
                  "o7": "dim7", "dom7": "7", "mj7": "maj7", "m7-5": "m7b5", "+7": "aug7"}
_GONE = "\x00"  # a line removed by a repair (taken out at the end of the round)
_OTHER_LINES = {"ending-repeat", "hornpipe-meter", "hornpipe-rhythm", "final-repeat"}
_NOTE = re.compile(r"(?:\^\^|__|\^|_|=)?[A-Ga-gz][,']*")
_LEN = re.compile(r"\d*(?:/+\d*)?")
_DECO_CHARS = ".MLRH~Tuv'OPS"


@dataclass
class NormaliseReport:
    """What normalising a corpus did: repairs by kind, and the tunes dropped with why."""

    tunes: int = 0
    kept: int = 0
    changed: int = 0
    repairs: Counter = field(default_factory=Counter)
    dropped: list[dict] = field(default_factory=list)  # index, X, title, reasons

    def summary(self) -> str:
        parts = [f"{n:,} {REPAIRS[k]}" for k, n in self.repairs.most_common()]
        why: Counter = Counter(" ".join(r["reasons"][0].split(": ", 1)[-1].split())[:40] for r in self.dropped
                               if r["reasons"])
        drop = ""
        if self.dropped:
            drop = (f"; dropped {len(self.dropped):,} (unrepairable: "
                    + ", ".join(f"{n} {w}" for w, n in why.most_common(3))
                    + (", ..." if len(why) > 3 else "") + ")")
        return (f"normalised {self.tunes:,} tune{'s' if self.tunes != 1 else ''} "
                f"({self.changed:,} changed): "
                + (", ".join(parts) if parts else "nothing to repair") + drop)

    def to_dict(self) -> dict:
        """For normalise.json: counts by repair (described and by code) and every tune
        dropped, with its position in the corpus, X:, title and why."""
        return {"tunes": self.tunes, "kept": self.kept, "changed": self.changed,
                "repairs": {REPAIRS[k]: n for k, n in self.repairs.most_common()},
                "repair_codes": dict(self.repairs.most_common()),
                "dropped": self.dropped}

    @classmethod
    def from_dict(cls, d: dict) -> NormaliseReport:
        return cls(tunes=d["tunes"], kept=d["kept"], changed=d["changed"],
                   repairs=Counter(d["repair_codes"]), dropped=list(d["dropped"]))


def normalise_tunes(tunes: list[str]) -> tuple[list[str], NormaliseReport]:
    """The tunes kept (repaired where needed, in order) and the report."""
    report = NormaliseReport(tunes=len(tunes))
    kept = []
    for i, tune in enumerate(tunes):
        text, done, why = normalise_tune(tune)
        report.repairs.update(done)
        if text is None:
            h = parse_header(tune)
            report.dropped.append({"index": i, "X": h.number, "title": h.title or "",
                                   "reasons": why})
            continue
        report.changed += text != tune
        kept.append(text)
    report.kept = len(kept)
    return kept, report


def normalise_tune(text: str) -> tuple[str | None, Counter, list[str]]:
    """(the repaired tune, or None when it cannot be repaired; repairs made; why dropped)."""
    done: Counter = Counter()
    lines = text.split("\n")
    fingers = _remove_fingerings(lines)
    if fingers:
        done["fingering"] += fingers
    joined = list(lines)
    joins = _remove_continuations(lines)
    if joins and any(f.code == "tuplet-eol" for f in lint_tune("\n".join(lines))):
        lines[:] = joined  # a tuplet runs on to the next line: the '\\' stays
    elif joins:
        done["continuation"] += joins
    for _ in range(ROUNDS):
        faults = errors(lint_tune("\n".join(lines)))
        if not faults:
            return "\n".join(lines), done, []
        made = _repair(lines, faults)
        if not made:
            break
        done.update(made)
    faults = errors(lint_tune("\n".join(lines)))
    if not faults:
        return "\n".join(lines), done, []
    return None, Counter(), [f"line {f.line}: {f.tool}" for f in faults[:3]]


# -------------------------------------------------------------------------------- repairs
def _repair(lines: list[str], faults: list[Fault]) -> Counter:
    """Edit `lines` in place for the faults that have a repair, at most one edit per line per
    round (columns move after an edit), and none after an edit of other lines; returns the
    repairs made."""
    made: Counter = Counter()
    edited: dict[int, int] = {}  # line -> the leftmost column an edit of this round changed
    for f in sorted(faults, key=lambda f: (f.line, -f.col)):
        i = f.line - 1
        if not 0 <= i < len(lines) or lines[i] == _GONE or f.col - 1 >= edited.get(i, 1 << 30):
            continue
        before = lines[i]
        kind = _REPAIRERS.get(f.code, lambda *_: None)(lines, f)
        if kind:
            made[kind] += 1
            after = lines[i]
            k = 0
            while k < min(len(before), len(after)) and before[k] == after[k]:
                k += 1
            edited[i] = min(edited.get(i, 1 << 30), k if before != after else -1)
            if kind in _OTHER_LINES:
                break
    lines[:] = [ln for ln in lines if ln != _GONE]
    return made


def _edit(lines: list[str], f: Fault, start: int, end: int, new: str) -> None:
    s = lines[f.line - 1]
    lines[f.line - 1] = s[:start] + new + s[end:]


def _in_slur(s: str, p: int) -> bool:
    depth = 0
    quoted = False
    for i, c in enumerate(s[:p]):
        if c == '"':
            quoted = not quoted
        elif not quoted and c == "(" and not s[i + 1:i + 2].isdigit():
            depth += 1
        elif not quoted and c == ")":
            depth = max(0, depth - 1)
    return depth > 0


def _note_before(s: str, p: int) -> int | None:
    """The start of the note (or chord) ending right before `p`."""
    m = re.search(r"(?:[.~HLMOPSTuv]*(?:" + _NOTE.pattern + r"|\[[^\]\[]*\])" + _LEN.pattern
                  + r")$", s[:p])
    return m.start() if m else None


def _note_after(s: str, p: int) -> int | None:
    """The end of the next note (or chord) from `p`, skipping spaces and barlines."""
    m = re.match(r"[\s|:\]\[12]*?(?:\"[^\"]*\")*[.~HLMOPSTuv]*(?:" + _NOTE.pattern
                 + r"|\[[^\]\[]*\])" + _LEN.pattern, s[p:])
    return p + m.end() if m else None


def _tie(lines: list[str], f: Fault) -> str | None:
    s = lines[f.line - 1]
    p = f.col - 1
    if s[p:p + 1] != "-":
        return None
    if "rest" in f.message or "follows no note" in f.message or "end of the tune" in f.message:
        _edit(lines, f, p, p + 1, "")
        return "tie-drop"
    if "'~'" in f.message:
        m = re.match(r"[\s|]*~", s[p + 1:])
        if m:
            _edit(lines, f, p + m.end(), p + m.end() + 1, "")
            return "ornament-drop"
        return None
    before, after = _note_before(s, p), _note_after(s, p + 1)
    if _in_slur(s, p) or before is None or after is None:
        _edit(lines, f, p, p + 1, "")
    else:
        lines[f.line - 1] = s[:before] + "(" + s[before:p] + s[p + 1:after] + ")" + s[after:]
    return "tie-slur"


def _quoted(lines: list[str], f: Fault) -> str | None:
    s = lines[f.line - 1]
    p = f.col - 1
    if s[p:p + 1] != '"':
        return None
    end = s.find('"', p + 1)
    text = s[p + 1:end] if end > 0 else ""
    m = re.match(r"^(\(?[A-Ga-g][#b]{0,2})([^ (/)]*)(.*)$", text)
    if f.code == "chord-kind" and m and m.group(2) in _CHORD_ALIASES:
        _edit(lines, f, p + 1, end, m.group(1) + _CHORD_ALIASES[m.group(2)] + m.group(3))
        return "chord-spelling"
    _edit(lines, f, p + 1, p + 1, "^")
    return "annotation"


def _remove_fingerings(lines: list[str]) -> int:
    body = parse_header("\n".join(lines)).body_line - 1
    n = 0
    for i in range(body, len(lines)):
        if re.match(r"^\s*[A-Za-z+]:", lines[i]):
            continue
        lines[i], k = re.subn(r'"[0-5]"', "", lines[i])
        n += k
    return n


def _remove_continuations(lines: list[str]) -> int:
    """A '\\' at the end of a music line joins it to the next into one staff line; joined lines
    can be too long for abcm2ps ("Line too much shrunk"). Each line is its own staff line
    then: only the layout changes."""
    body = parse_header("\n".join(lines)).body_line - 1
    n = 0
    for i in range(body, len(lines)):
        m = re.search(r"\s*\\\s*$", lines[i].split("%", 1)[0])
        if m and not re.match(r"^\s*[A-Za-z+]:", lines[i]):
            lines[i] = lines[i][:m.start()] + lines[i][m.end():]
            n += 1
    return n


def _deco(lines: list[str], f: Fault) -> str | None:
    s = lines[f.line - 1]
    p = f.col - 1
    run = re.match(r"[" + re.escape(_DECO_CHARS) + r"]+", s[p:])
    if f.code == "deco-no-note" and run:
        rest = s[p + run.end():]
        m = re.match(r'((?:"[^"]*"|![^!\s]*!)+)(?=(?:\^\^|__|\^|_|=)?[A-Ga-g])', rest)
        if m:  # 'u"4"e': the decoration goes onto the note after the quoted text
            _edit(lines, f, p, p + run.end() + m.end(), m.group(1) + run.group(0))
            return "deco-move"
        _edit(lines, f, p, p + run.end(), "")
        return "deco-drop"
    if f.code == "deco-letter" and p < len(s) and s[p].isalpha():
        _edit(lines, f, p, p + 1, "")
        return "deco-drop"
    if f.code == "deco-name" and s[p:p + 1] in "!+":
        end = s.find(s[p], p + 1)
        if end > p:
            _edit(lines, f, p, end + 1, "")
            return "deco-drop"
    return None


def _stray(lines: list[str], f: Fault) -> str | None:
    s = lines[f.line - 1]
    p = f.col - 1
    if s[p:p + 1] in ("*", "$", "\\", "!", "+"):
        end = p + 1
        while s[p] == "*" and end < len(s) and s[end] == "*":
            end += 1
        _edit(lines, f, p, end, "")
        return "stray-drop"
    return None


def _length_text(x: Fraction) -> str:
    if x.denominator == 1:
        return "" if x.numerator == 1 else str(x.numerator)
    return ("" if x.numerator == 1 else str(x.numerator)) + (
        "/" if x.denominator == 2 else f"/{x.denominator}")


def _length_of(t: str) -> Fraction | None:
    if not t:
        return Fraction(1)
    m = re.fullmatch(r"(\d*)(/*)(\d*)", t)
    if not m:
        return None
    num = int(m.group(1) or 1)
    if not m.group(2):
        return Fraction(num)
    den = int(m.group(3)) if m.group(3) else 2 ** len(m.group(2))
    if m.group(3) and len(m.group(2)) > 1:
        return None
    return Fraction(num, den) if den else None


def _broken(lines: list[str], f: Fault) -> str | None:
    """'A2>B' -> 'A3B/2': the lengths a broken rhythm means, written out."""
    s = lines[f.line - 1]
    p = f.col - 1
    run = re.match(r">+|<+", s[p:])
    if not run or len(run.group(0)) > 3:
        return None
    left = re.search(r"((?:" + _NOTE.pattern + r"))(" + _LEN.pattern + r")(\)?)$", s[:p])
    right = re.match(r"([\s()]*[.~HLMOPSTuv]*(?:" + _NOTE.pattern + r"))(" + _LEN.pattern
                     + r")", s[p + run.end():])
    if not left or not right or _in_tuplet(s, p):
        return None
    a, b = _length_of(left.group(2)), _length_of(right.group(2))
    if a is None or b is None:
        return None
    n = len(run.group(0))
    long, short = 2 - Fraction(1, 2 ** n), Fraction(1, 2 ** n)
    fa, fb = (long, short) if run.group(0)[0] == ">" else (short, long)
    new = (left.group(1) + _length_text(a * fa) + left.group(3) + right.group(1)
           + _length_text(b * fb))
    start = left.start()
    end = p + run.end() + right.end()
    lines[f.line - 1] = s[:start] + new + s[end:]
    return "broken"


def _in_tuplet(s: str, p: int) -> bool:
    m = list(re.finditer(r"\((\d)", s[:p]))
    if not m:
        return False
    notes = len(re.findall(_NOTE.pattern, s[m[-1].end():p]))
    return notes < int(m[-1].group(1))


def _hornpipe(lines: list[str], f: Fault) -> str | None:
    k = next((i for i, ln in enumerate(lines) if ln.startswith("K:")), len(lines))
    r = next((i for i in range(k) if re.match(r"^R:\s*[Hh]ornpipe", lines[i])), None)
    m = next((i for i in range(k) if lines[i].startswith("M:")), None)
    if r is None:
        return None
    if m is not None and re.fullmatch(r"M:\s*(C\||2/2)\s*", lines[m]):
        lines[m] = "M:C"
        return "hornpipe-meter"
    lines[r] = _GONE
    return "hornpipe-rhythm"


def _ending(lines: list[str], f: Fault) -> str | None:
    """'[1' with no '|:' before it: the repeated part starts after the last section end."""
    body = parse_header("\n".join(lines)).body_line - 1
    for i in range(f.line - 1, body - 1, -1):
        s = lines[i] if i != f.line - 1 else lines[i][:f.col - 1]
        for m in reversed(list(re.finditer(r":\||\|\||\|\]|\[\|", s))):
            tok = m.group(0)
            new = {":|": "::", "||": "|:", "|]": "|] |:", "[|": "[|:"}[tok]
            if s[m.end():m.end() + 1] == ":":
                return None
            lines[i] = lines[i][:m.start()] + new + lines[i][m.end():]
            return "ending-repeat"
    lines[body] = "|:" + lines[body]
    return "ending-repeat"


def _octave(lines: list[str], f: Fault) -> str | None:
    s = lines[f.line - 1]
    p = f.col - 1  # the mark
    j = p
    while j > 0 and s[j - 1] in ",'":
        j -= 1
    if j == 0 or s[j - 1] not in "ABCDEFGabcdefg":
        return None
    letter = s[j - 1]
    marks = s[j:p + 1] + "".join(re.match(r"[,']*", s[p + 1:]).group(0))  # type: ignore[union-attr]
    end = j + len(marks)
    octave = (1 if letter.islower() else 0) + marks.count("'") - marks.count(",")
    new = letter.lower() + "'" * (octave - 1) if octave >= 1 else letter.upper() + "," * -octave
    lines[f.line - 1] = s[:j - 1] + new + s[end:]
    return "octave"


def _split_note(lines: list[str], f: Fault) -> str | None:
    s = lines[f.line - 1]
    p = f.col - 1
    m = re.match(r"([.~HLMOPSTuv]*)(" + _NOTE.pattern + r")(\d+)(?![/\d<>])", s[p:])
    if not m or re.match(r"\s*[<>]", s[p + m.end():]) or s[max(0, p - 1):p] in "<>":
        return None
    n = int(m.group(3))
    first = max(k for k in range(1, n) if _drawable(k) and _drawable(n - k))
    note = m.group(2)
    tied = f"{m.group(1)}{note}{first if first > 1 else ''}-{note}" + (
        str(n - first) if n - first > 1 else "")
    lines[f.line - 1] = s[:p] + tied + s[p + m.end():]
    return "split-note"


def _drawable(k: int) -> bool:
    while k and not k & 1:
        k >>= 1
    return (k >> 1) in (0, 1, 3, 7)


def _lone(lines: list[str], f: Fault) -> str | None:
    """An accidental with no note, or an invisible barline '[|]' (abcm2ps only), goes."""
    s = lines[f.line - 1]
    p = f.col - 1
    if f.code == "chord-close" and s[max(0, p - 2):p + 1] == "[|]":
        _edit(lines, f, p - 2, p + 1, "")
        return "stray-drop"
    if f.code == "no-note":
        m = re.search(r"(\^\^|__|\^|_|=)$", s[:p + 1])
        if m and not re.match(r"\s*(?:\^|_|=)*[A-Ga-g]", s[p + 1:]):
            _edit(lines, f, m.start(), p + 1, "")
            return "stray-drop"
    return None


def _final_repeat(lines: list[str], f: Fault) -> str | None:
    """'|:|' or '::' as the tune's last barline is an end repeat: ':|'."""
    for i in range(len(lines) - 1, -1, -1):
        s = lines[i].split("%", 1)[0].rstrip()
        if not s or re.match(r"^[A-Za-z+]:", s):
            continue
        m = re.search(r"(\|:\||::)\s*\\?$", s)
        if not m:
            return None
        lines[i] = s[:m.start()] + ":|" + s[m.end():]
        return "final-repeat"
    return None


def _indent(lines: list[str], f: Fault) -> str | None:
    """' :|' at the start of a line: the space goes (layout only)."""
    lines[f.line - 1] = lines[f.line - 1].lstrip(" \t")
    return "stray-drop"


def _info_line(lines: list[str], f: Fault) -> str | None:
    if not lines[f.line - 1].lstrip().startswith("I:"):
        return None
    lines[f.line - 1] = _GONE
    return "info-line"


_REPAIRERS = {
    "tie-pitch": _tie, "tie-pitch-m2ps": _tie, "tie-none": _tie,
    "chord-name": _quoted, "chord-kind": _quoted, "chord-bass": _quoted,
    "deco-no-note": _deco, "deco-letter": _deco, "deco-name": _deco,
    "star": _stray, "dollar": _stray, "stray-backslash": _stray,
    "stray-backslash-m2ps": _stray, "deco-open": _stray, "deco-open-m2ps": _stray,
    "broken-unequal": _broken, "hornpipe": _hornpipe, "ending-no-repeat": _ending,
    "octave-mark": _octave, "too-dotted": _split_note, "info-key": _info_line,
    "chord-close": _lone, "no-note": _lone, "repeat-open-end": _final_repeat,
    "field-space": _indent,
}
