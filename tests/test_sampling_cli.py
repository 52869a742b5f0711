"""`seqgen sample`: options, streaming, JSON, tunes written to files, and one-line errors."""

from __future__ import annotations

import json

import pytest
from test_sampling import CHAIN, TOK, bigram_model, tiny_model
from typer.testing import CliRunner

from seqgen.checkpoint import save_checkpoint
from seqgen.cli.app import app

runner = CliRunner()


def invoke(*args: str):
    r = runner.invoke(app, list(args))
    assert "Traceback" not in r.stderr, r.stderr
    return r


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """An ABC checkpoint whose model plays 'a b c d |' then <eos> after a newline."""
    path = tmp_path_factory.mktemp("ck") / "run"
    return save_checkpoint(path, bigram_model(CHAIN), TOK, {}, "test-tunes", "abc", step=3)


@pytest.fixture(scope="module")
def text_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ck") / "text"
    return save_checkpoint(path, tiny_model("transformer"), TOK, {}, "test-text", "text", step=1)


def test_prompt_is_continued_and_streamed_to_stdout_only(ckpt):
    r = invoke("sample", str(ckpt), "--prompt", r"X:1\nK:D\n", "--seed", "1")
    assert r.exit_code == 0, r.stderr
    assert r.stdout == "X:1\nK:D\nabcd|\n"  # prompt, sample (ended by <eos>), newline
    assert "end of document" in r.stderr and "seed 1" in r.stderr


def test_same_seed_same_text_and_options_reach_the_sampler(text_ckpt):
    args = ["sample", str(text_ckpt), "-p", "ab", "--length", "40", "--temperature", "0.9",
            "--top-k", "10", "--top-p", "0.95"]
    a = invoke(*args, "--seed", "5")
    b = invoke(*args, "--seed", "5")
    c = invoke(*args, "--seed", "6")
    assert a.exit_code == b.exit_code == c.exit_code == 0, a.stderr
    assert a.stdout == b.stdout != c.stdout
    assert a.stdout.startswith("ab")
    greedy = invoke("sample", str(text_ckpt), "-p", "ab", "-n", "10", "-t", "0", "--seed", "1")
    greedy2 = invoke("sample", str(text_ckpt), "-p", "ab", "-n", "10", "-t", "0", "--seed", "2")
    assert greedy.stdout == greedy2.stdout  # greedy ignores the seed


@pytest.mark.slow
def test_abc_models_sample_with_top_p_0_9_unless_told(tmp_path):
    """A tune is garbled by one unlikely character: for a model trained on ABC, seqgen sample
    leaves out the least likely 10% of the distribution unless --top-p says otherwise; a text
    model samples from all of it."""
    model = tiny_model("lstm")  # untrained: nearly uniform, so top-p 0.9 changes the text
    abc = save_checkpoint(tmp_path / "abc", model, TOK, {}, "tunes", "abc", step=1)
    text = save_checkpoint(tmp_path / "text", model, TOK, {}, "text", "text", step=1)

    def run(ck, *extra):
        r = invoke("sample", str(ck), "-p", "ab", "-n", "200", "--seed", "4", "--constrain",
                   "none", "--num-samples", "8", *extra)
        assert r.exit_code == 0, r.stderr
        return r

    default = run(abc)
    assert "top-p 0.9" in default.stderr
    assert default.stdout == run(abc, "--top-p", "0.9").stdout != run(abc, "--top-p", "1").stdout
    plain = run(text)
    assert "top-p" not in plain.stderr
    assert plain.stdout == run(text, "--top-p", "1").stdout != run(text, "--top-p", "0.9").stdout


def test_json_one_object_per_sample(text_ckpt):
    r = invoke("sample", str(text_ckpt), "-p", "ab", "-n", "30", "--num-samples", "3",
               "--format", "json", "--seed", "3", "--stop", "|")
    assert r.exit_code == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["index"] for row in rows] == [0, 1, 2]
    for row in rows:
        assert row["prompt"] == "ab" and len(row["tokens"]) == len(row["text"]) <= 30
        assert row["stop_reason"] in ("length", "eos", "stop") and "|" not in row["text"]
        assert row["seconds"] >= row["first_token_seconds"] >= 0 and row["seed"] == 3
        assert (row["stop_string"] == "|") == (row["stop_reason"] == "stop")


