"""`seqgen abc2midi` and `seqgen convert` end to end (in-process CliRunner, files in tmp_path)."""

from __future__ import annotations

import shutil

import pytest
from typer.testing import CliRunner

from seqgen.cli.app import app

TUNES = """% two tunes and a broken one
X:1
T:The Enchanted Valley
M:6/8
L:1/8
K:G

GAB c2d|e3 d2B|GAB c2d|B3 G3:|

X:2
T:Broken
M:6/8
L:1/8
K:G

X:3
T:Reel
M:C
L:1/8
K:D
|:A2FA dAFA|B2GB dBGB|[1 ABAF GFEF:|[2 ABcd e4||
"""
GOOD = TUNES.split("X:2")[0] + "X:3" + TUNES.split("X:3")[1]


def run(*args, input=None):
    return CliRunner().invoke(app, list(args), input=input)


def no_traceback(r) -> bool:
    return "Traceback" not in (r.output or "") and r.exception is None or isinstance(
        r.exception, SystemExit)


@pytest.mark.slow
def test_many_tunes_one_file_each_named_from_x_and_t(tmp_path):
    src = tmp_path / "set.abc"
    src.write_text(GOOD)
    r = run("abc2midi", str(src))
    assert r.exit_code == 0, r.output
    out = tmp_path / "set-midi"
    names = sorted(p.name for p in out.iterdir())
    assert names == ["0001-the-enchanted-valley.mid", "0003-reel.mid"]
    assert r.stdout.split() == [str(out / "0001-the-enchanted-valley.mid"), str(out / "0003-reel.mid")]
    assert "The Enchanted Valley" in r.stderr and "6/8" in r.stderr  # the summary table
    assert (out / "0003-reel.mid").read_bytes()[:4] == b"MThd"


def test_one_bad_tune_others_written_exit_1(tmp_path):
    src = tmp_path / "set.abc"
    src.write_text(TUNES)
    r = run("abc2midi", str(src), "-o", str(tmp_path / "out"))
    assert r.exit_code == 1 and no_traceback(r)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "0001-the-enchanted-valley.mid", "0003-reel.mid"]  # no temp files, nothing for X:2
    assert "1 of 3 tunes could not be converted" in r.stderr
    assert "no notes" in r.stderr


def test_tune_option_and_single_output_file(tmp_path):
    src = tmp_path / "set.abc"
    src.write_text(GOOD)
    r = run("abc2midi", str(src), "--tune", "3", "-o", str(tmp_path / "reel.mid"))
    assert r.exit_code == 0 and r.stdout.strip() == str(tmp_path / "reel.mid")
    assert (tmp_path / "reel.mid").is_file()
    r = run("abc2midi", str(src), "--tune", "9")
    assert r.exit_code == 2 and "--tune 9" in r.stderr and "X:9" in r.stderr


def test_stdin_single_tune_into_a_directory(tmp_path):
    r = run("abc2midi", "-", "-o", str(tmp_path / "d"), input=GOOD.split("X:3")[0])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "d" / "0001-the-enchanted-valley.mid").is_file()


def test_check_reports_valid_and_reasons_with_file_lines(tmp_path):
    src = tmp_path / "set.abc"
    src.write_text(GOOD + "\nX:4\nT:Over-full\nM:2/4\nL:1/8\nK:G\nGABc|dedBA|GABc|d4\n")
    r = run("abc2midi", "--check", str(src))
    assert r.exit_code == 1 and no_traceback(r)
    lines = r.stdout.splitlines()
    assert lines[0].startswith("1\tVALID") and lines[1].startswith("3\tVALID")
    assert lines[2].startswith("4\tINVALID")
    music = src.read_text().splitlines().index("GABc|dedBA|GABc|d4") + 1  # line in the file
    assert f"line {music}: bar 2 'dedBA' is over-full: 5/8 where the meter wants 1/2" in r.stderr
    assert f"line {music}: the tune does not end with a barline" in r.stderr
    assert "2 of 3 tunes VALID" in r.stderr
    assert list(tmp_path.iterdir()) == [src]  # --check writes nothing
    ok = tmp_path / "ok.abc"
    ok.write_text(GOOD)
    assert run("abc2midi", "--check", str(ok)).exit_code == 0


def test_bad_input_exits_2_with_one_line(tmp_path):
    r = run("abc2midi", str(tmp_path / "missing.abc"))
    assert r.exit_code == 2 and "missing.abc" in r.stderr and no_traceback(r)
    (tmp_path / "text.abc").write_text("no tunes in here\n")
    r = run("abc2midi", str(tmp_path / "text.abc"))
    assert r.exit_code == 2 and "no tunes found" in r.stderr
    r = run("abc2midi", str(tmp_path / "text.abc"), "--timeout", "0")
    assert r.exit_code == 2 and "--timeout" in r.stderr
    single = tmp_path / "one.abc"
    single.write_text("X:1\nT:t\nK:G\n")
    r = run("abc2midi", str(single))
    assert r.exit_code == 2 and "no notes" in r.stderr and not (tmp_path / "one.mid").exists()


