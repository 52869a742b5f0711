"""ABC notation as text: splitting files into tunes, reading headers, finding bars, tidying samples.

No music21 here: everything in this module works on the text alone and is fast. Line numbers are
1-based and count from the tune's ``X:`` line (``split_tunes_with_lines`` gives each tune's first
line in its file, to turn them into file line numbers).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction

_X_LINE = re.compile(r"^X:", re.MULTILINE)
_FIELD = re.compile(r"^([A-Za-z+]):(.*)$")
_INLINE_FIELD = re.compile(r"\[[A-Za-z]:[^\]\n]*\]")

# Barline tokens, longest first (the same set music21's ABC reader splits bars at, less the rare
# single ':' dotted bar). '[1', '|1', ':|2' and friends also open first/second endings.
BAR_TOKENS = (":|1", ":|2", "|]", "||", "[|", "[1", "[2", "|1", "|2", ":|", "|:", "::", "|")
_NOTE_LETTERS = set("ABCDEFGabcdefgzZx")
# Barlines that may end a tune's last line (a trailing '!' is the old ABC line-break mark).
_ENDS_WITH_BAR = re.compile(r"(\|\]|\|\||:\||::|\||\[\|)\s*[12]?\s*!?\s*\\?$")


def split_tunes(text: str) -> list[str]:
    """The tunes of an ABC file, in order, each starting at its ``X:`` line.

    A tune runs from one ``X:`` header to the next; blank lines inside it (one right after ``K:``,
    say) do not end it. Text before the first ``X:`` (a file header) belongs to no tune. Each tune
    is returned without trailing white space.
    """
    starts = [m.start() for m in _X_LINE.finditer(text)]
    tunes = []
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(text)
        tune = text[start:end].rstrip()
        if tune:
            tunes.append(tune)
    return tunes


def looks_like_abc(text: str) -> bool:
    """True when `text` has at least one ``X:`` header followed later by a ``K:`` header."""
    m = _X_LINE.search(text)
    return m is not None and re.search(r"^K:", text[m.start():], re.MULTILINE) is not None


def split_tunes_with_lines(text: str) -> list[tuple[int, str]]:
    """Like ``split_tunes``, with the 1-based line number of each tune's ``X:`` line in `text`."""
    out = []
    for m in _X_LINE.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        out.append(line)
    tunes = split_tunes(text)
    # split_tunes drops nothing that starts with 'X:', so the lists line up one to one.
    return list(zip(out, tunes, strict=True))


def select_tune(tunes: list[str], tune: str, lines: list[int] | None = None) -> int:
    """The index in `tunes` of the tune `tune` names: ``'#N'`` the N-th tune (from 1); digits
    its ``X:`` number, when no other tune has it; otherwise a title (``T:``, any case), exact or
    a unique start of one. UsageError naming the candidates (position, ``X:``, first line in
    the file when `lines` gives them, title) when `tune` names none or several; its message
    names the parameter (`tune`: the CLI shows ``--tune``)."""
    from seqgen.errors import UsageError

    def refuse(why: str) -> UsageError:
        return UsageError(why, params=True)

    s = tune.strip()
    heads = [parse_header(t) for t in tunes]

    def listing(idx: list[int]) -> str:
        shown = [f"#{i + 1} (X:{heads[i].number if heads[i].number is not None else '-'}"
                 + (f", line {lines[i]}" if lines else "")
                 + f", {heads[i].title or 'untitled'!r})" for i in idx[:8]]
        more = f" and {len(idx) - 8} more" if len(idx) > 8 else ""
        return ", ".join(shown) + more

    if re.fullmatch(r"#\s*\d+", s):
        k = int(s[1:])
        if not 1 <= k <= len(tunes):
            raise refuse(f"there is no tune #{k}: the file holds {len(tunes)} "
                         f"tune{'s' if len(tunes) != 1 else ''} (#1 to #{len(tunes)})")
        return k - 1
    if s.isdigit():
        idx = [i for i, h in enumerate(heads) if h.number == int(s)]
        if len(idx) == 1:
            return idx[0]
        if len(idx) > 1:
            raise refuse(f"{len(idx)} tunes have X:{s}: {listing(idx)}; choose one by "
                         f"position, e.g. `tune` '#{idx[0] + 1}', or by title")
        nums = [h.number for h in heads if h.number is not None]
        have = f"X: numbers run from {min(nums)} to {max(nums)}" if nums else "no X: numbers"
        raise refuse(f"no tune has X:{s} ({have}); '#N' picks the N-th tune")
    want = " ".join(s.lower().split())
    titles = [[" ".join(t.lower().split()) for t in h.titles] for h in heads]
    idx = [i for i, ts in enumerate(titles) if want in ts]
    if not idx:
        idx = [i for i, ts in enumerate(titles) if any(t.startswith(want) for t in ts)]
    if len(idx) == 1:
        return idx[0]
    if not idx:
        raise refuse(f"no tune is titled {tune!r} (nor has a title starting so); give an "
                     "X: number, '#N' for the N-th tune, or a title")
    raise refuse(f"{len(idx)} tunes match the title {tune!r}: {listing(idx)}; choose one "
                 "by position, e.g. `tune` '#" + str(idx[0] + 1) + "'")


