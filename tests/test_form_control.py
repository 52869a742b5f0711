"""Form control (issue 19): `seqgen sample --form AABB --bars 8 --cadence tonic`. The ABC grammar
makes each part exactly --bars bars, closes each repeat, writes no other part, and ends the tune
on the tonic of K:; what seqgen.music.form.read_form (music21's tokens) reads back is the form."""

from __future__ import annotations

import random

import pytest
import torch
from typer.testing import CliRunner

from seqgen.cli.app import app
from seqgen.errors import UsageError
from seqgen.music.form import read_form
from seqgen.music.grammar import AbcConstraint
from seqgen.sampling import SampleConfig, generate
from seqgen.tokenizer import Tokenizer

runner = CliRunner()
# every construct a tune may use: repeats, endings, chords, triplets, ties, accidentals, modes
VOCAB = ("X:1\nT:Reel o' the Bog\nM:6/8 2/4 C|\nL:1/8 1/16\nK:Dmix Am G Ador\n"
         "|:(3ABc d2>e f/g//a^b_c=d3/2|(AB)[1 {ga}Te-~f.uv z2:|[2 A,B'||C|]\n"
         '0123456789 R "G" [CEG]2 jig reel\n')
TOK = Tokenizer.build([VOCAB])


def walk(c: AbcConstraint, seed: int, prompt: str = "") -> str:
    """A tune of characters chosen at random among those the grammar allows (the grammar's worst
    case: an untrained model), until <eos>."""
    rng = random.Random(seed)
    s = c.feed_text(c.start(), prompt, lenient=True)
    out = []
    for _ in range(8000):
        m = c.mask(s)
        assert [c.advance(s, i) is not None for i in range(len(m))] == m.tolist(), "".join(out)
        ids = [i for i in range(1, len(m)) if m[i]]
        if m[0] and (not ids or rng.random() < 0.3):
            return prompt + "".join(out)
        nl = TOK.stoi["\n"]
        i = nl if s.phase == 0 and m[nl] and rng.random() < 0.3 else rng.choice(ids)
        out.append(TOK.itos[i])
        s = c.advance(s, i)
    raise AssertionError("no end: " + "".join(out))


@pytest.mark.parametrize("form, bars, parts", [
    ("AABB", 2, [(2, True), (2, True)]), ("AB", 4, [(4, False), (4, False)]),
    ("AABA", 2, [(2, True), (2, False), (2, False)]),
    ("AABBCC", 1, [(1, True), (1, True), (1, True)])])
def test_random_walks_have_exactly_the_form_and_end_on_the_tonic(form, bars, parts):
    """Whatever is picked among the allowed characters (pickups, endings, ties, accidentals on
    the tonic's letter, modes), music21 reads the parts' bars and repeats asked for, and the
    last note is the tonic (Ador: A). The masks equal the moves on every state."""
    c = AbcConstraint(TOK.itos, form=form, bars=bars)
    prompts = ["", "X:1\nM:6/8\nL:1/8\nK:G\n", "X:1\nM:C|\nL:1/8\nK:Ador\n",
               "X:1\nM:2/4\nL:1/16\nK:Dmix\n"]
    for seed in range(8):
        tune = walk(c, seed, prompts[seed % len(prompts)])
        f = read_form(tune)
        assert f is not None, tune
        assert [(p.bars, p.repeated) for p in f.parts] == parts, tune
        assert f.last_note_tonic, tune


@pytest.mark.parametrize("form, bars", [("AABB", 2), ("AB", 2), ("AABBCC", 1)])
def test_a_cadence_part_ends_on_the_tonic_too(form, bars):
    """cadence_parts=(0,) (a bar plan that ends the tune with part A's last bar): part A ends
    on the tonic as the tune does, read by music21's tokens; every state still finishes."""
    from seqgen.music.abc import parse_header
    from seqgen.music.form import bar_events
    from seqgen.music.keys import pitch_class, read_key

    c = AbcConstraint(TOK.itos, form=form, bars=bars, cadence_parts=(0,))
    prompts = ["X:1\nM:6/8\nL:1/8\nK:G\n", "X:1\nM:C|\nL:1/8\nK:Ador\n",
               "X:1\nM:2/4\nL:1/16\nK:Dmix\n"]
    read = 0
    for seed in range(24):
        tune = walk(c, seed, prompts[seed % len(prompts)])
        assert read_form(tune).last_note_tonic, tune
        if any(e in tune for e in ("[1", "|1", ":|2")):
            continue  # (part A's cadence is its second ending's, which bar_events leaves out)
        events = bar_events(tune)[bars - 1]
        tonic = read_key(parse_header(tune).key).tonic_class
        assert events[-1][0] is not None and pitch_class(events[-1][0][-1]) == tonic, tune
        read += 1
    assert read >= 8


