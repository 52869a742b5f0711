"""seqgen inspect: gradient norms through time (known answers), attention maps, plots, CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from seqgen.cli.app import app
from seqgen.inspect import (
    attention_maps,
    encode_windows,
    gradients_through_time,
    head_patterns,
    plot_attention,
    plot_gradients,
    sample_windows,
    unroll_recurrent,
    unroll_transformer,
)
from seqgen.models import ModelConfig, build_model
from seqgen.tokenizer import EOS_ID, Tokenizer

PNG = b"\x89PNG\r\n\x1a\n"
TEXT = ("the quick brown fox jumps over the lazy dog. " * 6).strip()


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def linear_rnn(a: float, c: float, layers: int, H: int = 6) -> torch.nn.Module:
    """A ReLU RNN that is exactly linear: W_hh = a*I, inputs ignored, a positive bias keeps every
    pre-activation > 0 (so relu' = 1), and layer 2 reads layer 1 through c*I."""
    m = build_model(ModelConfig(kind="rnn", vocab_size=7, hidden_size=H, num_layers=layers,
                                embed_dim=3, activation="relu"))
    with torch.no_grad():
        for k in range(layers):
            getattr(m.rnn, f"weight_hh_l{k}").copy_(a * torch.eye(H))
            getattr(m.rnn, f"bias_ih_l{k}").fill_(0.5)
            getattr(m.rnn, f"bias_hh_l{k}").zero_()
        m.rnn.weight_ih_l0.zero_()
        if layers > 1:
            m.rnn.weight_ih_l1.copy_(c * torch.eye(H))
    return m


@pytest.mark.parametrize("a", [0.7, 1.0, 1.15])
def test_linear_rnn_gradient_norms_follow_a_to_the_t(seed, a):
    T = 25
    prof = gradients_through_time(linear_rnn(a, 0.0, 1), torch.randint(0, 7, (3, T + 1)))
    v = prof.series["layer 1"]
    s = np.arange(T)
    assert v.shape == (T,)
    np.testing.assert_allclose(v / v[0], a**s, rtol=1e-4)
    assert prof.per_step_factor("layer 1") == pytest.approx(a, rel=1e-4)


def test_lower_layer_gets_every_path_through_the_layer_above(seed):
    # dL/dh1_{T-s} = sum over j of a^j * c * a^(s-j) * dL/dh2_T = c (s+1) a^s dL/dh2_T: only right
    # if both the recurrent and the upward path from each h1_t are counted.
    a, c, T = 0.8, 0.5, 20
    prof = gradients_through_time(linear_rnn(a, c, 2), torch.randint(0, 7, (2, T + 1)))
    s = np.arange(T)
    top = prof.series["layer 2"]
    np.testing.assert_allclose(top / top[0], a**s, rtol=1e-4)
    np.testing.assert_allclose(prof.series["layer 1"] / top[0], c * (s + 1) * a**s, rtol=1e-4)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru", "transformer"])
def test_unrolled_forward_matches_the_models_forward(seed, kind):
    cfg = ModelConfig(kind=kind, vocab_size=11, hidden_size=12, num_layers=2, embed_dim=5,
                      num_heads=3, context_length=16)
    m = build_model(cfg).eval()
    x = torch.randint(0, 11, (3, 9))
    unroll = unroll_transformer if kind == "transformer" else unroll_recurrent
    with torch.no_grad():
        ref = m(x)[0][:, -1]  # (B, V)
        mine, series = unroll(m, x)
    torch.testing.assert_close(mine, ref, rtol=1e-5, atol=1e-5)
    if kind == "lstm":
        assert set(series) == {"layer 1", "layer 2", "layer 1 cell", "layer 2 cell"}


def test_profile_grad_norm_is_what_clip_grad_norm_sees(seed):
    m = build_model(ModelConfig(kind="gru", vocab_size=9, hidden_size=10, num_layers=1,
                                embed_dim=4)).eval()
    x = torch.randint(0, 9, (4, 13))
    prof = gradients_through_time(m, x, clip=1e-3)
    logits, _ = m(x[:, :-1])
    loss = torch.nn.functional.cross_entropy(logits[:, -1], x[:, -1])
    m.zero_grad()
    loss.backward()
    before = float(torch.nn.utils.clip_grad_norm_(m.parameters(), 1e-3))
    after = float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in m.parameters()])))
    assert prof.grad_norm == pytest.approx(before, rel=1e-4)
    assert prof.loss == pytest.approx(loss.item(), rel=1e-5)
    assert prof.clip_factor == pytest.approx(1e-3 / before, rel=1e-4)
    assert after == pytest.approx(prof.grad_norm * prof.clip_factor, rel=1e-3)
    assert gradients_through_time(m, x, clip=1e6).clip_factor == 1.0


