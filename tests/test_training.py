"""The training loop: presets, batching, exact resume, best checkpoint, early stopping, NaN."""

from __future__ import annotations

import json
import math
import os
import random
import re
import shutil

import numpy as np
import pytest
import torch

from seqgen import checkpoint as ck
from seqgen.devices import resolve_device
from seqgen.errors import DataError, Interrupted, TrainingError, UsageError
from seqgen.train import (
    DEFAULT_MINUTES,
    MANY_PASSES,
    MODEL_PRESETS,
    TRAIN_PRESETS,
    RandomWindows,
    StreamBatches,
    TrainConfig,
    Trainer,
    adamw,
    default_out,
    estimated_passes,
    hardware,
    plot_loss_curve,
    resolve_config,
    resolve_precision,
    runstate,
    start,
    train,
)

WORDS = ("the quick brown fox jumps over a lazy dog while seven wise kings sing of "
         "rivers and stone under pale moons").split()


def make_text(path, n_chars=12_000, seed=0, extra=""):
    rng = random.Random(seed)
    words, size = [], 0
    while size < n_chars:
        w = rng.choice(WORDS)
        words.append(w)
        size += len(w) + 1
        if rng.random() < 0.1:
            words.append(".\n")
    path.write_text(" ".join(words) + extra + "\n")
    return path


def tiny(tmp_path, **kw) -> TrainConfig:
    corpus = kw.pop("corpus", None) or str(make_text(tmp_path / "corpus.txt"))
    base = dict(corpus=corpus, preset="tiny", hidden_size=24, num_layers=1, batch_size=4,
                seq_len=16, steps=12, eval_every=4, warmup_steps=2, out=str(tmp_path / "run"),
                device="cpu", eval_tokens=512)
    if kw.get("kind") == "transformer":  # (options of the other kinds are refused)
        base.update(num_heads=2, context_length=16)
    else:
        base.update(embed_dim=8)
    base.update(kw)
    return TrainConfig(**base)


THREADS = 1  # the runs compared bit for bit fix their thread count


def weights(path):
    return ck.load_checkpoint(path).model.state_dict()


# --------------------------------------------------------------------------------- config
def test_presets_fill_fields_and_explicit_options_win():
    cfg, mc = resolve_config(TrainConfig(preset="small", hidden_size=100, lr=0.5), 40, 10**6)
    assert mc.hidden_size == 100 and cfg.hidden_size == 100 and cfg.lr == 0.5
    assert mc.embed_dim == MODEL_PRESETS["small"]["rnn"]["embed_dim"]
    assert cfg.batch_size == TRAIN_PRESETS["small"]["rnn"]["batch_size"]
    assert mc.vocab_size == 40 and cfg.minutes == DEFAULT_MINUTES  # default budget
    t, tm = resolve_config(TrainConfig(kind="transformer", preset="tiny"), 40, 10**6)
    assert t.seq_len == tm.context_length


def test_a_calibrated_run_drops_the_inputs_as_its_output():
    chosen = dict(hidden_size=512, num_layers=1, embed_dim=64, dropout=0.35, input_dropout=0.35,
                  batch_size=64, seq_len=64, lr=4e-3, weight_decay=0.0)
    cfg, mc = resolve_config(TrainConfig(minutes=5), 40, 180_000, chosen=chosen)
    assert (mc.dropout, mc.input_dropout, cfg.input_dropout) == (0.35, 0.35, 0.35)
    # a dropout given by hand: the inputs follow it, unless given too
    _, mc = resolve_config(TrainConfig(minutes=5, dropout=0.1), 40, 180_000, chosen=chosen)
    assert (mc.dropout, mc.input_dropout) == (0.1, 0.1)
    _, mc = resolve_config(TrainConfig(minutes=5, dropout=0.1, input_dropout=0.0), 40, 180_000,
                           chosen=chosen)
    assert (mc.dropout, mc.input_dropout) == (0.1, 0.0)
    # a named preset drops no inputs
    _, mc = resolve_config(TrainConfig(preset="medium"), 40, 180_000)
    assert mc.dropout == 0.35 and mc.input_dropout == 0.0


