"""seqgen eval (seqgen.evaluate, seqgen/cli/eval.py), ABC-constrained sampling through
seqgen.sampling, header-conditioned prompts and the shipped default model."""

from __future__ import annotations

import json
import math
import re
import shutil

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from seqgen.cli.app import app
from seqgen.music.quality import NoveltyIndex, normalise_key, tune_body

TUNES = [
    "X:{n}\nT:Reel {n}\nM:C|\nL:1/8\nK:D\n|:ABcd efge|fdec dBAF|ABcd efge|fdec d2d2:|\n",
    "X:{n}\nT:Jig {n}\nM:6/8\nL:1/8\nK:G\n|:GAB cde|dBG AFD|GAB cde|dBG G3:|\n",
    "X:{n}\nT:Polka {n}\nM:2/4\nL:1/8\nK:Am\nAB cd|ed cB|AB cd|e2 A2|]\n",
]


def _corpus_text() -> str:
    return "\n".join(TUNES[i % 3].format(n=i + 1) for i in range(24))


@pytest.fixture(scope="module")
def abc_ckpt(tmp_path_factory):
    """A small LSTM trained for a few hundred steps on 24 short tunes (learns their shape)."""
    from seqgen.checkpoint import save_checkpoint
    from seqgen.models import ModelConfig, build_model
    from seqgen.tokenizer import Tokenizer

    d = tmp_path_factory.mktemp("evalckpt")
    corpus = d / "tunes.abc"
    corpus.write_text(_corpus_text())
    from seqgen.data import load_corpus, prepare_data

    c = load_corpus(str(corpus))
    tok = Tokenizer.build(c.documents)
    data = prepare_data(c, tok, 0.25, 3, cache=False)
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is fastest, and the machine is shared
    model = build_model(ModelConfig(kind="lstm", vocab_size=tok.vocab_size, embed_dim=16,
                                    hidden_size=64, num_layers=1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    ids = torch.from_numpy(data.train_ids.astype("int64"))
    g = torch.Generator().manual_seed(0)
    for _ in range(150):
        starts = torch.randint(0, len(ids) - 49, (8,), generator=g)
        w = ids[starts[:, None] + torch.arange(49)]
        logits, _ = model(w[:, :-1], None)
        loss = F.cross_entropy(logits.flatten(0, 1), w[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    torch.set_num_threads(threads)
    tc = {"corpus": str(corpus), "glob": None, "split_docs": False, "val_fraction": 0.25,
          "seed": 3, "seq_len": 32, "batch_size": 4}
    return save_checkpoint(d / "run", model, tok, tc, str(corpus), "abc", 150,
                           {"train_loss": loss.item()})


# ------------------------------------------------------------------------------ pure helpers
def test_normalise_key():
    assert normalise_key("D Mixolydian") == "Dmix" == normalise_key("Dmix")
    assert normalise_key("E Minor") == "Em" == normalise_key("Emin")
    assert normalise_key("G") == "G" == normalise_key("G Major")
    assert normalise_key("Bb") == "Bb"
    assert normalise_key(None) == "?"


def test_novelty_is_forty_body_characters_ignoring_white_space():
    train = ["X:1\nT:a\nM:C\nL:1/8\nK:D\n" + "ABcd efge|fdec dBAF|GABc defg|agfe dcBA|\nB2A2 G4|d2e2 f4|]\n"]
    idx = NoveltyIndex(train)
    body = tune_body(train[0])
    assert " " not in body and len(body) >= 40
    copy = "X:9\nT:b\nM:C\nL:1/8\nK:D\n" + body[:20] + "\n" + body[20:40] + "|]\n"
    near = "X:9\nT:b\nM:C\nL:1/8\nK:D\n" + body[:39] + "z|]\n"
    assert idx.copies(copy)  # 40 characters, split over two lines
    assert not idx.copies(near)  # 39 are not enough
    assert not idx.copies("X:1\nT:t\nK:D\n" + body[:39])  # a header never counts


# ------------------------------------------------------------------------- held-out loss
@pytest.mark.slow
def test_validation_loss_is_the_held_out_split_scored_with_carried_state(abc_ckpt):
    from seqgen.checkpoint import load_checkpoint
    from seqgen.data import load_corpus, prepare_data
    from seqgen.evaluate import EvalConfig, evaluate

    ckpt = load_checkpoint(abc_ckpt)
    report = evaluate(ckpt, EvalConfig(tunes=0))
    data = prepare_data(load_corpus(ckpt.train_config["corpus"]), ckpt.tokenizer, 0.25, 3,
                        cache=False)
    assert report.val_documents == len(data.split.val) == 6
    # by hand: the held-out ids as `rows` rows, each row read in one forward pass
    ids = torch.from_numpy(data.val_ids.astype("int64"))
    n = len(ids) - 1
    rows = max(1, min(4, n // 32))
    L = n // rows
    with torch.no_grad():
        logits, _ = ckpt.model(ids[: rows * L].view(rows, L), None)
    want = F.cross_entropy(logits.flatten(0, 1), ids[1 : rows * L + 1]).item()
    assert report.val_tokens == rows * L
    assert report.val_loss == pytest.approx(want, rel=1e-5)
    assert report.val_bpc == pytest.approx(want / math.log(2))
    assert report.val_loss < 1.5  # the model did learn the tunes (uniform would be ~3.6)
    assert report.modes == []


# ------------------------------------------------------------------------ constrained sampling
@pytest.mark.slow
def test_constrained_sampling_gives_tunes_the_grammar_accepts(abc_ckpt):
    from seqgen.checkpoint import load_checkpoint
    from seqgen.music.abc import ends_with_barline, parse_header
    from seqgen.music.grammar import abc_constraint
    from seqgen.sampling import SampleConfig, generate

    ckpt = load_checkpoint(abc_ckpt)
    cfg = SampleConfig(length=500, temperature=1.5, num_samples=4, constrain="abc")
    samples = generate(ckpt.model, ckpt.tokenizer, "X:", cfg, torch.Generator().manual_seed(5))
    c = abc_constraint(ckpt.tokenizer)
    for s in samples:
        tune = "X:" + s.text
        assert s.stop_reason == "eos", tune
        state = c.feed_text(c.start(), tune)  # every character was allowed
        assert c.mask(state)[0]  # and <eos> was too
        assert not parse_header(tune).missing("XMLK") and ends_with_barline(tune)[0]
    # the same seed without the constraint gives other text (the mask changed choices)
    free = generate(ckpt.model, ckpt.tokenizer, "X:",
                    SampleConfig(length=500, temperature=1.5, num_samples=4),
                    torch.Generator().manual_seed(5))
    assert [s.text for s in free] != [s.text for s in samples]


def test_eval_numbers_its_tunes_as_sample_tunes_does(abc_ckpt):
    """eval checks the tunes users get: `seqgen sample --tunes` writes X:1..N over whatever
    reference number the model sampled, so eval does too (a garbled 'X:]07' is not music)."""
    from seqgen.checkpoint import load_checkpoint
    from seqgen.music.tunes import sample_eval_tunes
    from seqgen.sampling import SampleConfig

    ckpt = load_checkpoint(abc_ckpt)
    tunes, _ = sample_eval_tunes(ckpt, 3, seed=3, config=SampleConfig(length=200, temperature=2.0))
    assert [t.split("\n")[0] for t in tunes] == ["X:1", "X:2", "X:3"]
    assert all(t.endswith("\n") and t.count("\nX:") == 0 for t in tunes)


def test_bad_constrain_value_and_prompt_are_usage_errors(abc_ckpt):
    from seqgen.checkpoint import load_checkpoint
    from seqgen.errors import UsageError
    from seqgen.sampling import SampleConfig, generate

    ckpt = load_checkpoint(abc_ckpt)
    with pytest.raises(UsageError, match="constrain"):
        SampleConfig(constrain="xml").validate()
    with pytest.raises(UsageError, match="ABC grammar at line 5"):
        generate(ckpt.model, ckpt.tokenizer, "X:1\nT:a\nM:C|\nK:D\n]",
                 SampleConfig(length=5, constrain="abc"))


# ---------------------------------------------------------------------------- evaluate, CLI
@pytest.mark.slow
def test_eval_cli_json_reports_both_modes_at_the_same_seed(abc_ckpt):
    r = CliRunner().invoke(app, ["eval", str(abc_ckpt), "--tunes", "4", "--length", "600",
                                 "--format", "json", "--jobs", "2", "--temperature", "0.8"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["val_loss"] > 0 and d["corpus_kind"] == "abc"
    modes = {m["mode"]: m for m in d["modes"]}
    assert set(modes) == {"abc", "none"}
    abc = modes["abc"]
    assert abc["tunes"] == 4 and abc["finished"] == 1.0
    assert abc["headers"] == 1.0 and abc["ends_with_barline"] == 1.0
    assert abc["valid"] >= 0.75
    assert 0.0 <= modes["none"]["valid"] <= 1.0
    # the tunes are copies of the training tunes at this size: novelty must see it
    assert abc["copies"] is not None
    ref = d["corpus_stats"]
    assert set(ref["meters"]) == {"C|", "6/8", "2/4"}
    assert abc["meter_tvd"] is not None and 0.0 <= abc["meter_tvd"] <= 1.0
    # the form of the training tunes: each a 4-bar part (the reel and jig repeated), bars 1
    # and 3 the same, ending on the tonic (Am's A too)
    form = ref["form"]
    assert form["parts"] == form["tunes"] > 0 and form["unread"] == 0
    assert form["aabb"] == 0 and form["eight_bar_parts"] == 0 and form["fragments"] == 1
    assert form["recurring"] == 0.5 and form["no_repeated_bar"] == 0
    assert form["opening_returns"] == 0 and form["last_note_tonic"] == 1
    assert form["accidentals"] == 0 and set(form["forms"]) == {"AA", "A"}
    assert abc["form"]["tunes"] + abc["form"]["unread"] == 4


@pytest.mark.slow
def test_eval_cli_table_and_bad_input(abc_ckpt, tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["eval", str(abc_ckpt), "--tunes", "0"])
    assert r.exit_code == 0, r.output
    assert "validation loss" in r.stdout and "bits/char" in r.stdout
    assert "AABB" not in r.stdout  # no tunes, no form
    r = runner.invoke(app, ["eval", str(abc_ckpt), "--tunes", "2", "--length", "300",
                            "--constrain", "abc"])
    assert r.exit_code == 0, r.output
    assert "AABB, 8-bar parts" in r.stdout and "last note the tonic" in r.stdout
    assert re.search(r"last note the tonic .*100\.0%", r.stdout)  # the training tunes' column
    for args in (["eval", str(tmp_path / "nothing")], ["eval", str(abc_ckpt), "--tunes", "-1"],
                 ["eval", str(abc_ckpt), "--constrain", "maybe"]):
        r = runner.invoke(app, args)
        assert r.exit_code == 2, (args, r.output)
        assert "Traceback" not in r.output
    # the corpus the run trained on has moved: the error says how to go on
    moved = tmp_path / "moved"
    shutil.copytree(abc_ckpt, moved)
    meta = json.loads((moved / "checkpoint.json").read_text())
    meta["train_config"]["corpus"] = str(tmp_path / "gone.abc")
    (moved / "checkpoint.json").write_text(json.dumps(meta))
    r = runner.invoke(app, ["eval", str(moved), "--tunes", "0"])
    assert r.exit_code == 2 and "gone.abc" in r.stderr and "give it with --corpus" in r.stderr
    # the corpus it names has changed (a new character): not blamed on a --corpus never given
    changed = tmp_path / "changed.abc"
    changed.write_text(_corpus_text().replace("K:", "K:\u00e9", 1))
    meta["train_config"]["corpus"] = str(changed)
    (moved / "checkpoint.json").write_text(json.dumps(meta))
    r = runner.invoke(app, ["eval", str(moved), "--tunes", "0"])
    assert r.exit_code == 2 and "--corpus changed.abc" not in r.stderr, r.stderr
    assert "changed.abc: 1 character(s) the model does not know: '\u00e9'" in r.stderr
    # a text model has no tunes to sample: the tune options are refused, not ignored
    text = tmp_path / "text"
    shutil.copytree(abc_ckpt, text)
    meta = json.loads((text / "checkpoint.json").read_text())
    meta["corpus"]["kind"] = "text"
    (text / "checkpoint.json").write_text(json.dumps(meta))
    for args in (["--tunes", "5"], ["--seed", "3"], ["--temperature", "0.8"], ["--top-p", "1"]):
        r = runner.invoke(app, ["eval", str(text), *args])
        assert r.exit_code == 2 and f"{args[0]}: " in r.stderr, r.output
        assert "was trained on text, and the tune options apply to ABC models" in r.stderr
    r = runner.invoke(app, ["eval", str(text), "--tunes", "0"])
    assert r.exit_code == 0 and "validation loss" in r.stdout


@pytest.mark.slow
def test_eval_samples_with_seqgen_samples_top_p_unless_told(abc_ckpt, monkeypatch):
    """Eval measures the tunes users get: seqgen sample's default top-p for ABC models (0.95
    under the ABC constraint, 0.9 without), --top-p to choose another (1: the model's whole
    distribution)."""
    import seqgen.music.tunes as tunes_module

    seen = []
    real = tunes_module.sample_eval_tunes

    def spy(ckpt, count, seed, config, prompt="X:"):
        seen.append(config.top_p)
        return real(ckpt, count, seed, config, prompt)

    monkeypatch.setattr(tunes_module, "sample_eval_tunes", spy)
    runner = CliRunner()
    for args, want in (([], [0.95, 0.9]), (["--top-p", "1"], [1.0, 1.0]),
                       (["--top-p", "0.5"], [0.5, 0.5])):
        seen.clear()
        r = runner.invoke(app, ["eval", str(abc_ckpt), "--tunes", "2", "--length", "300",
                                "--format", "json", *args])
        assert r.exit_code == 0, r.output
        report = json.loads(r.stdout)
        assert seen == want and [m["top_p"] for m in report["modes"]] == want
        assert report["config"]["top_p"] == (None if not args else want[0])
    r = runner.invoke(app, ["eval", str(abc_ckpt), "--tunes", "2", "--length", "300"])
    # the table says how the tunes were sampled
    assert "top-p 0.95 with --constrain abc, 0.9 with --constrain none" in " ".join(
        r.stdout.split())
    r = runner.invoke(app, ["eval", str(abc_ckpt), "--tunes", "2", "--length", "300",
                            "--constrain", "none"])
    assert "top-p 0.9" in r.stdout
    r = runner.invoke(app, ["eval", str(abc_ckpt), "--top-p", "0"])
    assert r.exit_code == 2 and "--top-p must be in (0, 1], not 0.0" in r.stderr


def test_resolve_sampling_decides_the_defaults_of_sample_and_eval(abc_ckpt, tmp_path):
    """One function decides what `seqgen sample` and `seqgen eval` sample with unless told."""
    from seqgen.checkpoint import load_checkpoint
    from seqgen.errors import UsageError, VocabularyError
    from seqgen.music.tunes import SamplingRequest, resolve_sampling

    ckpt = load_checkpoint(abc_ckpt)
    notes = []
    r = resolve_sampling(ckpt, SamplingRequest(tunes=True), lambda *a: notes.append(a))
    c = r.config
    assert (c.constrain, c.top_p, c.length, r.prompt) == ("abc", 0.95, 1500, "X:") and not notes
    r = resolve_sampling(ckpt, SamplingRequest(prompt="X:1\nM:2/4\nK:D\n", tunes=True,
                                               top_p=1.0, constrain="none", length=300),
                         lambda *a: notes.append(a))
    assert (r.config.constrain, r.config.top_p, r.config.length) == ("none", 1.0, 300)
    assert r.prompt == "X:1\nM:2/4\nL:1/16\nK:D\n" and notes == [
        ("info", "the prompt's header has no L:; added L:1/16 (ABC's default for its meter)")]
    r = resolve_sampling(ckpt, SamplingRequest(meter="6/8", key="D", title="T"))
    assert r.prompt == "X:1\nT:T\nM:6/8\nL:1/8\nK:D\n" and r.config.length == 500
    assert r.config.key is None  # K: is in the prompt
    assert resolve_sampling(ckpt, SamplingRequest(key="D")).config.key == "D"
    with pytest.raises(UsageError, match="not both"):
        SamplingRequest(prompt="X:", meter="6/8").validate()
    with pytest.raises(UsageError, match="constrain must be abc or none"):
        SamplingRequest(constrain="xml").validate()
    with pytest.raises(VocabularyError, match="--prompt: 1 character"):
        resolve_sampling(ckpt, SamplingRequest(prompt="X:\u00e9"))
    notes.clear()
    r = resolve_sampling(ckpt, SamplingRequest(prompt="X:\u00e9", unknown="skip"),
                         lambda *a: notes.append(a))
    assert r.prompt == "X:" and notes[0][0] == "warning"
    # a text model: no constraint, top-p 1, and no tunes
    text = tmp_path / "text"
    shutil.copytree(abc_ckpt, text)
    meta = json.loads((text / "checkpoint.json").read_text())
    meta["corpus"]["kind"] = "text"
    (text / "checkpoint.json").write_text(json.dumps(meta))
    tck = load_checkpoint(text)
    c = resolve_sampling(tck, SamplingRequest()).config
    assert (c.constrain, c.top_p, c.length) == ("none", 1.0, 500)
    with pytest.raises(UsageError, match="tunes needs a model trained on ABC tunes"):
        resolve_sampling(tck, SamplingRequest(tunes=True))


# ------------------------------------------------------------------------- the default model
@pytest.mark.slow
def test_sample_uses_the_shipped_model_and_builds_the_header(tmp_path, monkeypatch):
    from seqgen.evaluate import default_model_dir
    from seqgen.music.convert import check_tune

    if default_model_dir() is None:
        pytest.skip("this checkout has no shipped default model (seqgen/assets/default)")
    monkeypatch.chdir(tmp_path)  # no checkpoints/ here: the shipped model is used
    runner = CliRunner()
    r = runner.invoke(app, ["sample", "--meter", "6/8", "--key", "Dmix", "--title", "The Test",
                            "--tunes", "1", "--seed", "3", "--out", "tunes"])
    assert r.exit_code == 0, r.output
    assert "assets/default" in r.stderr and "ABC constraint on" in r.stderr
    names = sorted(p.name for p in (tmp_path / "tunes").iterdir())
    # the tune, its MIDI, the page of the directory (and its audio, with a synthesizer)
    assert [n for n in names if n != "tune_01.ogg"] == ["index.html", "tune_01.abc", "tune_01.mid"]
    assert "open tunes/index.html" in r.stderr
    text = (tmp_path / "tunes" / "tune_01.abc").read_text()
    assert "\nT:The Test\nM:6/8\nL:1/8\nK:Dmix\n" in text
    check = check_tune(text)
    assert check.converts and check.headers_ok and check.ends_with_barline, check.reasons
    # --key alone: the model writes M: and L:, the constraint fixes K:
    r = runner.invoke(app, ["sample", "--key", "Dmix", "--tunes", "2", "--seed", "3"])
    assert r.exit_code == 0, r.output
    assert re.findall(r"\nK:(.*)\n", r.stdout) == ["Dmix", "Dmix"]
    heads = [t.split("\nK:")[0] for t in r.stdout.split("X:")[1:]]  # the model's own M: and L:
    assert len(heads) == 2 and all("\nM:" in h and "\nL:" in h for h in heads), heads
    r = runner.invoke(app, ["sample", "--key", "Dmix", "--constrain", "none", "--tunes", "1"])
    assert r.exit_code == 2 and "--key without --meter needs the ABC constraint" in r.stderr
    r = runner.invoke(app, ["sample", "--key", "Dloc", "--tunes", "1"])
    assert r.exit_code == 2 and "not a key the ABC constraint writes" in r.stderr
    r = runner.invoke(app, ["sample", "--meter", "7/x", "--tunes", "1"])
    assert r.exit_code == 2 and "--meter" in r.stderr
    r = runner.invoke(app, ["sample", "--constrain", "xml", "--tunes", "1"])
    assert r.exit_code == 2 and "--constrain must be abc or none" in r.stderr
    r = runner.invoke(app, ["sample", "--constrain", "none", "--tunes", "1", "--seed", "3"])
    assert r.exit_code == 0 and r.stdout.startswith("X:1\n")
    assert "ABC constraint on" not in r.stderr
    # a header prompt without L: gets ABC's default written out, as every training tune has it
    r = runner.invoke(app, ["sample", "--tunes", "1", "--seed", "3", "--prompt",
                            r"X:1\nM:2/4\nK:D\n"])
    assert r.exit_code == 0 and r.stdout.startswith("X:1\nM:2/4\nL:1/16\nK:D\n"), r.output
    assert "added L:1/16" in r.stderr
    # after a run of one's own, 'default' still names the shipped model
    shutil.copytree(default_model_dir(), tmp_path / "checkpoints" / "mine")
    r = runner.invoke(app, ["sample", "--tunes", "1", "--seed", "3", "--no-midi", "--out", "a"])
    assert r.exit_code == 0 and "checkpoints/mine" in r.stderr, r.output
    r = runner.invoke(app, ["sample", "default", "--tunes", "1", "--seed", "3"])
    assert r.exit_code == 0 and "assets/default" in r.stderr, r.output
    # a prompt the grammar refuses: the error comes before anything reaches stdout
    r = runner.invoke(app, ["sample", "--prompt", "ROMEO:", "--length", "20"])
    assert r.exit_code == 2 and "the prompt breaks the ABC grammar" in r.stderr
    assert r.stdout == ""
