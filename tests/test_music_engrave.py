"""Engraved scores (verovio): what is drawn as written, the ABC verovio's reader cannot take,
its warnings, one bad tune among good ones, PNG and PDF; dance tempos and instruments."""

from __future__ import annotations

import builtins
import re

import pytest

from seqgen.cli.console import message
from seqgen.errors import UsageError
from seqgen.music import engrave
from seqgen.music.engrave import (
    CairoMissing,
    engrave_svg,
    engrave_tunes,
    key_signature,
    prepare,
    svg_to,
)

# A jig as irish.abc writes it: the old line-break mark '!' at each line's end (verovio's reader
# aborts the whole process on it), first and second endings, a tie, a key change.
JIG = """X:7
T:The Test Jig
R:jig
M:6/8
L:1/8
K:G
|:GAB c2d|e3- ed B|[1 GAB c2d:|[2 BAG G3||!
K:D
|:fed A2d|fed A2d|1 fed c2A:|2 fed d3|]!
"""


def _classes(svg: str, name: str) -> int:
    return len(re.findall(rf'class="{name}\b', svg))


def test_drawn_as_written_title_meter_key_repeats_endings_ties():
    e = engrave_svg(JIG)
    assert e.ok, e.error
    svg = e.svg
    assert "The Test Jig" in svg
    assert _classes(svg, "meterSig") >= 1
    assert _classes(svg, "keySig") >= 2  # G at the start, D at the change
    assert _classes(svg, "ending") == 4  # [1 [2 |1 |2
    assert set(re.findall(r">\s*([12])\.\s*<", svg)) == {"1", "2"}  # labels 1. and 2.
    assert _classes(svg, "tie") == 1
    assert 'right="rptend"' not in svg and _classes(svg, "barLine") >= 8
    assert svg.lstrip().startswith("<svg") and "http://" not in svg.replace(
        'xmlns="http://www.w3.org/2000/svg"', "").replace(
        'xmlns:xlink="http://www.w3.org/1999/xlink"', "")


def test_prepare_keeps_lines_and_removes_what_verovio_cannot_read():
    text, notes = prepare(JIG)
    assert "!" not in text  # the line-break marks, silently (they are ABC)
    assert "[r:seqgen-ending 1]" in text and "[r:seqgen-key D]" in text
    assert "R:" not in text  # not drawn
    text, notes = prepare('X:1\nT:t\nM:2/4\nL:1/8\nK:C\n"Am cd ef|+trill+g2 ::a2 !x|]\n')
    assert notes == ["line 6: a '\"' without its closing '\"' was left out",
                     "line 6: a '!' without its closing '!' was left out"]
    assert "!trill!g2" in text and ":||:" in text
    # no barlines at all (line ends are bars): each line gets one; notes after the last
    # barline get one too (verovio would drop them)
    assert prepare("X:1\nM:none\nK:C\nCDE\nFGA\n")[0].endswith("CDE |\nFGA |\n")
    assert prepare("X:1\nM:2/4\nK:C\nCD EF|GA B\n")[0].endswith("GA B |\n")
    assert "[E3A3]" in prepare("X:1\nM:6/8\nK:A\n+E3A3+ cBA|\n")[0]  # an ABC 1.6 chord


def test_verovio_warnings_are_returned_not_printed(capfd):
    e = engrave_svg("X:1\nT:w\nM:2/4\nL:1/8\nK:C\n!wibble!c2 d2|e4)|]\n", timeout_s=None)
    assert e.ok
    assert "verovio: Decoration wibble not supported" in e.warnings
    assert "verovio: a ')' that closes no slur is not drawn" in e.warnings
    assert capfd.readouterr().err == ""


def test_one_tune_verovio_cannot_draw_leaves_the_others():
    good = "X:1\nT:a\nM:2/4\nL:1/8\nK:C\nCD EF|G4|]\n"
    results = list(engrave_tunes([good, "X:2\nT:empty\nM:2/4\nK:C\n", good], jobs=2))
    assert [r.ok for r in results] == [True, False, True]
    assert "verovio drew no notes" in results[1].error
    # ids differ between the scores of one run (they share one page)
    ids = [set(re.findall(r'id="([^"]+)"', r.svg)) for r in (results[0], results[2])]
    assert not ids[0] & ids[1]


def test_a_worker_that_dies_is_an_error_for_that_tune_only(monkeypatch):
    import os
    import signal

    def die(tune, seed, title):
        if "boom" in tune:
            os.kill(os.getpid(), signal.SIGKILL)  # as verovio's abort() ends a worker
        return {"svg": "<svg/>", "warnings": []}

    monkeypatch.setattr(engrave, "_engrave_worker", die)
    results = list(engrave_tunes(["X:1\nT:ok\nK:C\nC|", "X:2\nT:boom\nK:C\nC|"]))
    assert results[0].ok and results[1].error == "verovio stopped on this tune (it cannot read it)"


def test_key_signatures():
    assert [key_signature(k) for k in ("D", "G Major", "Ador", "Em", "Bb", "F#m", "Dmix",
                                       "Cb", "none")] == [
        "2s", "1s", "1s", "1s", "2f", "3s", "1s", "7f", None]


def test_png_and_pdf(tmp_path):
    pytest.importorskip("cairosvg")
    svg = engrave_svg(JIG).svg
    svg_to(svg, tmp_path / "t.png")
    svg_to(svg, tmp_path / "t.pdf")
    svg_to(svg, tmp_path / "t.svg")
    assert (tmp_path / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "t.pdf").read_bytes()[:5] == b"%PDF-"
    assert (tmp_path / "t.svg").read_text() == svg
    with pytest.raises(UsageError):
        svg_to(svg, tmp_path / "t.gif")