def test_auto_preset_depends_on_corpus_size_and_budget():
    small, _ = resolve_config(TrainConfig(), 40, 5_000)
    assert small.preset == "tiny"
    # a few passes over the corpus: the 1x256 LSTM without dropout (it cannot overfit yet)
    few, mc = resolve_config(TrainConfig(minutes=1.5), 40, 1_000_000)
    assert few.preset == "small" and mc.hidden_size == 256 and mc.dropout == 0
    assert resolve_config(TrainConfig(steps=2_000), 40, 1_000_000)[0].preset == "small"
    # many passes (the default budget on a corpus of folk tunes' size): wider, more dropout
    many, mm = resolve_config(TrainConfig(), 40, 580_000)
    assert many.minutes == DEFAULT_MINUTES
    assert estimated_passes(580_000, many.minutes * 60, None) >= MANY_PASSES
    assert many.preset == "medium" and mm.hidden_size > mc.hidden_size and mm.dropout > mc.dropout
    assert resolve_config(TrainConfig(steps=20_000), 40, 580_000)[0].preset == "medium"
    # the transformer's medium is for long budgets on big corpora only
    assert resolve_config(TrainConfig(kind="transformer"), 40, 580_000)[0].preset == "small"
    long, _ = resolve_config(TrainConfig(minutes=60, kind="transformer"), 40, 1_000_000)
    assert long.preset == "medium"
    gpu, _ = resolve_config(TrainConfig(minutes=1.5), 40, 1_000_000, device="cuda")
    assert gpu.preset == "medium"


@pytest.mark.parametrize("kw, option", [
    (dict(kind="cnn"), "kind"), (dict(preset="huge"), "preset"),
    (dict(hidden_size=0), "hidden_size"), (dict(batch_size=-1), "batch_size"),
    (dict(seq_len=0), "seq_len"), (dict(lr=0.0), "lr"), (dict(steps=0), "steps"),
    (dict(minutes=-1.0), "minutes"), (dict(dropout=1.0), "dropout"),
    (dict(device="tpu"), "device"), (dict(precision="fp8"), "precision"),
    (dict(kind="transformer", seq_len=64, context_length=32), "seq_len"),
    (dict(num_layers=0), "num_layers"),
    (dict(kind="transformer", batching="stateful"), "batching"),
    (dict(batching="sideways"), "batching"),
    (dict(abc_headers="some"), "abc_headers"),
])
def test_bad_config_names_the_option(kw, option):
    with pytest.raises(UsageError, match=option):
        resolve_config(TrainConfig(**kw), 40, 10**6)


def test_train_config_saved_before_abc_headers_existed_reads_abc_as_written():
    old = {k: v for k, v in TrainConfig().to_dict().items() if k != "abc_headers"}
    assert TrainConfig.from_dict(old).abc_headers == "all"  # resume/eval see the same corpus
    assert TrainConfig.from_dict(TrainConfig().to_dict()).abc_headers == "music"


def test_a_run_saved_before_input_dropout_existed_resumes_without_it(tmp_path):
    res = train(tiny(tmp_path, steps=2, dropout=0.2))
    meta_path = res.out / "checkpoint.json"
    meta = json.loads(meta_path.read_text())
    for key in ("train_config", "model_config"):
        del meta[key]["input_dropout"]  # as a checkpoint written before the field
    meta_path.write_text(json.dumps(meta))
    resumed = train(resume=res.out, overrides={"steps": 4})
    assert resumed.step == 4
    saved = ck.load_checkpoint(res.out)
    assert saved.model_config.input_dropout == 0.0 and saved.model_config.dropout == 0.2
    assert saved.train_config["input_dropout"] == 0.0


def test_cuda_without_cuda_is_a_usage_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(UsageError, match="CUDA is not available"):
        resolve_device("cuda")


