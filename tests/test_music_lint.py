"""The ABC linter (seqgen.music.lint) and the check built on it: each fault abc2midi, abcm2ps or
music21 reports is named with its line, and the check's verdict is theirs.

The fixtures in tests/data/abc_faults/ hold one tune each and, on their second line, what the
tools say about them: ``% expect: TOOL: MESSAGE @ LINE; ...`` (nothing: the tools accept it).
The last test runs abc2midi and abcm2ps themselves on the fixtures, when they are installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest

from seqgen.music.lint import errors, lint_tune

FIXTURES = sorted((Path(__file__).parent / "data" / "abc_faults").glob("*.abc"))
HEAD = "X:1\nT:t\nM:6/8\nL:1/8\n{extra}K:G\n"


def expectations(path: Path) -> list[tuple[str, str, int]]:
    """(tool, message, line) from the fixture's '% expect:' line."""
    m = re.search(r"^% expect:(.*)$", path.read_text(), re.MULTILINE)
    out = []
    for part in (m.group(1) if m else "").split(";"):
        if part.strip():
            what, _, line = part.rpartition("@")
            tool, _, message = what.strip().partition(": ")
            out.append((tool, message.strip(), int(line)))
    return out


def predicted(text: str) -> dict[str, list]:
    """Our faults of severity error, by the tool they predict."""
    out: dict[str, list] = {"abc2midi": [], "abcm2ps": [], "music21": []}
    for f in errors(lint_tune(text)):
        out[f.tool.split(":")[0]].append(f)
    return out


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_each_fixture_fault_is_named_with_its_line(path):
    text = path.read_text()
    faults = errors(lint_tune(text))
    expected = expectations(path)
    if not expected:
        assert not faults, [str(f) for f in faults]
    for tool, message, line in expected:
        hits = [f for f in faults if f.tool.startswith(tool + ":")
                and " ".join(message.split()) in " ".join(f.tool.split())]
        assert hits, f"{tool}: {message!r} not predicted; got {[f.tool for f in faults]}"
        assert line in [f.line for f in hits], (line, [(f.line, f.tool) for f in hits])
        assert all(f.message and f.col >= 0 for f in hits)


def test_messages_say_what_to_do():
    tie = lint_tune(HEAD.format(extra="") + "GAB c2d-|c3 G3|]\n")
    assert "use a slur, (AB)" in tie[0].message and tie[0].where() == "line 6, col 8"
    word = lint_tune(HEAD.format(extra="") + '"D.C."GAB c2d|G3 G3|]\n')
    assert '"^D.C."' in word[0].message
    lower = lint_tune(HEAD.format(extra="") + "GAB c2d|\nk:D\nGAB c2d|]\n")
    assert any("header fields are upper-case: write `K:D`" in f.message for f in lower)


def test_ties_accidentals_and_repeats_the_tools_accept():
    ok = [
        "GAB c2^c-|c3 G3|]",  # a tie across the bar: the same staff position
        "GAB ^c2c-|c3 G3|]",  # ^c then c in the bar: both c sharp
        "GAB c2[Bd]-|[Bd]3 G3|]",
        "|:GAB c2d:|\n|:GAB c2d:|]",
        "GAB c2d:|\nGAB c2d:|",  # abc2midi adds the missing |: (a warning only)
        "|:GAB c2d|1 GAB c2d:|2 B3 G3|]",
        "{g}A>B c2d|(3GAB c>d e|]",
        "GA>B c2d|[A,2C]>D E2F|]",  # a chord on either side of > is never compared
    ]
    for body in ok:
        assert not errors(lint_tune(HEAD.format(extra="") + body + "\n")), body


def test_hornpipe_rhythm_and_broken_rhythm_lengths():
    # abc2midi plays R:hornpipe pairs as A>B; a staccato note in a pair halves its length
    hp = "X:1\nT:h\nR:hornpipe\nM:2/4\nL:1/16\nK:D\nAB c.d|e2f2|]\n"
    assert any(f.code == "broken-unequal" for f in lint_tune(hp))
    assert not lint_tune(hp.replace("R:hornpipe\n", ""))
    # after a broken rhythm the lengths changed: 'A>B>c' compares B/2 with c
    chain = lint_tune(HEAD.format(extra="") + "A>B>c d3|]\n")
    assert [f.code for f in errors(chain)] == ["broken-unequal"]


