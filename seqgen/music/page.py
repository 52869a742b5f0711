"""One HTML page for a set of tunes: for each, its title, engraved score (inline SVG), an audio
player (or a MIDI link), its ABC text with a copy button, and seqgen's check verdict.

    from seqgen.music.page import build_page, write_page
    page = build_page(tunes, title="tunes.abc")        # tunes: one tune's text per item
    write_page("tunes.html", page.html)                # refuses to replace a page not seqgen's

The page is one file that works offline from disk: no script, style or font is fetched (the
script and style are inline, verovio's SVG carries its glyphs, audio and MIDI are data: URIs or
files beside the page). Every page carries GENERATOR, a meta tag that marks it as seqgen's.
"""

from __future__ import annotations

import base64
import html
import os
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from seqgen.errors import SeqgenError, UsageError
from seqgen.fileio import atomic_write_text

GENERATOR = '<meta name="generator" content="seqgen">'
AUDIO_HINT = ("no audio player: install a synthesizer and a General MIDI soundfont "
              "(apt-get install fluidsynth fluid-soundfont-gm) to hear the tunes on this page")
Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass
class PageTune:
    """What the page shows of one tune. `audio` and `midi` are URIs (data: or relative)."""

    abc: str
    title: str
    number: int | None = None
    facts: list[str] = field(default_factory=list)  # meter, key, rhythm, tempo, duration
    svg: str | None = None
    score_error: str | None = None
    verdict: str | None = None  # VALID / INVALID; None: not checked
    reasons: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    audio: str | None = None
    audio_mime: str = "audio/ogg"
    midi: str | None = None
    midi_name: str = "tune.mid"


@dataclass
class Page:
    html: str
    tunes: list[PageTune]

    @property
    def score_errors(self) -> int:
        return sum(t.score_error is not None for t in self.tunes)


