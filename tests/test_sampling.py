"""seqgen.sampling: token choice, generate() against hand decoding, stop rules, tunes, decoders."""

from __future__ import annotations

import math
import os

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seqgen.errors import DataError, UsageError, VocabularyError
from seqgen.models import ModelConfig, build_model
from seqgen.models.rnn import RecurrentStepper
from seqgen.models.transformer import TransformerStepper
from seqgen.music.tunes import number_tune, sample_tunes
from seqgen.sampling import (
    FastDecoder,
    ModelDecoder,
    SampleConfig,
    UncachedDecoder,
    choose_tokens,
    default_threads,
    filter_logits,
    generate,
    make_decoder,
)
from seqgen.tokenizer import EOS_ID, UNK_ID, Tokenizer

ALPHABET = "X:1\nK:DGM/68abcdefg|] ABC"
TOK = Tokenizer.build([ALPHABET])
KINDS = ("rnn", "lstm", "gru", "transformer")


def tiny_model(kind: str, seed: int = 0, context_length: int = 16, embedding: str = "learned"):
    torch.manual_seed(seed)
    cfg = ModelConfig(kind=kind, vocab_size=TOK.vocab_size, hidden_size=32, num_layers=2,
                      num_heads=2, context_length=context_length, embedding=embedding,
                      embed_dim=8)
    model = build_model(cfg).eval()
    if kind == "transformer":  # larger weights than the N(0, 0.02) init: peakier distributions
        with torch.no_grad():
            for p in model.parameters():
                if p.dim() == 2:
                    p.mul_(20.0)
    return model


def bigram_model(successors: dict[str, str], tok: Tokenizer = TOK, strength: float = 30.0):
    """A one-layer vanilla RNN wired by hand so that each character is followed by the given one
    (a value of "" means <eos>); characters not listed get random successors.

    One-hot input, W_ih = s*I and W_hh = 0 make h_t = tanh(s * onehot(token_t)) ~ onehot(token_t);
    the output layer then puts logit s on the chosen successor: a real seqgen model, saved and
    loaded like any other, whose samples are known in advance.
    """
    V = tok.vocab_size
    cfg = ModelConfig(kind="rnn", vocab_size=V, embedding="onehot", hidden_size=V, num_layers=1)
    model = build_model(cfg).eval()
    gen = torch.Generator().manual_seed(0)
    head = torch.randn(V, V, generator=gen)  # (V_out, H): random successors elsewhere
    for a, b in successors.items():
        i = tok.stoi[a]
        j = EOS_ID if b == "" else tok.stoi[b]
        head[:, i] = 0.0
        head[j, i] = strength
    with torch.no_grad():
        model.rnn.weight_ih_l0.copy_(strength * torch.eye(V))
        model.rnn.weight_hh_l0.zero_()
        model.rnn.bias_ih_l0.zero_()
        model.rnn.bias_hh_l0.zero_()
        model.head.weight.copy_(head)
    return model


def hand_greedy(model, prompt: str, n: int) -> str:
    """Argmax decoding by hand: re-run the model over the whole text for every character."""
    ids = [EOS_ID] + TOK.encode(prompt)
    out = []
    with torch.no_grad():
        for _ in range(n):
            logits, _ = model(torch.tensor([ids]), None)
            last = logits[0, -1].clone()
            last[UNK_ID] = -math.inf
            nxt = int(last.argmax())
            if nxt == EOS_ID:
                break
            ids.append(nxt)
            out.append(TOK.itos[nxt])
    return "".join(out)


def run(model, prompt="X:", seed=0, **kw):
    kw.setdefault("stop_at_eos", False)
    return generate(model, TOK, prompt, SampleConfig(**kw), torch.Generator().manual_seed(seed))


# ================================================================================ token choice
def test_greedy_is_argmax_and_top_k_1_is_greedy():
    logits = torch.randn(64, 30, generator=torch.Generator().manual_seed(1))
    assert torch.equal(choose_tokens(logits, temperature=0), logits.argmax(-1))
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        assert torch.equal(choose_tokens(logits, temperature=1.5, top_k=1, generator=g),
                           logits.argmax(-1))


def test_top_k_keeps_exactly_the_k_largest():
    logits = torch.tensor([[0.1, 3.0, -1.0, 2.0, 0.5]])
    kept = torch.isfinite(filter_logits(logits, top_k=2))[0].tolist()
    assert kept == [False, True, False, True, False]
    # the kept logits are unchanged, the input is untouched
    assert filter_logits(logits, top_k=2)[0, 1] == 3.0 and torch.isfinite(logits).all()