# --------------------------------------------------------------------------------- batching
def test_stream_batches_carry_on_where_the_last_window_ended():
    ids = np.arange(1000, dtype=np.uint16)
    b = StreamBatches(ids, batch_size=4, seq_len=10, seed=0)
    x1, y1, fresh1 = b.next()
    x2, _, fresh2 = b.next()
    assert fresh1 and not fresh2
    assert x1.shape == (4, 10) and x1.dtype == torch.int64
    assert torch.equal(y1, x1 + 1)  # targets are the next token
    assert torch.equal(x2[:, 0], x1[:, -1] + 1)  # row r's window 2 follows window 1
    assert torch.equal(x1[:, 0], torch.arange(4) * (999 // 4))  # rows are equal parts
    for _ in range(b.windows - 2):  # finish the epoch
        assert not b.next()[2]
    x3, _, fresh = b.next()  # the next epoch starts fresh, at a new offset in [0, seq_len)
    assert fresh and b.epoch == 1 and 0 <= int(x3[0, 0]) < 10


def test_stream_batches_resume_and_split_across_ranks():
    ids = np.arange(2000, dtype=np.uint16)
    a = StreamBatches(ids, 4, 8, seed=3)
    for _ in range(70):
        a.next()
    b = StreamBatches(ids, 4, 8, seed=3)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    full = a.next()[0]
    assert torch.equal(b.next()[0], full)
    parts = []
    for rank in range(2):
        r = StreamBatches(ids, 4, 8, seed=3, rank=rank, world=2)
        r.load_state_dict(a.state_dict())
        r.window -= 1
        parts.append(r.next()[0])
    assert torch.equal(torch.cat(parts), full)


def test_random_windows_resume_and_split_across_ranks():
    ids = np.arange(500, dtype=np.uint16)
    a = RandomWindows(ids, 6, 12, seed=1)
    a.next()
    state = json.loads(json.dumps(a.state_dict()))
    x, y, _ = a.next()
    assert torch.equal(y, x + 1) and int(x.max()) + 1 < 500
    b = RandomWindows(ids, 6, 12, seed=1)
    b.load_state_dict(state)
    assert torch.equal(b.next()[0], x)
    halves = []
    for rank in range(3):
        r = RandomWindows(ids, 6, 12, seed=1, rank=rank, world=3)
        r.load_state_dict(state)
        halves.append(r.next()[0])
    assert torch.equal(torch.cat(halves), x)


# --------------------------------------------------------------------------------- training
def test_a_stop_request_at_the_last_step_finishes_the_run(tmp_path):
    """Ctrl-C that lands during the last step: the run ends as it would have (final evaluation,
    best/, exit 0), not as an interrupted run whose resume has nothing left to do."""
    trainer = Trainer(tiny(tmp_path, steps=6, eval_every=4))
    trainer.callback = lambda ev: ev.kind == "step" and ev.step == 6 and trainer.request_stop()
    res = trainer.run()
    assert res.step == 6 and res.stop_reason == "steps" and res.val_loss is not None
    assert ck.load_checkpoint(res.out).metrics.get("interrupted") is None
    assert ck.load_checkpoint(res.out).metrics["step"] == 6


@pytest.mark.slow
@pytest.mark.parametrize("kind, dropout", [("lstm", 0.2), ("transformer", 0.1)])
def test_resume_after_interrupt_equals_straight_run(tmp_path, kind, dropout, monkeypatch):
    """N steps straight == stop at N/2 (as Ctrl-C does), resume, N/2 more: same weights.

    Bitwise only at one thread count (bf16 sums differ between 1 and 2 threads): the runs fix
    theirs, which the resume keeps, however many cores sit idle at each start."""
    import itertools

    import seqgen.devices

    idle = itertools.cycle([2.0, 1.0])  # a busy machine: the idle cores change between starts
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(seqgen.devices, "idle_cores", lambda: next(idle))
    corpus = str(make_text(tmp_path / "c.txt"))
    # (the LSTM drops its inputs too: their masks must repeat exactly after the resume)
    drop = dict(dropout=dropout) | ({"input_dropout": dropout} if kind == "lstm" else {})
    straight = train(tiny(tmp_path, corpus=corpus, kind=kind, threads=THREADS, **drop,
                          out=str(tmp_path / "a")))
    assert straight.step == 12

    trainer = Trainer(tiny(tmp_path, corpus=corpus, kind=kind, threads=THREADS, **drop,
                           out=str(tmp_path / "b")))
    trainer.callback = lambda ev: ev.step == 6 and trainer.request_stop()
    with pytest.raises(Interrupted, match=r"--resume .*b"):
        trainer.run()
    assert ck.load_checkpoint(tmp_path / "b").step == 6
    resumed = train(resume=tmp_path / "b")
    assert resumed.step == 12
    wa, wb = weights(tmp_path / "a"), weights(tmp_path / "b")
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    assert resumed.val_loss == straight.val_loss
    hist = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [h["step"] for h in hist if "val_loss" in h] == [4, 8, 12]
    # rewritten at the resume's first save (dropping nothing it kept), appended to after it
    assert hist == json.loads(json.dumps(resumed.history))
    whole = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [(h["step"], sorted(h)) for h in hist] == [(h["step"], sorted(h)) for h in whole]


def test_adamw_is_fused_on_cpu_and_a_resume_keeps_the_saved_kind(tmp_path, monkeypatch):
    """The fused AdamW (one kernel, ~5x faster steps on CPU) for new runs; a run saved with the
    per-tensor AdamW (before stop 12) resumes with it, so its resume stays exact."""
    p = torch.nn.Parameter(torch.zeros(3))
    assert adamw([{"params": [p], "weight_decay": 0.0}], 1e-3).defaults["fused"] is True
    fused = train(tiny(tmp_path, steps=4, out=str(tmp_path / "new")))
    meta = json.loads((fused.out / "train_state.json").read_text())
    assert all(g["fused"] is True for g in meta["optimizer"]["param_groups"])

    real = adamw
    monkeypatch.setattr(start, "adamw", lambda groups, lr: torch.optim.AdamW(
        groups, lr=lr, betas=(0.9, 0.99)))  # as seqgen built it before stop 12
    old = train(tiny(tmp_path, steps=4, out=str(tmp_path / "old")))
    monkeypatch.setattr(start, "adamw", real)
    built = []
    monkeypatch.setattr(start, "adamw", lambda groups, lr: built.append(real(groups, lr))
                        or built[-1])
    assert train(resume=old.out, overrides={"steps": 6}).step == 6
    assert built and all(g["fused"] is None for g in built[0].param_groups)


def test_resume_with_more_steps_continues_counting(tmp_path):
    first = train(tiny(tmp_path, steps=6))
    more = train(resume=first.out, overrides={"steps": 10})
    assert more.step == 10
    with pytest.raises(UsageError, match="already trained 10 steps"):
        train(resume=first.out)
    with pytest.raises(UsageError, match="hidden_size cannot change"):
        train(resume=first.out, overrides={"steps": 20, "hidden_size": 8})


def test_resume_finds_the_corpus_from_anywhere_and_refuses_another_text(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    make_text(tmp_path / "data" / "c.txt")
    monkeypatch.chdir(tmp_path / "data")
    first = train(tiny(tmp_path, corpus="c.txt", steps=4))  # a path relative to the cwd
    saved = ck.load_checkpoint(first.out).train_config["corpus"]
    assert saved == str(tmp_path / "data" / "c.txt")
    monkeypatch.chdir(tmp_path)
    assert train(resume=first.out, overrides={"steps": 6}).step == 6
    # the corpus moved: the error says how to resume; its new place is accepted
    (tmp_path / "data" / "c.txt").rename(tmp_path / "moved.txt")
    with pytest.raises(DataError, match=r"give its new place: seqgen train NEW_PLACE --resume"):
        train(resume=first.out, overrides={"steps": 8})
    res = train(resume=first.out, overrides={"steps": 8, "corpus": str(tmp_path / "moved.txt")})
    assert res.step == 8 and res.config.corpus == str(tmp_path / "moved.txt")
    # a different text under the run's corpus path is refused, not silently trained on
    make_text(tmp_path / "moved.txt", seed=9)
    with pytest.raises(DataError, match=r"moved.txt: not the text the run .* was trained on"):
        train(resume=first.out, overrides={"steps": 10})


def test_overwrite_removes_the_old_runs_best_checkpoint(tmp_path):
    old = train(tiny(tmp_path, steps=8))
    assert (old.out / "best").is_dir()
    (old.out / "loss.png").write_bytes(b"old curve")
    new = train(tiny(tmp_path, steps=2, val_fraction=0.0, overwrite=True))  # never evaluates
    assert not (new.out / "best").exists() and not (new.out / "loss.png").exists()
    assert ck.load_checkpoint(new.out).step == 2


def test_best_checkpoint_is_the_lowest_validation_loss(tmp_path, monkeypatch):
    losses = iter([3.0, 2.0, 2.5])
    monkeypatch.setattr(runstate, "held_out_loss", lambda *a, **k: (next(losses), 100))
    res = train(tiny(tmp_path))
    assert (res.best_val_loss, res.best_step, res.val_loss) == (2.0, 8, 2.5)
    best = ck.load_checkpoint(res.out / "best")
    assert best.step == 8 and best.metrics["val_loss"] == 2.0
    assert ck.load_checkpoint(res.out).step == 12
    assert best.metrics["val_bpc"] == pytest.approx(2.0 / math.log(2))


def test_patience_stops_early(tmp_path, monkeypatch):
    losses = iter([2.0, 2.1, 2.2, 2.3, 2.4])
    monkeypatch.setattr(runstate, "held_out_loss", lambda *a, **k: (next(losses), 100))
    res = train(tiny(tmp_path, steps=100, patience=2))
    assert res.stop_reason == "patience" and res.step == 12 and res.best_step == 4
    assert ck.load_train_state(res.out)[2].meta["stop_reason"] == "patience"  # saved with why


@pytest.mark.slow
def test_time_budget_ends_cleanly(tmp_path):
    res = train(tiny(tmp_path, steps=None, minutes=0.02, eval_every=1000))
    assert res.stop_reason == "time" and res.step > 0
    assert ck.load_checkpoint(res.out).step == res.step  # saved at the end
    assert res.val_loss is not None


@pytest.mark.slow
def test_resuming_a_run_whose_time_budget_is_spent(tmp_path):
    """`seqgen train` (a 5-minute budget) then `--resume DIR --steps N` trains to step N; a bare
    --resume says the budget is spent instead of training one step and stopping 'by time'."""
    res = train(tiny(tmp_path, steps=None, minutes=0.02, eval_every=1000))
    assert res.stop_reason == "time"
    with pytest.raises(UsageError, match=r"already spent its minutes 0.02 budget.*steps N"):
        train(resume=res.out)
    with pytest.raises(UsageError, match=r"already spent its minutes 0.02 budget"):
        train(resume=res.out, overrides={"minutes": 0.02})  # the same budget typed again
    more = train(resume=res.out, overrides={"steps": res.step + 5})
    assert more.step == res.step + 5 and more.stop_reason == "steps"
    assert more.config.minutes is None  # the step count replaced the time budget
    assert ck.load_checkpoint(res.out).train_config["minutes"] is None


def test_threads_follow_the_idle_cores_unless_given(tmp_path, monkeypatch):
    import seqgen.devices

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(seqgen.devices, "usable_cores", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))  # a quiet last minute
    monkeypatch.setattr(seqgen.devices, "idle_cores", lambda: 0.4)  # another job on the cores
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        starts = []

        def run(**kw):
            train(tiny(tmp_path, steps=2, out=str(tmp_path / str(len(starts))), **kw),
                  callback=lambda ev: ev.kind == "start" and starts.append(ev.message))
            assert torch.get_num_threads() == 2  # the caller's setting, back after the run

        run()
        assert re.search(r"cpu (fp32|bf16) 1 thread\(s\)", starts[-1])
        run(threads=2)
        assert re.search(r"cpu (fp32|bf16) 2 thread\(s\)", starts[-1])  # --threads decides
        monkeypatch.setattr(seqgen.devices, "idle_cores", lambda: 7.0)  # never above torch's
        run()
        assert re.search(r"cpu (fp32|bf16) 2 thread\(s\)", starts[-1])
        # idle at this moment, but other jobs kept the cores busy over the last minute
        monkeypatch.setattr(os, "getloadavg", lambda: (1.6, 1.0, 1.0))
        run()
        assert re.search(r"cpu (fp32|bf16) 1 thread\(s\)", starts[-1])
    finally:
        torch.set_num_threads(before)


def test_compile_without_a_compiler_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    import shutil as sh

    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(sh, "which", lambda name, *a, **k: None)
    with pytest.raises(UsageError, match="compile on CPU needs a C\\+\\+ compiler"):
        train(tiny(tmp_path, compile=True))
    assert not (tmp_path / "run").exists()  # no empty run directory left behind


def test_a_stopped_run_resumed_with_its_steps_keeps_its_time_left(tmp_path):
    """Ctrl-C half-way, then the same --steps typed again: the time budget still counts (the
    learning-rate schedule follows time as well as steps), as if the run had never stopped."""
    trainer = Trainer(tiny(tmp_path, steps=12, minutes=30))
    trainer.callback = lambda ev: ev.step == 6 and trainer.request_stop()
    with pytest.raises(Interrupted):
        trainer.run()
    more = train(resume=tmp_path / "run", overrides={"steps": 12})
    assert more.step == 12 and more.config.minutes == 30


def test_precision_auto_is_bf16_where_the_hardware_has_native_bf16(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True:
                        not including_emulation or True)  # an Ampere GPU
    monkeypatch.setattr(hardware, "_cpu_has_bf16", lambda: False)
    assert resolve_precision("auto", "cuda", "transformer") == "bf16"
    for kind in ("lstm", "gru", "rnn"):  # cuDNN RNNs would run in fp16 under autocast
        assert resolve_precision("auto", "cuda", kind) == "fp32"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True:
                        including_emulation)  # bf16 only emulated (a T4, a V100)
    assert resolve_precision("auto", "cuda:1", "transformer") == "fp32"
    assert resolve_precision("auto", "cpu", "transformer") == "fp32"
    assert resolve_precision("auto", "cpu", "lstm") == "fp32"
    monkeypatch.setattr(hardware, "_cpu_has_bf16", lambda: True)  # AMX or AVX-512 BF16
    for kind in ("transformer", "lstm", "gru", "rnn"):  # every kind on such a CPU
        assert resolve_precision("auto", "cpu", kind) == "bf16"
    assert resolve_precision("fp32", "cpu", "lstm") == "fp32"  # asked for: given


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, scale_training_loss):
    scale_training_loss(lambda n: float("nan") if n > 6 else 1.0)
    with pytest.raises(TrainingError, match=r"loss became nan at step 7.*last good checkpoint.*step 4"):
        train(tiny(tmp_path))
    good = ck.load_checkpoint(tmp_path / "run")
    assert good.step == 4
    assert all(torch.isfinite(v).all() for v in good.model.state_dict().values())


