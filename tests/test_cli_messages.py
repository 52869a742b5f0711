"""The exact error line of the CLI for every option a config declares a rule for, and for the
messages that name config fields: the library names the field, the CLI shows its option (one
source: the field's declaration, seqgen/config.py), and what the user reads stays as it was."""

from __future__ import annotations

import json
import os
from dataclasses import fields
from pathlib import Path

import pytest
from typer.testing import CliRunner

from seqgen.cli.app import app

runner = CliRunner()
CORES = os.cpu_count() or 1
LIMIT = max(64, 4 * CORES)

TRAIN = ["train", "poem.txt", "--steps", "1"]
# (command line, the last line on stderr); paths are relative to the `ws` workspace
CASES: list[tuple[list[str], str]] = [
    # TrainConfig and ModelConfig
    ([*TRAIN, "--model", "cnn"], "--model must be one of rnn, lstm, gru, transformer, not 'cnn'"),
    ([*TRAIN, "--preset", "huge"], "--preset must be one of auto, tiny, small, medium, not 'huge'"),
    ([*TRAIN, "--embed-dim", "0"], "--embed-dim must be > 0, not 0"),
    ([*TRAIN, "--num-layers", "-1"], "--num-layers must be > 0, not -1"),
    ([*TRAIN, "--batch-size", "0"], "--batch-size must be > 0, not 0"),
    ([*TRAIN, "--seq-len", "0"], "--seq-len must be > 0, not 0"),
    (["train", "poem.txt", "--steps", "0"], "--steps must be > 0, not 0"),
    ([*TRAIN, "--eval-every", "0"], "--eval-every must be > 0, not 0"),
    ([*TRAIN, "--eval-tokens", "0"], "--eval-tokens must be > 0, not 0"),
    ([*TRAIN, "--log-every", "0"], "--log-every must be > 0, not 0"),
    ([*TRAIN, "--lr", "0"], "--lr must be > 0, not 0.0"),
    ([*TRAIN, "--minutes", "0"], "--minutes must be > 0, not 0.0"),
    ([*TRAIN, "--warmup", "-1"], "--warmup-steps must be >= 0, not -1"),
    ([*TRAIN, "--patience", "-2"], "--patience must be >= 0, not -2"),
    ([*TRAIN, "--weight-decay", "-0.1"], "--weight-decay must be >= 0, not -0.1"),
    ([*TRAIN, "--grad-clip", "-1"], "--grad-clip must be >= 0, not -1.0"),
    ([*TRAIN, "--dropout", "1"], "--dropout must be in [0, 1), not 1.0"),
    ([*TRAIN, "--input-dropout", "1"], "--input-dropout must be in [0, 1), not 1.0"),
    ([*TRAIN, "--model", "transformer", "--input-dropout", "0.1"],
     "--input-dropout applies to the RNN kinds only, not to --model transformer"),
    ([*TRAIN, "--min-lr-ratio", "2"], "--min-lr-ratio must be in [0, 1], not 2.0"),
    ([*TRAIN, "--val-fraction", "1"], "--val-fraction must be in [0, 1), not 1.0"),
    ([*TRAIN, "--schedule", "step"], "--schedule must be one of cosine, constant, not 'step'"),
    ([*TRAIN, "--batching", "x"], "--batching must be one of auto, stateful, random, not 'x'"),
    ([*TRAIN, "--device", "tpu"], "--device must be one of auto, cpu, cuda, mps, not 'tpu'"),
    ([*TRAIN, "--precision", "fp8"], "--precision must be one of auto, fp32, bf16, not 'fp8'"),
    ([*TRAIN, "--abc-headers", "some"], "--abc-headers must be one of music, all, not 'some'"),
    ([*TRAIN, "--threads", "0"],
     f"--threads must be between 1 and {LIMIT} (this machine has {CORES} cores), not 0"),
    ([*TRAIN, "--model", "transformer", "--batching", "stateful"],
     "--batching stateful applies to RNN kinds; the transformer trains on random windows"),
    ([*TRAIN, "--embedding", "dense"], "--embedding must be one of learned, onehot, not 'dense'"),
    ([*TRAIN, "--activation", "relu"],
     "--activation applies to the vanilla rnn only (--model rnn), not to lstm"),
    ([*TRAIN, "--model", "rnn", "--init", "zeros"],
     "--init must be one of default, identity, not 'zeros'"),
    ([*TRAIN, "--model", "transformer", "--hidden-size", "30", "--num-heads", "4"],
     "--hidden-size (30) must be a multiple of --num-heads (4)"),
    ([*TRAIN, "--model", "transformer", "--context-length", "1"],
     "--context-length must be >= 2, not 1"),
    ([*TRAIN, "--model", "transformer", "--hidden-size", "33", "--num-heads", "3",
      "--positional", "sinusoidal"],
     "--hidden-size must be even with --positional sinusoidal, not 33"),
    ([*TRAIN, "--model", "transformer", "--embedding", "onehot", "--hidden-size", "8",
      "--num-heads", "2"],
     "--embedding onehot puts the one-hot vector in the transformer's residual stream: "
     "--hidden-size (8) must be >= the vocabulary size (28)"),
    ([*TRAIN, "--model", "transformer", "--seq-len", "100", "--context-length", "64"],
     "--seq-len (100) must not exceed --context-length (64) for the transformer"),
    ([*TRAIN, "--model", "transformer", "--embed-dim", "8"],
     "--embed-dim applies to the RNN kinds only, not to --model transformer"),
    ([*TRAIN, "--model", "gru", "--positional", "learned"],
     "--positional applies to the transformer only, not to --model gru"),
    ([*TRAIN, "--batch-size", "500", "--seq-len", "16"],
     "poem.txt: the training split has 7,421 tokens, too few for --batch-size 500 rows of "
     "--seq-len 16; use a smaller --batch-size or --seq-len"),
    (["train", "--resume", "ckpt", "--model", "gru"],
     "--model cannot change when resuming (the run was trained with 'lstm'); start a new run "
     "instead"),
    (["train", "--resume", "ckpt", "--lr", "0.5"],
     "--lr cannot change when resuming (the run was trained with 0.005); start a new run "
     "instead"),
    (["train", "--resume", "badtrain"],
     'badtrain/checkpoint.json: "train_config" is invalid (--lr must be > 0, not -1.0)'),
    (["train", "poem.txt", "--init-from", "ckpt", "--embedding", "onehot", "--steps", "1"],
     "--embedding onehot: --init-from ckpt fine-tunes its own model (embedding learned); drop "
     "--embedding"),
    (["train", "poem.txt", "--init-from", "ckpt", "--num-layers", "3", "--steps", "1"],
     "--num-layers 3: --init-from ckpt fine-tunes its own model (num layers 1); drop "
     "--num-layers"),
    (["train", "--resume", "emptydir"],
     "emptydir: not a seqgen checkpoint (no checkpoint.json in it); --resume takes a run "
     "directory"),
    (["train", "allopen.abc", "--steps", "1"],
     "allopen.abc: normalising dropped every tune (normalised 1 tune (0 changed): nothing to "
     "repair; dropped 1 (unrepairable: 1 abc2midi: found another |: after a |:)); train on the "
     "tunes as written with --no-abc-normalise"),
    (["train", "emptydir", "--steps", "1"],
     "emptydir: no files match '*' in this directory; try --glob"),
    # SampleConfig and SamplingRequest
    (["sample", "ckpt", "--length", "-1"], "--length must be >= 0, not -1"),
    (["sample", "ckpt", "--temperature", "nan"], "--temperature must be a number >= 0, not nan"),
    (["sample", "ckpt", "--top-k", "-1"], "--top-k must be >= 0 (0 = off), not -1"),
    (["sample", "ckpt", "--top-p", "0"], "--top-p must be in (0, 1] (1 = off), not 0.0"),
    (["sample", "ckpt", "--num-samples", "0"], "--num-samples must be >= 1, not 0"),
    (["sample", "ckpt", "--stop", ""], "--stop must be a non-empty string"),
    (["sample", "ckpt", "--constrain", "xml"], "--constrain must be abc or none, not 'xml'"),
    (["sample", "ckpt", "--threads", "0"],
     f"--threads must be between 1 and {LIMIT} (this machine has {CORES} cores), not 0"),
    (["sample", "ckpt", "--meter", "7"],
     "--meter must be a meter such as 6/8, 3/4, 2/4, C or C|, not '7'"),
    (["sample", "ckpt", "--key", "H"], "--key must be a key such as D, Em, Ador or Dmix, not 'H'"),
    (["sample", "ckpt", "--title", " "], "--title must not be empty"),
    (["sample", "ckpt", "--prompt", "X", "--meter", "6/8"],
     "give --prompt (or --prompt-file) or --meter/--key/--title, not both"),
    (["sample", "ckpt", "--form", "AB1"],
     "--form: give letters A-Z, one a part, a letter doubled for a repeated part (AABB, AB, "
     "AABA); or corpus (drawn from the training tunes) or free (none), not 'AB1'"),
    (["sample", "ckpt", "--form", "AAAB"],
     "--form: give a letter at most twice in a row (doubled, it is a repeated part); or corpus "
     "(drawn from the training tunes) or free (none), not 'AAAB'"),
    (["sample", "ckpt", "--bars", "8"],
     "--bars needs a --form of letters such as AABB (a form drawn from the training tunes has "
     "their part lengths)"),
    (["sample", "ckpt", "--form", "AB", "--bars", "0"], "--bars must be in [1, 64], not 0"),
    (["sample", "ckpt", "--form", "AB", "--bars", "65"], "--bars must be in [1, 64], not 65"),
    (["sample", "ckpt", "--form", "AABB"],
     "--form needs a model trained on ABC tunes; ckpt was trained on text (poem.txt)"),
    (["eval", "ckpt", "--form", "AABB"],
     "--form: ckpt was trained on text, and the tune options apply to ABC models; drop it (eval "
     "scores the held-out loss)"),
    (["sample", "badmodel"],
     "badmodel/checkpoint.json: model config is invalid: --num-layers must be > 0, not 0"),
    # EvalConfig
    (["eval", "ckpt", "--tunes", "-1"], "--tunes must be >= 0, not -1"),
    (["eval", "ckpt", "--temperature", "0"], "--temperature must be > 0, not 0.0"),
    (["eval", "ckpt", "--top-p", "2"], "--top-p must be in (0, 1], not 2.0"),
    (["eval", "ckpt", "--length", "5"], "--length must be >= 10 characters, not 5"),
    (["eval", "ckpt", "--eval-tokens", "-1"], "--eval-tokens must be >= 0 (0: all), not -1"),
    (["eval", "ckpt", "--jobs", "0"], "--jobs must be >= 1, not 0"),
    # Limits
    (["abc2midi", "tune.abc", "--timeout", "0"], "--timeout must be > 0 seconds"),
    (["abc2midi", "tune.abc", "--max-chars", "0"], "--max-chars must be > 0"),
    (["convert", "tune.abc", "--to", "midi", "--max-bars", "0"], "--max-bars must be > 0"),
    (["abc2midi", "tune.abc", "--tempo", "1001"],
     "--tempo must be between 1 and 1000 quarter notes a minute, not 1001"),
    (["convert", "tune.abc", "--to", "midi", "--instrument", "kazoo"],
     "--instrument: unknown instrument 'kazoo'; use one of accordion, bagpipe, banjo, bass, "
     "bassoon, cello, clarinet, concertina, dulcimer, fiddle, fiddle-ensemble, flute, guitar, "
     "harmonica, harp, harpsichord, oboe, ocarina, organ, pan-flute, piano, piccolo, pipes, "
     "recorder, steel-guitar, strings, trumpet, viola, violin, whistle, or a General MIDI "
     "program 1-128"),
    (["abc2midi", "tune.abc", "--instrument", "129"],
     "--instrument: General MIDI programs run from 1 to 128, not 129"),
    # --tune (seqgen.music.abc.select_tune names its parameter `tune`)
    (["abc2midi", "tune.abc", "--tune", "#5"],
     "--tune #5: tune.abc: there is no tune #5: the file holds 1 tune (#1 to #1)"),
    (["convert", "dupes.abc", "--to", "svg", "--tune", "2"],
     "--tune 2: dupes.abc: 2 tunes have X:2: #2 (X:2, line 4, 'Reel'), #3 (X:2, line 7, "
     "'Jig'); choose one by position, e.g. --tune '#2', or by title"),
    (["abc2midi", "dupes.abc", "--tune", "7"],
     "--tune 7: dupes.abc: no tune has X:7 (X: numbers run from 1 to 2); '#N' picks the N-th "
     "tune"),
    (["abc2midi", "dupes.abc", "--tune", "hornpipe"],
     "--tune hornpipe: dupes.abc: no tune is titled 'hornpipe' (nor has a title starting so); "
     "give an X: number, '#N' for the N-th tune, or a title"),
    # inspect
    (["inspect", "gradients", "--corpus", "tiny.txt", "--length", "50"],
     "the corpus has 9 characters, fewer than --length + 1 (51); use a smaller --length"),
    (["inspect", "gradients", "ckpt", "--recurrent-scale", "0"],
     "--recurrent-scale must be > 0, not 0"),
]


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """The bad-input table's workspace (a 2-step LSTM in ckpt/), and two copies of its run with
    a bad value in checkpoint.json."""
    import shutil

    from test_reliability_inputs import workspace

    root = workspace(tmp_path_factory.mktemp("messages"))
    for name, key, field, value in (("badmodel", "model_config", "num_layers", 0),
                                    ("badtrain", "train_config", "lr", -1.0)):
        shutil.copytree(root / "ckpt", root / name)
        meta_path = root / name / "checkpoint.json"
        meta = json.loads(meta_path.read_text())
        meta[key][field] = value
        meta_path.write_text(json.dumps(meta))
    (root / "allopen.abc").write_text("X:1\nT:Open\nM:6/8\nL:1/8\nK:G\n|:GAB c2d|GAB c2d|\n"
                                      "|:GAB c2d|B3 G3:|\n")  # unrepairable: dropped
    (root / "dupes.abc").write_text("X:1\nT:Air\nK:G\nX:2\nT:Reel\nK:D\nX:2\nT:Jig\nK:A\n")
    return root


