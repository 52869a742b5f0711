"""ABC -> MIDI through music21: repeats, endings, pickups, tuplets, chords, grace notes, key and
meter changes, read back from the MIDI file; the checks; limits and robustness of the workers."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seqgen.errors import DataError
from seqgen.music.convert import (
    ConversionError,
    Limits,
    abc_to_midi,
    check_tune,
    convert_tune,
    convert_tunes,
)

HEAD = "X:1\nT:{title}\nM:{meter}\nL:1/8\nK:{key}\n"

# A jig in the usual Irish style: two parts, each closed by ':|' with no '|:' anywhere.
JIG = HEAD.format(title="Jig", meter="6/8", key="G") + (
    "GAB c2d|e3 d2B|GAB c2d|B3 G3:|\n"
    "Bcd e2f|g3 f2e|dcB A2G|G3 G3:|\n"
)
# A reel with first and second endings, then a B part after '||' repeated from there.
REEL = HEAD.format(title="Reel", meter="C", key="D") + (
    "|:A2FA dAFA|B2GB dBGB|[1 ABAF GFEF:|[2 ABcd e4||\n"
    "fdfa gfed|cABc d4:|\n"
)
# A pickup: the last bar is short by the pickup's length; a repeat goes back to the start.
PICKUP = HEAD.format(title="Pickup", meter="6/8", key="D") + "A|d2A F2A|d3 d2:|\n"
# Tuplets, a chord and a grace note; Q: sets the tempo.
ORNAMENTS = "X:1\nT:Ornaments\nM:2/4\nL:1/8\nQ:1/4=60\nK:C\n(3cde f2|[CEG]2 {g}f2|c4|]\n"
# A key change (B becomes B flat) and a meter change on their own lines after ':|'.
CHANGES = HEAD.format(title="Changes", meter="2/4", key="G") + (
    "GABc|dedB:|\nM:3/4\nK:F\nB2 B2 B2|A2 G2 F2|]\n"
)


def read_midi(path) -> tuple[list[tuple[Fraction, int, Fraction]], Fraction, list[float]]:
    """(onset, MIDI pitch, length) of every note, in quarter notes; the end; the tempi (q/min)."""
    from music21 import midi

    mf = midi.MidiFile()
    mf.open(str(path))
    mf.read()
    mf.close()
    tpq = mf.ticksPerQuarterNote
    notes, end, tempi = [], Fraction(0), []
    for track in mf.tracks:
        t, on = 0, {}
        for e in track.events:
            if isinstance(e, midi.DeltaTime):
                t += e.time
                continue
            if e.type == midi.MetaEvents.SET_TEMPO:
                tempi.append(round(60_000_000 / int.from_bytes(e.data, "big"), 3))
            elif e.type == midi.ChannelVoiceMessages.NOTE_ON and e.velocity > 0:
                on.setdefault(e.pitch, []).append(t)
            elif e.type in (midi.ChannelVoiceMessages.NOTE_OFF, midi.ChannelVoiceMessages.NOTE_ON):
                s = on[e.pitch].pop(0)
                notes.append((Fraction(s, tpq), e.pitch, Fraction(t - s, tpq)))
                end = max(end, Fraction(t, tpq))
    return sorted(notes), end, tempi


def test_jig_repeats_each_part_from_its_own_start(tmp_path):
    info = abc_to_midi(JIG, tmp_path / "jig.mid")
    notes, end, tempi = read_midi(tmp_path / "jig.mid")
    # written: 8 bars of 6/8 = 24 quarters; played: each part twice = 48 (music21's own
    # expansion would jump from the second ':|' back to the start of the tune)
    assert (info.written_ql, info.played_ql) == (24, 48)
    assert end == 48 and len(notes) == info.played_notes == 2 * info.notes == 60
    assert [p for _, p, _ in notes[:5]] == [67, 69, 71, 72, 74]  # G A B c d
    part_a = [p for _, p, _ in notes[:15]]
    assert [p for _, p, _ in notes[15:30]] == part_a  # A again, not B
    assert notes[30][1] == 71 and notes[45][1] == 71  # then B (starting on B) twice
    # no Q: and no R:: a 6/8 tune plays as a jig, 116 dotted quarters (174 quarters) a minute
    assert tempi == [174.0] and info.seconds == pytest.approx(48 * 60 / 174)


def test_reel_first_and_second_endings(tmp_path):
    abc_to_midi(REEL, tmp_path / "reel.mid")
    notes, end, _ = read_midi(tmp_path / "reel.mid")
    # A part: 2 bars + ending 1, 2 bars + ending 2 = 6 bars; B part twice = 4 bars; 4/4 bars
    assert end == 40
    bar_starts = {on: p for on, p, _ in notes if on % 4 == 0}
    assert bar_starts[8] == 69 and bar_starts[20] == 69  # endings both start on A...
    second = sorted(p for on, p, _ in notes if 20 <= on < 24)
    assert second == sorted([69, 71, 73, 74, 76])  # ...ending 2 is ABcd e4, not ABAF GFEF
    assert bar_starts[24] == 78 and bar_starts[32] == 78  # B part (from f) twice


def test_pickup_is_played_again_with_its_section(tmp_path):
    info = abc_to_midi(PICKUP, tmp_path / "p.mid")
    notes, end, _ = read_midi(tmp_path / "p.mid")
    assert info.written_ql == 6 and end == 12
    assert notes[0] == (0, 69, Fraction(1, 2))  # the pickup A, an eighth


def test_tuplets_chords_grace_notes_and_tempo(tmp_path):
    info = abc_to_midi(ORNAMENTS, tmp_path / "o.mid")
    notes, end, tempi = read_midi(tmp_path / "o.mid")
    third = Fraction(1, 3)
    assert notes[:3] == [(0, 72, third), (third, 74, third), (2 * third, 76, third)]
    chord = [p for on, p, _ in notes if on == 2]
    assert sorted(chord) == [60, 64, 67]
    assert 91 not in [p for _, p, _ in notes]  # the grace note g is not played
    assert end == 6 and tempi == [60.0] and info.seconds == pytest.approx(6.0)
    assert info.notes == 7  # c d e f, the chord, f, c


def test_key_and_meter_change_on_their_own_lines(tmp_path):
    abc_to_midi(CHANGES, tmp_path / "c.mid")
    notes, end, _ = read_midi(tmp_path / "c.mid")
    assert end == 4 * 2 + 3 * 2  # two 2/4 bars twice, then two 3/4 bars
    assert notes[-6][1] == 70  # B flat after K:F
    result = check_tune(CHANGES)
    assert result.valid and result.metrical_share == 1.0


def test_annotations_and_inline_fields_do_not_lose_notes(tmp_path):
    # music21 alone drops a note with a '">"' annotation and reads '[M:3/4]' as a chord
    tune = HEAD.format(title="Annotated", meter="2/4", key="G") + (
        '">"DE FG|">"e2 "^hi"A2|[M:3/4] B2 c2 d2|]\n')
    info = abc_to_midi(tune, tmp_path / "a.mid")
    notes, end, _ = read_midi(tmp_path / "a.mid")
    assert [p for _, p, _ in notes[:4]] == [62, 64, 66, 67]  # D E F# G
    assert info.notes == 9 and end == 2 + 2 + 3
    assert check_tune(tune).metrical_share == 1.0
    # ... and drops a note after the fermata shorthand H, and an invisible rest x with its length
    tune2 = HEAD.format(title="Fermata", meter="2/4", key="G") + "GA HB2|x2 HG2|]\n"
    info2 = abc_to_midi(tune2, tmp_path / "b.mid")
    notes2, end2, _ = read_midi(tmp_path / "b.mid")
    assert [p for _, p, _ in notes2] == [67, 69, 71, 67] and end2 == 4 and info2.notes == 4
    # ... and ignores a broken rhythm before a slur
    tune3 = HEAD.format(title="Dotted", meter="2/4", key="G") + "Bd g>(a|b)c d2|]\n"
    abc_to_midi(tune3, tmp_path / "c.mid")
    notes3, _, _ = read_midi(tmp_path / "c.mid")
    assert [d for _, _, d in notes3[2:4]] == [Fraction(3, 4), Fraction(1, 4)]


def test_check_valid_and_invalid_tunes_with_line_numbers():
    assert check_tune(JIG).valid
    bad = HEAD.format(title="Bad", meter="6/8", key="G") + (
        "GAB c2d|e3 d2B|GAB c2d e2|B3 G3|\n"
        "Bcd e2f|g3 f2e|dcB A2 J|G3 G3\n"
    )
    r = check_tune(bad)
    assert not r.valid and r.headers_ok
    assert not r.converts and not r.ends_with_barline
    text = "\n".join(r.reasons)
    assert "line 6: bar 3 'GAB c2d e2' is over-full: 1/1 where the meter wants 3/4" in text
    assert "line 7: 'J' is not a note" in text
    assert "line 7: the tune does not end with a barline" in text
    assert r.metrical_share == pytest.approx(7 / 8)


def test_check_headers_and_short_bars_at_section_edges():
    no_meter = "X:1\nT:t\nL:1/8\nK:G\nGABc|dedB|GABc|d4|]\n"
    r = check_tune(no_meter)
    # the ABC tools accept a tune without M: (4/4 is assumed): VALID, with a warning
    assert not r.headers_ok and r.valid and r.tools_ok
    assert [f.code for f in r.warnings] == ["no-m"] and "M:" in r.reasons[0]
    # short bars: first (pickup), at '||', two adding up to one, and the last; none is wrong
    edges = HEAD.format(title="Edges", meter="2/4", key="G") + (
        "G|ABcd|e2 d||B|cdef|g2|f2|gfed|c3|]\n"
    )
    r2 = check_tune(edges)
    assert r2.metrical_share == 1.0 and r2.valid
    # a short bar in the middle of a section is wrong
    r3 = check_tune(edges.replace("cdef|g2|f2|", "cdef|g2|gfed|"))
    assert r3.metrical_share is not None and r3.metrical_share < 1.0


def test_size_and_time_limits_fail_fast_with_the_option_to_raise():
    long = HEAD.format(title="Long", meter="2/4", key="G") + "GABc|" * 300 + "d4|]\n"
    r = convert_tune(long, limits=Limits(max_bars=200))
    assert r.error is not None and "301 bars" in r.error and "--max-bars" in r.error
    r = convert_tune(long, limits=Limits(max_chars=100))
    assert r.error is not None and "--max-chars" in r.error
    r = convert_tune(long, limits=Limits(max_bars=None, timeout_s=0.01))
    assert r.error is not None and "longer than 0.01 s" in r.error and "--timeout" in r.error


def test_one_bad_tune_does_not_stop_the_others():
    tunes = [JIG, "X:2\nT:garbage\nM:6/8\nL:1/8\nK:G\n", PICKUP, ""]
    results = list(convert_tunes(tunes, jobs=2))
    assert [r.index for r in results] == [0, 1, 2, 3]
    assert results[0].ok and results[2].ok and results[0].data[:4] == b"MThd"
    assert results[1].error == "the tune has no notes"
    assert results[3].error is not None


def test_abc_to_midi_raises_and_leaves_no_file(tmp_path):
    target = tmp_path / "x.mid"
    with pytest.raises(ConversionError) as e:
        abc_to_midi("X:1\nT:empty\nK:G\n", target)
    assert isinstance(e.value, DataError)
    assert list(tmp_path.iterdir()) == []


def test_musicxml_keeps_the_written_form():
    r = convert_tune(REEL, to="musicxml")
    assert r.ok and r.data is not None
    xml = r.data.decode("utf-8")
    assert xml.lstrip().startswith("<?xml") and "<score-partwise" in xml
    assert 'direction="backward"' in xml and "<ending" in xml  # repeats written, not expanded


# ------------------------------------------------------------------ corrupted tunes (hypothesis)
_GARBAGE = st.text(alphabet=st.sampled_from(list("|:[]()!\"{}^_=,'/<>-~.+%&\\zxyJHA1234\n\x00\x7f"
                                                 "\u00e9\ufffd")), max_size=12)


@st.composite
def corrupted(draw):
    base = draw(st.sampled_from([JIG, REEL, ORNAMENTS, CHANGES]))
    text = base
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["delete", "insert", "truncate", "garbage"]))
        i = draw(st.integers(0, len(text)))
        if op == "delete":
            text = text[:i] + text[i + draw(st.integers(1, 8)):]
        elif op == "insert":
            text = text[:i] + draw(st.sampled_from(["|:", ":|", "[1", "[2", "(3", "[K:", "M:",
                                                    "\nK:\n", "::", "{", "\"", "!"])) + text[i:]
        elif op == "truncate":
            text = text[:i]
        else:
            text = text[:i] + draw(_GARBAGE) + text[i:]
    return text


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(corrupted())
def test_corrupted_tunes_never_crash_or_hang(text):
    r = next(convert_tunes([text], check=True, limits=Limits(timeout_s=10.0)))
    cr = r.check
    assert cr is not None
    assert r.ok or (r.error and "\n" not in r.error)
    assert cr.valid in (True, False)
    if not cr.converts:
        assert cr.reasons  # a reason is always given
    assert all(isinstance(x, str) and "\n" not in x for x in cr.reasons)


def test_an_explicit_soundfont_must_be_one(tmp_path, monkeypatch):
    from seqgen.errors import UsageError
    from seqgen.music.convert import find_soundfont

    monkeypatch.delenv("SEQGEN_SOUNDFONT", raising=False)
    junk = tmp_path / "junk.sf2"
    junk.write_bytes(b"\x00\x01 not a soundfont" * 4)
    with pytest.raises(UsageError, match="junk.sf2 is not a SoundFont"):
        find_soundfont(junk)
    monkeypatch.setenv("SEQGEN_SOUNDFONT", str(junk))  # the variable is checked the same way
    with pytest.raises(UsageError, match="is not a SoundFont"):
        find_soundfont()
    font = tmp_path / "gm.sf2"
    font.write_bytes(b"RIFF\x10\x00\x00\x00sfbkLIST")
    assert find_soundfont(font) == font


def test_one_tune_functions_take_one_tune_and_convert_tunes_a_list(tmp_path):
    from seqgen.errors import UsageError

    two = JIG + "\n" + REEL.replace("X:1", "X:2")
    for call in (lambda: check_tune(two), lambda: convert_tune(two),
                 lambda: abc_to_midi(two, tmp_path / "two.mid")):
        with pytest.raises(UsageError, match="holds 2 tunes and this function takes one"):
            call()
    assert not (tmp_path / "two.mid").exists()
    with pytest.raises(UsageError, match="a list of tunes, not one string"):
        next(convert_tunes(JIG))
    results = list(convert_tunes(t for t in (JIG, REEL)))  # any iterable of tunes
    assert [r.index for r in results] == [0, 1] and all(r.ok for r in results)


def test_musicxml_composer_is_the_tunes_c_field_or_none():
    """music21 would name itself ("Music21") as the composer, which MuseScore prints (24 #6)."""
    plain = HEAD.format(title="Plain", meter="2/4", key="G") + "GABc|d4|]\n"
    r = convert_tune(plain, "musicxml", Limits(timeout_s=None))
    assert r.data is not None and b"<creator" not in r.data and b"Music21<" not in r.data
    r = convert_tune(plain.replace("T:Plain\n", "T:Plain\nC:Trad.\n"), "musicxml",
                     Limits(timeout_s=None))
    assert r.data is not None and b'<creator type="composer">Trad.</creator>' in r.data


@pytest.mark.slow
def test_a_signal_during_a_workers_fork_is_not_lost(tmp_path):
    """SIGTERM (as `kill` sends) that arrives while a worker is forked: its KeyboardInterrupt
    must not be raised inside the fork's Python hooks (logging's lock release), where the
    interpreter prints "Exception ignored" and drops it, and the conversion runs on to the end;
    it stops the conversion, as Ctrl-C does. (A hook of our own sends the signal at that
    moment every time.)"""
    import subprocess
    import sys

    script = tmp_path / "fork_signal.py"
    script.write_text(f'''
import os, signal, sys
from seqgen.cli.app import _terminated
from seqgen.music.convert import convert_tunes
signal.signal(signal.SIGTERM, _terminated)
armed = [True]
def hook():
    if armed:
        armed.clear()
        os.kill(os.getpid(), signal.SIGTERM)
os.register_at_fork(after_in_parent=hook)
try:
    n = sum(1 for _ in convert_tunes([{ORNAMENTS!r}] * 4, to="midi", jobs=1))
except KeyboardInterrupt:
    print("interrupted")
    sys.exit(0)
print(f"not interrupted: {{n}} tunes converted")
''')
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == "interrupted", (r.stdout, r.stderr)
    assert "Exception ignored" not in r.stderr