def test_cadence_free_leaves_the_last_note_alone():
    c = AbcConstraint(TOK.itos, form="AB", bars=2, cadence="free")
    endings = {read_form(walk(c, seed, "X:1\nM:6/8\nL:1/8\nK:G\n")).last_note_tonic
               for seed in range(12)}
    assert endings == {True, False}


def test_the_grammar_refuses_what_breaks_the_form():
    c = AbcConstraint(TOK.itos, form="AB", bars=2)
    head = "X:1\nM:6/8\nL:1/8\nK:G\n"
    s = c.feed_text(c.start(), head + "ABc def|gfe dcB|")
    assert ":" not in c.allowed_chars(s)  # part A is not repeated: no ':|' ...
    s = c.feed_text(c.start(), head + "ABc def|gfe dcB")
    assert c.allowed_chars(c.feed_text(s, "|")) == "|"  # ... but '||' ('|]': B is to come)
    s = c.feed_text(c.start(), head + "ABc def|gfe dc")
    assert "G" in c.allowed_chars(s) or "g" in c.allowed_chars(s)
    # a last bar that makes one bar with the part's pickup ends on the tonic too
    s = c.feed_text(c.start(), head + "ABc def|gfe dcB||d|ABc def|gfe dc")
    assert "|" not in c.allowed_chars(s)
    assert "|" in c.allowed_chars(c.feed_text(s, "g"))
    # a 1/32 note left in the last bar: only the tonic (K:G) may take it
    s = c.feed_text(c.start(), head + "ABc def|gfe dcB||ABc def|gfe dcB/B//")
    assert set(c.allowed_chars(s)) & set("ABCDEFGabcdefg") == {"G", "g"}


@pytest.mark.parametrize("form, words", [
    ("A1", "give letters A-Z"), ("AAAB", "at most twice in a row"), ("BA", "in order"),
    ("aabb", "give letters A-Z")])
def test_bad_forms_name_the_field(form, words):
    with pytest.raises(UsageError, match=words) as e:
        SampleConfig(form=form, constrain="abc").validate()
    assert e.value.field == "form"
    with pytest.raises(UsageError, match="bars must be in"):
        SampleConfig(form="AB", bars=65, constrain="abc").validate()
    with pytest.raises(UsageError, match="needs the ABC constraint"):
        SampleConfig(form="AB").validate()


def _abc_model():
    from seqgen.models import ModelConfig, build_model

    torch.manual_seed(0)
    return build_model(ModelConfig(kind="lstm", vocab_size=TOK.vocab_size, hidden_size=16,
                                   num_layers=1, embed_dim=8)).eval()


def test_a_tiny_model_samples_exactly_the_form():
    model = _abc_model()
    samples = generate(model, TOK, "X:1\nM:6/8\nL:1/8\nK:Ador\n",
                       SampleConfig(length=3000, constrain="abc", form="AABB", bars=8,
                                    num_samples=3), torch.Generator().manual_seed(1))
    for s in samples:
        assert s.stop_reason == "eos"
        f = read_form(s.prompt + s.text)
        assert f.form == "AABB" and [p.bars for p in f.parts] == [8, 8], s.text
        assert f.last_note_tonic, s.text


@pytest.fixture(scope="module")
def abc_ckpt(tmp_path_factory):
    from seqgen.checkpoint import save_checkpoint

    d = tmp_path_factory.mktemp("formckpt")
    (d / "tunes.abc").write_text(VOCAB)
    return save_checkpoint(d / "run", _abc_model(), TOK, {"corpus": str(d / "tunes.abc")},
                           "tunes.abc", "abc", 1)