def test_init_from_fine_tunes_and_refuses_new_characters(tmp_path):
    base = train(tiny(tmp_path, steps=4))
    other = make_text(tmp_path / "other.txt", seed=5)
    tuned = train(tiny(tmp_path, corpus=str(other), steps=4, init_from=str(base.out),
                       hidden_size=None, out=str(tmp_path / "tuned")))
    assert tuned.model_config == ck.load_checkpoint(base.out).model_config
    # the dropouts are the fine-tune's own to set; the architecture stays
    drop = train(tiny(tmp_path, corpus=str(other), steps=2, init_from=str(base.out),
                      hidden_size=None, dropout=0.1, input_dropout=0.2, out=str(tmp_path / "d")))
    mc = ck.load_checkpoint(drop.out).model_config
    assert (mc.dropout, mc.input_dropout, mc.hidden_size) == (0.1, 0.2, tuned.model_config.hidden_size)
    assert ck.load_checkpoint(drop.out).train_config["input_dropout"] == 0.2
    new = make_text(tmp_path / "new.txt", extra=" Zebra ~")
    with pytest.raises(DataError, match=r"2 character\(s\) not in the vocabulary.*'Z'.*'~'"):
        train(tiny(tmp_path, corpus=str(new), init_from=str(base.out), out=str(tmp_path / "x")))


