"""Normalising ABC for training (seqgen.music.normalise): each repair, what is dropped and why,
the report, and the hook in load_corpus / `seqgen train` / `seqgen tokenizer build`."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from seqgen.cli.app import app
from seqgen.music.lint import errors, lint_tune
from seqgen.music.normalise import NormaliseReport, normalise_tune, normalise_tunes

HEAD = "X:1\nT:t\n{extra}M:6/8\nL:1/8\nK:G\n"


def fixed(body: str, extra: str = "") -> tuple[str, set[str]]:
    """The repaired body (after K:) and the repairs made; the result lints clean."""
    text, done, why = normalise_tune(HEAD.format(extra=extra) + body + "\n")
    assert text is not None, why
    assert not errors(lint_tune(text)), [str(f) for f in errors(lint_tune(text))]
    return text.split("K:G\n", 1)[1].strip(), set(done)


@pytest.mark.parametrize("body, want, repair", [
    ("(G4-F2)|G6|]", "(G4F2)|G6|]", "tie-slur"),  # O'Neill's slurs written as ties
    ("G3 A2-B|G6|]", "G3 (A2B)|G6|]", "tie-slur"),
    ('"D.C."GAB c2d|G6|]', '"^D.C."GAB c2d|G6|]', "annotation"),
    ('"nd"GAB c2d|G6|]', '"^nd"GAB c2d|G6|]', "annotation"),
    ('"Gmaj"GAB c2d|G6|]', '"G"GAB c2d|G6|]', "chord-spelling"),
    ('"4"GAB c2d|G6|]', "GAB c2d|G6|]", "fingering"),
    ('u"^x"GAB c2d|G6|]', '"^x"uGAB c2d|G6|]', "deco-move"),
    ("GAB c2d|G6 H|]", "GAB c2d|G6 |]", "deco-drop"),
    ("GAB kc2d|G6|]", "GAB c2d|G6|]", "deco-drop"),
    ("GA2>B c2d|G6|]", "GA3B/ c2d|G6|]", "broken"),
    ("GA>.B c2d|G6|]", "GA3/.B/ c2d|G6|]", "broken"),
    ("GAB c,2d|G6|]", "GAB C2d|G6|]", "octave"),
    ("GAB c5|G6|]", "GAB c4-c|G6|]", "split-note"),
    ("GAB c2d:|\nGAB c2d|[1 GAB c2d:|[2 B3 G3|]", "GAB c2d::\nGAB c2d|[1 GAB c2d:|[2 B3 G3|]",
     "ending-repeat"),
    ("|:GAB c2d|G6|:|", "|:GAB c2d|G6:|", "final-repeat"),
    ("GAB c2d \\\n|e3 d2B|]", "GAB c2d\n|e3 d2B|]", "continuation"),
    ("GA (3AB\\\nc d2|G6|]", "GA (3AB\\\nc d2|G6|]", "-"),  # a tuplet runs on
])
def test_each_repair_gives_abc_the_tools_accept(body, want, repair):
    got, done = fixed(body)
    assert got == want and (repair in done or (got == body and not done))


def test_header_repairs():
    text, done, _ = normalise_tune("X:1\nT:h\nR:Hornpipe\nM:C|\nL:1/8\nI: :: ::\nK:D\n"
                                   "ABcd efga|]\n")
    assert text is not None and "\nM:C\n" in text and "I:" not in text
    assert {"hornpipe-meter", "info-line"} <= set(done)
    text, done, _ = normalise_tune("X:1\nT:h\nR:Hornpipe\nM:6/8\nL:1/8\nK:D\nABc def|]\n")
    assert text is not None and "R:" not in text and "hornpipe-rhythm" in done


def test_tunes_with_no_clear_reading_are_dropped_with_why():
    tunes = [HEAD.format(extra="") + "GAB c2d|]\n",
             HEAD.format(extra="") + "|:GAB c2d|GAB c2d|\n|:GAB c2d|B3 G3:|\n",  # |: twice
             HEAD.format(extra="") + "GAB c2d|GAB c2d e|GAB c2d|GAB c3|]\n"]  # over-full bar
    kept, report = normalise_tunes(tunes)
    assert kept == tunes[:1] and report.kept == 1 and report.tunes == 3
    assert [d["index"] for d in report.dropped] == [1, 2]
    assert "found another |: after a |:" in report.dropped[0]["reasons"][0]
    assert "music21" in report.dropped[1]["reasons"][0]
    s = report.summary()
    assert s.startswith("normalised 3 tunes") and "dropped 2 (unrepairable:" in s
    back = NormaliseReport.from_dict(json.loads(json.dumps(report.to_dict())))
    assert back.summary() == s


def test_load_corpus_normalises_and_caches(tmp_path, monkeypatch):
    from seqgen import data
    from seqgen.music import normalise

    abc = tmp_path / "t.abc"
    abc.write_text(HEAD.format(extra="") + '"D.C."GAB c2d|]\n\n'
                   + HEAD.format(extra="").replace("X:1", "X:2") + "|:GAB|\n|:GAB:|\n")
    c = data.load_corpus(str(abc), abc_headers="music", abc_normalise=True)
    assert len(c.documents) == 1 and '"^D.C."' in c.documents[0]
    assert c.normalised.kept == 1 and len(c.normalised.dropped) == 1
    plain = data.load_corpus(str(abc), abc_headers="music")
    assert len(plain.documents) == 2 and plain.normalised is None

    def boom(tunes):
        raise AssertionError("normalised again instead of read from the cache")

    monkeypatch.setattr(normalise, "normalise_tunes", boom)
    monkeypatch.setattr(data, "_NORMALISED", {})  # not this process's memory: the disk cache
    again = data.load_corpus(str(abc), abc_headers="music", abc_normalise=True)
    assert again.documents == c.documents


def test_train_option_reports_and_writes_normalise_json(tmp_path):
    abc = tmp_path / "tunes.abc"
    good = HEAD.format(extra="") + "GAB c2d|e3 d2B|GAB c2d|B3 G3|]\n"
    abc.write_text("\n".join(good.replace("X:1", f"X:{i}") for i in range(1, 30))
                   + "\n" + HEAD.format(extra="").replace("X:1", "X:99")
                   + "|:GAB|\n|:GAB:|\n")
    tiny = ["--preset", "tiny", "--hidden-size", "16", "--embed-dim", "8", "--batch-size", "4",
            "--seq-len", "16", "--steps", "2", "--eval-every", "2", "--device", "cpu",
            "--threads", "1", "--no-plot"]
    runner = CliRunner()
    r = runner.invoke(app, ["train", str(abc), *tiny, "--out", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    assert "normalised 30 tunes" in r.stderr and "dropped 1" in r.stderr
    report = json.loads((tmp_path / "run" / "normalise.json").read_text())
    assert report["kept"] == 29 and report["dropped"][0]["X"] == 99
    from seqgen import checkpoint as ck

    meta = json.loads((tmp_path / "run" / ck.META).read_text())
    assert meta["train_config"]["abc_normalise"] is True  # saved with the run
    r = runner.invoke(app, ["train", str(abc), *tiny, "--no-abc-normalise",
                            "--out", str(tmp_path / "run2")])
    assert r.exit_code == 0, r.output
    assert "normalised" not in r.stderr and not (tmp_path / "run2" / "normalise.json").exists()


def test_train_config_saved_before_abc_normalise_existed_is_not_normalised():
    from seqgen.train import TrainConfig

    old = {k: v for k, v in TrainConfig().to_dict().items() if k != "abc_normalise"}
    assert TrainConfig.from_dict(old).abc_normalise is False
    assert TrainConfig.from_dict(TrainConfig().to_dict()).abc_normalise is True