# ----------------------------------------------------------------------------------- headers
@dataclass
class TuneHeader:
    """The header fields of one tune (``X:`` up to and including the first ``K:``).

    ``fields`` maps each field letter to its values in order (``T`` may repeat); the named
    attributes are the first value of their field, or None when absent. ``body_line`` is the line
    number of the first line after ``K:`` (1 = the tune's first line).
    """

    number: int | None = None
    title: str | None = None
    meter: str | None = None
    unit_length: str | None = None
    key: str | None = None
    tempo: str | None = None
    fields: dict[str, list[str]] = field(default_factory=dict)
    field_lines: dict[str, int] = field(default_factory=dict)  # letter -> line of its first use
    body_line: int = 1

    @property
    def titles(self) -> list[str]:
        return self.fields.get("T", [])

    def missing(self, letters: str = "XMLK") -> list[str]:
        """The required header fields (default X, M, L, K) this tune lacks."""
        return [c for c in letters if c not in self.fields]


def parse_header(tune: str) -> TuneHeader:
    """Read the header fields of one tune's text (no music21 involved)."""
    h = TuneHeader()
    lines = tune.split("\n")
    i = 0
    for i, raw in enumerate(lines):
        line = raw.strip()
        if not line or line.startswith("%"):
            continue
        m = _FIELD.match(line)
        if not m:
            # Music before any K: line ends the header too (music21 accepts a tune without K:).
            i -= 1
            break
        letter, value = m.group(1), m.group(2).split("%", 1)[0].strip()
        h.fields.setdefault(letter, []).append(value)
        h.field_lines.setdefault(letter, i + 1)
        if letter == "K":
            break
    h.body_line = i + 2
    first = {k: v[0] for k, v in h.fields.items()}
    if "X" in first:
        m = re.match(r"\s*(\d+)", first["X"])
        h.number = int(m.group(1)) if m else None
    h.title = first.get("T") or None
    h.meter = first.get("M") or None
    h.unit_length = first.get("L") or None
    h.key = first.get("K") or None
    h.tempo = first.get("Q") or None
    return h


def slugify(title: str | None, max_len: int = 60) -> str:
    """A file-name friendly form of a title: 'The Enchanted Valley!' -> 'the-enchanted-valley'."""
    import unicodedata

    if not title:
        return "untitled"
    s = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode("ascii").lower()
    s = re.sub(r"[^a-z0-9]+", "-", s.replace("'", "")).strip("-")
    return s[:max_len].rstrip("-") or "untitled"


def tune_stem(tune: str, index: int) -> str:
    """The file name stem of a tune: its ``X:`` number (else its 1-based index) and slugged title.

    >>> tune_stem("X:1\\nT:The Enchanted Valley\\nK:G\\nGAB|", 1)
    '0001-the-enchanted-valley'
    """
    h = parse_header(tune)
    n = h.number if h.number is not None else index
    return f"{n:04d}-{slugify(h.title)}"


# -------------------------------------------------------------------------------------- bars
@dataclass(frozen=True)
class TextBar:
    """One bar of a tune's body as written: its line (1 = the tune's first line), its text, and
    whether it holds a note or rest (bars without notes are not bars to music21 either)."""

    line: int
    text: str
    has_notes: bool


def _strip_comment(line: str) -> str:
    # '%' starts a comment unless escaped ('\%').
    m = re.search(r"(?<!\\)%", line)
    return line[: m.start()] if m else line


def body_lines(tune: str) -> list[tuple[int, str]]:
    """The music lines of a tune (after the header, no field or comment lines), with line numbers.

    Comments are removed; inline fields such as ``[K:D]`` are kept.
    """
    h = parse_header(tune)
    out = []
    for i, raw in enumerate(tune.split("\n")[h.body_line - 1:], start=h.body_line):
        line = _strip_comment(raw).rstrip()
        if not line.strip() or _FIELD.match(line.strip()):
            continue
        out.append((i, line))
    return out


