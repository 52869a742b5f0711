"""What decides a training run: TrainConfig (one field per `seqgen train` option), the presets,
and `resolve_config`, which fills in what the preset decides."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from seqgen.config import check_fields, like, plain_values, setting, wrong_type
from seqgen.data import ABC_HEADERS
from seqgen.devices import threads_rule
from seqgen.errors import CheckpointError, UsageError
from seqgen.models.config import ModelConfig

PRESET_NAMES = ("tiny", "small", "medium")
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16")
SCHEDULES = ("cosine", "constant")
BATCHINGS = ("auto", "stateful", "random")

# Model sizes per preset. RNN kinds share one table; the transformer has its own.
# Chosen by bench/bench_train.py (see docs/benchmarks.md, "Training").
MODEL_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "tiny": {
        "rnn": dict(embed_dim=32, hidden_size=128, num_layers=1),
        "transformer": dict(hidden_size=64, num_layers=2, num_heads=4, context_length=64),
    },
    "small": {
        "rnn": dict(embed_dim=64, hidden_size=256, num_layers=1),
        "transformer": dict(hidden_size=128, num_layers=4, num_heads=4, context_length=64),
    },
    "medium": {
        "rnn": dict(embed_dim=64, hidden_size=384, num_layers=1),
        "transformer": dict(hidden_size=384, num_layers=6, num_heads=6, context_length=256),
    },
}
# Optimisation settings per preset (batch in sequences, seq_len in tokens).
TRAIN_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "tiny": {
        "rnn": dict(batch_size=32, seq_len=64, lr=5e-3, dropout=0.0, weight_decay=0.0),
        "transformer": dict(batch_size=16, seq_len=64, lr=3e-3, dropout=0.0, weight_decay=0.1),
    },
    "small": {
        "rnn": dict(batch_size=32, seq_len=64, lr=8e-3, dropout=0.0, weight_decay=0.0),
        "transformer": dict(batch_size=12, seq_len=64, lr=2e-3, dropout=0.1, weight_decay=0.1),
    },
    "medium": {
        "rnn": dict(batch_size=32, seq_len=64, lr=5e-3, dropout=0.35, weight_decay=0.0),
        "transformer": dict(batch_size=8, seq_len=256, lr=1e-3, dropout=0.2, weight_decay=0.1),
    },
}
DEFAULT_MINUTES = 5.0  # the budget when neither --steps nor --minutes is given
# How many passes over the corpus a budget allows decides between `small` and `medium` for the
# RNN kinds: estimated from the `small` LSTM's training speed on a 2-core CPU. Measured with
# today's `small` (no dropout; docs/benchmarks.md, Training), held-out loss of `small` minus
# `medium`: folk at 8.3 passes (2 min) -0.077, at 12.4 (3 min) +0.022, at 16.6 (4 min) +0.077;
# tinyshakespeare at 10.8 (5 min) +0.029. The crossover lies between 8.3 and 10.8.
SMALL_RNN_TOKENS_PER_S = 40_000
MANY_PASSES = 10


def family(kind: str) -> str:
    return "transformer" if kind == "transformer" else "rnn"


# The ModelConfig fields a run may set; --init-from takes them all from its checkpoint
# (only dropout and input_dropout may change).
ARCHITECTURE = ("embedding", "embed_dim", "hidden_size", "num_layers", "activation", "init",
                "num_heads", "context_length", "positional")


def check_kind_options(cfg: TrainConfig) -> None:
    """UsageError for a model option given (not None) that the kind has no use for, on a new
    run (a saved config holds every field, filled in from the preset). `activation` and `init`
    are checked with the model config."""
    unused = ("embed_dim", "input_dropout") if cfg.kind == "transformer" else (
        "num_heads", "context_length", "positional")
    for name in unused:
        if getattr(cfg, name) is not None:
            owner = "the RNN kinds" if cfg.kind == "transformer" else "the transformer"
            raise UsageError(f"`{name}` applies to {owner} only, not to `kind` {cfg.kind}",
                             config=TrainConfig)


def check_init_from_model(cfg: TrainConfig, mcfg) -> None:
    """UsageError for an architecture option that differs from the `init_from` model's (None
    means not given), and for a transformer `seq_len` longer than its context."""
    def bad(message: str) -> UsageError:
        return UsageError(message, config=TrainConfig)

    if cfg.kind != mcfg.kind and cfg.kind != TrainConfig.kind:  # (the default: not chosen)
        raise bad(f"`kind` {cfg.kind}: `init_from` {cfg.init_from} fine-tunes its own model "
                  f"({mcfg.kind}); drop `kind`")
    for name in ARCHITECTURE:
        value = getattr(cfg, name)
        if value is not None and value != getattr(mcfg, name):
            raise bad(f"`{name}` {value}: `init_from` {cfg.init_from} fine-tunes its own model "
                      f"({name.replace('_', ' ')} {getattr(mcfg, name)}); drop `{name}`")
    if (family(mcfg.kind) == "transformer" and cfg.seq_len is not None
            and cfg.seq_len > mcfg.context_length):
        raise bad(f"`seq_len` {cfg.seq_len}: longer than the context length of the `init_from` "
                  f"model ({mcfg.context_length})")


@dataclass
class TrainConfig:
    """Everything that decides a training run. Each field is one `seqgen train` option
    (``batch_size`` -> ``--batch-size``; ``kind`` -> ``--model``). None means "from the preset"."""

    corpus: str = "folk"  # file, directory or bundled corpus name
    glob: str | None = None  # which files of a directory corpus
    split_docs: bool = False  # blank-line separated blocks of a text file are documents
    # ABC corpora: music (header fields that shape the music) | all
    abc_headers: str = setting("music", choices=ABC_HEADERS)
    abc_normalise: bool = True  # ABC corpora: repair or drop tunes the ABC tools would reject
    # share of documents (or of the text) held out for validation
    val_fraction: float = setting(0.1, ge=0, lt=1)
    kind: str = like(ModelConfig, "kind", "lstm")  # rnn | lstm | gru | transformer
    preset: str = setting("auto", choices=("auto", *PRESET_NAMES))
    # the model (ModelConfig's fields); None: from the preset. The model config checks
    # embedding, activation, init and positional.
    embedding: str | None = None
    embed_dim: int | None = like(ModelConfig, "embed_dim", None)
    hidden_size: int | None = like(ModelConfig, "hidden_size", None)
    num_layers: int | None = like(ModelConfig, "num_layers", None)
    dropout: float | None = like(ModelConfig, "dropout", None)
    input_dropout: float | None = like(ModelConfig, "input_dropout", None)
    activation: str | None = None
    init: str | None = None
    num_heads: int | None = like(ModelConfig, "num_heads", None)
    context_length: int | None = like(ModelConfig, "context_length", None)
    positional: str | None = None
    # sequences per step (global, over all processes)
    batch_size: int | None = setting(None, gt=0)
    seq_len: int | None = setting(None, gt=0)  # tokens per window (truncated-BPTT length for RNNs)
    # RNNs: stateful (auto) or random windows; transformer: random
    batching: str = setting("auto", choices=BATCHINGS)
    lr: float | None = setting(None, gt=0)  # peak learning rate
    min_lr_ratio: float = setting(0.1, ge=0, le=1)  # the cosine decays to lr * min_lr_ratio
    warmup_steps: int = setting(50, ge=0)  # linear warmup from 0
    schedule: str = setting("cosine", choices=SCHEDULES)  # cosine | constant (after warmup)
    # AdamW decoupled weight decay (matrices only)
    weight_decay: float | None = setting(None, ge=0)
    grad_clip: float = setting(1.0, ge=0)  # clip the gradient norm to this; 0 turns clipping off
    seed: int = 1337
    steps: int | None = setting(None, gt=0)  # optimizer steps; with minutes, whichever ends first
    # wall-clock budget for training (including evaluation)
    minutes: float | None = setting(None, gt=0)
    eval_every: int = setting(100, gt=0)  # steps between validation runs (and checkpoint saves)
    # at most this many validation tokens per evaluation
    eval_tokens: int = setting(262144, gt=0)
    # stop after this many evaluations without improvement; 0: never
    patience: int = setting(0, ge=0)
    log_every: int = setting(10, gt=0)  # steps between train-loss points in metrics.jsonl
    log_grad_norms: bool = False  # also log every step's gradient norm (before clipping)
    out: str | None = None  # run directory; default checkpoints/<corpus name>
    overwrite: bool = False  # allow out to replace an existing checkpoint
    device: str = setting("auto", choices=DEVICES)  # auto | cpu | cuda | mps
    precision: str = setting("auto", choices=PRECISIONS)  # auto | fp32 | bf16 (autocast)
    compile: bool = False  # torch.compile the model
    # CPU threads for torch; None: the cores idle at the start
    threads: int | None = setting(None, check=threads_rule)
    init_from: str | None = None  # fine-tune the model of this checkpoint directory

    def __post_init__(self) -> None:
        plain_values(self)  # a Path for corpus/out/init_from, numpy numbers: as JSON holds them

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, source: str = "train config") -> TrainConfig:
        if not isinstance(d, dict):
            raise CheckpointError(f"{source}: expected a JSON object")
        if "abc_headers" not in d:  # saved before the field existed: those runs read ABC as written
            d = {**d, "abc_headers": "all"}
        if "abc_normalise" not in d:  # saved before the field existed: not normalised
            d = {**d, "abc_normalise": False}
        if "input_dropout" not in d:  # saved before the field existed: none
            d = {**d, "input_dropout": 0.0}
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise CheckpointError(f"{source}: unknown keys {', '.join(map(repr, unknown))}")
        config = cls(**d)
        bad = wrong_type(config)
        if bad is not None:
            raise CheckpointError(f"{source}: train_config {bad[0]!r} must be {bad[1]}, "
                                  f"not {bad[2]}")
        return config

    def validate(self) -> None:
        """UsageError naming the first bad field."""
        check_fields(self)
        if self.kind == "transformer" and self.batching == "stateful":
            raise UsageError("`batching` stateful applies to RNN kinds; the transformer trains "
                             "on random windows", config=TrainConfig)


# TrainConfig fields that resolve_config always fills (a run to resume must have them all).
RESOLVED = ("embedding", "embed_dim", "hidden_size", "num_layers", "dropout", "input_dropout",
            "activation", "init", "num_heads", "context_length", "positional", "batch_size",
            "seq_len", "lr", "weight_decay")


# TrainConfig fields that may change on --resume: the budget, evaluation, device and precision.
# `corpus` may be given again to say where the corpus is now: its tokens must be the ones the
# run trained on (checked against the digest saved with the training state)
RESUMABLE_OVERRIDES = ("steps", "minutes", "eval_every", "eval_tokens", "patience",
                       "log_every", "log_grad_norms", "device", "precision", "compile",
                       "threads", "corpus")


def choose_preset(kind: str, corpus_chars: int, budget_s: float | None, steps: int | None,
                  device: str = "cpu") -> str:
    """The preset `--preset auto` picks from the corpus size, the budget and the device.

    Measured with bench/bench_train.py and seqgen eval on the 2-core CPU (docs/benchmarks.md):
    a budget that sees the corpus only a few times is best spent on a 1x256 LSTM without
    dropout ("small"); one that allows many passes (a small corpus, or minutes to spare)
    overfits it, and a wider LSTM with dropout ("medium", 1x384, dropout 0.35) gets a lower
    held-out loss (its tunes convert to MIDI more often, but are not more often VALID). The
    transformer's "medium" is far too slow for a CPU's minutes, so it gets it only with long
    budgets on big corpora, or on CUDA.
    """
    if corpus_chars < 20_000:
        return "tiny"
    if device.startswith("cuda"):
        return "medium"
    long_budget = (budget_s is not None and budget_s > 30 * 60) or (
        budget_s is None and steps is not None and steps >= 20_000)
    if long_budget and corpus_chars >= 1_000_000:
        return "medium"
    if family(kind) == "rnn" and estimated_passes(corpus_chars, budget_s, steps) >= MANY_PASSES:
        return "medium"
    return "small"


def estimated_passes(corpus_chars: int, budget_s: float | None, steps: int | None) -> float:
    """About how many times the `small` RNN preset would see the corpus in the budget (the
    smaller of the two when both --minutes and --steps are given)."""
    small = TRAIN_PRESETS["small"]["rnn"]
    tokens = [budget_s * SMALL_RNN_TOKENS_PER_S] if budget_s is not None else []
    if steps is not None:
        tokens.append(steps * small["batch_size"] * small["seq_len"])
    return min(tokens) / max(corpus_chars, 1) if tokens else 0.0


def budget_seconds(config: TrainConfig) -> float | None:
    """The run's time budget in seconds (--minutes, or the default when --steps is not given
    either); None for a run bounded by --steps only."""
    if config.minutes:
        return config.minutes * 60
    return DEFAULT_MINUTES * 60 if config.steps is None else None


def resolve_config(config: TrainConfig, vocab_size: int, corpus_chars: int,
                   device: str = "cpu", chosen: dict[str, Any] | None = None
                   ) -> tuple[TrainConfig, ModelConfig]:
    """`config` with the preset and every None field filled in, and the model config.
    `chosen`: the fields a calibration chose for `--preset auto` (seqgen.train.calibrate),
    which fill what the preset would (the preset stays `auto`)."""
    config.validate()
    fam = family(config.kind)
    preset = config.preset
    if chosen is not None and preset == "auto":
        values: dict[str, Any] = dict(chosen)
        if config.dropout is not None and "input_dropout" in values:
            values["input_dropout"] = config.dropout  # (the inputs dropped as the output)
    else:
        if preset == "auto":
            preset = choose_preset(config.kind, corpus_chars, budget_seconds(config),
                                   config.steps, device)
        values = {**MODEL_PRESETS[preset][fam], **TRAIN_PRESETS[preset][fam]}
    model_fields = {f.name for f in fields(ModelConfig)} - {"gelu"}  # (gelu: not a TrainConfig field)
    resolved = replace(config, preset=preset)
    for name, v in values.items():
        if getattr(resolved, name) is None:
            setattr(resolved, name, v)
    if fam == "transformer":
        if config.context_length is None and config.seq_len is not None:
            resolved.context_length = max(config.seq_len, 2)
        if config.seq_len is None:
            resolved.seq_len = resolved.context_length
        if resolved.seq_len > resolved.context_length:
            raise UsageError(f"`seq_len` ({resolved.seq_len}) must not exceed `context_length` "
                             f"({resolved.context_length}) for the transformer",
                             config=TrainConfig)
    mc = ModelConfig(kind=config.kind, vocab_size=vocab_size)
    for name in model_fields - {"kind", "vocab_size"}:
        v = getattr(resolved, name, None)
        if v is None:
            setattr(resolved, name, getattr(mc, name))
        else:
            setattr(mc, name, v)
    if resolved.steps is None and resolved.minutes is None:
        resolved.minutes = DEFAULT_MINUTES
    mc.validate()
    return resolved, mc