def test_cli_samples_tunes_of_the_form(abc_ckpt, tmp_path):
    r = runner.invoke(app, ["sample", str(abc_ckpt), "--tunes", "2", "--seed", "3", "--form",
                            "AABB", "--bars", "8", "--out", str(tmp_path / "t"), "--no-midi",
                            "--no-page"])
    assert r.exit_code == 0, r.output
    for name in ("tune_01.abc", "tune_02.abc"):
        f = read_form((tmp_path / "t" / name).read_text())
        assert f.form == "AABB" and [p.bars for p in f.parts] == [8, 8]
        assert f.last_note_tonic


@pytest.mark.parametrize("args, message", [
    (["--form", "AB1"], "--form: give letters A-Z, one a part, a letter doubled for a repeated "
                        "part (AABB, AB, AABA); or corpus (drawn from the training tunes) or free "
                        "(none), not 'AB1'"),
    (["--bars", "4"], "--bars needs a --form of letters such as AABB (a form drawn from the "
                      "training tunes has their part lengths)"),
    (["--form", "free", "--bars", "4"], "--bars needs a --form of letters such as AABB (a "
                                        "form drawn from the training tunes has their part "
                                        "lengths)"),
    (["--form", "AB", "--bars", "0"], "--bars must be in [1, 64], not 0"),
    (["--form", "AB", "--bars", "65"], "--bars must be in [1, 64], not 65"),
    (["--form", "AB", "--cadence", "dominant"],
     "--cadence must be tonic or free, not 'dominant'"),
])
def test_cli_bad_form_options(abc_ckpt, args, message):
    r = runner.invoke(app, ["sample", str(abc_ckpt), "--tunes", "1", *args])
    assert r.exit_code == 2, r.output
    assert r.stderr.strip().splitlines()[-1] == f"error: {message}"


def test_cli_form_not_complete_within_length_is_reported_with_the_text(abc_ckpt):
    r = runner.invoke(app, ["sample", str(abc_ckpt), "--seed", "1", "--form", "AABB",
                            "--length", "60", "--prompt", "X:1\\nM:6/8\\nL:1/8\\nK:G\\n"])
    assert r.exit_code == 2, r.output
    assert r.stdout.startswith("X:1\nM:6/8\nL:1/8\nK:G\n") and len(r.stdout) > 60
    assert r.stderr.strip().splitlines()[-1] == (
        "error: --form AABB: sample(s) 1 reached --length 60 before the form of 8-bar parts was "
        "complete (written above); raise --length")


def test_cli_form_on_a_text_model_is_refused(tmp_path):
    from seqgen.checkpoint import save_checkpoint
    from seqgen.models import ModelConfig, build_model

    tok = Tokenizer.build(["some plain text"])
    model = build_model(ModelConfig(kind="lstm", vocab_size=tok.vocab_size, hidden_size=8,
                                    num_layers=1, embed_dim=4)).eval()
    path = save_checkpoint(tmp_path / "run", model, tok, {}, "text.txt", "text", 1)
    r = runner.invoke(app, ["sample", str(path), "--form", "AABB"])
    assert r.exit_code == 2, r.output
    assert r.stderr.strip().splitlines()[-1].startswith(
        "error: --form needs a model trained on ABC tunes;")


# ------------------------------------------------------------- forms drawn from the corpus
FORMS = {"version": 1, "tunes": 15, "groups": [
    {"meter": "6/8", "rhythm": "jig", "tunes": 6,
     "forms": {"AB": {"6,6": 4, "8,6": 1}, "AABB": {"3,3": 1}}},
    {"meter": "6/8", "rhythm": "", "tunes": 2, "forms": {"AABBCC": {"5,5,5": 2}}},
    {"meter": "C|", "rhythm": "reel", "tunes": 7,
     "forms": {"AABB": {"7,7": 3}, "AAA": {"8": 1}, "A": {"65": 1},
               "AABBCCDDEE": {"8,8,8,8,8": 2}}},
]}


