"""ModelConfig: the typed description of a model, stored in every checkpoint as JSON.

Each field has a CLI option of the same name with dashes (``hidden_size`` -> ``--hidden-size``),
declared with what values it takes (seqgen/config.py); ``validate`` names the field in its error,
and the CLI shows the option, so the user knows what to change.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from seqgen.config import check_fields, plain_values, setting, wrong_type
from seqgen.errors import CheckpointError, UsageError, restated

KINDS = ("rnn", "lstm", "gru", "transformer")
EMBEDDINGS = ("learned", "onehot")
ACTIVATIONS = ("tanh", "relu")
INITS = ("default", "identity")
POSITIONALS = ("learned", "sinusoidal")
GELUS = ("exact", "tanh")


@dataclass
class ModelConfig:
    kind: str = setting("lstm", choices=KINDS, flag="--model")  # (alias --kind)
    vocab_size: int = setting(0, gt=0, note="it comes from the tokenizer", flag=None)
    embedding: str = setting("learned", choices=EMBEDDINGS)
    # learned-embedding size for RNN kinds (transformer uses hidden_size)
    embed_dim: int = setting(64, gt=0)
    hidden_size: int = setting(256, gt=0)  # RNN hidden units per layer / transformer width d_model
    num_layers: int = setting(2, gt=0)
    dropout: float = setting(0.0, ge=0, lt=1)
    # RNN kinds: dropout on the inputs x_t too (the transformer's `dropout` covers its
    # embeddings already); configs saved before the field existed have none
    input_dropout: float = setting(0.0, ge=0, lt=1)
    activation: str = setting("tanh", choices=ACTIVATIONS)  # vanilla rnn only
    init: str = setting("default", choices=INITS)  # vanilla rnn only (identity: IRNN, W_hh = I)
    num_heads: int = setting(4, gt=0)  # transformer
    context_length: int = setting(256, gt=0)  # transformer: attention window in tokens
    positional: str = setting("learned", choices=POSITIONALS)  # transformer
    # transformer: the MLP's GELU, exact (erf) or its tanh approximation. Not an option: new
    # models get exact (under bf16 autocast on a CPU, torch's tanh form ran about 2.5x slower);
    # checkpoints saved before the field existed used tanh and keep it (from_dict)
    gelu: str = setting("exact", choices=GELUS, flag=None)

    def __post_init__(self) -> None:
        plain_values(self)

    def validate(self) -> None:
        """Raise UsageError naming the first bad field."""
        check_fields(self)

        def bad(message: str) -> UsageError:
            return UsageError(message, config=ModelConfig)

        if self.kind != "rnn":
            for name in ("activation", "init"):
                if getattr(self, name) != getattr(ModelConfig, name):
                    raise bad(f"`{name}` applies to the vanilla rnn only (`kind` rnn), not to "
                              f"{self.kind}")
        if self.kind == "transformer":
            if self.input_dropout:
                raise bad("`input_dropout` applies to the RNN kinds only (the transformer's "
                          "`dropout` covers its embeddings)")
            if self.hidden_size % self.num_heads:
                raise bad(f"`hidden_size` ({self.hidden_size}) must be a multiple of "
                          f"`num_heads` ({self.num_heads})")
            if self.context_length < 2:
                raise bad(f"`context_length` must be >= 2, not {self.context_length}")
            if self.positional == "sinusoidal" and self.hidden_size % 2:
                raise bad(f"`hidden_size` must be even with `positional` sinusoidal, not "
                          f"{self.hidden_size}")
            if self.embedding == "onehot" and self.hidden_size < self.vocab_size:
                raise bad(f"`embedding` onehot puts the one-hot vector in the transformer's "
                          f"residual stream: `hidden_size` ({self.hidden_size}) must be >= the "
                          f"vocabulary size ({self.vocab_size})")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        """Strict: unknown keys, wrong types or invalid values raise CheckpointError.

        Missing keys take their defaults (configs written before the field existed).
        """
        if not isinstance(d, dict):
            raise CheckpointError(f"model config must be a JSON object, not {type(d).__name__}")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise CheckpointError(f"model config has unknown keys: {', '.join(map(repr, unknown))}")
        if d.get("kind") == "transformer" and "gelu" not in d:
            d = {**d, "gelu": "tanh"}  # (saved before the field existed: the tanh form)
        config = cls(**d)
        bad = wrong_type(config)
        if bad is not None:
            name, want, found = bad
            raise CheckpointError(f"model config {name!r} must be {want}, not {found} "
                                  f"({d[name]!r})")
        try:
            config.validate()
        except UsageError as e:
            raise restated(CheckpointError, e, lambda m: f"model config is invalid: {m}") from None
        return config
