"""`seqgen convert --to svg|png|pdf|html|flac|ogg`, directories of tunes, and the page that
`seqgen sample --out DIR` keeps, through the CLI."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from seqgen.cli.app import app
from seqgen.music import convert, engrave

JIG = "X:1\nT:Jig One\nR:jig\nM:6/8\nL:1/8\nK:G\n|:GAB c2d|e3 d2B:|\n"
REEL = "X:2\nT:Reel Two\nR:reel\nM:C|\nL:1/8\nK:D\nA2FA dAFA|B2GB dBGB|]\n"
EMPTY = "X:3\nT:Nothing\nM:6/8\nL:1/8\nK:G\n"


def run(*args):
    return CliRunner().invoke(app, list(args))


def test_one_tune_to_svg(tmp_path):
    (tmp_path / "one.abc").write_text(JIG)
    r = run("convert", str(tmp_path / "one.abc"), "--to", "svg")
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == str(tmp_path / "one.svg")
    assert (tmp_path / "one.svg").read_text().lstrip().startswith("<svg")


def test_a_directory_of_abc_files(tmp_path):
    d = tmp_path / "tunes"
    d.mkdir()
    (d / "a.abc").write_text(JIG)
    (d / "b.abc").write_text(REEL)
    r = run("convert", str(d), "--to", "svg")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "tunes-svg").iterdir()) == [
        "0001-jig-one.svg", "0002-reel-two.svg"]
    r = run("abc2midi", str(d), "-o", str(tmp_path / "mid"))
    assert r.exit_code == 0 and len(list((tmp_path / "mid").iterdir())) == 2


def test_page_with_a_tune_verovio_cannot_draw(tmp_path, monkeypatch):
    monkeypatch.setattr(convert, "find_synth", lambda: None)  # no audio: MIDI links
    src = tmp_path / "three.abc"
    src.write_text("\n".join([JIG, EMPTY, REEL]))
    r = run("convert", str(src), "--to", "html")
    assert r.exit_code == 1
    assert "1 of 3 tunes have no score" in r.stderr and "Traceback" not in r.output
    html = (tmp_path / "three.html").read_text()
    assert html.count('<section class="tune"') == 3 and "No score: verovio drew no" in html
    assert "apt-get install fluidsynth" in html
    mine = tmp_path / "mine.html"
    mine.write_text("<p>my page</p>")
    r = run("convert", str(src), "--to", "html", "-o", str(mine))
    assert r.exit_code == 2 and "was not written by seqgen" in r.stderr
    assert mine.read_text() == "<p>my page</p>"


def test_png_without_cairo_is_one_line_and_svg_still_works(tmp_path, monkeypatch):
    def missing():
        raise engrave.CairoMissing(engrave.CAIRO_HINT)

    monkeypatch.setattr(engrave, "require_cairo", missing)
    (tmp_path / "one.abc").write_text(JIG)
    r = run("convert", str(tmp_path / "one.abc"), "--to", "png")
    assert r.exit_code == 1 and "apt-get install libcairo2" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "one.png").exists()
    assert run("convert", str(tmp_path / "one.abc"), "--to", "svg").exit_code == 0


def test_bad_instrument_and_tempo_are_usage_errors(tmp_path):
    (tmp_path / "one.abc").write_text(JIG)
    r = run("convert", str(tmp_path / "one.abc"), "--to", "midi", "--instrument", "kazoo")
    assert r.exit_code == 2 and "--instrument: unknown instrument 'kazoo'" in r.stderr
    r = run("abc2midi", str(tmp_path / "one.abc"), "--tempo", "0")
    assert r.exit_code == 2 and "--tempo must be between 1 and 1000" in r.stderr


@pytest.mark.slow  # samples from the shipped model, checks and engraves the tunes
def test_sample_out_writes_a_page_and_says_to_open_it(tmp_path, monkeypatch):
    monkeypatch.setattr(convert, "find_synth", lambda: None)
    out = tmp_path / "tunes"
    r = run("sample", "default", "--tunes", "2", "--out", str(out), "--seed", "1")
    assert r.exit_code == 0, r.output
    assert f"open {out / 'index.html'}" in r.stderr
    assert len(re.findall('<section class="tune"', (out / "index.html").read_text())) == 2
    r = run("sample", "default", "--tunes", "1", "--out", str(out), "--seed", "2")
    assert r.exit_code == 0, r.output
    html = (out / "index.html").read_text()
    assert len(re.findall('<section class="tune"', html)) == 3  # every tune in DIR
    assert 'href="tune_03.mid"' in html
