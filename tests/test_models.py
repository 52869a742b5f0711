"""seqgen.models: one interface for rnn, lstm, gru and transformer.

Tolerances: float32 comparisons of two computations of the same function (chunked vs one pass,
cached vs full, reference vs fused) use atol 1e-5 on logits of tiny models (values of order 1);
bf16 autocast results are only checked for shape, dtype and finiteness.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from seqgen.cli.app import app
from seqgen.errors import CheckpointError, UsageError
from seqgen.models import KINDS, LanguageModel, ModelConfig, Stepper, build_model
from seqgen.models.rnn import stacked

RNN_KINDS = ("rnn", "lstm", "gru")
ATOL = 1e-5
V = 17
H = 20  # >= V, so that one-hot transformers fit


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models run fastest on one thread, and the test machine is shared."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny(kind: str, **kw) -> torch.nn.Module:
    base = dict(kind=kind, vocab_size=V, embed_dim=8, hidden_size=H, num_layers=2, num_heads=2,
                context_length=12)
    base.update(kw)
    return build_model(ModelConfig(**base)).eval()


def tokens(B: int, T: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, V, (B, T), generator=g)


# ----------------------------------------------------------------------------- config
def test_config_round_trips_through_dict():
    c = ModelConfig(kind="rnn", vocab_size=40, activation="relu", init="identity", dropout=0.25)
    assert ModelConfig.from_dict(c.to_dict()) == c
    # a float field accepts a JSON integer
    assert ModelConfig.from_dict({**c.to_dict(), "dropout": 0}).dropout == 0.0


def test_a_config_saved_before_input_dropout_loads_without_it():
    d = ModelConfig(kind="lstm", vocab_size=10, dropout=0.35).to_dict()
    del d["input_dropout"]
    assert ModelConfig.from_dict(d).input_dropout == 0.0


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_input_dropout_drops_the_inputs_in_training_only(kind):
    """x_t dropped before the first layer: at p near 1 the training-mode logits of the first
    step no longer depend on the token read (every input is zero); eval mode is untouched."""
    torch.manual_seed(0)
    m = build_model(ModelConfig(kind=kind, vocab_size=V, hidden_size=8, num_layers=1,
                                embed_dim=4, input_dropout=0.999999))
    a, b = torch.zeros(1, 1, dtype=torch.long), torch.ones(1, 1, dtype=torch.long)
    m.train()
    assert torch.allclose(m(a)[0], m(b)[0])
    m.eval()
    assert not torch.allclose(m(a)[0], m(b)[0])
    plain = build_model(ModelConfig(kind=kind, vocab_size=V, hidden_size=8, num_layers=1,
                                    embed_dim=4))
    plain.load_state_dict(m.state_dict())  # the same weights: dropout holds none
    plain.eval()
    assert torch.equal(plain(a)[0], m(a)[0])


@pytest.mark.parametrize("bad, message", [
    ({"unknown_key": 1}, "unknown keys"),
    ({"hidden_size": "256"}, "'hidden_size' must be int"),
    ({"num_layers": True}, "'num_layers' must be int"),
    ({"kind": "mamba"}, "kind must be one of"),
    ({"vocab_size": 0}, "vocab_size must be > 0"),
])
def test_config_from_dict_is_strict(bad, message):
    d = {**ModelConfig(vocab_size=10).to_dict(), **bad}
    with pytest.raises(CheckpointError, match=message):
        ModelConfig.from_dict(d)


@pytest.mark.parametrize("fields, option", [
    ({"hidden_size": 0}, "hidden_size"),
    ({"num_layers": -1}, "num_layers"),
    ({"dropout": 1.0}, "dropout"),
    ({"input_dropout": -0.1}, "input_dropout"),
    ({"kind": "transformer", "input_dropout": 0.2}, "input_dropout applies to the RNN kinds"),
    ({"embedding": "bytes"}, "embedding"),
    ({"kind": "rnn", "activation": "sigmoid"}, "activation"),
    ({"kind": "lstm", "init": "identity"}, "init applies to the vanilla rnn only"),
    ({"kind": "transformer", "hidden_size": 30, "num_heads": 4}, "num_heads"),
    ({"kind": "transformer", "context_length": 1}, "context_length"),
    ({"kind": "transformer", "embedding": "onehot", "hidden_size": 8}, "hidden_size"),
])
def test_validate_names_the_option(fields, option):
    with pytest.raises(UsageError, match=option):
        build_model(ModelConfig(**{"vocab_size": V, **fields}))


# ----------------------------------------------------------------------------- shapes, dtypes
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("embedding", ["learned", "onehot"])
@pytest.mark.parametrize("B", [1, 3])
def test_shapes_and_dtypes(kind, embedding, B):
    model = tiny(kind, embedding=embedding)
    x = tokens(B, 7)
    logits, state = model(x)
    assert logits.shape == (B, 7, V) and logits.dtype == torch.float32
    with torch.no_grad():
        state = model.init_state(B, "cpu")
        logits2, state = model(x, state)
        logits3, state = model(x[:, :3], state)  # carry on from the returned state
    assert logits2.shape == (B, 7, V) and logits3.shape == (B, 3, V)
    if kind == "lstm":
        assert [s.shape for s in state] == [(2, B, H)] * 2
    elif kind in RNN_KINDS:
        assert state.shape == (2, B, H)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lb, sb = model(x, model.init_state(B, "cpu"))
        lb2, sb = model(x[:, :3], model.detach_state(sb))
        lt, _ = model(x)
    for lo, T in ((lb, 7), (lb2, 3), (lt, 7)):
        assert lo.shape == (B, T, V) and lo.dtype == torch.bfloat16
        assert torch.isfinite(lo.float()).all()
    if kind in RNN_KINDS:  # the carried state stays float32, usable with or without autocast
        for s in sb if kind == "lstm" else (sb,):
            assert s.dtype == torch.float32
        model(x[:, :2], sb)


@pytest.mark.parametrize("kind", KINDS)
def test_bf16_training_step_has_finite_gradients(kind):
    model = tiny(kind).train()
    x = tokens(2, 10)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, _ = model(x[:, :-1])
        loss = F.cross_entropy(logits.float().reshape(-1, V), x[:, 1:].reshape(-1))
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("kind", KINDS)
def test_summary_and_parameter_count(kind):
    model = tiny(kind)
    assert model.num_params() == sum(p.numel() for p in model.parameters()) > 0
    line = model.summary()
    assert "\n" not in line and line.startswith(kind) and "params" in line


def test_parameter_counts_read_as_k_m_b():
    from seqgen.models.rnn import format_count

    assert [format_count(n) for n in (999, 1234, 2_900_000, 3_200_000_200)] == \
        ["999", "1.2K", "2.9M", "3.2B"]


def test_parameter_counts_follow_the_equations():
    E, L = 8, 2
    # embedding V*E; per layer: W_xh (H x in), W_hh (H x H), two bias vectors; W_hy V*H, no bias
    rnn_layers = (H * E + H * H + 2 * H) + (H * H + H * H + 2 * H)
    assert tiny("rnn").num_params() == V * E + rnn_layers + V * H
    assert tiny("lstm").num_params() == V * E + 4 * rnn_layers + V * H
    assert tiny("gru").num_params() == V * E + 3 * rnn_layers + V * H
    # one-hot input: no embedding table, the first layer reads V inputs
    assert tiny("rnn", embedding="onehot").num_params() == rnn_layers + H * (V - E) + V * H
    # transformer (D=H, C=12): token table (tied output), positions, per block 2 LN +
    # qkv + proj + MLP, final LN
    D, C = H, 12
    block = 2 * 2 * D + 3 * D * D + D * D + 8 * D * D
    assert tiny("transformer").num_params() == V * D + C * D + L * block + 2 * D
    assert tiny("transformer", positional="sinusoidal").num_params() == V * D + L * block + 2 * D
    # one-hot input: no token table, but nothing to tie either: a separate V x D output layer
    assert tiny("transformer", embedding="onehot").num_params() == V * D + C * D + L * block + 2 * D
    assert "head.weight" in tiny("transformer", embedding="onehot").state_dict()
    assert "head.weight" not in tiny("transformer").state_dict()


# ----------------------------------------------------------------------------- state carrying
@pytest.mark.parametrize("kind", RNN_KINDS)
@pytest.mark.parametrize("embedding", ["learned", "onehot"])
def test_rnn_two_chunks_with_carried_state_equal_one_pass(kind, embedding):
    model = tiny(kind, embedding=embedding)
    x = tokens(3, 20)
    with torch.no_grad():
        full, s_full = model(x)
        a, s = model(x[:, :8])
        b, s = model(x[:, 8:], s)
        zero, _ = model(x, model.init_state(3, "cpu"))  # init_state means the same as None
    torch.testing.assert_close(torch.cat([a, b], 1), full, atol=ATOL, rtol=0)
    torch.testing.assert_close(zero, full, atol=ATOL, rtol=0)
    for u, v in zip(s if kind == "lstm" else (s,), s_full if kind == "lstm" else (s_full,),
                    strict=True):
        torch.testing.assert_close(u, v, atol=ATOL, rtol=0)


@pytest.mark.parametrize("kind", RNN_KINDS)
def test_detach_state_cuts_the_graph(kind):
    model = tiny(kind).train()
    _, state = model(tokens(2, 5))
    detached = model.detach_state(state)
    for s in detached if kind == "lstm" else (detached,):
        assert not s.requires_grad
    assert model.detach_state(None) is None


# ----------------------------------------------------------------------------- one-token step
def step_loop(model, x: torch.Tensor, state=None):
    """The naive loop: model.step over x (B, T) one token at a time -> logits (B, T, V), state."""
    stepper = model.stepper()
    out = []
    for t in range(x.shape[1]):
        logits, state = stepper.step(x[:, t], state)
        out.append(logits)
    return torch.stack(out, 1), state


@pytest.mark.parametrize("kind, activation, init", [
    ("rnn", "tanh", "default"), ("rnn", "relu", "identity"), ("rnn", "relu", "default"),
    ("lstm", "tanh", "default"), ("gru", "tanh", "default")])
def test_reference_cells_equal_fused_rnn_outputs_and_gradients(kind, activation, init):
    """The cell functions (rnn_cell, lstm_cell, gru_cell), stepped one token at a time, against
    torch's fused nn.RNN/LSTM/GRU: logits, final state and every parameter's gradient."""
    model = tiny(kind, activation=activation, init=init)
    x = tokens(3, 9)
    h0 = 0.5 * torch.randn(2, 3, H)
    state0 = (h0, 0.3 * torch.randn(2, 3, H)) if kind == "lstm" else h0
    target = tokens(3, 9, seed=1)

    def run(forward):
        model.zero_grad()
        logits, state = forward(x, state0)
        state = stacked(state)
        hs = state if kind == "lstm" else (state,)
        loss = F.cross_entropy(logits.reshape(-1, V), target.reshape(-1)) + sum(
            h.square().mean() for h in hs)
        loss.backward()
        return (logits.detach(), [h.detach() for h in hs],
                {n: p.grad.clone() for n, p in model.named_parameters()})

    fused = run(model.forward)
    ref = run(lambda x, state: step_loop(model, x, state))
    torch.testing.assert_close(ref[0], fused[0], atol=ATOL, rtol=0)
    for r, f in zip(ref[1], fused[1], strict=True):
        torch.testing.assert_close(r, f, atol=ATOL, rtol=0)
    assert fused[2].keys() == ref[2].keys()
    for name in fused[2]:
        torch.testing.assert_close(ref[2][name], fused[2][name], atol=ATOL, rtol=1e-4, msg=name)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("embedding", ["learned", "onehot"])
def test_step_over_a_sequence_equals_forward(kind, embedding):
    """The contract of step(): one token at a time gives forward's logits (1e-5), from None and
    from init_state; and forward carries on from the state step returns. For the transformer past
    its context too (T = 30 > C = 12): forward with a cache is the sliding window."""
    model = tiny(kind, embedding=embedding)
    T = 30 if kind == "transformer" else 20
    x = tokens(3, T + 5, seed=2)
    with torch.no_grad():
        if kind == "transformer":
            full, _ = model(x, model.init_state(3, "cpu"))
            plain, _ = model(x[:, :12])
            torch.testing.assert_close(full[:, :12], plain, atol=ATOL, rtol=0)
        else:
            full, _ = model(x)
        stepped, state = step_loop(model, x[:, :T])
        again, _ = step_loop(model, x[:, :T], model.init_state(3, "cpu"))
        one, state1 = model.step(x[:, 0], None)
        rest, _ = model(x[:, T:], state)
    torch.testing.assert_close(stepped, full[:, :T], atol=ATOL, rtol=0)
    torch.testing.assert_close(again, stepped, atol=0, rtol=0)
    torch.testing.assert_close(one, full[:, 0], atol=ATOL, rtol=0)
    torch.testing.assert_close(rest, full[:, T:], atol=ATOL, rtol=0)
    if kind != "transformer":  # the state per layer: a list of (B, H) tensors, or two for lstm
        layers = state[0] if kind == "lstm" else state
        assert isinstance(layers, list) and len(layers) == 2 and layers[0].shape == (3, H)


def test_stepper_adds_its_logit_bias():
    for kind in KINDS:
        model = tiny(kind)
        bias = torch.zeros(V)
        bias[3] = float("-inf")
        bias[5] = 2.0
        x = tokens(2, 1)[:, 0]
        with torch.no_grad():
            plain, _ = model.stepper().step(x)
            biased, _ = model.stepper(logit_bias=bias).step(x)
        torch.testing.assert_close(biased, plain + bias, atol=ATOL, rtol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_is_a_language_model(kind):
    model = tiny(kind)
    assert isinstance(model, LanguageModel)
    assert isinstance(model.stepper(), Stepper)


def test_identity_init_sets_w_hh_to_identity():
    model = tiny("rnn", init="identity", activation="relu")
    for k in range(2):
        assert torch.equal(getattr(model.rnn, f"weight_hh_l{k}"), torch.eye(H))
        assert not getattr(model.rnn, f"bias_hh_l{k}").any()
    assert not torch.equal(tiny("rnn").rnn.weight_hh_l0, torch.eye(H))


def test_onehot_input_is_the_one_hot_vector():
    model = tiny("rnn", embedding="onehot", num_layers=1)
    assert model.rnn.input_size == V
    x = tokens(2, 4)
    torch.testing.assert_close(model._inputs(x), F.one_hot(x, V).float())


# ----------------------------------------------------------------------------- transformer
@pytest.mark.parametrize("positional", ["learned", "sinusoidal"])
@pytest.mark.parametrize("t", [0, 4, 10])
def test_transformer_is_causal(positional, t):
    model = tiny("transformer", positional=positional)
    x = tokens(2, 12)
    y = x.clone()
    y[:, t + 1:] = (y[:, t + 1:] + 1 + torch.arange(11 - t)) % V  # change every later token
    with torch.no_grad():
        a, _ = model(x)
        b, _ = model(y)
    torch.testing.assert_close(a[:, : t + 1], b[:, : t + 1], atol=ATOL, rtol=0)
    assert not torch.allclose(a[:, t + 1:], b[:, t + 1:])


@pytest.mark.parametrize("positional", ["learned", "sinusoidal"])
@pytest.mark.parametrize("embedding", ["learned", "onehot"])
def test_transformer_kv_cache_equals_full_forward(positional, embedding):
    model = tiny("transformer", positional=positional, embedding=embedding)
    x = tokens(3, 12)  # exactly the context length
    with torch.no_grad():
        full, none = model(x)
        cache = model.init_state(3, "cpu")
        steps = torch.cat([model(x[:, t : t + 1], cache)[0] for t in range(12)], 1)
        cache = model.init_state(3, "cpu")
        chunks = torch.cat([model(x[:, :5], cache)[0], model(x[:, 5:6], cache)[0],
                            model(x[:, 6:], cache)[0]], 1)
    assert none is None
    torch.testing.assert_close(steps, full, atol=ATOL, rtol=0)
    torch.testing.assert_close(chunks, full, atol=ATOL, rtol=0)


def window_reference(model, x: torch.Tensor) -> torch.Tensor:
    """The documented sliding window, spelled out: each token's logits are those of a plain
    causal forward over its window; a full window is cut to its last keep-1 tokens first."""
    C = model.config.context_length
    keep = max(1, C // 2)
    window: list[int] = []
    out = []
    for tok in x[0].tolist():
        if len(window) == C:
            window = window[len(window) - (keep - 1):]
        window.append(tok)
        logits, _ = model(torch.tensor([window]))
        out.append(logits[:, -1])
    return torch.stack(out, 1)


@pytest.mark.parametrize("C", [12, 7, 2])
def test_transformer_sliding_window_past_the_context_length(C):
    model = tiny("transformer", context_length=C)
    x = tokens(1, 40, seed=3)
    with torch.no_grad():
        expected = window_reference(model, x)
        cache = model.init_state(1, "cpu")
        one_by_one = []
        for t in range(40):
            one_by_one.append(model(x[:, t : t + 1], cache)[0])
            assert 1 <= cache.length <= C
            assert torch.equal(cache.window()[0, -1], x[0, t])
        one_by_one = torch.cat(one_by_one, 1)
        torch.testing.assert_close(one_by_one, expected, atol=ATOL, rtol=0)
        for chunk in (3, C, 25, 40):  # chunks of any size, even longer than C, mean the same
            cache = model.init_state(1, "cpu")
            got = torch.cat([model(x[:, i : i + chunk], cache)[0] for i in range(0, 40, chunk)], 1)
            torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)


def test_transformer_sliding_window_costs_o1_forward_tokens_per_token():
    model = tiny("transformer", context_length=16)
    seen = []
    model.wte.register_forward_hook(lambda m, inp, out: seen.append(inp[0].shape[1]))
    cache = model.init_state(2, "cpu")
    n = 500
    with torch.no_grad():
        for t in range(n):
            model(torch.tensor([[t % V], [(3 * t) % V]]), cache)
    # one step per token, plus one recomputation of keep-1 = 7 tokens every 16 - 7 = 9 tokens
    assert sum(seen) <= n + (n // 9 + 1) * 8
    assert max(seen) <= 16


def test_transformer_batch_rows_are_independent_in_the_cache():
    model = tiny("transformer")
    x = tokens(2, 30)
    with torch.no_grad():
        cache = model.init_state(2, "cpu")
        both = torch.cat([model(x[:, t : t + 1], cache)[0] for t in range(30)], 1)
        cache = model.init_state(1, "cpu")
        second = torch.cat([model(x[1:, t : t + 1], cache)[0] for t in range(30)], 1)
    torch.testing.assert_close(both[1:], second, atol=ATOL, rtol=0)


def test_transformer_rejects_a_training_window_longer_than_the_context():
    with pytest.raises(UsageError, match="context_length"):
        tiny("transformer")(tokens(1, 13))


def test_transformer_output_layer_is_tied_to_the_embedding():
    model = tiny("transformer")
    assert model.head is None
    x = tokens(1, 5)
    with torch.no_grad():
        before, _ = model(x)
        model.wte.weight[3] += 1.0  # token 3 is scored with its own embedding row
        after, _ = model(x)
    assert not torch.allclose(before[..., 3], after[..., 3])
    untied = tiny("transformer", embedding="onehot", hidden_size=V + 3, num_heads=1)
    assert untied.wte is None and untied.head.weight.shape == (V, V + 3)


# ----------------------------------------------------------------------------- weights on disk
@pytest.mark.parametrize("kind", KINDS)
def test_state_dict_saves_to_safetensors_and_reloads(kind, tmp_path):
    from safetensors.torch import load_file, save_file

    model = tiny(kind, embedding="onehot")
    save_file(model.state_dict(), tmp_path / "model.safetensors")  # no shared tensors
    fresh = build_model(ModelConfig.from_dict(model.config.to_dict())).eval()
    fresh.load_state_dict(load_file(tmp_path / "model.safetensors"))
    x = tokens(2, 6)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x)[0], model(x)[0], atol=0, rtol=0)


# ----------------------------------------------------------------------------- learning
@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_overfits_a_tiny_repeated_string(kind):
    torch.manual_seed(0)
    text = "the cat sat on the mat. " * 4
    chars = sorted(set(text))
    ids = torch.tensor([chars.index(c) for c in text])
    model = build_model(ModelConfig(kind=kind, vocab_size=len(chars), embed_dim=16, hidden_size=32,
                                    num_layers=1, num_heads=2, context_length=32)).train()
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    starts = torch.arange(0, len(ids) - 33, 8)
    x = torch.stack([ids[s : s + 32] for s in starts])  # (8, 32)
    y = torch.stack([ids[s + 1 : s + 33] for s in starts])  # (8, 32), the next characters
    for _ in range(150):
        logits, _ = model(x)
        loss = F.cross_entropy(logits.reshape(-1, len(chars)), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    # after the first "the cat " every next character is determined; the first few are not
    model.eval()
    with torch.no_grad():
        logits, _ = model(x)
        per_pos = F.cross_entropy(logits.transpose(1, 2), y, reduction="none")
    assert per_pos[:, 8:].mean().item() < 0.05, per_pos.mean(0)


# ----------------------------------------------------------------------------- CLI
def test_cli_models_lists_the_kinds_with_parameter_counts():
    result = CliRunner().invoke(app, ["models", "--vocab-size", "65"])
    assert result.exit_code == 0, result.output
    for kind in KINDS:
        assert kind in result.stdout
    assert "--context-length" in result.stdout and "--init" in result.stdout
    from seqgen.train import MODEL_PRESETS

    for kind in KINDS:  # every preset's size, as `seqgen train --preset NAME` would build it
        family = "transformer" if kind == "transformer" else "rnn"
        for name, sizes in MODEL_PRESETS.items():
            with torch.device("meta"):  # the size only
                model = build_model(ModelConfig(kind=kind, vocab_size=65, **sizes[family]))
            assert f"{model.num_params():,}" in result.stdout, (kind, name)


def test_cli_models_bad_option_exits_2():
    result = CliRunner().invoke(app, ["models", "--vocab-size", "0"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    result = CliRunner().invoke(app, ["models", "--vocab", "/nonexistent/vocab.json"])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_configs_refuse_values_of_the_wrong_type_naming_the_option():
    """A library caller's `hidden_size="512"` is one UsageError, not a TypeError from torch."""
    from seqgen.evaluate import EvalConfig
    from seqgen.sampling import SampleConfig
    from seqgen.train import TrainConfig

    cases = [
        (ModelConfig(kind="lstm", vocab_size=10, hidden_size=12.5), "hidden_size must be int, not float"),
        (ModelConfig(kind="lstm", vocab_size=10, dropout=True), "dropout must be float, not bool"),
        (SampleConfig(length="100"), "length must be int, not str"),
        (SampleConfig(top_p="0.9"), "top_p must be float, not str"),
        (TrainConfig(steps=2.5), "steps must be int | None, not float"),
        (TrainConfig(corpus=None), "corpus must be str, not NoneType"),
        (EvalConfig(tunes="5"), "tunes must be int, not str"),
    ]
    for config, message in cases:
        with pytest.raises(UsageError, match=message.replace("|", "\\|")):
            config.validate()
    assert SampleConfig(temperature=1, top_p=1).validate() is None  # an int is a float here
    # what Python code naturally passes: paths, numpy numbers (stored as JSON would hold them)
    from pathlib import Path

    import numpy as np

    t = TrainConfig(corpus=Path("poem.txt"), out=Path("run"), steps=np.int64(5),
                    lr=np.float32(0.5))
    t.validate()
    assert (t.corpus, t.out, type(t.steps), type(t.lr)) == ("poem.txt", "run", int, float)
    assert ModelConfig(kind="lstm", vocab_size=np.int32(10)).vocab_size == 10
    assert SampleConfig(stop="\n\n").stop == ("\n\n",)  # one string, not its characters