@pytest.mark.parametrize("change, message", [
    (dict(hidden_size=48), r"hidden_size 48: init_from .* fine-tunes its own model "
                           r"\(hidden size 24\); drop hidden_size"),
    (dict(num_layers=2), r"num_layers 2: .*\(num layers 1\)"),
])
def test_init_from_refuses_a_different_architecture(tmp_path, change, message):
    base = train(tiny(tmp_path, steps=2))
    with pytest.raises(UsageError, match=message):
        train(tiny(tmp_path, init_from=str(base.out), out=str(tmp_path / "t"), **change))
    assert not (tmp_path / "t").exists()


def test_options_of_another_kind_are_refused_from_python_too(tmp_path):
    with pytest.raises(UsageError, match="num_heads applies to the transformer only"):
        train(tiny(tmp_path, num_heads=3))
    with pytest.raises(UsageError, match="embed_dim applies to the RNN kinds only"):
        train(tiny(tmp_path, kind="transformer", embed_dim=8))
    base = train(tiny(tmp_path, kind="gru", steps=2, out=str(tmp_path / "gru")))
    # the checkpoint's config holds every field (num_heads 4 for a GRU too): still refused
    with pytest.raises(UsageError, match="num_heads applies to the transformer only"):
        train(tiny(tmp_path, init_from=str(base.out), embed_dim=None, num_heads=4,
                   out=str(tmp_path / "g")))
    with pytest.raises(UsageError, match="kind transformer: init_from .* fine-tunes its "
                                         r"own model \(gru\)"):
        train(tiny(tmp_path, kind="transformer", init_from=str(base.out), hidden_size=None,
                   num_heads=None, context_length=None, out=str(tmp_path / "t")))