def test_tanh_rnn_vanishes_and_transformer_reaches_back(seed):
    x = torch.randint(0, 9, (4, 41))
    rnn = build_model(ModelConfig(kind="rnn", vocab_size=9, hidden_size=32, num_layers=1,
                                  embed_dim=8))
    tf = build_model(ModelConfig(kind="transformer", vocab_size=9, hidden_size=32, num_layers=1,
                                 num_heads=2, context_length=64))
    r = gradients_through_time(rnn, x).series["layer 1"]
    t = gradients_through_time(tf, x).series["block 1 input"]
    assert r[-1] / r[0] < 1e-6  # 40 steps of |W_hh| < 1 and tanh' <= 1
    assert t[-1] / t[1] > 0.1  # attention reaches the first position as easily as the second


def test_windows_are_reproducible_and_mark_document_ends():
    docs = ["abcdef", "ghij"]
    w1 = sample_windows(docs, 5, 4, seed=3)
    assert w1 == sample_windows(docs, 5, 4, seed=3)
    assert all(len(w) == 6 for w in w1)
    tok = Tokenizer.build(docs)
    ids = encode_windows(tok, ["ab\x00gh"])
    assert ids.tolist() == [tok.encode("ab") + [EOS_ID] + tok.encode("gh")]


def test_attention_is_causal_rows_sum_to_one_and_matches_sdpa(seed):
    m = build_model(ModelConfig(kind="transformer", vocab_size=13, hidden_size=16, num_layers=2,
                                num_heads=4, context_length=32)).eval()
    ids = torch.randint(0, 13, (20,))
    maps = attention_maps(m, ids)
    assert maps.shape == (2, 4, 20, 20)
    assert torch.all(maps.triu(diagonal=1) == 0)
    torch.testing.assert_close(maps.sum(-1), torch.ones(2, 4, 20))
    # The recomputed weights reproduce the block's own (SDPA) attention output.
    block = m.blocks[0]
    with torch.no_grad():
        x = m.wte(ids[None]) + m.wpe[:20]
        qkv = block.attn.qkv(block.ln_1(x)).view(1, 20, 3, 4, 4)
        v = qkv.permute(2, 0, 3, 1, 4)[2]  # (1, nh, T, hd)
        y = block.attn.proj((maps[0][None] @ v).transpose(1, 2).reshape(1, 20, 16))
        torch.testing.assert_close(y, block.attn(block.ln_1(x), None, 0, 0), rtol=1e-4, atol=1e-5)
    pats = head_patterns(maps)
    assert len(pats) == 8
    assert all(abs(p.self_share + p.previous_share + p.first_share + p.other_share - 1) < 1e-6
               for p in pats)


def test_head_patterns_recognise_a_previous_character_head():
    T = 6
    prev = torch.zeros(T, T)
    prev[0, 0] = 1
    for i in range(1, T):
        prev[i, i - 1] = 1
    p = head_patterns(prev[None, None])[0]
    assert p.previous_share == pytest.approx(5 / 6) and p.self_share == pytest.approx(1 / 6)
    assert p.mean_distance == pytest.approx(5 / 6)


def test_attention_refuses_an_rnn_and_a_prompt_longer_than_the_context():
    from seqgen.errors import UsageError

    rnn = build_model(ModelConfig(kind="lstm", vocab_size=5, hidden_size=4, num_layers=1))
    with pytest.raises(UsageError, match="transformer"):
        attention_maps(rnn, torch.zeros(3, dtype=torch.long))
    tf = build_model(ModelConfig(kind="transformer", vocab_size=5, hidden_size=8, num_layers=1,
                                 num_heads=2, context_length=4))
    with pytest.raises(UsageError, match="prompt"):
        attention_maps(tf, torch.zeros(5, dtype=torch.long))


