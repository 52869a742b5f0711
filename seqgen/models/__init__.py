"""Character-level language models with one interface for every kind.

    from seqgen.models import KINDS, ModelConfig, build_model
    model = build_model(ModelConfig(kind="lstm", vocab_size=tok.vocab_size))
    state = model.init_state(batch_size, device)     # or None
    logits, state = model(tokens, state)             # tokens (B, T) long -> logits (B, T, V)
    state = model.detach_state(state)                # between truncated-BPTT windows

See docs/models.md for the equations and options of each kind.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from seqgen.models.config import KINDS, ModelConfig

if TYPE_CHECKING:
    from torch import nn

__all__ = ["KINDS", "ModelConfig", "build_model"]


def build_model(config: ModelConfig) -> nn.Module:
    """A freshly initialised model for `config` (validated first: UsageError if bad)."""
    config.validate()
    if config.kind == "transformer":
        from seqgen.models.transformer import TransformerLanguageModel

        return TransformerLanguageModel(config)
    from seqgen.models.rnn import RNNLanguageModel

    return RNNLanguageModel(config)