def test_output_names_must_fit_the_format_and_the_tune_count(tmp_path):
    src = tmp_path / "tunes.abc"
    src.write_text(GOOD)
    r = run("abc2midi", str(src), "-o", str(tmp_path / "out.mid"))  # two tunes, one file name
    assert r.exit_code == 2 and "2 tunes need a directory, not a file name" in r.stderr
    assert not (tmp_path / "out.mid").exists()
    one = tmp_path / "reel.abc"
    one.write_text("X:3" + TUNES.split("X:3")[1])
    r = run("convert", str(one), "--to", "midi", "-o", str(tmp_path / "reel.wav"))
    assert r.exit_code == 2 and "a .wav name for midi output; name it reel.mid" in r.stderr
    assert not (tmp_path / "reel.wav").exists()
    r = run("abc2midi", str(one), "-o", str(tmp_path / "reel.midi"))
    assert r.exit_code == 0 and (tmp_path / "reel.midi").read_bytes()[:4] == b"MThd"


def test_convert_musicxml(tmp_path):
    src = tmp_path / "reel.abc"
    src.write_text("X:3" + TUNES.split("X:3")[1])
    r = run("convert", str(src), "--to", "musicxml")
    assert r.exit_code == 0, r.output
    out = tmp_path / "reel.musicxml"
    assert r.stdout.strip() == str(out)
    assert "<score-partwise" in out.read_text()


HAVE_SYNTH = bool(shutil.which("fluidsynth") or shutil.which("timidity"))


@pytest.mark.skipif(HAVE_SYNTH, reason="a synthesizer is installed")
def test_convert_wav_without_synthesizer_names_the_package(tmp_path):
    src = tmp_path / "reel.abc"
    src.write_text(GOOD)
    r = run("convert", str(src), "--to", "wav")
    assert r.exit_code == 1 and no_traceback(r)
    assert "fluidsynth" in r.stderr and "apt-get install" in r.stderr
    assert list(tmp_path.iterdir()) == [src]


def _with_terminal_stderr(args):
    """Run `python -m seqgen ARGS` with stderr on a pseudo-terminal (as in a shell) and stdout
    a pipe (as in `seqgen ... > file`): returns (exit code, stdout bytes, terminal bytes)."""
    import os
    import pty
    import select
    import subprocess
    import sys

    master, slave = pty.openpty()
    p = subprocess.Popen([sys.executable, "-m", "seqgen", *args], stdout=subprocess.PIPE,
                         stderr=slave, env={**os.environ, "TERM": "xterm"})
    os.close(slave)
    shown = b""
    while True:  # drain the terminal so that the child never blocks on it
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the child closed its side
                chunk = b""
            if not chunk:
                break
            shown += chunk
        elif p.poll() is not None:
            break
    out = p.stdout.read()
    os.close(master)
    return p.wait(), out, shown


@pytest.mark.slow
@pytest.mark.parametrize("quiet", [[], ["-q"]])
def test_results_reach_a_redirected_stdout_while_the_spinner_runs(tmp_path, quiet):
    """rich's spinner swaps sys.stdout for a proxy that prints on the (stderr) terminal; a
    result must still go to the file stdout was redirected to, and --quiet must not drop it."""
    src = tmp_path / "tunes.abc"
    src.write_text(GOOD)
    code, out, shown = _with_terminal_stderr([*quiet, "abc2midi", "--check", str(src)])
    assert code == 0, shown
    assert out.decode().splitlines() == ["1\tVALID\tThe Enchanted Valley", "3\tVALID\tReel"]
    assert b"VALID\tReel" not in shown


FAKE_SYNTH = """#!{python}
# A stand-in synthesizer: logs its arguments and the MIDI it was given, writes a quiet sine.
import json, math, struct, sys, wave
args = sys.argv[1:]
out = args[args.index("-F" if "-F" in args else "-o") + 1]
with open({log!r}, "a") as f:
    f.write(json.dumps([args, open(args[-1], "rb").read(4).decode("latin-1")]) + "\\n")
with wave.open(out, "wb") as w:
    w.setnchannels(1); w.setsampwidth(2); w.setframerate(8000)
    w.writeframes(b"".join(struct.pack("<h", int(2000 * math.sin(i / 5))) for i in range(4000)))
"""