def test_transformer_gelu_is_exact_and_old_checkpoints_keep_the_tanh_form():
    """New transformers use the exact GELU (faster under bf16 autocast on a CPU); a config saved
    before the field existed used the tanh form, and loads with it, so its model computes what
    it was trained to."""
    new = ModelConfig(kind="transformer", vocab_size=11, hidden_size=16, num_layers=1,
                      num_heads=2, context_length=8)
    assert new.gelu == "exact"
    saved = {k: v for k, v in new.to_dict().items() if k != "gelu"}
    old = ModelConfig.from_dict(saved)
    assert old.gelu == "tanh" and ModelConfig.from_dict(new.to_dict()).gelu == "exact"
    torch.manual_seed(0)
    a, b = build_model(new).eval(), build_model(old).eval()
    b.load_state_dict(a.state_dict())
    x = torch.randint(11, (2, 8))
    with torch.no_grad():
        fa, fb = a(x)[0], b(x)[0]
        assert not torch.allclose(fa, fb, atol=0, rtol=0)  # two functions
        for model, full in ((a, fa), (b, fb)):  # the one-token step computes the same one
            stepper, cache = model.stepper(), None
            for t in range(8):
                logits, cache = stepper.step(x[:, t], cache)
                torch.testing.assert_close(logits, full[:, t], atol=1e-5, rtol=1e-4)
    with pytest.raises(CheckpointError, match="gelu"):
        ModelConfig.from_dict({**saved, "gelu": "relu"})
