"""The form of tunes: parts, their lengths and repeats, bars that return, the last note, for
`seqgen eval` (sampled tunes against the training split) and for the form distribution that
training saves in checkpoint.json.

    from seqgen.music.form import corpus_forms, form_stats, read_form
    read_form(tune).form           # 'AABB'
    form_stats(tunes).aabb         # the share of tunes with two 8-bar parts, each repeated
    corpus_forms(training_tunes)   # forms and part lengths per meter and rhythm (R:)

How a tune is read: music21's ABC tokenizer (its ``ABCHandler``, with seqgen.music.m21's fixes;
no score is built, so a tune takes a few milliseconds) gives each note its pitch (key signature
and accidentals applied, as music21 plays it) and duration (broken rhythm and tuplets applied);
the bars, parts and repeats are read here from its barline tokens. docs/quality.md ("Form")
defines every measure; in short:

- a *part* is the music between section barlines (``|:``, ``:|``, ``::``, ``||``, ``|]``,
  ``[|``) and the tune's start and end; its *bars* are the bars holding a note or rest, less a
  *pickup*: a first bar shorter than the meter. A part closed by ``:|`` (or with endings) is
  *repeated*. With endings (``[1``/``|1`` ... ``:|`` ``[2``/``:|2`` ...) the first ending's
  bars are the part's, and the second ending (as many bars as the first, or up to the next
  section barline) is its other ending, not more bars and not a new part;
- the *form* gives each part a letter, the same letter to parts whose bars are equal, doubled
  for a repeat: ``|: A :||: B :|`` and ``A || A || B || B`` are both ``AABB``;
- a bar *recurs* when its notes and durations (pitches as sounded, rests, grace notes left
  out) equal another bar's in the tune; bars as written (a repeat sign writes no new bars).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from seqgen.music.abc import TuneHeader, parse_header, parse_meter
from seqgen.music.keys import pitch_class, read_key

EIGHT = 8  # bars of a part of the usual length (16 in 2/4, whose bars are half as long)
FRAGMENT = 4  # a part of 1 to FRAGMENT bars is a fragment
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_ACCIDENTAL = re.compile(r"[\^_=]")
_QUOTED = re.compile(r'"[^"]*"|![^!]*!|\+[^+]*\+')

Event = tuple[tuple[str, ...] | None, Fraction]  # (the pitches, None for a rest; duration)


@dataclass(frozen=True)
class Part:
    letter: str
    bars: int  # bars of music, pickup and second ending not counted
    repeated: bool


@dataclass
class TuneForm:
    """The form of one tune and its measures (see the module docstring)."""

    meter: str  # as written in M: ('6/8', 'C|'; '' when absent)
    rhythm: str  # R: in lower case ('reel', 'double jig'; '' when absent)
    parts: list[Part]
    recurring: float  # the share of its bars that equal another of its bars (0 with no bars)
    opening_returns: bool  # its first two bars come back, in that order, later on
    last_note_tonic: bool | None  # None: no readable key or no note
    accidental: bool  # any note written with ^, _ or =
    # its bar plan: (i, j) for each bar i (counted as `recurring` counts them, from 0) that
    # equals an earlier bar, j the first such
    copies: tuple[tuple[int, int], ...] = ()

    @property
    def form(self) -> str:
        return "".join(p.letter * (2 if p.repeated else 1) for p in self.parts)

    def usual_length(self, bars: int) -> bool:
        """`bars` is the usual part length: 8 (16 in 2/4)."""
        return bars == EIGHT or (self.meter.replace(" ", "") == "2/4" and bars == 2 * EIGHT)

    @property
    def aabb(self) -> bool:
        """Two parts of the usual length (8 bars; 16 in 2/4), each repeated."""
        return self.form == "AABB" and all(self.usual_length(p.bars) for p in self.parts)


@dataclass
class _Bar:
    events: tuple[Event, ...]
    length: Fraction  # in quarter notes
    full: Fraction | None  # the meter's bar length in quarter notes (None: free meter)
    ending: int = 0  # 0, or the ending (1 or 2) it is in


# ---------------------------------------------------------------------------------- reading
_DOUBLE_REPEAT = re.compile(r"(?<![|:])::(?![|:])")
_FIELD_LINE = re.compile(r"^\s*[A-Za-z+]:")


def _tokens(tune: str) -> list[Any]:
    """music21's ABC tokens of `tune` (pitches and durations assigned), with seqgen's fixes;
    ``::`` is written ``:||:`` first (music21 reads the note before a ``::`` with the rest of
    the line as a header field: ``A::d`` becomes field A)."""
    from seqgen.music import m21

    lines = tune.split("\n")
    start = parse_header(tune).body_line - 1
    lines[start:] = [ln if _FIELD_LINE.match(ln) else _DOUBLE_REPEAT.sub(":||:", ln)
                     for ln in lines[start:]]
    handler = m21.handler_class()()
    with m21.quiet([]):
        handler.process(m21.prepare_text("\n".join(lines)))
    return list(handler.tokens)


def _pitch(name: str) -> str:
    return name.replace("n", "")  # music21 writes a natural it was told of: 'Cn5' is C5


def _event(t: Any, kind: str) -> Event | None:
    """A note, rest or chord token as (pitches, duration); None for a grace note."""
    if getattr(t, "inGrace", False):
        return None
    ql = Fraction(t.quarterLength).limit_denominator(3840)
    tuplet = getattr(t, "activeTuplet", None)
    if tuplet is not None:
        ql *= Fraction(tuplet.tupletMultiplier()).limit_denominator(64)
    if kind == "ABCChord":
        names = tuple(_pitch(s.pitchName) for s in t.subTokens
                      if type(s).__name__ == "ABCNote" and s.pitchName)
        return (names or None, ql)
    if t.isRest or not t.pitchName:
        return (None, ql)
    return ((_pitch(t.pitchName),), ql)


class _Reader:
    """Walks the tokens of one tune into bars and section marks."""

    def __init__(self, h: TuneHeader):
        self.full = _quarters(h.meter)
        self.key = read_key(h.key)
        self.items: list[_Bar | str] = []  # bars and marks: 'section' ':|' '|:' 'e1' 'e2'
        self.events: list[Event] = []
        self.ending = 0
        self.last_note: str | None = None
        self.last_key = self.key
        self.accidental = False

    def read(self, tokens: list[Any]) -> None:
        for t in tokens:
            kind = type(t).__name__
            if kind in ("ABCNote", "ABCChord"):
                self._note(t, kind)
            elif kind == "ABCBar":
                self._barline(t)
            elif kind == "ABCMetadata":
                self._field(t.src)
        self._close_bar()

    def _note(self, t: Any, kind: str) -> None:
        ev = _event(t, kind)
        if ev is None:
            return
        self.events.append(ev)
        if ev[0] is not None:
            self.last_note, self.last_key = ev[0][-1], self.key
        if _ACCIDENTAL.search(_QUOTED.sub("", t.src)):
            self.accidental = True

    def _field(self, src: str) -> None:
        letter, _, value = src.partition(":")
        if letter == "M":
            self.full = _quarters(value)
        elif letter == "K":
            self.key = read_key(value) or self.key

    def _close_bar(self) -> None:
        if self.events:
            length = sum((d for _, d in self.events), Fraction(0))
            self.items.append(_Bar(tuple(self.events), length, self.full, self.ending))
        self.events = []

    def _barline(self, t: Any) -> None:
        self._close_bar()
        form, src = t.repeatForm, t.src.strip()
        if form in ("first", "second"):
            self.ending = 1 if form == "first" else 2
            self.items.append(f"e{self.ending}")
            return
        if form in ("end", "start"):
            self.items.append(":|" if form == "end" else "|:")
        elif src in ("||", "|]", "[|"):
            self.items.append("section")
        else:
            return  # a plain bar line: an ending goes on
        self.ending = 0


def _quarters(meter: str | None) -> Fraction | None:
    bar = parse_meter(meter or "")
    return None if bar is None else bar * 4


def _split_parts(items: list[_Bar | str]) -> list[tuple[list[_Bar], bool]]:
    """The parts: (their bars, pickup and second ending left out; repeated)."""
    parts: list[tuple[list[_Bar], bool]] = []
    bars: list[_Bar] = []
    repeated, second, first_len = False, 0, 0

    def close() -> None:
        nonlocal bars, repeated, second, first_len
        if bars and bars[0].full is not None and bars[0].length < bars[0].full:
            bars = bars[1:]  # a pickup
        if bars:
            parts.append((bars, repeated))
        bars, repeated, second, first_len = [], False, 0, 0

    for i, it in enumerate(items):
        nxt = items[i + 1] if i + 1 < len(items) else None
        if isinstance(it, _Bar):
            if it.ending == 2 and repeated:
                second += 1
                if second >= max(first_len, 1) and not isinstance(nxt, str):
                    close()  # the second ending is over; the next part goes on without a mark
                continue
            first_len += it.ending == 1
            bars.append(it)
        elif it == ":|":
            repeated = True
            if nxt != "e2":
                close()
        elif it == "e1":
            repeated = True
        elif it in ("section", "|:") and not (it == "|:" and not bars):
            close()
    close()
    return parts


def _letters(parts: list[tuple[list[_Bar], bool]]) -> list[Part]:
    seen: dict[tuple, str] = {}
    out = []
    for bars, repeated in parts:
        sig = tuple(b.events for b in bars)
        letter = seen.setdefault(sig, LETTERS[min(len(seen), len(LETTERS) - 1)])
        out.append(Part(letter, len(bars), repeated))
    return out


def bar_events(tune: str) -> list[tuple[Event, ...]] | None:
    """The notes and durations of each bar of a tune's parts, in order (pickups and second
    endings left out, as `read_form` counts them); None when music21 cannot read it."""
    try:
        tokens = _tokens(tune)
    except Exception:  # noqa: BLE001 (as read_form)
        return None
    r = _Reader(parse_header(tune))
    r.read(tokens)
    return [b.events for bars, _ in _split_parts(r.items) for b in bars]


def read_form(tune: str) -> TuneForm | None:
    """The form and measures of one tune's ABC text; None when music21 cannot read it."""
    try:
        tokens = _tokens(tune)
    except Exception:  # noqa: BLE001 (music21 raises anything on garbled ABC; unread, counted)
        return None
    h = parse_header(tune)
    r = _Reader(h)
    r.read(tokens)
    parts = _split_parts(r.items)
    sigs = [b.events for bars, _ in parts for b in bars]
    counts = Counter(sigs)
    first: dict[tuple, int] = {}
    copies = tuple((i, j) for i, sig in enumerate(sigs) if (j := first.setdefault(sig, i)) != i)
    tonic = None
    if r.last_note is not None and r.last_key is not None:
        tonic = pitch_class(r.last_note) == r.last_key.tonic_class
    rhythm = " ".join((h.fields.get("R") or [""])[0].lower().split())
    return TuneForm(
        meter=(h.meter or "").strip(), rhythm=rhythm, parts=_letters(parts),
        recurring=sum(counts[s] > 1 for s in sigs) / len(sigs) if sigs else 0.0,
        opening_returns=len(sigs) >= 4 and any(sigs[i:i + 2] == sigs[:2]
                                               for i in range(2, len(sigs) - 1)),
        last_note_tonic=tonic, accidental=r.accidental, copies=copies)


