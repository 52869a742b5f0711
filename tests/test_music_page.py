"""The HTML page of tunes: its content, audio or MIDI links, the refusal to replace pages that
are not seqgen's, and the page as a real browser (headless Chromium) renders it offline."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from seqgen.errors import UsageError
from seqgen.music import convert
from seqgen.music.page import AUDIO_HINT, GENERATOR, build_page, is_seqgen_page, write_page

GOOD = ["X:1\nT:First Jig\nR:jig\nM:6/8\nL:1/8\nK:G\n|:GAB c2d|e3 d2B:|\n",
        "X:2\nT:Second Reel\nR:reel\nM:C|\nL:1/8\nK:D\nA2FA dAFA|B2GB dBGB|]\n"]
BAD = "X:3\nT:No Music\nM:6/8\nL:1/8\nK:G\n"  # verovio draws nothing; the check fails it
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _no_synth(monkeypatch):
    monkeypatch.setattr(convert, "find_synth", lambda: None)


def test_page_shows_each_tune_and_the_bad_one_by_its_error(monkeypatch):
    _no_synth(monkeypatch)
    page = build_page(GOOD + [BAD], "three tunes")
    html = page.html
    assert GENERATOR in html and html.count('<section class="tune"') == 3
    assert html.count('<div class="score"><svg') == 2
    assert "No score: verovio drew no notes for this tune" in html and page.score_errors == 1
    assert html.count('class="verdict VALID"') == 2 and html.count('class="verdict INVALID"') == 1
    assert html.count('<button class="copy"') == 3 and "navigator.clipboard" in html
    assert "First Jig" in html and "jig: 116 dotted quarters a minute (R:)" in html
    # no audio without a synthesizer: a MIDI file to download and one line saying how
    assert "<audio" not in html and AUDIO_HINT in html
    assert html.count('href="data:audio/midi;base64,') == 2
    # nothing fetched from the network: no http(s) URL but the SVG namespaces
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", html))
    assert urls <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}
    assert "<script src" not in html and "@import" not in html and "<link" not in html


def test_write_page_refuses_a_page_that_is_not_seqgens(tmp_path, monkeypatch):
    _no_synth(monkeypatch)
    mine = tmp_path / "mine.html"
    mine.write_text("<html><body>my notes</body></html>")
    html = build_page(GOOD[:1], "one").html
    with pytest.raises(UsageError, match="was not written by seqgen"):
        write_page(mine, html)
    assert mine.read_text() == "<html><body>my notes</body></html>"
    ours = tmp_path / "ours.html"
    write_page(ours, html)
    write_page(ours, html)  # a seqgen page is replaced
    assert is_seqgen_page(ours) and not is_seqgen_page(mine)
    with pytest.raises(UsageError, match="is a directory"):
        write_page(tmp_path, html)


@pytest.mark.slow  # fluidsynth loads a 140 MB soundfont per tune
@pytest.mark.skipif(convert.find_synth() is None or convert.find_soundfont() is None,
                    reason="no synthesizer with a General MIDI soundfont installed")
def test_audio_embedded_or_beside(tmp_path):
    import base64
    import io

    import soundfile as sf

    html = build_page(GOOD, "audio").html
    srcs = re.findall(r'<audio controls preload="none" src="data:audio/ogg;base64,([^"]+)"', html)
    assert len(srcs) == 2
    data, rate = sf.read(io.BytesIO(base64.b64decode(srcs[0])))
    assert data.ndim == 1 and len(data) / rate > 3  # mono, the jig twice through: 4.1 s
    build_page(GOOD, "beside", audio="beside", audio_dir=tmp_path, names=["a", "b"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.ogg", "b.ogg"]


def _chromium(args: list[str], url: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args, url],
                              capture_output=True, timeout=120, check=False)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install "
                    "chromium)")
def test_the_page_in_a_real_browser(tmp_path, monkeypatch):
    from PIL import Image

    _no_synth(monkeypatch)
    page = tmp_path / "page.html"
    write_page(page, build_page(GOOD + [BAD], "in a browser").html)
    url = page.resolve().as_uri()
    dom = _chromium(["--dump-dom"], url)
    assert dom.returncode == 0, dom.stderr[-500:]
    text = dom.stdout.decode()
    sections = re.findall(r'<section class="tune".*?</section>', text, re.S)
    assert len(sections) == 3
    for s in sections[:2]:  # one score and one player (here: the MIDI link) per tune
        assert s.count('<div class="score"><svg') == 1 and s.count('class="midi"') == 1
    assert "No score" in sections[2]
    shot = tmp_path / "shot.png"
    r = _chromium([f"--screenshot={shot}", "--window-size=1000,1200"], url)
    assert r.returncode == 0 and shot.is_file(), r.stderr[-500:]
    with Image.open(shot) as im:
        colours = im.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is None or len(colours) > 50  # not blank: text, staves, notes


def test_a_page_works_from_disk_without_the_network(tmp_path, monkeypatch):
    """The page's files are all in the page (or beside it): nothing relative is missing."""
    _no_synth(monkeypatch)
    page = tmp_path / "p.html"
    write_page(page, build_page(GOOD, "offline").html)
    refs = re.findall(r'(?:src|href)="([^"#][^"]*)"', page.read_text())
    assert refs and all(r.startswith("data:") for r in refs)
    assert Path(page).stat().st_size < 400_000