# ------------------------------------------------------------------------------------ reading
def is_seqgen_page(path: str | os.PathLike) -> bool:
    """True when `path` is an HTML file seqgen wrote (it has the GENERATOR tag near its top)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096).decode("utf-8", "replace")
    except OSError:
        return False
    return GENERATOR in head


def write_page(path: str | os.PathLike, text: str) -> None:
    """Write a page atomically; UsageError when `path` is a file that is not a seqgen page (a
    page of yours is never replaced) or a directory."""
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{p}: is a directory; give a file name such as {p / 'index.html'}")
    if p.exists() and not is_seqgen_page(p):
        raise UsageError(f"{p}: exists and was not written by seqgen; refusing to replace it "
                         "(move it, or name another file with -o)")
    atomic_write_text(p, text)


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


# ----------------------------------------------------------------------------------- building
def build_page(tunes: list[str], title: str, *, names: list[str] | None = None,
               limits=None, jobs: int = 1, audio: str = "embed",
               audio_dir: str | os.PathLike | None = None,
               midi_links: list[str | None] | None = None,
               soundfont: str | os.PathLike | None = None,
               progress: Progress | None = None) -> Page:
    """The page of `tunes` (one tune's text per item), titled `title`.

    Each tune is checked and converted to MIDI (seqgen.music.convert, under `limits`, `jobs`
    workers) and engraved (seqgen.music.engrave). Audio, when a synthesizer is installed and
    `audio` is not "none": Ogg Vorbis, embedded as a data: URI ("embed"), or written into
    `audio_dir` as NAME.ogg and linked ("beside"; `names` gives each tune's file stem; a file
    already there is kept). Each tune's MIDI is linked (`midi_links`, else embedded); without a
    synthesizer the page says how to get audio. `progress(stage, done, total)` hears how far each stage is."""
    from seqgen.music.abc import parse_header
    from seqgen.music.convert import Limits, convert_tunes
    from seqgen.music.engrave import engrave_tunes

    if audio not in ("embed", "beside", "none"):
        raise UsageError(f"audio must be embed, beside or none, not {audio!r}")
    if audio == "beside" and (audio_dir is None or names is None):
        raise UsageError("audio beside the page needs audio_dir and names")
    say = progress or (lambda stage, done, total: None)
    n = len(tunes)
    limits = limits or Limits()
    page_tunes = []
    for i, t in enumerate(tunes):
        h = parse_header(t)
        stem = names[i] if names else f"tune_{i + 1}"
        page_tunes.append(PageTune(abc=t.strip() + "\n", title=h.title or f"Tune {i + 1}",
                                   number=h.number, midi_name=f"{stem}.mid"))
    midis: list[bytes | None] = [None] * n
    for r in convert_tunes(tunes, to="midi", limits=limits, jobs=jobs, check=True):
        pt, cr = page_tunes[r.index], r.check
        pt.facts = _facts(tunes[r.index], r.info)
        if cr is not None:
            pt.verdict = "VALID" if cr.valid else "INVALID"
            pt.reasons = list(cr.reasons)
        midis[r.index] = r.data if r.ok else None
        say("checked", r.index + 1, n)
    for e in engrave_tunes(tunes, jobs=jobs, timeout_s=limits.timeout_s, title=False):
        pt = page_tunes[e.index]
        pt.svg, pt.score_error, pt.warnings = e.svg, e.error, e.warnings
        say("engraved", e.index + 1, n)
    note = _add_audio(page_tunes, midis, audio, audio_dir, names, midi_links, soundfont,
                      jobs, say)
    return Page(render_page(page_tunes, title, note), page_tunes)


def _facts(text: str, info) -> list[str]:
    from seqgen.music.abc import parse_header

    h = parse_header(text)
    out = []
    if h.number is not None:
        out.append(f"X:{h.number}")
    rhythm = h.fields["R"][0] if h.fields.get("R") else None
    for label, value in (("rhythm", rhythm), ("meter", h.meter), ("key", h.key)):
        if value:
            out.append(f"{label} {value}")
    if info is not None and info.tempo:
        out.append(f"played {info.tempo}")
    if info is not None and info.seconds:
        s = int(round(info.seconds))
        out.append(f"{s // 60}:{s % 60:02d} with repeats")
    return out


def _add_audio(page_tunes: list[PageTune], midis: list[bytes | None], audio: str,
               audio_dir, names, midi_links, soundfont, jobs: int,
               say: Progress) -> str | None:
    """Fill in each tune's audio (or MIDI link); returns the page's note about audio."""
    from seqgen.music.audio import render_audio
    from seqgen.music.convert import require_synth

    for pt, midi, link in zip(page_tunes, midis, midi_links or [None] * len(midis), strict=True):
        if link:
            pt.midi = link
        elif midi is not None:
            pt.midi = data_uri(midi, "audio/midi")
    if audio == "none":
        return None
    try:
        require_synth(soundfont)
    except UsageError:
        raise
    except SeqgenError:
        return AUDIO_HINT
    todo = [(i, m) for i, m in enumerate(midis) if m is not None]

    def one(i: int, midi: bytes) -> tuple[int, str | None]:
        if audio == "beside":  # made once: tunes beside a page are added, never changed
            path = Path(audio_dir) / f"{names[i]}.ogg"
            if not path.is_file():
                render_audio(midi, path, "ogg", soundfont, mono=True)
            return i, path.name
        with tempfile.TemporaryDirectory(prefix="seqgen-page-") as d:
            path = Path(d) / "tune.ogg"
            render_audio(midi, path, "ogg", soundfont, mono=True)
            return i, data_uri(path.read_bytes(), "audio/ogg")

    failed = 0
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(one, i, m) for i, m in todo]
        for k, fut in enumerate(futures):
            try:
                i, uri = fut.result()
                page_tunes[i].audio = uri
            except SeqgenError as e:
                failed += 1
                page_tunes[todo[k][0]].warnings.append(f"no audio: {e}")
            say("audio", k + 1, len(todo))
    return f"audio could not be made for {failed} tune(s) (see their notes)" if failed else None


# ---------------------------------------------------------------------------------- rendering
_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;
max-width:60rem;padding:1rem 1.5rem;color:#222;background:#fff;line-height:1.4}
h1{font-size:1.6rem;margin:.5rem 0}h2{font-size:1.3rem;margin:0 0 .2rem}
.summary,.facts{color:#555}.facts{font-size:.9rem;margin:0 0 .5rem}
nav ol{columns:2;font-size:.95rem}.tune{border-top:1px solid #ccc;padding:1rem 0}
.score svg{width:100%;height:auto;max-width:840px;display:block}
.error{color:#a00;background:#fee;padding:.5rem;white-space:pre-wrap}
audio{width:100%;max-width:30rem;display:block;margin:.5rem 0}
.verdict{font-weight:bold}.VALID{color:#070}.INVALID{color:#a00}
ul.reasons,ul.warnings{margin:.2rem 0 .5rem;font-size:.9rem}ul.warnings{color:#865}
pre.abc{background:#f6f6f6;padding:.5rem;overflow-x:auto;font-size:.85rem}
button.copy{font:inherit;font-size:.85rem;padding:.1rem .6rem;cursor:pointer}
.note{background:#ffd;padding:.4rem .6rem}
"""

_SCRIPT = """
document.querySelectorAll("button.copy").forEach(function (b) {
  b.addEventListener("click", function () {
    var text = document.getElementById(b.dataset.for).textContent;
    function done() { b.textContent = "Copied"; setTimeout(function () {
      b.textContent = "Copy ABC"; }, 1500); }
    function fallback() { var t = document.createElement("textarea"); t.value = text;
      document.body.appendChild(t); t.select(); try { document.execCommand("copy"); done(); }
      catch (e) {} document.body.removeChild(t); }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, fallback); } else { fallback(); }
  });
});
"""


def render_page(tunes: list[PageTune], title: str, note: str | None = None) -> str:
    """The HTML of a page (see the module's docstring)."""
    esc = html.escape
    valid = sum(t.verdict == "VALID" for t in tunes)
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">', GENERATOR,
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title>", f"<style>{_STYLE}</style>", "</head>", "<body>",
        f"<h1>{esc(title)}</h1>",
        f'<p class="summary">{len(tunes)} tune{"s" if len(tunes) != 1 else ""}, {valid} VALID '
        "by seqgen's check.</p>",
    ]
    if note:
        parts.append(f'<p class="note">{esc(note)}</p>')
    if len(tunes) > 1:
        parts.append("<nav><ol>" + "".join(
            f'<li><a href="#tune-{k + 1}">{esc(t.title)}</a></li>' for k, t in enumerate(tunes))
            + "</ol></nav>")
    for k, t in enumerate(tunes):
        parts.append(_tune_html(k + 1, t))
    parts += [f"<script>{_SCRIPT}</script>", "</body>", "</html>", ""]
    return "\n".join(parts)