# ------------------------------------------------------------------------------- many tunes
@dataclass
class FormStats:
    """The form measures of a set of tunes (None where nothing was measured)."""

    tunes: int = 0  # read (music21 read them)
    unread: int = 0
    parts: int = 0
    aabb: float | None = None  # share of tunes
    eight_bar_parts: float | None = None  # share of all parts: 8 bars (16 in 2/4)
    fragments: float | None = None  # share of all parts: 1 to 4 bars
    recurring: float | None = None  # mean over tunes of the share of bars that recur
    no_repeated_bar: float | None = None  # share of tunes
    opening_returns: float | None = None  # share of tunes
    last_note_tonic: float | None = None  # share of tunes with a readable key and a note
    accidentals: float | None = None  # share of tunes
    forms: dict[str, int] = field(default_factory=dict)  # the most common forms, by count


def _share(xs: list[bool]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def form_stats(tunes: list[str], top: int = 8) -> FormStats:
    """The form measures of `tunes` (see FormStats; `top`: how many forms to keep)."""
    read = [read_form(t) for t in tunes]
    forms = [f for f in read if f is not None]
    st = FormStats(tunes=len(forms), unread=len(read) - len(forms))
    if not forms:
        return st
    parts = [(f, p) for f in forms for p in f.parts]
    st.parts = len(parts)
    st.aabb = _share([f.aabb for f in forms])
    st.eight_bar_parts = _share([f.usual_length(p.bars) for f, p in parts])
    st.fragments = _share([1 <= p.bars <= FRAGMENT for _, p in parts])
    st.recurring = sum(f.recurring for f in forms) / len(forms)
    st.no_repeated_bar = _share([f.recurring == 0 for f in forms])
    st.opening_returns = _share([f.opening_returns for f in forms])
    st.last_note_tonic = _share([f.last_note_tonic for f in forms
                                 if f.last_note_tonic is not None])
    st.accidentals = _share([f.accidental for f in forms])
    st.forms = dict(Counter(f.form or "-" for f in forms).most_common(top))
    return st


# ------------------------------------------------------------------- the corpus distribution
FORMS_VERSION = 1


def corpus_forms(tunes: list[str]) -> dict:
    """The forms and part lengths of `tunes` per meter and rhythm, as checkpoint.json keeps them
    ("corpus" "forms"): ``{"version": 1, "tunes": N, "groups": [{"meter": "6/8", "rhythm":
    "jig", "tunes": n, "forms": {"AABB": {"8,8": count, ...}, ...}, "plans": {"AABB 8,8":
    {"4=0 5=1 15=7": count, ...}, ...}}, ...]}``, groups and forms most common first. A form's
    key lists its written parts' bar counts ('8,8' for AABB's two parts). "plans" holds, for
    the forms a tune may be given (`drawable`), the bar plans of its tunes: 'i=j' for each bar
    i that equals an earlier bar j (TuneForm.copies; '' for a tune with no bar that returns).
    Tunes music21 cannot read, or without a bar, are left out."""
    groups: dict[tuple[str, str], Counter[tuple[str, str]]] = {}
    plans: dict[tuple[str, str], Counter[tuple[str, str]]] = {}
    total = 0
    for t in tunes:
        f = read_form(t)
        if f is None or not f.parts:
            continue
        total += 1
        shape = ",".join(str(p.bars) for p in f.parts)
        groups.setdefault((f.meter, f.rhythm), Counter())[(f.form, shape)] += 1
        if drawable(f.form, shape) is not None:
            plan = " ".join(f"{i}={j}" for i, j in f.copies)
            plans.setdefault((f.meter, f.rhythm), Counter())[(f"{f.form} {shape}", plan)] += 1
    out = []
    for (meter, rhythm), c in sorted(groups.items(), key=lambda kv: -sum(kv[1].values())):
        forms: dict[str, dict[str, int]] = {}
        for (form, shape), n in c.most_common():
            forms.setdefault(form, {})[shape] = n
        drawn: dict[str, dict[str, int]] = {}
        for (key, plan), n in plans.get((meter, rhythm), Counter()).most_common():
            drawn.setdefault(key, {})[plan] = n
        out.append({"meter": meter, "rhythm": rhythm, "tunes": sum(c.values()), "forms": forms,
                    "plans": drawn})
    return {"version": FORMS_VERSION, "tunes": total, "groups": out}


# bump when read_form reads tunes differently: cached distributions (cached_corpus_forms) are
# then computed again
READER_VERSION = 2  # 2: with the bar plans


def cached_corpus_forms(tunes: list[str]) -> dict:
    """corpus_forms(tunes), kept under the cache directory by the tunes' digest (reading a
    corpus's forms takes 10-20 s; training computes them at every start)."""
    import hashlib
    import json

    from seqgen.data import default_cache_dir
    from seqgen.errors import SeqgenError
    from seqgen.fileio import atomic_write_text

    h = hashlib.blake2b(digest_size=16)
    h.update(f"forms {FORMS_VERSION} {READER_VERSION}\n".encode())
    for t in tunes:
        h.update(t.encode("utf-8", "surrogatepass") + b"\0")
    path = default_cache_dir() / f"forms-{h.hexdigest()}.json"
    try:
        forms = json.loads(path.read_text(encoding="utf-8"))
        if forms_problem(forms) is None and forms.get("version") == FORMS_VERSION:
            return forms
    except (OSError, ValueError):
        pass  # none yet, or damaged: computed again
    forms = corpus_forms(tunes)
    try:
        atomic_write_text(path, json.dumps(forms))
    except (OSError, SeqgenError):
        pass  # no cache: computed again next time
    return forms


def forms_problem(value: Any) -> str | None:
    """What is wrong with a checkpoint.json "corpus" "forms" value (see corpus_forms), or None."""
    if not isinstance(value, dict) or type(value.get("version")) is not int:
        return "must be an object with an integer \"version\""
    if value["version"] > FORMS_VERSION:
        return None  # a newer layout: kept as it is, read by a newer seqgen
    if type(value.get("tunes")) is not int or not isinstance(value.get("groups"), list):
        return "must have integer \"tunes\" and a list of \"groups\""
    for g in value["groups"]:
        if (not isinstance(g, dict) or not isinstance(g.get("meter"), str)
                or not isinstance(g.get("rhythm"), str) or type(g.get("tunes")) is not int
                or not isinstance(g.get("forms"), dict)):
            return "groups must have a \"meter\", a \"rhythm\", \"tunes\" and \"forms\""
        for shapes in g["forms"].values():
            if not isinstance(shapes, dict) or not all(
                    isinstance(k, str) and type(n) is int and n > 0 for k, n in shapes.items()):
                return "each form must map part lengths to a positive count"
        for plans in g.get("plans", {}).values():
            if not isinstance(plans, dict) or not all(
                    isinstance(k, str) and _PLAN.fullmatch(k) and type(n) is int and n > 0
                    for k, n in plans.items()):
                return "each bar plan must be 'i=j ...' (bar i repeats bar j < i) with a count"
    return None


_PLAN = re.compile(r"(\d+=\d+( \d+=\d+)*)?")


# ------------------------------------------------------------ a tune's form drawn from them
# at most this many written parts: the corpora's longer sets of variations (5 to 11 parts, 0.6%
# of folk-plus's tunes) make tunes of 40-90 bars that music21's converter takes over 20 s to
# write as MIDI (a 15-part sampled tune timed out)
DRAWN_PARTS = 4


def drawable(form: str, shape: str) -> int | None:
    """The bars per part of a form and shape (corpus_forms' keys: 'AABB', '8,8') that a tune
    may be given, None when it may not: all its written parts have one length of more than
    FRAGMENT bars, in a form the grammar can write (`--form`'s letters) of at most DRAWN_PARTS
    written parts."""
    from seqgen.music.grammar.vocabulary import MAX_FORM_BARS, form_parts, form_problem

    if form_problem(form) is not None or len(form_parts(form)) > DRAWN_PARTS:
        return None
    lengths = {int(b) for b in shape.split(",") if b.isdigit()}
    if len(lengths) == 1 and FRAGMENT < (bars := lengths.pop()) <= MAX_FORM_BARS:
        return bars
    return None


def _groups(forms: dict, meter: str | None, rhythm: str) -> list[dict]:
    """The groups of `forms` a tune of `meter` and `rhythm` draws from (see form_choices)."""
    return next((level for level in _group_levels(forms, meter, rhythm) if level), [])


def _group_levels(forms: dict, meter: str | None, rhythm: str) -> list[list[dict]]:
    """The groups of that meter and rhythm, of that meter, and all groups (the last: never
    empty unless `forms` is)."""
    def norm(m: str | None) -> str:
        return "".join((m or "").split())

    every = forms.get("groups", [])
    groups = [g for g in every if norm(g["meter"]) == norm(meter)]
    rhythm = " ".join(rhythm.lower().split())
    return [[g for g in groups if g["rhythm"] == rhythm], groups, every]


def form_choices(forms: dict, meter: str | None, rhythm: str = "") -> dict[tuple[str, int], int]:
    """The (form, bars per part) a tune of `meter` and `rhythm` (R:) may be given, with their
    counts in a corpus's form distribution `forms` (corpus_forms): the tunes of that meter and
    rhythm (of that meter when none has the rhythm; of the whole corpus when none has the meter)
    whose form and part lengths are `drawable`. Empty when no tune qualifies."""
    out: Counter[tuple[str, int]] = Counter()
    for g in _groups(forms, meter, rhythm):
        for form, shapes in g["forms"].items():
            for shape, n in shapes.items():
                if (bars := drawable(form, shape)) is not None:
                    out[(form, bars)] += n
    return dict(out)


def plan_choices(forms: dict, meter: str | None, rhythm: str, form: str,
                 bars: int) -> dict[str, int]:
    """The bar plans ('i=j ...', see corpus_forms) of the training tunes of (form, bars) in
    which a bar returns, with their counts: those of the tune's meter and rhythm, else of its
    meter, else of the whole corpus (a form given by --form may be one no tune of the rhythm
    has); empty for a distribution without plans. The plan of a tune that repeats no bar ('')
    is never drawn: it would give a tune with no bar that returns, which a dance tune seldom is
    (issue 19: at most 5% of the sampled tunes; 5.6% of the folk training tunes by our reading,
    some of them airs and variation sets)."""
    from seqgen.music.grammar.vocabulary import form_parts

    key = f"{form} {','.join([str(bars)] * len(form_parts(form)))}"
    for groups in _group_levels(forms, meter, rhythm):
        out: Counter[str] = Counter()
        for g in groups:
            out.update({plan: n for plan, n in g.get("plans", {}).get(key, {}).items() if plan})
        if out:
            return dict(out)
    return {}


def parse_plan(plan: str) -> dict[int, int]:
    """'4=0 5=1' -> {4: 0, 5: 1}."""
    return {int(i): int(j) for i, j in (p.split("=") for p in plan.split())}


def draw_form(forms: dict, meter: str | None, rhythm: str, rng: Any) -> tuple[str, int] | None:
    """A (form, bars per part) for one tune, drawn from `form_choices` in proportion to their
    counts with `rng` (a random.Random); None when there is no choice."""
    choices = form_choices(forms, meter, rhythm)
    if not choices:
        return None
    keys = sorted(choices)
    return rng.choices(keys, weights=[choices[k] for k in keys])[0]


class FormDraw:
    """Draws each tune's form when its header ends (ConstrainedBatch's `per_tune`): a form and
    part length from `forms` (a checkpoint's corpus_forms) for the tune's M: and R:, with `rng`
    (a random.Random), and the ABC constraint of `tokenizer` for it (`key`, `cadence` as
    abc_constraint takes them); with `repeat_bars`, also the bar plan of one of the training
    tunes of that form and length (`plan_choices`), and the part a letter that returns repeats
    (`letter_plan`), which a BarCopier then follows (seqgen.music.grammar.copies). `form`:
    (letters, bars) given by the user, not drawn (only the plan is)."""

    def __init__(self, tokenizer: Any, forms: dict, rng: Any, key: str | None = None,
                 cadence: str = "tonic", repeat_bars: bool = True,
                 form: tuple[str, int] | None = None):
        self.tokenizer, self.forms, self.rng = tokenizer, forms, rng
        self.key, self.cadence, self.repeat_bars, self.form = key, cadence, repeat_bars, form

    def __call__(self, state: Any) -> Any:
        from seqgen.music.grammar import abc_constraint
        from seqgen.music.grammar.copies import BarCopier

        drawn = self.form or draw_form(self.forms, state.meter, state.rhythm, self.rng)
        if drawn is None:
            return None
        form, bars = drawn
        plans = plan_choices(self.forms, state.meter, state.rhythm, form, bars) \
            if self.repeat_bars else {}
        plan: dict[int, int] = {}
        if plans:
            keys = sorted(plans)
            plan = parse_plan(self.rng.choices(keys, weights=[plans[k] for k in keys])[0])
        if self.repeat_bars:  # a letter that returns: that part's bars again
            plan.update(letter_plan(form, bars))
        c = abc_constraint(self.tokenizer, key=self.key, form=form, bars=bars,
                           cadence=self.cadence, cadence_parts=cadence_parts(plan, form, bars))
        return c, (BarCopier(plan, bars, c.stoi) if plan else None)


def letter_plan(form: str, bars: int) -> dict[int, int]:
    """The bar plan a form's letters make: each bar of a written part whose letter came before
    repeats the same bar of that letter's first part ('AABA', 8 bars: bars 8-15 are part B's,
    16-23 repeat 0-7)."""
    from seqgen.music.grammar.vocabulary import form_letters

    letters = form_letters(form)
    plan: dict[int, int] = {}
    for p, letter in enumerate(letters):
        q = letters.index(letter)
        if q < p:
            plan.update({p * bars + k: q * bars + k for k in range(bars)})
    return plan


def cadence_parts(plan: dict[int, int], form: str, bars: int) -> tuple[int, ...]:
    """The parts of a tune of `form` whose end the tonic cadence should end too, since `plan`
    repeats that part's last bar as the tune's last (a reel's part B ending as part A does: its
    copy would end on the tonic only if the source did)."""
    from seqgen.music.grammar.vocabulary import form_parts

    last = len(form_parts(form)) * bars - 1
    src = plan.get(last)
    if src is None or (src + 1) % bars or src == last:
        return ()
    return (src // bars,)