def fake_synth(tmp_path, monkeypatch, name, keep_path=True):
    """`name` (fluidsynth or timidity) as a script first on PATH; returns its log file."""
    import os
    import sys

    bin_dir, log = tmp_path / "bin", tmp_path / "synth.log"
    bin_dir.mkdir()
    exe = bin_dir / name
    exe.write_text(FAKE_SYNTH.format(python=sys.executable, log=str(log)))
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}" if keep_path
                       else str(bin_dir))
    monkeypatch.delenv("SEQGEN_SOUNDFONT", raising=False)
    return log


def test_convert_wav_through_fluidsynth_with_a_soundfont(tmp_path, monkeypatch):
    import json
    import wave

    import numpy as np

    log = fake_synth(tmp_path, monkeypatch, "fluidsynth")
    font = tmp_path / "gm.sf2"
    font.write_bytes(b"RIFF\x10\x00\x00\x00sfbkLIST")
    src = tmp_path / "tunes.abc"
    src.write_text(GOOD)
    r = run("convert", str(src), "--to", "wav", "--soundfont", str(font))
    assert r.exit_code == 0, r.output
    wavs = sorted((tmp_path / "tunes-wav").iterdir())
    assert r.stdout.split() == [str(p) for p in wavs] and len(wavs) == 2
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert [head for _, head in calls] == ["MThd", "MThd"]  # each tune's MIDI went in
    assert all(str(font) in args for args, _ in calls)
    with wave.open(str(wavs[0])) as w:
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    assert 0.85 < np.abs(x).max() / 32768 < 0.9  # normalised from -24 dBFS to -1 dBFS


@pytest.mark.parametrize("synth, font, message, code", [
    ("fluidsynth", b"not a soundfont at all", "junk.sf2 is not a SoundFont", 2),
    ("timidity", b"RIFF\x10\x00\x00\x00sfbkLIST", "timidity, plays its own instruments", 2),
])
def test_convert_wav_checks_the_soundfont_before_converting(tmp_path, monkeypatch, synth, font,
                                                            message, code):
    log = fake_synth(tmp_path, monkeypatch, synth, keep_path=False)
    (tmp_path / "junk.sf2").write_bytes(font)
    src = tmp_path / "tunes.abc"
    src.write_text(GOOD)
    r = run("convert", str(src), "--to", "wav", "--soundfont", str(tmp_path / "junk.sf2"))
    assert r.exit_code == code and message in r.stderr and no_traceback(r)
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr  # said once, not once per tune
    assert not log.exists() and not (tmp_path / "tunes-wav").exists()


def test_soundfont_is_for_wav_only(tmp_path):
    src = tmp_path / "tunes.abc"
    src.write_text(GOOD)
    r = run("convert", str(src), "--to", "midi", "--soundfont", str(tmp_path / "gm.sf2"))
    assert r.exit_code == 2 and "--soundfont applies to --to wav only" in r.stderr
    assert not (tmp_path / "tunes-midi").exists()


@pytest.mark.slow  # loading a General MIDI soundfont takes seconds
@pytest.mark.skipif(not HAVE_SYNTH, reason="no synthesizer installed")
def test_convert_wav_renders_and_normalises(tmp_path):
    import wave

    import numpy as np

    src = tmp_path / "reel.abc"
    src.write_text("X:3" + TUNES.split("X:3")[1])
    r = run("convert", str(src), "--to", "wav")
    if r.exit_code != 0 and "soundfont" in r.stderr:
        pytest.skip("fluidsynth without a soundfont")
    assert r.exit_code == 0, r.output
    with wave.open(str(tmp_path / "reel.wav")) as w:
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        seconds = w.getnframes() / w.getframerate()
    assert seconds >= 6  # 6 bars of 4/4 played as a reel, 112 half notes a minute: 6.4 s
    assert 0.8 < np.abs(x).max() / 32768 < 0.95  # peak near -1 dBFS