@pytest.mark.slow
def test_plots_are_written_as_png(tmp_path, seed):
    m = build_model(ModelConfig(kind="lstm", vocab_size=9, hidden_size=8, num_layers=2,
                                embed_dim=4))
    prof = gradients_through_time(m, torch.randint(0, 9, (2, 11)), clip=1e-4)
    out = plot_gradients([prof], tmp_path / "sub" / "g.png", title="t")
    data = out.read_bytes()
    assert data.startswith(PNG) and len(data) > 1000
    maps = torch.rand(2, 5, 5).tril()
    maps = maps / maps.sum(-1, keepdim=True)
    out = plot_attention(maps, list("ab\n d"), tmp_path / "a.png", title="x")
    assert out.read_bytes().startswith(PNG)
    assert not list(tmp_path.glob(".*.tmp"))


# --------------------------------------------------------------------------------- CLI
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, list(map(str, args)))


@pytest.fixture
def corpus(tmp_path):
    p = tmp_path / "corpus.txt"
    p.write_text(TEXT, encoding="utf-8")
    return p


def _checkpoint(tmp_path, corpus, **cfg):
    from seqgen.checkpoint import save_checkpoint

    tok = Tokenizer.build([TEXT])
    torch.manual_seed(0)
    m = build_model(ModelConfig(vocab_size=tok.vocab_size, **cfg))
    return save_checkpoint(tmp_path / f"ck-{cfg['kind']}", m, tok, {"grad_clip": 0.5},
                           str(corpus), "text", step=3)


@pytest.mark.slow
def test_cli_gradients_fresh_model_prints_a_table_and_writes_the_plot(tmp_path, corpus):
    png = tmp_path / "g.png"
    r = invoke("inspect", "gradients", "--model", "rnn+relu", "--corpus", corpus, "-T", 12,
               "--batch", 2, "--hidden-size", 8, "--num-layers", 2, "--embed-dim", 4,
               "--plot", png)
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert "relu" in lines[0]
    assert lines[1].split() == ["steps", "back", "L1", "L2"]
    assert [int(x.split()[0]) for x in lines[2:8]] == [0, 1, 2, 4, 8, 11]
    assert "parameter gradient norm" in r.stdout and lines[-1] == str(png)
    assert png.read_bytes().startswith(PNG)


@pytest.mark.slow
def test_cli_gradients_compare_with_a_checkpoint(tmp_path, corpus):
    ck = _checkpoint(tmp_path, corpus, kind="gru", hidden_size=8, num_layers=1, embed_dim=4)
    png = tmp_path / "c.png"
    r = invoke("inspect", "gradients", ck, "--compare", "rnn,irnn,transformer", "-T", 10,
               "--batch", 2, "--hidden-size", 8, "--num-layers", 1, "--num-heads", 2,
               "--plot", png)
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("1: " + str(ck))
    assert "4: transformer: fresh transformer" in r.stdout
    assert "clipping at 0.5" in r.stdout  # the checkpoint's --grad-clip
    assert png.stat().st_size > 0