def test_without_cairo_png_says_what_to_install(tmp_path, monkeypatch):
    real = builtins.__import__

    def no_cairo(name, *a, **k):
        if name.startswith("cairosvg") or name.startswith("cairocffi"):
            raise OSError("no library called \"cairo-2\" was found")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_cairo)
    with pytest.raises(CairoMissing, match="apt-get install libcairo2"):
        svg_to("<svg/>", tmp_path / "t.png")
    assert not (tmp_path / "t.png").exists()
    svg_to("<svg/>", tmp_path / "t.svg")  # SVG needs no Cairo


# ------------------------------------------------------------------------ tempo, instruments
def test_dance_tempos():
    from seqgen.music.tempo import choose_tempo, dance_of

    head = "X:1\n{r}M:{m}\nL:{l}\nK:D\n"
    jig = choose_tempo(head.format(r="R:Double jig\n", m="6/8", l="1/8"))
    assert (jig.qpm, jig.source) == (174.0, "R:jig")  # 116 dotted quarters
    assert jig.describe() == "jig: 116 dotted quarters a minute (R:)"
    reel = choose_tempo(head.format(r="", m="C|", l="1/8"))
    assert (reel.qpm, reel.source) == (224.0, "M:C|")  # 112 half notes, from the meter
    # a reel written in sixteenths runs its notes as fast: half the quarter notes a minute
    assert choose_tempo(head.format(r="R:reel\n", m="2/4", l="1/16")).qpm == 112.0
    assert choose_tempo("X:1\nQ:1/4=90\nR:reel\nM:C|\nK:D\n").source == "Q:"
    assert choose_tempo("X:1\nQ:1/4=90\nK:D\n", override=60).qpm == 60
    assert choose_tempo("X:1\nM:5/4\nK:D\n").qpm == 120.0
    assert [dance_of(r).name for r in ("Slip Jig", "set dance", "Polkas", "barndance")] == [
        "slip jig", "hornpipe", "polka", "schottische"]
    assert dance_of("unknown") is None
    with pytest.raises(UsageError) as e:
        choose_tempo("X:1\nK:D\n", override=0)
    assert (e.value.field, message(e.value)) == (
        "tempo", "--tempo must be between 1 and 1000 quarter notes a minute, not 0")


def test_tempo_override_and_instrument_reach_the_midi(tmp_path):
    from music21 import midi

    from seqgen.music.convert import Limits, abc_to_midi

    tune = "X:1\nT:t\nQ:1/4=200\nM:2/4\nL:1/8\nK:C\nCDEF|G4|]\n"
    info = abc_to_midi(tune, tmp_path / "t.mid", Limits(tempo=60, instrument="flute"))
    assert info.qpm == 60 and info.seconds == pytest.approx(4.0)
    mf = midi.MidiFile()
    mf.open(str(tmp_path / "t.mid"))
    mf.read()
    mf.close()
    programs = [e.data for t in mf.tracks for e in t.events
                if e.type == midi.ChannelVoiceMessages.PROGRAM_CHANGE]
    assert programs and set(programs) == {73}  # General MIDI flute, 0-based
    assert abc_to_midi(tune, tmp_path / "u.mid").qpm == 200  # Q: when no override


def test_instruments_and_compression(tmp_path):
    import wave

    import numpy as np
    import soundfile as sf

    from seqgen.music.audio import compress_wav, program_of

    assert (program_of("fiddle"), program_of("Tin whistle".split()[-1]), program_of("1")) == (
        40, 78, 0)
    with pytest.raises(UsageError) as e:
        program_of("kazoo")
    assert e.value.field == "instrument"
    assert message(e.value).startswith("--instrument: unknown instrument 'kazoo'; use one of")
    t = np.arange(44100) / 44100
    x = (np.sin(2 * np.pi * 440 * t) * 12000).astype("<i2")
    with wave.open(str(tmp_path / "a.wav"), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(44100)
        w.writeframes(np.repeat(x, 2).tobytes())
    compress_wav(tmp_path / "a.wav", tmp_path / "a.flac", "flac")
    compress_wav(tmp_path / "a.wav", tmp_path / "a.ogg", "ogg", mono=True)
    flac, _ = sf.read(str(tmp_path / "a.flac"), always_2d=True)
    ogg, rate = sf.read(str(tmp_path / "a.ogg"), always_2d=True)
    assert flac.shape == (44100, 2) and ogg.shape[1] == 1 and rate == 44100
    assert (tmp_path / "a.ogg").stat().st_size < (tmp_path / "a.wav").stat().st_size / 10


def test_a_whole_tune_compresses_in_a_thread(tmp_path):
    """libvorbis's stack use grows with one write: a minute of audio written at once crashed a
    page's audio thread (segmentation fault); written in blocks it does not."""
    import subprocess
    import sys

    code = f"""
import wave, numpy as np
from concurrent.futures import ThreadPoolExecutor
from seqgen.music.audio import compress_wav
x = (np.random.default_rng(0).standard_normal(44100 * 60 * 2) * 3000).astype("<i2")
with wave.open({str(tmp_path / "long.wav")!r}, "wb") as w:
    w.setnchannels(2); w.setsampwidth(2); w.setframerate(44100); w.writeframes(x.tobytes())
with ThreadPoolExecutor(1) as pool:
    pool.submit(compress_wav, {str(tmp_path / "long.wav")!r}, {str(tmp_path / "long.ogg")!r},
                "ogg", True).result()
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr.decode()[-500:]
    assert (tmp_path / "long.ogg").stat().st_size > 100_000
