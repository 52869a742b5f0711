"""Reading an ABC key (``K:D``, ``K:Ador``, ``K:E Minor``; ``seqgen sample --key``): its tonic
and mode, the one reading that `--key`, eval's key distribution and the form measures' tonic
check (seqgen.music.form) share.

    read_key("Ador")            # Key(tonic='A', mode='dor'): the tonic is A, not G
    read_key("D Mixolydian").name    # 'Dmix'
    read_key("A", strict=True)  # a whole --key argument; None for 'H' or 'Dxyz'

No music21: plain text, cheap to call.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Mode words as ABC writes them (case does not matter; the first three letters count, 'm'
# alone is minor) -> the mode's short name ('' for major).
MODE_NAMES = {"": "", "maj": "", "ion": "", "m": "m", "min": "m", "aeo": "m", "mix": "mix",
              "dor": "dor", "phr": "phr", "lyd": "lyd", "loc": "loc"}
_PITCH_CLASS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
# A K: field: tonic, accidental, then a mode word; what follows (explicit accidentals, clef)
# is ignored.
_LENIENT = re.compile(r"^\s*([A-Ga-g])([#b]?)\s*([A-Za-z]*)")
# A --key argument: exactly a tonic, an accidental and one of the mode words (no space).
_STRICT = re.compile(r"^([A-G])([#b]?)(m|min|maj|mix|dor|phr|lyd|loc|aeo|ion)?$", re.IGNORECASE)


@dataclass(frozen=True)
class Key:
    """A key: `tonic` ('A', 'F#', 'Bb') and `mode` ('' major, 'm' minor, 'mix', 'dor', 'phr',
    'lyd', 'loc')."""

    tonic: str
    mode: str

    @property
    def name(self) -> str:
        """The normalised spelling: 'Dmix', 'Em', 'G', 'Bbdor'."""
        return self.tonic + self.mode

    @property
    def tonic_class(self) -> int:
        """The tonic's pitch class, 0 (C) to 11 (B): 'Ador' -> 9 (A)."""
        return pitch_class(self.tonic)


def pitch_class(name: str) -> int:
    """The pitch class of a note name: a letter, then accidentals as ABC's key names or
    music21's pitch names write them ('F#', 'Bb', 'B-', 'Cn', 'C##'); octaves are ignored."""
    pc = _PITCH_CLASS[name[0].upper()]
    for ch in name[1:]:
        if ch == "#":
            pc += 1
        elif ch in "b-":
            pc -= 1
    return pc % 12


def read_key(text: str | None, strict: bool = False) -> Key | None:
    """The key of a ``K:`` value (`strict`: of a whole ``--key`` argument), or None when it names
    none (empty, ``K:none``, ``K:HP``, an unknown mode word)."""
    if not text:
        return None
    if strict:
        m = _STRICT.match(text.strip())
        word = (m.group(3) or "").lower() if m else ""
    else:
        m = _LENIENT.match(text)
        word = m.group(3).lower() if m else ""
    if m is None:
        return None
    mode = MODE_NAMES.get(word[:3] if len(word) > 1 else word)
    if mode is None:
        return None
    return Key(m.group(1).upper() + m.group(2).lower(), mode)
