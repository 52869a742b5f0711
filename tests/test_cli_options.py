"""What every command shares: one meaning per short option, -q and --debug after the command,
a closed pipe as a normal end, several text samples separated on stdout."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer.main
from test_sampling import TOK, tiny_model
from typer.testing import CliRunner

from seqgen.checkpoint import save_checkpoint
from seqgen.cli.app import SHORT_OPTIONS, _commands, app

runner = CliRunner()
README = Path(__file__).resolve().parents[1] / "README.md"


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def short_options() -> dict[str, set[str]]:
    """Each short option of every command: the long options it stands for."""
    letters: dict[str, set[str]] = {}
    root = typer.main.get_command(app)
    for _, command in [("seqgen", root), *_commands(root)]:
        for p in command.params:
            for o in (*p.opts, *p.secondary_opts):
                if re.fullmatch(r"-\w", o):
                    letters.setdefault(o, set()).add(next(x for x in p.opts if x.startswith("--")))
    letters["-h"] = {"--help"}
    return letters


def test_each_short_option_means_one_thing_in_every_command():
    letters = short_options()
    assert letters == {k: set(v) for k, v in SHORT_OPTIONS.items()}
    # one meaning: the long names a letter stands for are the same option (-o: output)
    assert letters["-s"] == {"--seed"} and letters["-t"] == {"--temperature"}
    assert letters["-n"] == {"--length"} and letters["-p"] == {"--prompt"}
    assert letters["-f"] == {"--format"}


def test_readme_and_help_list_the_short_options():
    readme = " ".join(README.read_text().split())
    helptext = " ".join(invoke("--help").stdout.split())
    for letter, longs in SHORT_OPTIONS.items():
        assert f"`{letter}`" in readme, letter
        for name in longs:
            assert f"`{name}`" in readme, name
        if letter != "-h":
            assert f"{letter} {' / '.join(longs)}" in helptext, letter


def test_train_s_is_the_seed_not_the_steps():
    root = typer.main.get_command(app)
    train = root.commands["train"]
    ctx = train.make_context("train", ["x.txt", "-s", "42"])
    assert ctx.params["seed"] == 42 and ctx.params["steps"] is None


@pytest.mark.parametrize("args,means", [
    (["train", "x.txt", "-t", "1"], "-t is --temperature in eval, sample"),
    (["train", "x.txt", "-p", "small"], "-p is --prompt in inspect attention, sample"),
    (["sample", "-N", "3"], "No such option: -N"),
])
def test_a_letter_a_command_lacks_is_refused_with_its_meaning(args, means):
    r = invoke(*args)
    assert r.exit_code == 2 and means in r.stderr, r.stderr


@pytest.fixture(scope="module")
def text_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ck") / "text"
    return save_checkpoint(path, tiny_model("transformer"), TOK, {}, "test-text", "text", step=1)


def test_quiet_and_debug_after_the_command(text_ckpt):
    after = invoke("sample", text_ckpt, "-p", "ab", "-n", "5", "--seed", "1", "-q")
    before = invoke("-q", "sample", text_ckpt, "-p", "ab", "-n", "5", "--seed", "1")
    assert after.exit_code == 0 and after.stderr == "" and after.stdout == before.stdout
    r = invoke("tokenizer", "show", "nothere.json", "--debug")
    assert r.exit_code != 0 and r.exception is not None  # --debug: the error propagates


def test_several_text_samples_are_separated_on_stdout(text_ckpt):
    r = invoke("sample", text_ckpt, "-p", "ab", "-n", "20", "--num-samples", "3", "--seed", "3")
    assert r.exit_code == 0, r.stderr
    parts = r.stdout.split("\n" + "-" * 15 + "\n")
    assert len(parts) == 3 and all(p.startswith("ab") for p in parts), r.stdout
    one = invoke("sample", text_ckpt, "-p", "ab", "-n", "20", "--seed", "3")
    assert "-" * 15 not in one.stdout
    js = invoke("sample", text_ckpt, "-p", "ab", "-n", "20", "--num-samples", "3", "--seed", "3",
                "-f", "json")
    assert "-" * 15 not in js.stdout and len(js.stdout.splitlines()) == 3


def test_a_newline_in_a_grammar_error_is_shown_once_escaped():
    from seqgen.cli.console import message
    from seqgen.music.grammar import AbcConstraint, ConstraintError
    from seqgen.tokenizer import Tokenizer

    with pytest.raises(ConstraintError) as e:
        AbcConstraint(Tokenizer.build(["hello world"]).itos)
    shown = message(e.value)
    assert "('\\n/18:KLMX|')" in shown and "\\\\n" not in shown, shown


def test_closed_pipe_is_a_normal_end(text_ckpt, monkeypatch):
    import seqgen.sampling

    def closed(*a, **k):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(seqgen.sampling.Sampler, "__iter__", closed)
    r = invoke("sample", text_ckpt, "-p", "ab")
    assert r.exit_code == 0 and "error" not in r.stderr


def test_counts_and_choices_read_as_words(tmp_path):
    one = tmp_path / "one.txt"
    one.write_text("a single document\n")
    r = invoke("tokenizer", "build", one, "-o", tmp_path / "v.json")
    assert r.exit_code == 0 and "1 document," in r.stderr, r.stderr
    r = invoke("sample", "-f", "xml")
    assert r.exit_code == 2 and "'xml' is not one of text or json" in r.stderr, r.stderr
    assert "Value error" not in r.stderr


def test_models_takes_a_checkpoint_directory_for_its_vocabulary(text_ckpt):
    r = invoke("models", "--vocab", text_ckpt)
    assert r.exit_code == 0, r.stderr
    assert f"vocabulary of {TOK.vocab_size} tokens" in " ".join(r.stdout.split())


def test_load_checkpoint_default_is_the_shipped_model(tmp_path, monkeypatch):
    from seqgen.checkpoint import default_model_dir, load_checkpoint

    if default_model_dir() is None:
        pytest.skip("this installation has no shipped model")
    monkeypatch.chdir(tmp_path)  # no ./default here
    assert load_checkpoint("default").path == default_model_dir()