def test_music21_rebar_only_without_repeats():
    over = HEAD.format(extra="") + "GAB c2d|GAB c2d e|GAB c2d|GAB c3|]\n"
    assert "m21-rebar" in [f.code for f in lint_tune(over)]
    repeated = over.replace("|]", ":|")  # expanding repeats copies each measure: no failure
    assert "m21-rebar" not in [f.code for f in lint_tune(repeated)]


def _tool_errors(tool: str, path: Path, tmp_path: Path) -> list[str]:
    if tool == "abc2midi":
        cmd = ["abc2midi", str(path), "-o", str(tmp_path / "t.mid")]
        keep = lambda ln: ln.startswith("Error")  # noqa: E731
    else:
        cmd = ["abcm2ps", str(path), "-O", str(tmp_path / "t.ps")]
        keep = lambda ln: "error" in ln.lower()  # noqa: E731
    p = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=60)
    return [ln for ln in (p.stdout + p.stderr).splitlines() if keep(ln)]


def _music21_fails(text: str, tmp_path: Path) -> bool:
    from music21 import converter

    warnings.simplefilter("ignore")
    try:
        converter.parse(text, format="abc").write("midi", fp=str(tmp_path / "m.mid"))
    except Exception:  # any failure of the stock converter counts, as bench/abc_tools.py counts
        return True
    return False


@pytest.mark.parametrize("tool", ["abc2midi", "abcm2ps"])
def test_the_tools_themselves_agree_with_our_verdict(tool, tmp_path):
    """abc2midi and abcm2ps run on every fixture: each fails exactly where we predict it."""
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed (Debian: apt-get install "
                    f"{'abcmidi' if tool == 'abc2midi' else 'abcm2ps'})")
    wrong = []
    for path in FIXTURES:
        ours = bool(predicted(path.read_text())[tool])
        theirs = _tool_errors(tool, path, tmp_path)
        if ours != bool(theirs):
            wrong.append((path.name, ours, theirs[:2]))
    assert not wrong, wrong


def test_the_check_verdict_is_the_tools_joint_verdict(tmp_path):
    """VALID exactly when abc2midi, abcm2ps and music21's stock converter all accept a fixture
    (music21 is always here; the other two when installed)."""
    from seqgen.music.convert import Limits, check_tune

    tools = [t for t in ("abc2midi", "abcm2ps") if shutil.which(t)]
    wrong = []
    for path in FIXTURES:
        text = path.read_text()
        if len(tools) == 2:  # the tools' own verdicts
            fails = _music21_fails(text, tmp_path) or any(
                _tool_errors(t, path, tmp_path) for t in tools)
        else:  # the verdicts recorded in the fixture
            fails = bool(expectations(path))
        cr = check_tune(text, Limits(timeout_s=None))
        if cr.valid == fails:
            wrong.append((path.name, cr.valid, fails, cr.reasons[:2]))
    assert not wrong, wrong


def test_eval_counts_what_the_tools_reject_and_names_their_message():
    """`seqgen eval`'s VALID rate is the check's: a tune abc2midi and abcm2ps reject (a tie
    between different pitches, issue 18) is not VALID, and "why not VALID" names the tools'
    message."""
    from seqgen.music.quality import check_tunes

    clean = HEAD.format(extra="") + "|:GAB c2d|GAB c2d:|\n"
    tied = HEAD.format(extra="") + "|:GAB c2d-|e3 c2d:|\n"
    st = check_tunes([clean, tied], "abc", jobs=1)
    assert st.valid == 0.5 and st.converts == 1.0
    assert "abc2midi: Could not find note to be tied" in st.reasons
    assert "abcm2ps: Bad tie" in st.reasons