@pytest.mark.slow
@pytest.mark.parametrize("args, message", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_the_cli_names_the_option_of_the_field(ws, args, message):
    old = os.getcwd()
    os.chdir(ws)
    try:
        r = runner.invoke(app, args)
    finally:
        os.chdir(old)
    assert r.exit_code == 2, r.output
    assert r.stderr.strip().splitlines()[-1] == f"error: {message}"


def test_library_messages_name_the_field_and_carry_it():
    from seqgen.errors import UsageError
    from seqgen.sampling import SampleConfig
    from seqgen.train import TrainConfig

    with pytest.raises(UsageError) as e:
        SampleConfig(top_p=2.0).validate()
    assert str(e.value) == "top_p must be in (0, 1] (1 = off), not 2.0"
    assert (e.value.field, e.value.config) == ("top_p", SampleConfig)
    with pytest.raises(UsageError) as e:
        TrainConfig(kind="cnn").validate()
    assert str(e.value) == "kind must be one of rnn, lstm, gru, transformer, not 'cnn'"
    assert e.value.field == "kind"


def test_tune_choice_messages_name_the_parameter():
    """select_tune is library code: its messages name `tune`, which the CLI shows as --tune."""
    from seqgen.cli.console import message
    from seqgen.errors import UsageError
    from seqgen.music.abc import select_tune

    tunes = ["X:2\nT:Reel\nK:D\n", "X:2\nT:Jig\nK:A\n"]
    with pytest.raises(UsageError) as e:
        select_tune(tunes, "2")
    assert e.value.field == "tune" and "e.g. tune '#1'" in str(e.value)
    assert "e.g. --tune '#1'" in message(e.value)
    assert select_tune(tunes, "#2") == 1 and select_tune(tunes, "jig") == 1


def test_a_message_about_several_fields_shows_each_option():
    from seqgen.cli.console import message
    from seqgen.errors import UsageError
    from seqgen.sampling import SampleConfig

    with pytest.raises(UsageError) as e:
        SampleConfig(key="G", constrain="none").validate()
    assert str(e.value) == ("key without meter needs the ABC constraint (constrain abc, the "
                            "default for ABC models), or give meter too")
    assert message(e.value) == ("--key without --meter needs the ABC constraint (--constrain "
                                "abc, the default for ABC models), or give --meter too")


def test_an_error_without_fields_keeps_its_backticks():
    """Backticks in user text (ABC's beam breaks) are no field unless the error says so."""
    from seqgen.cli.console import message
    from seqgen.errors import DataError

    e = DataError("tune 1: a`b`c")
    assert str(e) == message(e) == "tune 1: a`b`c" and e.fields == ()


def _raise_usage_error() -> None:
    from seqgen.errors import UsageError
    from seqgen.music.convert import Limits

    raise UsageError("`timeout_s` must be > 0", config=Limits)


def test_errors_keep_their_fields_across_worker_processes():
    """Conversion workers send errors between processes: one raised in a worker reaches the
    parent with its fields (as the process pool carries it, no pickling of our own)."""
    from concurrent.futures import ProcessPoolExecutor

    from seqgen.cli.console import message

    with ProcessPoolExecutor(1) as pool:
        e = pool.submit(_raise_usage_error).exception()
    assert (str(e), message(e)) == ("timeout_s must be > 0", "--timeout must be > 0")


@pytest.mark.parametrize("config, command", [
    ("seqgen.train:TrainConfig", "train"), ("seqgen.sampling:SampleConfig", "sample"),
    ("seqgen.music.tunes:SamplingRequest", "sample"), ("seqgen.evaluate:EvalConfig", "eval"),
    ("seqgen.music.convert:Limits", "convert"), ("seqgen.models:ModelConfig", "train"),
])
def test_every_declared_option_is_an_option_of_its_command(config, command):
    """The flags the declarations give (and error messages show) are the command's own."""
    import importlib

    import typer

    from seqgen.config import flag_of

    module, name = config.split(":")
    cls = getattr(importlib.import_module(module), name)
    click_command = typer.main.get_command(app).commands[command]
    options = {o for p in click_command.params for o in p.opts + p.secondary_opts}
    arguments = {p.name for p in click_command.params if p.param_type_name == "argument"}
    # fields with no option of their own: the prompt's name in messages, the corpus argument,
    # the transformer's GELU form (exact for new models, tanh for old checkpoints), the form
    # distribution a checkpoint gives --form corpus
    inner = {"prompt_source", "corpus", "vocab_size", "decoder", "stop_at_eos", "gelu",
             "corpus_forms"}
    for f in fields(cls):
        flag = flag_of(cls, f.name)
        if f.name in inner or f.name in arguments:
            continue
        if cls.__name__ == "SamplingRequest" and f.name == "tunes":
            flag = "--tunes"
        assert flag in options, (cls.__name__, f.name, flag)


def test_the_rules_read_as_they_check(tmp_path: Path):
    """A Rule's words come from its bounds: the edges of each range pass and fail as said."""
    from seqgen.config import Rule

    assert Rule(gt=0).phrase() == "> 0" and Rule(ge=0, lt=1).phrase() == "in [0, 1)"
    assert Rule(gt=0, le=1, note="1 = off").phrase() == "in (0, 1] (1 = off)"
    assert Rule(ge=10, unit="characters").phrase() == ">= 10 characters"
    r = Rule(ge=0, lt=1)
    assert r.broken(0) is None and r.broken(0.999) is None
    assert r.broken(1) == r.broken(-0.1) == r.broken(float("nan")) == "in [0, 1)"
    assert Rule(ge=0, finite=True).broken(float("inf")) is not None
    assert Rule(choices=("a", "b")).broken("c") == "one of a, b"