@pytest.mark.parametrize("p,expected", [(0.5, 1), (0.79, 2), (0.8, 2), (0.81, 3), (0.96, 4),
                                        (1.0, 4)])
def test_top_p_keeps_the_smallest_set_reaching_p(p, expected):
    probs = torch.tensor([[0.15, 0.5, 0.05, 0.3]])  # sorted: 0.5, 0.3, 0.15, 0.05
    kept = torch.isfinite(filter_logits(probs.log(), top_p=p)).sum().item()
    assert kept == expected


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-5, 5), min_size=2, max_size=12), st.floats(0.05, 1.0))
def test_top_p_property(values, p):
    logits = torch.tensor([values])
    probs = torch.softmax(logits, -1)[0]
    keep = torch.isfinite(filter_logits(logits, top_p=p))[0]
    mass = probs[keep].sum().item()
    assert mass >= p - 1e-5  # reaches p
    smallest_kept = probs[keep].min().item()
    assert mass - smallest_kept < p + 1e-5  # and nothing in it is superfluous
    assert probs[~keep].max().item() <= smallest_kept + 1e-6 if (~keep).any() else True


def test_draws_follow_the_tempered_distribution():
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0])
    for temperature in (0.5, 1.0, 2.0):
        g = torch.Generator().manual_seed(7)
        draws = choose_tokens(logits.expand(20000, 4), temperature=temperature, generator=g)
        freq = torch.bincount(draws, minlength=4).float() / 20000
        expected = torch.softmax(logits / temperature, -1)
        assert torch.allclose(freq, expected, atol=0.015), (temperature, freq, expected)


def test_top_k_draws_stay_in_the_top_k():
    logits = torch.randn(5000, 20, generator=torch.Generator().manual_seed(3))
    draws = choose_tokens(logits, top_k=3, generator=torch.Generator().manual_seed(0))
    top3 = logits.topk(3, -1).indices
    assert (top3 == draws[:, None]).any(-1).all()


# ================================================================================ generate
@pytest.mark.parametrize("kind", KINDS)
def test_greedy_generate_equals_hand_argmax_decoding(kind):
    model = tiny_model(kind)
    n = 12 if kind == "transformer" else 25  # the transformer stays within its context of 16
    [s] = run(model, "X:1\n", temperature=0, length=n, stop_at_eos=True)
    assert s.text == hand_greedy(model, "X:1\n", n)
    assert len(s.text) == len(s.tokens) and TOK.decode(s.tokens) == s.text


@pytest.mark.parametrize("kind", KINDS)
def test_cached_and_uncached_decoding_agree(kind):
    """Fixed seed, temperature 1: the fast decoder, model.forward with its state or KV cache, and
    the uncached reference give the same text. Logits agree to 1e-4 (float32 summation order
    differs), far below the gaps that decide a draw at these seeds."""
    model = tiny_model(kind)
    n = 14 if kind == "transformer" else 25
    texts = {}
    for decoder in ("fast", "model", "uncached"):
        texts[decoder] = [s.text for s in run(model, "ab", seed=5, length=n, num_samples=3,
                                              decoder=decoder)]
    assert texts["fast"] == texts["model"] == texts["uncached"]
    assert len(set(texts["fast"])) > 1  # three different samples in the batch


@pytest.mark.parametrize("kind,embedding,batch", [(k, "learned", 2) for k in KINDS]
                         + [("lstm", "onehot", 2), ("transformer", "onehot", 2),
                            ("transformer", "learned", 16)])