def test_init_from_transformer_refuses_seq_len_beyond_its_context(tmp_path):
    base = train(tiny(tmp_path, kind="transformer", steps=2))
    with pytest.raises(UsageError, match=r"seq_len 32: longer than the context length .*\(16\)"):
        train(tiny(tmp_path, kind="transformer", init_from=str(base.out), seq_len=32,
                   out=str(tmp_path / "t")))


def test_bad_data_and_outputs(tmp_path):
    with pytest.raises(DataError, match="seq_len"):
        train(tiny(tmp_path, corpus=str(make_text(tmp_path / "s.txt", n_chars=40)), seq_len=64,
                   batch_size=None))
    train(tiny(tmp_path, steps=2))
    with pytest.raises(UsageError, match="already holds a checkpoint"):
        train(tiny(tmp_path, steps=2))
    assert train(tiny(tmp_path, steps=2, overwrite=True)).step == 2


def test_default_out_is_numbered_when_taken(tmp_path):
    first = default_out("some/dir/songs.abc", root=str(tmp_path))
    assert first == tmp_path / "songs"
    first.mkdir()
    (first / "checkpoint.json").write_text("{}")
    assert default_out("songs.abc", root=str(tmp_path)) == tmp_path / "songs-2"


def test_abc_corpus_validation_in_nats_and_bits(tmp_path):
    tunes = "".join(f"X:{i}\nT:Tune {i}\nZ:me@example.com\nK:G\n|:GABc dBAG|FGAB cAFD:|\n\n"
                    for i in range(1, 30))
    (tmp_path / "tunes.abc").write_text(tunes)
    started = []
    res = train(tiny(tmp_path, corpus=str(tmp_path / "tunes.abc"), kind="gru", steps=8),
                callback=lambda ev: ev.kind == "start" and started.append(ev.message))
    assert res.corpus_kind == "abc"
    loaded = ck.load_checkpoint(res.out)
    assert loaded.corpus_kind == "abc"
    # music headers (the default): the Z: line is not trained on, L: is filled in, and it is said
    assert "@" not in loaded.tokenizer.chars and "(ABC, music headers)" in started[0]
    # the forms of the training tunes, for each checkpoint of the run: one 2-bar part, repeated
    n = loaded.forms["tunes"]
    assert 20 <= n < 29 and ck.load_checkpoint(res.out / ck.BEST).forms == loaded.forms
    assert loaded.forms["groups"] == [{"meter": "", "rhythm": "", "tunes": n,
                                       "forms": {"AA": {"2": n}}, "plans": {}}]
    hist = [json.loads(x) for x in (res.out / "metrics.jsonl").read_text().splitlines()]
    evals = [h for h in hist if "val_loss" in h]
    assert evals and all(h["val_bpc"] == pytest.approx(h["val_loss"] / math.log(2)) for h in evals)
    assert evals[-1]["val_loss"] < math.log(res.model_config.vocab_size)  # learned something


