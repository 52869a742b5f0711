"""Character-level language models with one interface for every kind.

    from seqgen.models import KINDS, ModelConfig, build_model
    model = build_model(ModelConfig(kind="lstm", vocab_size=tok.vocab_size))
    state = model.init_state(batch_size, device)     # or None
    logits, state = model(tokens, state)             # tokens (B, T) long -> logits (B, T, V)
    state = model.detach_state(state)                # between truncated-BPTT windows
    logits, state = model.step(token, state)         # ONE token (B,) -> logits (B, V)
    stepper = model.stepper()                        # weights laid out once, for many steps

`LanguageModel` (seqgen/models/interface.py) is that interface, as a typing.Protocol. Each
model file holds its kind's equations in its docstring and its one-token step next to its
forward: seqgen/models/rnn.py (rnn_cell, lstm_cell, gru_cell) and seqgen/models/transformer.py
(block_step).

See docs/models.md for the equations and options of each kind.
"""

from __future__ import annotations

from seqgen.models.config import KINDS, ModelConfig
from seqgen.models.interface import LanguageModel, Stepper

__all__ = ["KINDS", "LanguageModel", "ModelConfig", "Stepper", "build_model"]


def build_model(config: ModelConfig) -> LanguageModel:
    """A freshly initialised model for `config` (validated first: UsageError if bad)."""
    config.validate()
    if config.kind == "transformer":
        from seqgen.models.transformer import TransformerLanguageModel

        return TransformerLanguageModel(config)
    from seqgen.models.rnn import RNNLanguageModel

    return RNNLanguageModel(config)