def test_form_choices_follow_the_meter_and_rhythm_and_leave_out_what_cannot_be_drawn():
    from seqgen.music.form import form_choices

    # unequal parts (8,6), fragments (3,3) left out
    assert form_choices(FORMS, "6/8", "Jig") == {("AB", 6): 4}
    # no tune of the rhythm: the meter's tunes; 'AAA' is no --form, 65 bars too many, five
    # parts more than are drawn
    assert form_choices(FORMS, "6/8", "slide") == {("AB", 6): 4, ("AABBCC", 5): 2}
    assert form_choices(FORMS, "C|", "") == {("AABB", 7): 3}
    # a meter the corpus lacks: the whole corpus
    assert form_choices(FORMS, "3/4", "") == {("AB", 6): 4, ("AABBCC", 5): 2, ("AABB", 7): 3}
    assert form_choices({"version": 1, "tunes": 0, "groups": []}, "6/8") == {}


def test_each_tune_gets_a_form_drawn_for_its_own_meter():
    """The header is the model's: the form is drawn when it ends, for the meter and rhythm the
    model wrote, and the tune has exactly that form; the same seed draws the same forms."""
    from seqgen.music.form import form_choices

    def tunes(seed):
        return generate(_abc_model(), TOK, "X:1\n",
                        SampleConfig(length=3000, constrain="abc", form="corpus",
                                     corpus_forms=FORMS, num_samples=8),
                        torch.Generator().manual_seed(seed))

    samples = tunes(5)
    seen = set()
    for s in samples:
        assert s.stop_reason == "eos", s.text
        f = read_form(s.prompt + s.text)
        bars = {p.bars for p in f.parts}
        assert len(bars) == 1, s.text
        form = "".join(p.letter * (2 if p.repeated else 1) for p in f.parts)
        choices = form_choices(FORMS, f.meter, f.rhythm)
        # (a part's letter comes from its notes: two parts that happen to be equal share one)
        assert any(len(form) == len(k) and bars == {n} for k, n in choices), (form, bars, s.text)
        assert f.last_note_tonic, s.text
        seen.add(f.meter)
    assert len(seen) > 1  # the untrained model writes several meters
    assert [s.text for s in tunes(5)] == [s.text for s in samples]


def test_default_sampling_draws_forms_where_the_checkpoint_has_them(tmp_path):
    from seqgen.checkpoint import save_checkpoint

    (tmp_path / "tunes.abc").write_text(VOCAB)
    with_forms = save_checkpoint(tmp_path / "run", _abc_model(), TOK,
                                 {"corpus": str(tmp_path / "tunes.abc")}, "tunes.abc", "abc", 1,
                                 forms=FORMS)
    prompt = ["--prompt", "X:1\\nM:6/8\\nL:1/8\\nR:jig\\nK:G\\n", "--seed", "2"]
    r = runner.invoke(app, ["sample", str(with_forms), "--tunes", "3", *prompt, "--out",
                            str(tmp_path / "t"), "--no-midi", "--no-page"])
    assert r.exit_code == 0, r.output
    assert "each tune's form drawn from the training tunes" in r.stderr
    for name in ("tune_01.abc", "tune_02.abc", "tune_03.abc"):
        f = read_form((tmp_path / "t" / name).read_text())
        assert [p.bars for p in f.parts] == [6, 6] and not any(p.repeated for p in f.parts)
    # --form free: the grammar's own limits (parts of 4 or 8 bars)
    r = runner.invoke(app, ["sample", str(with_forms), "--tunes", "3", *prompt, "--form",
                            "free", "--out", str(tmp_path / "free"), "--no-midi", "--no-page"])
    assert r.exit_code == 0, r.output
    assert "form drawn" not in r.stderr
    for name in ("tune_01.abc", "tune_02.abc", "tune_03.abc"):
        f = read_form((tmp_path / "free" / name).read_text())
        assert {p.bars for p in f.parts} <= {4, 8}


def test_form_corpus_needs_a_checkpoint_that_kept_its_forms(abc_ckpt):
    r = runner.invoke(app, ["sample", str(abc_ckpt), "--tunes", "1", "--form", "corpus"])
    assert r.exit_code == 2, r.output
    assert r.stderr.strip().splitlines()[-1] == (
        f"error: --form corpus: {abc_ckpt} has no form distribution of its training tunes "
        "(trained before seqgen kept one); give a form such as AABB, or train the model again")
    # without --form, such a checkpoint samples as before (no form)
    r = runner.invoke(app, ["sample", str(abc_ckpt), "--tunes", "1", "--seed", "1"])
    assert r.exit_code == 0, r.output
    assert "form drawn" not in r.stderr