def test_stop_string_with_escape(ckpt):
    r = invoke("sample", str(ckpt), "-p", r"K:D\n", "--stop", "c", "--format", "json",
               "--seed", "0")
    [row] = [json.loads(line) for line in r.stdout.splitlines()]
    assert (row["text"], row["stop_reason"], row["stop_string"]) == ("ab", "stop", "c")


def test_prompt_file(ckpt, tmp_path):
    f = tmp_path / "p.abc"
    f.write_text("X:1\nK:D\n")
    r = invoke("sample", str(ckpt), "--prompt-file", str(f), "--seed", "0")
    assert r.exit_code == 0 and r.stdout == "X:1\nK:D\nabcd|\n"


def test_tunes_to_stdout_and_files(ckpt, tmp_path):
    r = invoke("sample", str(ckpt), "--tunes", "3", "-p", r"X:8\nK:D\n", "--seed", "0")
    assert r.exit_code == 0, r.stderr
    assert r.stdout == "".join(f"X:{i}\nK:D\nabcd|\n\n" for i in (1, 2, 3))
    out = tmp_path / "tunes"
    r = invoke("sample", str(ckpt), "--tunes", "2", "-p", r"X:1\nK:D\n", "--out", str(out),
               "--no-midi", "--no-page", "--seed", "0")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.split() == [str(out / "tune_01.abc"), str(out / "tune_02.abc")]
    assert (out / "tune_02.abc").read_text() == "X:2\nK:D\nabcd|\n"


def test_tunes_out_adds_to_the_tunes_already_there(ckpt, tmp_path):
    out = tmp_path / "tunes"
    for seed in ("0", "1"):
        r = invoke("sample", str(ckpt), "--tunes", "2", "-p", r"X:1\nK:D\n", "--out", str(out),
                   "--no-midi", "--no-page", "--seed", seed)
        assert r.exit_code == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == [f"tune_0{i}.abc" for i in (1, 2, 3, 4)]
    assert (out / "tune_04.abc").read_text() == "X:4\nK:D\nabcd|\n"
    assert "numbered from 3" in r.stderr
    r = invoke("sample", str(ckpt), "--tunes", "1", "--out", str(out / "tune_01.abc"))
    assert r.exit_code == 2 and "is a file; give a directory" in r.stderr
    # another run writing tunes there (it holds the directory's lock): refused, nothing written
    from seqgen.fileio import directory_lock

    with directory_lock(out):
        r = invoke("sample", str(ckpt), "--tunes", "1", "-p", r"X:1\nK:D\n", "--out", str(out),
                   "--no-midi", "--no-page", "--seed", "2")
    assert r.exit_code == 2 and "another seqgen run" in r.stderr, r.stderr
    assert len(list(out.iterdir())) == 4
    # tunes that never come (too short a --length): no empty directory left behind
    r = invoke("sample", str(ckpt), "--tunes", "1", "-p", r"X:1\nK:D\n", "--length", "2",
               "--out", str(tmp_path / "new"), "--no-midi", "--no-page", "--no-page", "--seed", "2")
    assert r.exit_code == 2 and "--length" in r.stderr and not (tmp_path / "new").exists()


def test_a_closed_stdout_or_no_memory_is_one_line_not_a_bug(ckpt, monkeypatch):
    import seqgen.sampling

    def closed(*a, **k):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(seqgen.sampling.Sampler, "__iter__", closed)
    r = invoke("--quiet", "sample", str(ckpt), "-p", "a")
    assert r.exit_code == 1 and r.stderr == ""  # the reader has gone: nothing to say

    def no_memory(*a, **k):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] data. DefaultCPUAllocator: not "
                           "enough memory: you tried to allocate 51200000000 bytes.")

    monkeypatch.setattr(seqgen.sampling.Sampler, "__iter__", no_memory)
    r = invoke("--quiet", "sample", str(ckpt), "-p", "a")
    assert r.exit_code == 1 and r.stderr.count("\n") == 1 and "bug" not in r.stderr
    assert "out of memory (it asked for 47.7 GiB at once)" in r.stderr


def test_tunes_also_written_as_midi(ckpt, tmp_path):
    pytest.importorskip("seqgen.music.convert")
    out = tmp_path / "tunes"
    r = invoke("sample", str(ckpt), "--tunes", "1", "-p", r"X:1\nM:6/8\nK:D\n", "--out",
               str(out), "--seed", "0")
    assert r.exit_code == 0, r.stderr
    assert (out / "tune_01.mid").read_bytes()[:4] == b"MThd"


