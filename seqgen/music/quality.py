"""The musical quality of sampled tunes, for `seqgen eval`: the music check's rates, meters, keys
and lengths against the training tunes, and novelty (copies of training music).

    from seqgen.music.quality import NoveltyIndex, check_tunes, describe_tunes
    reference = describe_tunes(training_tunes, "corpus")
    stats = check_tunes(sampled_tunes, "abc", reference, NoveltyIndex(training_tunes))

- rates (`check_tunes`): converts, headers, mean metrical share, ends with a barline, VALID
  (seqgen.music.convert.check_tune: converts and the ABC tools would accept it), and why tunes
  were not VALID (the tool messages their faults predict);
- meters, keys (normalised: 'D Mixolydian' = 'Dmix') and lengths in bars (`describe_tunes`),
  with the total variation distance between two meter and key distributions (0 = the same,
  1 = nothing in common);
- novelty: a tune *copies* the training data when its body (the music after ``K:``, white space
  removed) shares a run of NOVELTY_CHARS = 40 consecutive characters with the body of a
  training tune (found with a set of the training bodies' hashed 40-grams).
"""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass, field

from seqgen.music.form import FormStats

NOVELTY_CHARS = 40


@dataclass
class TuneStats:
    """The music check and corpus comparison of one set of tunes (one mode)."""

    mode: str  # "abc" | "none" | "corpus"
    tunes: int = 0
    top_p: float | None = None  # what the tunes were sampled with (None: not sampled)
    # rates: None where not measured (the training tunes are described, not checked)
    finished: float | None = None  # share that ended (<eos> or the next X:) within --length
    converts: float | None = None
    headers: float | None = None
    metrical: float | None = None  # mean metrical share over the tunes where it was measured
    ends_with_barline: float | None = None
    valid: float | None = None
    copies: float | None = None
    meters: dict[str, int] = field(default_factory=dict)
    keys: dict[str, int] = field(default_factory=dict)
    bars: dict[str, float] = field(default_factory=dict)  # median, p10, p90, mean
    meter_tvd: float | None = None  # total variation distance to the training tunes
    key_tvd: float | None = None
    sample_seconds: float = 0.0
    check_seconds: float = 0.0
    examples: list[str] = field(default_factory=list)  # the first tunes, as sampled
    reasons: dict[str, int] = field(default_factory=dict)  # why tunes were not VALID
    form: FormStats | None = None  # parts, repeats, bars that return, the last note (music.form)


# ------------------------------------------------------------------------------- keys, meters
def normalise_key(k: str | None) -> str:
    """'D Mixolydian' -> 'Dmix', 'E Minor' -> 'Em', 'G' -> 'G'; '?' when unreadable (the key
    reading of seqgen.music.keys, which --key and the tonic check share)."""
    from seqgen.music.keys import read_key

    key = read_key(k)
    return "?" if key is None else key.name


def normalise_meter(m: str | None) -> str:
    if not m:
        return "?"
    return "".join(m.split())


# ------------------------------------------------------------------------------------ novelty
def tune_body(tune: str) -> str:
    """The music of a tune after its header, white space removed (for novelty)."""
    from seqgen.music.abc import body_lines

    return "".join("".join(line.split()) for _, line in body_lines(tune))


class NoveltyIndex:
    """The hashed `n`-grams of the training tunes' bodies; ``copies(tune)`` says whether a tune
    shares a run of `n` consecutive body characters with one of them."""

    def __init__(self, tunes: list[str], n: int = NOVELTY_CHARS):
        self.n = n
        grams: set[int] = set()
        for t in tunes:
            b = tune_body(t)
            grams.update(hash(b[i : i + n]) for i in range(len(b) - n + 1))
        self.grams = grams

    def copies(self, tune: str) -> bool:
        b, n = tune_body(tune), self.n
        return any(hash(b[i : i + n]) in self.grams for i in range(len(b) - n + 1))


# ------------------------------------------------------------------------------- the check
def _tvd(a: dict[str, int], b: dict[str, int]) -> float | None:
    na, nb = sum(a.values()), sum(b.values())
    if not na or not nb:
        return None
    return 0.5 * sum(abs(a.get(k, 0) / na - b.get(k, 0) / nb) for k in set(a) | set(b))


def _quantiles(xs: list[int]) -> dict[str, float]:
    if not xs:
        return {}
    s = sorted(xs)

    def q(p: float) -> float:
        return float(s[min(len(s) - 1, int(p * len(s)))])

    return {"p10": q(0.1), "median": q(0.5), "p90": q(0.9), "mean": sum(s) / len(s)}


def describe_tunes(tunes: list[str], mode: str) -> TuneStats:
    """Meters, keys and lengths (bars) of some tunes (no music check)."""
    from seqgen.music.abc import count_bars, parse_header

    st = TuneStats(mode=mode, tunes=len(tunes))
    meters: Counter[str] = Counter()
    keys: Counter[str] = Counter()
    for t in tunes:
        h = parse_header(t)
        meters[normalise_meter(h.meter)] += 1
        keys[normalise_key(h.key)] += 1
    st.meters = dict(meters.most_common())
    st.keys = dict(keys.most_common())
    st.bars = _quantiles([count_bars(t) for t in tunes])
    return st


def check_tunes(tunes: list[str], mode: str, reference: TuneStats | None = None,
                novelty: NoveltyIndex | None = None, jobs: int = 2) -> TuneStats:
    """The music check's rates over `tunes`, their distributions and novelty."""
    from seqgen.music.convert import convert_tunes

    st = describe_tunes(tunes, mode)
    t0 = time.perf_counter()
    checks = [r.check for r in convert_tunes(tunes, to="midi", check=True, jobs=jobs)]
    st.check_seconds = time.perf_counter() - t0
    n = max(len(tunes), 1)
    st.converts = sum(bool(c and c.converts) for c in checks) / n
    st.headers = sum(bool(c and c.headers_ok) for c in checks) / n
    st.ends_with_barline = sum(bool(c and c.ends_with_barline) for c in checks) / n
    st.valid = sum(bool(c and c.valid) for c in checks) / n
    shares = [c.metrical_share for c in checks if c is not None and c.metrical_share is not None]
    st.metrical = sum(shares) / len(shares) if shares else None
    reasons: Counter[str] = Counter()
    for c in checks:
        if c is None or c.valid:
            continue
        if not c.converts:
            reasons["does not convert"] += 1
        # the tool messages its errors predict, once per tune ("abc2midi: Bad tie", ...)
        for tool in {re.sub(r"\s+", " ", f.tool).split(" (", 1)[0][:60]
                     for f in c.errors if f.tool.startswith(("abc2midi", "abcm2ps", "music21"))}:
            reasons[tool] += 1
    st.reasons = dict(reasons.most_common())
    if novelty is not None:
        st.copies = sum(novelty.copies(t) for t in tunes) / n
    if reference is not None:
        st.meter_tvd = _tvd(st.meters, reference.meters)
        st.key_tvd = _tvd(st.keys, reference.keys)
    return st