def text_bars(tune: str) -> list[TextBar]:
    """Split a tune's body into bars at barline tokens, skipping quoted text (chord symbols,
    annotations), ``!decorations!`` and inline fields. A bar that spans a line break is reported
    at the line where it starts."""
    bars: list[TextBar] = []
    cur: list[str] = []
    cur_line: int | None = None
    has_notes = False

    def close() -> None:
        nonlocal cur, cur_line, has_notes
        if cur_line is not None and "".join(cur).strip():
            bars.append(TextBar(cur_line, "".join(cur).strip(), has_notes))
        cur, cur_line, has_notes = [], None, False

    for lineno, line in body_lines(tune):
        if line.endswith("!") and line.count("!") % 2 == 1:  # the old ABC line-break mark
            line = line[:-1]
        i, n = 0, len(line)
        while i < n:
            c = line[i]
            if c in "\"!+":  # skip "text", !decoration!, +decoration+ (to the closing mark)
                j = line.find(c, i + 1)
                j = n - 1 if j < 0 else j
                cur.append(line[i:j + 1])
                cur_line = cur_line or lineno
                i = j + 1
                continue
            if c == "[":
                m = _INLINE_FIELD.match(line, i)
                if m:
                    cur.append(m.group(0))
                    cur_line = cur_line or lineno
                    i = m.end()
                    continue
            tok = next((t for t in BAR_TOKENS if line.startswith(t, i)), None)
            if tok is not None:
                close()
                i += len(tok)
                continue
            if c in _NOTE_LETTERS:
                has_notes = True
            if not c.isspace() or cur:
                cur.append(c)
                if not c.isspace():
                    cur_line = cur_line or lineno
            i += 1
        if cur:
            cur.append(" ")
    close()
    return bars


def count_bars(tune: str) -> int:
    """The number of bars with notes in a tune, counted from the text (fast; no music21)."""
    return sum(1 for b in text_bars(tune) if b.has_notes)


def ends_with_barline(tune: str) -> tuple[bool, int | None]:
    """Whether the tune's last music line ends with a barline, and that line's number."""
    lines = body_lines(tune)
    if not lines:
        return False, None
    lineno, last = lines[-1]
    return _ENDS_WITH_BAR.search(last.rstrip()) is not None, lineno