@pytest.mark.slow
def test_cli_gradients_reads_abc_as_the_checkpoints_run_did(tmp_path, monkeypatch):
    """A run on ABC with music headers never saw the bibliographic fields ('@' in Z:): the
    windows come from the corpus read the same way, not from text the model never saw."""
    import seqgen.inspect as insp
    from seqgen.checkpoint import save_checkpoint
    from seqgen.data import load_corpus

    seen: list[str] = []
    real = insp.sample_windows
    monkeypatch.setattr(insp, "sample_windows",
                        lambda docs, *a, **k: seen.extend(docs) or real(docs, *a, **k))

    abc = tmp_path / "t.abc"
    abc.write_text("".join(f"X:{i}\nT:Tune {i}\nZ:me@example.org\nM:2/4\nL:1/8\nK:D\n"
                           "ABcd|dcBA|ABcd|d4|]\n\n" for i in range(1, 9)))
    docs = load_corpus(str(abc), abc_headers="music").documents
    tok = Tokenizer.build(docs)
    assert "@" not in tok.chars
    m = build_model(ModelConfig(kind="lstm", vocab_size=tok.vocab_size, hidden_size=8,
                                embed_dim=4))
    ck = save_checkpoint(tmp_path / "ck", m, tok, {"abc_headers": "music"}, str(abc), "abc", 3)
    r = invoke("inspect", "gradients", ck, "-T", 10, "--batch", 2, "--plot", tmp_path / "g.png")
    assert r.exit_code == 0, r.output
    assert len(seen) == 8 and not any("Z:" in d for d in seen)
    assert "not in the model's vocabulary" not in r.stderr
    # windows across tune boundaries hold the <eos> mark, which is no unknown character
    r = invoke("inspect", "gradients", "--model", "lstm", "--hidden-size", 8, "--corpus", abc,
               "-T", 60, "--batch", 8, "--plot", tmp_path / "g1.png")
    assert r.exit_code == 0 and "not in the model's vocabulary" not in r.stderr, r.stderr
    # another corpus with characters the model never saw: said, not read silently as <unk>
    other = tmp_path / "other.txt"
    other.write_text("@@@@ ~~~~ " * 20)
    r = invoke("inspect", "gradients", ck, "--corpus", other, "-T", 10, "--batch", 2,
               "--plot", tmp_path / "g2.png")
    assert r.exit_code == 0 and "read as <unk>: @" in r.stderr, r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["--model", "lstm", "--compare", "rnn"], "either --model"),
    (["--compare", "rnn,banana"], "'banana' is neither a model kind"),
    (["--compare", "gru+identity"], "rnn only"),
    (["--model", "lstm", "--activation", "relu"], "--activation applies to the vanilla rnn"),
    (["--compare", "lstm+relu"], "rnn only"),
    (["--model", "gru", "--num-heads", 2], "--num-heads applies to the transformer only"),
    (["--model", "lstm", "--context-length", 32], "--context-length applies to the transformer"),
    (["--model", "transformer", "--embed-dim", 8], "--embed-dim applies to the RNN kinds"),
    (["--model", "transformer", "--context-length", 8, "-T", 20], "context length"),
    (["--model", "transformer", "--recurrent-scale", 2], "--recurrent-scale"),
    (["--model", "rnn", "--hidden-size", 0], "--hidden-size"),
    (["--corpus", "no/such/file.txt"], "no such file"),
    (["-T", 100000], "--length"),
])
def test_cli_gradients_bad_input_exits_2(tmp_path, corpus, args, message):
    # defaults first: the test's own options come later and win
    r = invoke("inspect", "gradients", "--corpus", corpus, "--hidden-size", 8, "-T", 12,
               "--batch", 2, *args, "--plot", tmp_path / "g.png")
    assert r.exit_code == 2, r.output
    assert message in r.stderr and "Traceback" not in r.output
    assert not (tmp_path / "g.png").exists()


@pytest.mark.slow
def test_cli_attention_writes_a_heatmap_per_layer_and_a_summary(tmp_path, corpus):
    ck = _checkpoint(tmp_path, corpus, kind="transformer", hidden_size=8, num_layers=2,
                     num_heads=2, context_length=32)
    out = tmp_path / "att"
    r = invoke("inspect", "attention", ck, "--prompt", "the fox\\njumps", "-o", out, "--top", 2)
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["position", "char", "L1H1", "L1H2", "L2H1", "L2H2"]
    assert lines[1].split()[:2] == ["0", "t"] and lines[8].split()[:2] == ["7", "\\n"]
    assert sum(line.startswith("layer ") for line in lines) == 4
    assert lines[-2:] == [str(out / "layer1.png"), str(out / "layer2.png")]
    for name in ("layer1.png", "layer2.png"):
        assert (out / name).read_bytes().startswith(PNG)


def test_cli_attention_bad_input_exits_2(tmp_path, corpus):
    rnn = _checkpoint(tmp_path, corpus, kind="lstm", hidden_size=8, num_layers=1, embed_dim=4)
    r = invoke("inspect", "attention", rnn, "--prompt", "the", "-o", tmp_path / "a")
    assert r.exit_code == 2 and "transformer" in r.stderr and "Traceback" not in r.output
    tf = _checkpoint(tmp_path, corpus, kind="transformer", hidden_size=8, num_layers=1,
                     num_heads=2, context_length=4)
    r = invoke("inspect", "attention", tf, "--prompt", "the fox", "-o", tmp_path / "a")
    assert r.exit_code == 2 and "--prompt" in r.stderr
    r = invoke("inspect", "attention", tmp_path / "missing", "--prompt", "x")
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert not (tmp_path / "a").exists()
