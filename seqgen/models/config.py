"""ModelConfig: the typed description of a model, stored in every checkpoint as JSON.

Each field has a CLI option of the same name with dashes (``hidden_size`` -> ``--hidden-size``);
``validate`` names that option in its error so the user knows what to change.
"""

from __future__ import annotations

import numbers
import os
from dataclasses import asdict, dataclass, fields
from typing import Any

from seqgen.errors import CheckpointError, UsageError

KINDS = ("rnn", "lstm", "gru", "transformer")
EMBEDDINGS = ("learned", "onehot")
ACTIVATIONS = ("tanh", "relu")
INITS = ("default", "identity")
POSITIONALS = ("learned", "sinusoidal")


def option(name: str) -> str:
    """The CLI option of a config field: ``hidden_size`` -> ``--hidden-size``."""
    return "--" + name.replace("_", "-")


_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,),
          "None": (type(None),)}


def plain_values(config: Any) -> None:
    """Turn the values of the dataclass `config` into what JSON holds and the checks expect: a
    path (os.PathLike) into str, a numpy or other integral number into int, a real one into
    float. Called by every config's __post_init__."""
    for f in fields(config):
        v = getattr(config, f.name)
        if isinstance(v, os.PathLike):
            setattr(config, f.name, os.fspath(v))
        elif isinstance(v, numbers.Integral) and not isinstance(v, int):
            setattr(config, f.name, int(v))
        elif isinstance(v, numbers.Real) and not isinstance(v, (int, float)):
            setattr(config, f.name, float(v))


def wrong_type(config: Any) -> tuple[str, str, str] | None:
    """(field, annotated type, type found) for the first field of the dataclass `config` whose
    value does not have its annotated type ("int | None", "tuple[str, ...]"; a bool is no int
    or float here), else None."""
    for f in fields(config):
        value = getattr(config, f.name)
        allowed: list[type] = []
        for part in str(f.type).split("|"):
            part = part.strip()
            allowed.extend((tuple,) if part.startswith("tuple") else _TYPES.get(part, (object,)))
        if not isinstance(value, tuple(allowed)) or (isinstance(value, bool)
                                                     and bool not in allowed):
            return f.name, str(f.type), type(value).__name__
    return None


def check_types(config: Any) -> None:
    """UsageError naming the option of the first field of `config` of the wrong type (a library
    caller's `hidden_size="512"` would otherwise fail deep inside torch)."""
    bad = wrong_type(config)
    if bad is not None:
        name, want, found = bad
        raise UsageError(f"{option(name)} must be {want}, not {found}")


@dataclass
class ModelConfig:
    kind: str = "lstm"
    vocab_size: int = 0  # set from the tokenizer
    embedding: str = "learned"  # "learned" | "onehot"
    embed_dim: int = 64  # learned-embedding size for RNN kinds (transformer uses hidden_size)
    hidden_size: int = 256  # RNN hidden units per layer / transformer width d_model
    num_layers: int = 2
    dropout: float = 0.0
    activation: str = "tanh"  # vanilla rnn only: "tanh" | "relu"
    init: str = "default"  # vanilla rnn only: "default" | "identity" (IRNN: W_hh = I)
    num_heads: int = 4  # transformer
    context_length: int = 256  # transformer: attention window in tokens
    positional: str = "learned"  # transformer: "learned" | "sinusoidal"

    def __post_init__(self) -> None:
        plain_values(self)

    def validate(self) -> None:
        """Raise UsageError naming the CLI option of the first bad field."""
        check_types(self)

        def choice(name: str, allowed: tuple[str, ...]) -> None:
            value = getattr(self, name)
            if value not in allowed:
                raise UsageError(f"{option(name)} must be one of {', '.join(allowed)}, not {value!r}")

        def positive(name: str) -> None:
            if getattr(self, name) <= 0:
                raise UsageError(f"{option(name)} must be > 0, not {getattr(self, name)}")

        if self.kind not in KINDS:  # (the option is --model, alias --kind)
            raise UsageError(f"--model must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if self.vocab_size <= 0:
            raise UsageError(f"vocab_size must be > 0 (it comes from the tokenizer), not {self.vocab_size}")
        choice("embedding", EMBEDDINGS)
        positive("embed_dim")
        positive("hidden_size")
        positive("num_layers")
        if not 0.0 <= self.dropout < 1.0:
            raise UsageError(f"--dropout must be in [0, 1), not {self.dropout}")
        choice("activation", ACTIVATIONS)
        choice("init", INITS)
        choice("positional", POSITIONALS)
        positive("num_heads")
        positive("context_length")
        if self.kind != "rnn":
            for name in ("activation", "init"):
                if getattr(self, name) != getattr(ModelConfig, name):
                    raise UsageError(f"{option(name)} applies to the vanilla rnn only "
                                     f"(--model rnn), not to {self.kind}")
        if self.kind == "transformer":
            if self.hidden_size % self.num_heads:
                raise UsageError(f"--hidden-size ({self.hidden_size}) must be a multiple of "
                                 f"--num-heads ({self.num_heads})")
            if self.context_length < 2:
                raise UsageError(f"--context-length must be >= 2, not {self.context_length}")
            if self.positional == "sinusoidal" and self.hidden_size % 2:
                raise UsageError(f"--hidden-size must be even with --positional sinusoidal, "
                                 f"not {self.hidden_size}")
            if self.embedding == "onehot" and self.hidden_size < self.vocab_size:
                raise UsageError(f"--embedding onehot puts the one-hot vector in the transformer's "
                                 f"residual stream: --hidden-size ({self.hidden_size}) must be >= "
                                 f"the vocabulary size ({self.vocab_size})")

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
        config = cls(**d)
        bad = wrong_type(config)
        if bad is not None:
            name, want, found = bad
            raise CheckpointError(f"model config {name!r} must be {want}, not {found} "
                                  f"({d[name]!r})")
        try:
            config.validate()
        except UsageError as e:
            raise CheckpointError(f"model config is invalid: {e}") from None
        return config