def test_fast_decoder_logits_match_the_model_step_by_step(kind, embedding, batch):
    """Past the transformer's context too (the window slides at 16 tokens here); and with as
    many streams as `--num-samples 16`. The uncached reference too, for the RNNs at every step
    and for the transformer while the text fits its context (past it, the windows differ)."""
    model = tiny_model(kind, context_length=16, embedding=embedding)
    fast = make_decoder(model, batch, "cpu", "auto")
    assert isinstance(fast, FastDecoder)
    assert isinstance(fast.stepper, TransformerStepper if kind == "transformer" else RecurrentStepper)
    ref = ModelDecoder(model, batch, "cpu")
    uncached = UncachedDecoder(model, batch, "cpu")
    prompts = ["X:1\nK:D\n", "abcdefg|", "g|fedcba", "K:G\nAB|c"]
    ids = torch.tensor([TOK.encode(prompts[i % 4]) for i in range(batch)])
    steps = torch.randint(2, TOK.vocab_size, (30, batch), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        a, b, c = fast.prefill(ids), ref.prefill(ids), uncached.prefill(ids)
        assert torch.allclose(a, b, atol=1e-4) and torch.allclose(a, c, atol=1e-4)
        for t, tok in enumerate(steps):
            a, b, c = fast.step(tok), ref.step(tok), uncached.step(tok)
            assert torch.allclose(a, b, atol=1e-4), (a - b).abs().max()
            if kind != "transformer" or ids.shape[1] + t + 1 <= 16:
                assert torch.allclose(a, c, atol=1e-4), (t, (a - c).abs().max())
            assert a[:, UNK_ID].eq(-math.inf).all()


def test_a_model_without_a_stepper_decodes_through_its_forward():
    """make_decoder: "auto" falls back to ModelDecoder for a model that has no one-token step;
    "fast" says it has none."""

    class Plain(torch.nn.Module):  # only forward and init_state
        def __init__(self, model):
            super().__init__()
            self.inner, self.config = model, model.config

        def forward(self, tokens, state=None):
            return self.inner(tokens, state)

        def init_state(self, batch_size, device="cpu"):
            return self.inner.init_state(batch_size, device)

    model = Plain(tiny_model("gru")).eval()
    assert isinstance(make_decoder(model, 2, "cpu", "auto"), ModelDecoder)
    assert not isinstance(make_decoder(model, 2, "cpu", "auto"), FastDecoder)
    with pytest.raises(UsageError, match="no fast decoder"):
        make_decoder(model, 2, "cpu", "fast")
    assert run(model, length=20, seed=3)[0].text == run(model.inner, length=20, seed=3)[0].text


def test_uncached_transformer_is_nanogpt_style_window():
    model = tiny_model("transformer", context_length=8)
    dec = UncachedDecoder(model, 1, "cpu")
    with torch.inference_mode():
        dec.prefill(torch.tensor([TOK.encode("abcdefgab")]))  # 9 tokens > context 8: cropped
        logits = dec.step(torch.tensor([2]))
    assert logits.shape == (1, TOK.vocab_size)


def test_seeds_reproduce_and_differ():
    model = tiny_model("lstm")
    a = [s.text for s in run(model, seed=11, length=50, num_samples=2)]
    b = [s.text for s in run(model, seed=11, length=50, num_samples=2)]
    c = [s.text for s in run(model, seed=12, length=50, num_samples=2)]
    assert a == b and a != c


def test_batch_rows_are_independent_streams_greedy():
    model = tiny_model("gru")
    [one] = run(model, temperature=0, length=30)
    many = run(model, temperature=0, length=30, num_samples=4)
    assert [s.text for s in many] == [one.text] * 4


def test_length_and_zero_length():
    model = tiny_model("rnn")
    [s] = run(model, length=37)
    assert len(s.text) == 37 and s.stop_reason == "length"
    [s] = run(model, length=0)
    assert s.text == "" and s.tokens == [] and s.stop_reason == "length"


CHAIN = {"\n": "a", "a": "b", "b": "c", "c": "d", "d": "|", "|": ""}  # ... a b c d | <eos>


def test_stops_at_eos_and_reports_it():
    model = bigram_model(CHAIN)
    [s] = generate(model, TOK, "X:1\nK:D\n", SampleConfig(length=100),
                   torch.Generator().manual_seed(0))
    assert (s.text, s.stop_reason, s.stop_string) == ("abcd|", "eos", None)
    # without stop_at_eos the stream goes on past the <eos> (which is not text)
    [s] = generate(model, TOK, "X:1\nK:D\n", SampleConfig(length=100, stop_at_eos=False),
                   torch.Generator().manual_seed(0))
    assert s.text.startswith("abcd|") and len(s.tokens) > 5 and s.stop_reason == "length"


def test_decoding_stops_at_the_last_streams_eos(monkeypatch):
    """On the CPU the model is not run past the step at which every stream has drawn <eos>
    (tokens are generated in chunks between two looks from Python; a chunk would run on)."""
    steps = []
    real = FastDecoder.step
    monkeypatch.setattr(FastDecoder, "step", lambda self, tok: steps.append(1) or real(self, tok))
    model = bigram_model(CHAIN)
    samples = generate(model, TOK, "X:1\nK:D\n", SampleConfig(length=100, num_samples=2),
                       torch.Generator().manual_seed(0))
    assert [s.text for s in samples] == ["abcd|"] * 2
    assert len(steps) == 5  # one after each of a b c d |: none after <eos>


@pytest.mark.parametrize("stops,text,hit", [
    (("cd",), "ab", "cd"),
    (("d|", "bc"), "a", "bc"),  # the earliest occurrence wins, not the first listed
    (("zz", "|"), "abcd", "|"),
    (("\n",), "abcd|", None),  # never generated: the sample ends at <eos>
])
def test_stop_strings_stop_and_are_reported(stops, text, hit):
    model = bigram_model(CHAIN)
    pieces: list[str] = []
    [s] = generate(model, TOK, "K:D\n", SampleConfig(length=100, stop=stops),
                   torch.Generator().manual_seed(0), on_text=lambda i, p: pieces.append(p))
    assert s.text == text
    assert (s.stop_reason, s.stop_string) == (("stop", hit) if hit else ("eos", None))
    assert "".join(pieces) == s.text  # what was streamed is exactly the sample, stop excluded


def test_streamed_pieces_equal_the_samples():
    model = tiny_model("lstm")
    got: dict[int, str] = {0: "", 1: "", 2: ""}

    def on_text(i, piece):
        got[i] += piece

    samples = generate(model, TOK, "a", SampleConfig(length=120, num_samples=3, stop=("ab", "|]")),
                       torch.Generator().manual_seed(2), on_text=on_text)
    assert [got[i] for i in range(3)] == [s.text for s in samples]
    for s in samples:
        assert "ab" not in s.text and "|]" not in s.text


def test_unknown_prompt_characters():
    model = tiny_model("rnn")
    with pytest.raises(VocabularyError, match="'z', 'é'"):
        generate(model, TOK, "abzé", SampleConfig(length=5))
    [s] = generate(model, TOK, "abzé", SampleConfig(length=5, unknown="skip"),
                   torch.Generator().manual_seed(0))
    assert s.prompt == "abzé" and len(s.tokens) <= 5


def test_never_samples_unk():
    model = tiny_model("lstm")
    with torch.no_grad():
        model.head.weight[UNK_ID] = 100.0  # the model "prefers" <unk>
    [s] = run(model, length=50)
    assert UNK_ID not in s.tokens and "\ufffd" not in s.text


@pytest.mark.parametrize("kw,option", [
    ({"length": -1}, "length"), ({"temperature": -0.5}, "temperature"),
    ({"temperature": math.nan}, "temperature"), ({"top_k": -2}, "top_k"),
    ({"top_p": 0.0}, "top_p"), ({"top_p": 1.5}, "top_p"),
    ({"num_samples": 0}, "num_samples"), ({"stop": ("",)}, "stop"),
])
def test_bad_settings_name_the_option(kw, option):
    with pytest.raises(UsageError, match=option):
        generate(tiny_model("rnn"), TOK, "a", SampleConfig(**kw))


def test_model_in_training_mode_is_refused():
    model = tiny_model("rnn").train()
    with pytest.raises(UsageError, match="eval"):
        generate(model, TOK, "a", SampleConfig(length=3))


# ================================================================================ tunes
def test_sample_tunes_returns_exactly_n_numbered_tunes_ended_by_eos():
    model = bigram_model(CHAIN)
    tunes = sample_tunes(model, TOK, 3, "X:8\nK:D\n", SampleConfig(length=50),
                         torch.Generator().manual_seed(0))
    assert [t.number for t in tunes] == [1, 2, 3]
    for t in tunes:
        assert t.text == f"X:{t.number}\nK:D\nabcd|\n" and t.end == "eos"


def test_sample_tunes_ends_a_tune_where_the_next_begins():
    chain = {**CHAIN, "|": "\n", "\n": "X", "X": ":"}  # ... d | \n X : the next tune's header
    model = bigram_model(chain)
    # "\n" is followed by "X" here, so the prompt gives the first character of the body
    tunes = sample_tunes(model, TOK, 2, "X:1\nK:D\na", SampleConfig(length=50),
                         torch.Generator().manual_seed(0))
    assert [t.text for t in tunes] == ["X:1\nK:D\nabcd|\n", "X:2\nK:D\nabcd|\n"]
    assert {t.end for t in tunes} == {"X:"}


def test_sample_tunes_gives_up_with_a_clear_error():
    model = bigram_model({"a": "b", "b": "a"})  # a b a b ... never ends
    with pytest.raises(DataError, match="length"):
        sample_tunes(model, TOK, 2, "X:1\nK:D\na", SampleConfig(length=20),
                     torch.Generator().manual_seed(0), max_rounds=2)


def test_sample_tunes_says_when_the_prompt_is_no_tune():
    model = bigram_model({"a": "b", "b": ""})  # "ab" then <eos>: ends, but no ABC tune
    with pytest.raises(DataError, match="none of them an ABC tune.*give an ABC header"):
        sample_tunes(model, TOK, 2, "a", SampleConfig(length=20),
                     torch.Generator().manual_seed(0), max_rounds=2)


def test_threads_one_for_few_streams_the_idle_cores_for_many(monkeypatch):

    import seqgen.devices

    idle, cores = [None], [2]
    monkeypatch.setattr(seqgen.devices, "idle_cores", lambda: idle[0])
    monkeypatch.setattr(seqgen.devices, "usable_cores", lambda: cores[0])
    assert default_threads(1) == 1 and default_threads(7) == 1  # tiny ops: one thread
    assert default_threads(16) == 2  # (no idle figure: all the cores)
    idle[0] = 1.9
    assert default_threads(16) == 2
    idle[0] = 1.1  # another process keeps one core busy: its thread would stall every step
    assert default_threads(16) == 1
    idle[0] = 0.2
    assert default_threads(16) == 1
    cores[0], idle[0] = 64, 60.0
    assert default_threads(16) == 4  # at most 4
    cores[0], idle[0] = 1, None
    assert default_threads(16) == 1


def test_idle_cores_reads_the_machine():
    from seqgen.devices import idle_cores, usable_cores

    idle = idle_cores(0.05)
    if idle is None:
        pytest.skip("no /proc/stat here")
    assert 0.0 <= idle <= usable_cores() + 1e-9
    assert 1 <= usable_cores() <= (os.cpu_count() or 1)


@pytest.mark.slow
def test_same_seed_same_text_whatever_the_thread_count():
    """default_threads depends on the machine (its cores), so a seed must not depend on threads."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="lstm", vocab_size=TOK.vocab_size, embed_dim=16,
                                    hidden_size=256, num_layers=2)).eval()
    cfg = SampleConfig(length=60, num_samples=16, stop_at_eos=False)
    before = torch.get_num_threads()
    texts = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            texts.append([s.text for s in generate(model, TOK, "X:", cfg,
                                                   torch.Generator().manual_seed(3))])
    finally:
        torch.set_num_threads(before)
    assert texts[0] == texts[1]


def test_number_tune():
    assert number_tune("X:5\nK:D\nabc", 2) == "X:2\nK:D\nabc"
    assert number_tune("K:D\nabc", 3) == "X:3\nK:D\nabc"


def test_tune_prompt_completes_a_header_the_vocabulary_can_spell():
    from seqgen.music.tunes import tune_prompt

    abc = Tokenizer.build(["X:1\nM:6/8\nL:1/8\nK:D\n|abc|"])
    assert tune_prompt(abc, "") == "X:"
    assert tune_prompt(abc, "X:1\nM:6/8\nK:D\n") == "X:1\nM:6/8\nL:1/8\nK:D\n"
    plain = Tokenizer.build(["X:1\nM:6/8\nK:D\n"])  # no 'L': cannot write the unit
    assert tune_prompt(plain, "X:1\nM:6/8\nK:D\n") == "X:1\nM:6/8\nK:D\n"


def test_library_misuse_is_a_usage_error():
    """Calls a Python user can get wrong fail with one UsageError, not deep inside torch."""
    logits = torch.zeros(2, TOK.vocab_size)
    with pytest.raises(UsageError, match="temperature"):
        choose_tokens(logits, -1.0)
    with pytest.raises(UsageError, match=r"choose_tokens needs logits \(B, V\)"):
        choose_tokens(torch.zeros(TOK.vocab_size))
    with pytest.raises(UsageError, match="filter_logits needs"):
        filter_logits(logits, -1)
    other = Tokenizer.build(["just a few letters"])
    with pytest.raises(UsageError, match="use the tokenizer of the model's own checkpoint"):
        generate(tiny_model("lstm"), other, "a", SampleConfig(length=3))


def test_a_tune_prompt_with_line_break_marks_and_decorations_is_continued_under_the_grammar():
    """irish.abc ends lines with `|!` and writes `!trill!`: a prompt in that notation is read
    and continued under `--constrain abc`, not refused (issue 24, item 2)."""
    abc = Tokenizer.build(["X:1\nT:Reel\nR:reel\nM:4/4\nL:1/8\nK:D\n"
                           "|:!trill!d2fd AdfA|dfaf gefd|!\nB2GB A2FA|1 d4 d4:|2 d8|]\n"])
    torch.manual_seed(0)
    cfg = ModelConfig(kind="lstm", vocab_size=abc.vocab_size, hidden_size=16, num_layers=1,
                      embed_dim=8)
    model = build_model(cfg).eval()
    prompt = "X:1\nM:4/4\nL:1/8\nK:D\n|:!trill!d2fd AdfA|!\n"
    samples = generate(model, abc, prompt, SampleConfig(length=40, constrain="abc"),
                       torch.Generator().manual_seed(1))
    assert samples[0].prompt == prompt and samples[0].text  # read and continued