def test_tunes_need_an_abc_model(text_ckpt):
    r = invoke("sample", str(text_ckpt), "--tunes", "2")
    assert r.exit_code == 2 and "ABC" in r.stderr


@pytest.mark.parametrize("args,code,message", [
    (["-p", "abz€"], 2, "'z', '€'"),
    (["--temperature", "-1"], 2, "--temperature"),
    (["--top-p", "0"], 2, "--top-p"),
    (["--num-samples", "0"], 2, "--num-samples"),
    (["--out", "x"], 2, "--tunes"),
    (["--no-midi"], 2, "--no-midi applies to the files --out writes"),
    (["--tunes", "1", "--out", "mine.abc"], 2, "give a directory name such as mine/"),
    (["--tunes", "3", "--num-samples", "2"], 2, "drop --num-samples"),
    (["-p", "a", "--prompt-file", "f"], 2, "--prompt-file"),
    (["--prompt-file", "/nonexistent/p.txt"], 2, "/nonexistent/p.txt"),
    (["--device", "tpu"], 2, "--device must be auto, cpu, cuda, cuda:N or mps, not 'tpu'"),
    (["--threads", "100000"], 2, "--threads must be between 1 and"),
    (["--meter", "6/8", "--title", "Wälz"], 2, "--meter/--key/--title: 6 character(s)"),
])
def test_bad_input_is_one_line_and_exit_2(ckpt, args, code, message):
    r = invoke("sample", str(ckpt), *args)
    assert r.exit_code == code, r.stdout
    assert message in r.stderr and r.stderr.count("error:") == 1


@pytest.mark.parametrize("args", [["--top-p", "0"], ["--length", "-1"], ["--stop", ""],
                                  ["--threads", "0"], ["--device", "tpu"], ["--no-midi"]])
def test_bad_options_fail_before_the_model_loads(ckpt, args):
    r = invoke("sample", str(ckpt), *args)
    assert r.exit_code == 2 and r.stderr.startswith("error:"), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1  # no checkpoint summary before it


def test_unknown_skip_warns_and_samples(ckpt):
    r = invoke("sample", str(ckpt), "-p", r"K:D\nz", "--unknown", "skip", "--seed", "0")
    assert r.exit_code == 0 and "'z'" in r.stderr and "skipped" in r.stderr
    assert r.stdout == "K:D\nabcd|\n"


def test_default_checkpoint_is_the_newest_under_checkpoints(tmp_path, monkeypatch, ckpt):
    import seqgen.evaluate

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(seqgen.evaluate, "default_model_dir", lambda: None)  # no shipped model
    r = invoke("sample")
    assert r.exit_code == 2 and "seqgen train" in r.stderr
    save_checkpoint(tmp_path / "checkpoints" / "run1", bigram_model(CHAIN), TOK, {}, "t", "abc", 1)
    r = invoke("sample", "-p", r"K:D\n", "--seed", "0")
    assert r.exit_code == 0 and r.stdout == "K:D\nabcd|\n"
    assert "checkpoints/run1" in r.stderr


def test_default_checkpoint_is_the_newest_runs_best(tmp_path, monkeypatch, ckpt):
    """A run that overfitted keeps its lowest validation loss in best/: that is what sampling
    picks when no checkpoint is named, not the run's last weights."""
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "checkpoints" / "run1"
    save_checkpoint(run / "best", bigram_model(CHAIN), TOK, {}, "t", "abc", 1)
    backwards = {"\n": "d", "d": "c", "c": "b", "b": "a", "a": "|", "|": ""}
    save_checkpoint(run, bigram_model(backwards), TOK, {}, "t", "abc", 9)  # the last weights
    r = invoke("sample", "-p", r"K:D\n", "--seed", "0")
    assert r.exit_code == 0 and r.stdout == "K:D\nabcd|\n"
    assert "checkpoints/run1/best" in r.stderr
    r = invoke("sample", str(run), "-p", r"K:D\n", "--seed", "0")  # named: exactly that one
    assert r.exit_code == 0 and r.stdout == "K:D\ndcba|\n"


def test_missing_checkpoint_is_a_one_line_error(tmp_path):
    r = invoke("sample", str(tmp_path / "nope"))
    assert r.exit_code == 2 and "nope" in r.stderr


def test_cli_imports_no_torch_at_module_level():
    import subprocess
    import sys

    code = "import sys, seqgen.cli.sample; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