@pytest.mark.slow
def test_sigterm_stops_a_conversion_as_ctrl_c_does(tmp_path):
    """kill (SIGTERM) mid-way: exit 130, the files written so far complete, no temporary file."""
    import signal
    import subprocess
    import sys
    import time

    from seqgen.data import load_corpus

    src = tmp_path / "many.abc"
    src.write_text("\n\n".join(load_corpus("folk").documents[:100]))
    out = tmp_path / "xml"
    p = subprocess.Popen([sys.executable, "-m", "seqgen", "convert", str(src), "--to",
                          "musicxml", "-o", str(out)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not (out.is_dir() and len(list(out.glob("*.musicxml"))) >= 2):
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130 and "interrupted" in err, err
    written = sorted(out.iterdir())
    assert 2 <= len(written) < 100
    assert not [f.name for f in written if f.name.startswith(".")]  # no temp or lock file
    assert all(f.read_text().rstrip().endswith("</score-partwise>") for f in written)


# ------------------------------------------------------------ the check's warnings, --tune
POLKA = """X:1
T:Polka
M:2/4
L:1/8
K:G
|:GABc|dedBA|GABc|d4:|
GABc|d2 B2
"""


def test_conversion_says_ok_with_the_checks_warnings(tmp_path):
    """A tune the check finds faults in still converts; the table says 'ok, N warnings' and
    the faults are listed with their file lines (issue 24 #3)."""
    src = tmp_path / "polka.abc"
    src.write_text("% a user's file\n" + POLKA)
    r = run("abc2midi", str(src))
    assert r.exit_code == 0, r.output
    assert (tmp_path / "polka.mid").is_file()
    assert "ok, 3 warnings" in r.stderr
    assert "warning: line 7: bar 2 'dedBA' is over-full: 5/8 where the meter wants 1/2" in r.stderr
    assert "warning: line 8: the tune does not end with a barline" in r.stderr
    assert "warning: only 83% of bars have the meter's length" in r.stderr
    nokey = tmp_path / "nokey.abc"
    nokey.write_text(POLKA.replace("K:G\n", ""))
    r = run("abc2midi", str(nokey))
    assert r.exit_code == 0 and "the tune has no K: line" in r.stderr and "warning" in r.stderr
    clean = tmp_path / "clean.abc"
    clean.write_text(GOOD)
    r = run("abc2midi", str(clean))
    assert r.exit_code == 0 and "warning" not in r.stderr


def test_parse_failures_name_the_line_and_the_construct(tmp_path):
    """Lower-case fields and a meter change written inside a music line (issue 24 #4)."""
    lower = tmp_path / "lower.abc"
    lower.write_text("X:1\nT:Polka\nm:2/4\nl:1/8\nk:G\nGA Bc|d2 d2:|\n")
    r = run("abc2midi", str(lower))
    assert r.exit_code == 2 and no_traceback(r)
    assert "line 3: `m:2/4` — header fields are upper-case: write `M:2/4`" in r.stderr
    assert "tPrev" not in r.stderr and "music21.abcFormat" not in r.stderr
    inline = tmp_path / "inline.abc"
    inline.write_text("X:1\nT:Swedish\nM:6/8\nL:1/8\nK:D\nABc def|gfe d3|\n"
                      "M:3/4 egdB A2| M:4/4 egdB GABd|eBdB Aaaf|gedB cAA2|]\n")
    r = run("abc2midi", str(inline))
    assert r.exit_code == 2 and "line 7: `M:3/4 egdB A2|" in r.stderr
    assert "a field takes the whole line" in r.stderr and "[M:3/4]" in r.stderr
    assert "too many values to unpack" not in r.stderr


DUPES = """X:1
T:The Kesh
M:6/8
L:1/8
K:G
GAB c2d|e3 d2B|]

X:2
T:Swallowtail
M:6/8
L:1/8
K:Em
GEE BEE|GEE d2B|]

X:2
T:The Kesh Jig
M:6/8
L:1/8
K:G
BAG BAG|c3 B2A|]
"""


def test_tune_by_position_title_and_ambiguous_x_numbers(tmp_path):
    """Repeated X: numbers: '#N' picks the N-th tune, a title (any case, a unique start)
    picks by T:, and an ambiguous X: number lists the candidates (issue 24 #5)."""
    src = tmp_path / "dupes.abc"
    src.write_text(DUPES)
    r = run("abc2midi", str(src), "--tune", "2")
    assert r.exit_code == 2 and no_traceback(r)
    assert "2 tunes have X:2" in r.stderr
    assert "#2 (X:2, line 8, 'Swallowtail')" in r.stderr
    assert "#3 (X:2, line 15, 'The Kesh Jig')" in r.stderr
    r = run("abc2midi", str(src), "--tune", "#3", "-o", str(tmp_path / "third.mid"))
    assert r.exit_code == 0, r.output
    r = run("abc2midi", str(src), "--tune", "swallow", "-o", str(tmp_path / "sw.mid"))
    assert r.exit_code == 0 and "Swallowtail" in r.stderr
    r = run("abc2midi", str(src), "--tune", "the kesh", "-o", str(tmp_path / "k.mid"))
    assert r.exit_code == 0 and "The Kesh" in r.stderr  # exact title beats a longer one
    r = run("abc2midi", str(src), "--tune", "The K")
    assert r.exit_code == 2 and "2 tunes match the title 'The K'" in r.stderr
    r = run("abc2midi", str(src), "--tune", "1", "-o", str(tmp_path / "one.mid"))
    assert r.exit_code == 0  # a unique X: number still works
    r = run("abc2midi", str(src), "--tune", "#9")
    assert r.exit_code == 2 and "holds 3 tunes" in r.stderr
    r = run("abc2midi", "--check", str(src))
    rows = [ln.split("\t")[0] for ln in r.stdout.splitlines()]
    assert rows == ["1", "2 #2", "2 #3"]  # the table and the notes name each tune unambiguously
