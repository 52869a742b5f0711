"""How fast a tune is played: its ``Q:`` field, else the dance its ``R:`` field names (or its
meter suggests), else a default; ``--tempo`` overrides all of these.

    from seqgen.music.tempo import choose_tempo
    t = choose_tempo("X:1\\nR:jig\\nM:6/8\\nL:1/8\\nK:D\\n...")
    t.qpm, t.source, t.describe()   # 174.0, 'R:jig', 'jig: 116 dotted quarters a minute (R:)'

The dance figures (docs/music.md gives the sources) are beats a minute for tunes written with
eighth notes as their running notes (``L:1/8``); a tune written in sixteenths (``L:1/16``, as
2/4 reels often are) plays its quarter notes at half that speed, so that its notes run as fast.
Text only: no music21 here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

from seqgen.errors import UsageError
from seqgen.music.abc import TuneHeader, parse_header, parse_meter, parse_unit

DEFAULT_QPM = 120.0  # quarter notes a minute for a tune with no Q:, no known R: and odd meter
QPM_RANGE = (1.0, 1000.0)


@dataclass(frozen=True)
class Dance:
    """A dance rhythm: `bpm` beats of length `beat` (a fraction of a whole note) a minute."""

    name: str
    beat: Fraction
    bpm: float

    @property
    def qpm(self) -> float:
        return self.bpm * float(self.beat * 4)


_HALF, _QUARTER, _DOTTED = Fraction(1, 2), Fraction(1, 4), Fraction(3, 8)

# Beats a minute, at the slow end of dancing speed (docs/music.md: "Dance tempos" gives the
# source of each figure, and which ones are conventions).
DANCES: dict[str, Dance] = {d.name: d for d in (
    Dance("reel", _HALF, 112),
    Dance("jig", _DOTTED, 116),
    Dance("slip jig", _DOTTED, 113),
    Dance("slide", _DOTTED, 132),
    Dance("hornpipe", _HALF, 92),
    Dance("polka", _QUARTER, 132),
    Dance("waltz", _QUARTER, 156),
    Dance("mazurka", _QUARTER, 156),
    Dance("schottische", _QUARTER, 120),
    Dance("strathspey", _QUARTER, 128),
    Dance("march", _QUARTER, 120),
    Dance("three-two", _HALF, 80),
    Dance("air", _QUARTER, 72),
)}

# R: values, lower-cased, matched as words in this order (the first that matches counts).
_R_NAMES: tuple[tuple[str, str], ...] = (
    ("slip jig", "slip jig"), ("slipjig", "slip jig"), ("hop jig", "slip jig"),
    ("single jig", "jig"), ("double jig", "jig"), ("jig", "jig"),
    ("set dance", "hornpipe"), ("hornpipe", "hornpipe"), ("three-two", "three-two"),
    ("reel", "reel"), ("slide", "slide"), ("polka", "polka"), ("waltz", "waltz"),
    ("valse", "waltz"), ("mazurka", "mazurka"), ("schottische", "schottische"),
    ("barndance", "schottische"), ("barn dance", "schottische"), ("fling", "schottische"),
    ("highland", "schottische"), ("germans", "schottische"), ("strathspey", "strathspey"),
    ("march", "march"), ("air", "air"), ("lament", "air"), ("song", "air"),
)

# The dance a meter suggests when R: names none (a convention: the commonest dance in that meter
# in the bundled folk corpora).
_METER_DANCE = {"6/8": "jig", "9/8": "slip jig", "12/8": "slide", "C|": "reel", "2/2": "reel",
                "4/4": "reel", "C": "reel", "2/4": "polka", "3/4": "waltz", "3/2": "three-two"}

_BEAT_NAMES = {_HALF: "half notes", _QUARTER: "quarter notes", _DOTTED: "dotted quarters"}


@dataclass(frozen=True)
class TempoChoice:
    """The tempo a tune starts at (quarter notes a minute) and why. `source` "Q:": the tune's
    ``Q:`` decides (music21 reads it, with any later changes) and `qpm` is only the fallback for
    a ``Q:`` music21 cannot read; else "R:<dance>", "M:<meter>", "--tempo" or "default"."""

    qpm: float
    source: str
    dance: Dance | None = None
    unit: Fraction = Fraction(1, 8)

    def describe(self) -> str:
        """One line for people: 'jig: 116 dotted quarters a minute (R:)'."""
        if self.source == "Q:":
            return "as its Q: field says"
        if self.dance is None:
            return f"{self.qpm:g} quarter notes a minute ({self.source})"
        bpm = self.qpm / float(self.dance.beat * 4)
        where = "R:" if self.source.startswith("R:") else f"from its meter {self.source[2:]}"
        return f"{self.dance.name}: {bpm:g} {_BEAT_NAMES[self.dance.beat]} a minute ({where})"


def dance_of(rhythm: str | None) -> Dance | None:
    """The dance an ``R:`` value names ('Double jig' -> jig, 'Set dance' -> hornpipe), or None."""
    if not rhythm:
        return None
    r = " ".join(re.sub(r"[^a-z0-9-]+", " ", rhythm.lower()).split())
    for word, name in _R_NAMES:
        if re.search(rf"(?<![a-z]){re.escape(word)}s?(?![a-z])", r):
            return DANCES[name]
    return None


def qpm_problem(qpm: float) -> str | None:
    """What a tempo of `qpm` quarter notes a minute must be instead, or None when it is in range
    (the rule of the `tempo` field of seqgen.music.convert.Limits)."""
    lo, hi = QPM_RANGE
    if not lo <= qpm <= hi:
        return f"between {lo:g} and {hi:g} quarter notes a minute, not {qpm:g}"
    return None


def check_qpm(qpm: float) -> float:
    """`qpm`, or UsageError naming `tempo` (the CLI: --tempo) when it is out of range."""
    problem = qpm_problem(qpm)
    if problem is not None:
        raise UsageError(f"`tempo` must be {problem}", params=True)
    return qpm


def choose_tempo(tune: str, override: float | None = None) -> TempoChoice:
    """The tempo of one tune (its text): `override` (``--tempo``) when given; else its ``Q:``
    field when it has one; else its ``R:`` dance; else the dance its meter suggests; else
    DEFAULT_QPM. Dance figures are scaled by the tune's unit note length (see the module's
    docstring)."""
    if override is not None:
        return TempoChoice(check_qpm(override), "--tempo")
    h = parse_header(tune)
    guess = _from_dance(h)
    return TempoChoice(guess.qpm, "Q:") if h.tempo else guess


def _from_dance(h: TuneHeader) -> TempoChoice:
    meter = (h.meter or "").strip()
    unit = parse_unit(h.unit_length or "", parse_meter(meter))
    scale = float(unit / Fraction(1, 8))
    rhythm = h.fields["R"][0] if h.fields.get("R") else None
    dance = dance_of(rhythm)
    if dance is not None:
        return TempoChoice(dance.qpm * scale, f"R:{dance.name}", dance, unit)
    dance = DANCES.get(_METER_DANCE.get(meter, ""))
    if dance is not None:
        return TempoChoice(dance.qpm * scale, f"M:{meter}", dance, unit)
    return TempoChoice(DEFAULT_QPM, "default")