def test_rnn_with_random_windows_trains(tmp_path):
    res = train(tiny(tmp_path, batching="random", steps=8, kind="rnn"))
    assert res.step == 8 and res.val_loss < math.log(res.model_config.vocab_size)


def test_bf16_autocast_trains(tmp_path):
    res = train(tiny(tmp_path, precision="bf16", steps=6, kind="lstm"))
    assert res.precision == "bf16" and math.isfinite(res.val_loss)


def test_loss_curve_png(tmp_path):
    hist = [{"step": 10, "train_loss": 3.0}, {"step": 20, "train_loss": 2.5},
            {"step": 20, "val_loss": 2.6, "train_loss": 2.5}]
    p = plot_loss_curve(hist, tmp_path / "loss.png", title="t")
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_compile_trains_the_same_model_as_eager(tmp_path):
    """--compile (torch.compile, inductor) changes speed, not results: same losses and weights as
    eager within float32 noise, and the checkpoint loads without torch.compile."""
    if not (shutil.which("g++") or shutil.which("clang++") or os.environ.get("CXX")):
        pytest.skip("torch.compile on CPU needs a C++ compiler")
    corpus = str(make_text(tmp_path / "c.txt"))
    eager = train(tiny(tmp_path, corpus=corpus, kind="transformer", num_layers=1, steps=6,
                       eval_every=3, out=str(tmp_path / "eager")))
    from torch._dynamo.utils import counters

    counters.clear()
    compiled = train(tiny(tmp_path, corpus=corpus, kind="transformer", num_layers=1, steps=6,
                          eval_every=3, out=str(tmp_path / "compiled"), compile=True))
    assert compiled.config.compile and compiled.step == 6
    assert counters["stats"]["unique_graphs"] > 0  # torch.compile did compile the model
    assert compiled.val_loss == pytest.approx(eager.val_loss, abs=1e-4)
    we, wc = weights(tmp_path / "eager"), weights(tmp_path / "compiled")
    assert we.keys() == wc.keys()  # no torch.compile wrapper names in the checkpoint
    for k in we:
        torch.testing.assert_close(wc[k], we[k], rtol=0, atol=1e-4)


def test_the_first_evaluation_is_foreseen_by_the_time_budget():
    """Before any evaluation, the budget leaves room for one at half the training speed."""
    from seqgen.train.meter import Meter

    m = Meter(100, eval_tokens=10_000)
    assert m.eval_s() == 0.0  # no speed measured yet
    m.tokens_per_s = 1_000.0
    assert m.eval_s() == 5.0
    m.last_eval_s = 2.0  # after one: as long as the last
    assert m.eval_s() == 2.0