# ------------------------------------------------------------------------------------ tidying
def tidy_tune(tune: str, number: int | None = None) -> str:
    """Tidy one sampled tune so that ABC tools read it as the model meant it.

    - trailing white space and blank lines inside the tune are removed (a blank line ends a tune
      for most ABC tools);
    - header lines are put in order: ``X:`` first (numbered `number`, else kept, else 1), then the
      other header fields in their sampled order, ``K:`` last; repeated single-valued fields
      (``X M L Q K``) keep their first value;
    - a last music line cut off in the middle of a bar (sampling stopped there) is cut back to its
      last barline, or gets a final ``|]`` when it has none.
    """
    lines = [ln.rstrip() for ln in tune.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    header: list[tuple[str, str]] = []
    body: list[str] = []
    in_body = False
    for line in lines:
        if not line.strip():
            continue
        m = _FIELD.match(line.strip())
        if not in_body and m:
            header.append((m.group(1), m.group(2).strip()))
            if m.group(1) == "K":
                in_body = True
            continue
        if not in_body and line.lstrip().startswith("%"):
            continue
        in_body = True
        body.append(line)
    seen: set[str] = set()
    fields: list[tuple[str, str]] = []
    for letter, value in header:
        if letter in _SINGLE_FIELDS and letter in seen:
            continue
        seen.add(letter)
        fields.append((letter, value))
    x = next((v for k, v in fields if k == "X"), None)
    if number is not None:
        x = str(number)
    elif not x or not re.match(r"\s*\d+", x):
        x = "1"
    key = next((v for k, v in fields if k == "K"), None)
    out = [f"X:{x}"] + [f"{k}:{v}" for k, v in fields if k not in "XK"]
    if key is not None:
        out.append(f"K:{key}")
    # Field and comment lines after the last music line go; then a bar left unfinished at the
    # end of that line is cut back (or closed).
    while body and (_FIELD.match(body[-1].strip()) or body[-1].lstrip().startswith("%")):
        body.pop()
    if body:
        last = _strip_comment(body[-1]).rstrip()
        if _ENDS_WITH_BAR.search(last) is None:
            cut = max(last.rfind(t) + len(t) if last.rfind(t) >= 0 else -1
                      for t in ("|]", "||", ":|", "::", "|"))
            if cut > 0 and last[:cut].strip(" |:[]"):
                body[-1] = last[:cut].rstrip()
            elif last.strip():
                body[-1] = last + " |]"
            else:
                body.pop()
    return "\n".join(out + body)


def tidy_abc(text: str, renumber: bool = True) -> str:
    """Tidy every tune of sampled ABC text (see ``tidy_tune``); text before the first ``X:`` and
    tunes without any music are dropped. With `renumber`, tunes are numbered 1, 2, 3... so that
    each gets its own ``X:``. Tunes are separated by one blank line; the result ends with a
    newline (or is empty when no tune was found)."""
    tunes: list[str] = []
    for tune in split_tunes(text.replace("\r\n", "\n").replace("\r", "\n")):
        t = tidy_tune(tune, number=len(tunes) + 1 if renumber else None)
        if body_lines(t):
            tunes.append(t)
    return "\n\n".join(tunes) + ("\n" if tunes else "")


# ------------------------------------------------------------------------------ meter, unit
def parse_meter(text: str) -> Fraction | None:
    """The bar length of an ``M:`` value in whole notes ('6/8' -> 3/4, 'C' -> 1); None for free
    meter or anything unreadable."""
    t = text.strip()
    if t in ("C", "C|"):
        return Fraction(1)
    num, sep, den = t.partition("/")
    if sep and num.strip().isdigit() and den.strip().isdigit() and int(den) > 0 and int(num) > 0:
        return Fraction(int(num), int(den))
    return None


def parse_unit(text: str, bar: Fraction | None) -> Fraction:
    """The unit note length of an ``L:`` value; when absent or unreadable, ABC's default (1/16
    for a meter under 3/4, else 1/8)."""
    num, sep, den = text.strip().partition("/")
    if sep and num.isdigit() and den.isdigit() and int(den) > 0 and int(num) > 0:
        return Fraction(int(num), int(den))
    return Fraction(1, 16) if bar is not None and bar < Fraction(3, 4) else Fraction(1, 8)


def with_unit(header: str) -> str:
    """`header` (a prompt such as ``X:1\\nM:6/8\\nK:D\\n``) with ABC 2.1's default ``L:`` written
    out before its ``K:`` line when it has a ``K:`` line and no ``L:``; otherwise unchanged. Every
    training tune carries an ``L:`` (``music_headers``), and a tune without one fails the
    header check."""
    lines = header.split("\n")
    k_at = next((i for i, ln in enumerate(lines) if ln.startswith("K:")), None)
    if k_at is None or any(ln.startswith("L:") for ln in lines[:k_at]):
        return header
    meter = next((ln[2:] for ln in lines[:k_at] if ln.startswith("M:")), "")
    unit = parse_unit("", parse_meter(meter))
    return "\n".join([*lines[:k_at], f"L:{unit.numerator}/{unit.denominator}", *lines[k_at:]])


# ----------------------------------------------------------------------------- music headers
# Header fields that shape the music or name the tune, kept by ``music_headers`` in this order;
# the rest (book, source, notes, transcriber, composer, history, ...) are bibliography.
MUSIC_FIELDS = "XTMLQRPVK"
_SINGLE_FIELDS = "XMLQK"  # a repeat of one of these in a header is dropped (the first one counts)


def music_headers(tune: str) -> str:
    """`tune` with a header of the fields that shape the music, in one order, and its body as is.

    The header keeps X, T, M, L, Q, R, P, V and K fields and puts them in the order X, T (every
    title), M, L, then Q, R, P, V as written, K last; comment lines and bibliographic fields
    (B: book, Z: transcriber, N: notes, S: source, C: composer, ...) are dropped. A missing L: is
    written out with ABC 2.1's default (1/16 for a meter under 3/4, else 1/8). Training on this
    form spends the model on music, not on transcribers' e-mail addresses, and gives it one
    header order to learn. A tune without a K: line is returned unchanged.
    """
    lines = tune.split("\n")
    k_at = next((i for i, ln in enumerate(lines) if ln.startswith("K:")), None)
    if k_at is None:
        return tune
    fields: dict[str, list[str]] = {letter: [] for letter in MUSIC_FIELDS}
    for line in lines[: k_at + 1]:
        m = _FIELD.match(line.rstrip())
        if m is None or m.group(1) not in fields:
            continue
        letter, value = m.group(1), m.group(2).strip()
        if letter in _SINGLE_FIELDS and fields[letter]:
            continue
        fields[letter].append(value)
    if not fields["L"]:
        meter = fields["M"][0] if fields["M"] else ""
        unit = parse_unit("", parse_meter(meter))
        fields["L"].append(f"{unit.numerator}/{unit.denominator}")
    header = [f"{letter}:{value}" for letter in MUSIC_FIELDS for value in fields[letter]]
    return "\n".join(header + lines[k_at + 1 :])