def _tune_html(k: int, t: PageTune) -> str:
    esc = html.escape
    out = [f'<section class="tune" id="tune-{k}">', f"<h2>{esc(t.title)}</h2>"]
    if t.facts:
        out.append(f'<p class="facts">{esc(" · ".join(t.facts))}</p>')
    if t.svg is not None:
        out.append(f'<div class="score">{t.svg}</div>')
    else:
        out.append(f'<p class="error score-error">No score: {esc(t.score_error or "")}</p>')
    if t.audio is not None:
        out.append(f'<audio controls preload="none" src="{esc(t.audio)}" '
                   f'type="{t.audio_mime}"></audio>')
    if t.midi is not None:
        out.append(f'<p class="midi"><a href="{esc(t.midi)}" download="{esc(t.midi_name)}">'
                   "MIDI file</a></p>")
    if t.verdict is not None:
        out.append(f'<p class="verdict {t.verdict}">{t.verdict}</p>')
    if t.reasons:
        out.append('<ul class="reasons">' + "".join(f"<li>{esc(r)}</li>" for r in t.reasons)
                   + "</ul>")
    if t.warnings:
        out.append('<ul class="warnings">' + "".join(
            f"<li>score: {esc(w)}</li>" for w in t.warnings) + "</ul>")
    out += [f'<details open><summary>ABC</summary><pre class="abc" id="abc-{k}">'
            f"{esc(t.abc)}</pre>",
            f'<button class="copy" type="button" data-for="abc-{k}">Copy ABC</button>'
            "</details>", "</section>"]
    return "\n".join(out)
