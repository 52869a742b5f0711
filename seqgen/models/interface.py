"""The interface every seqgen model has: what training, sampling, checkpoints and inspect use.

`build_model` returns a `LanguageModel`; both RNNLanguageModel (rnn, lstm, gru) and
TransformerLanguageModel satisfy it (tests check with isinstance). The state is the model's own
business (hidden states, or a KV cache): callers get it from `init_state` or `forward`/`step` and
hand it back unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

    from seqgen.models.config import ModelConfig


@runtime_checkable
class Stepper(Protocol):
    """A model's weights laid out once for many single-token steps (`LanguageModel.stepper`)."""

    def step(self, tokens: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        """tokens (B,) -> logits (B, V) (plus the stepper's logit bias), and the new state."""
        ...


@runtime_checkable
class LanguageModel(Protocol):
    """A character-level language model (an nn.Module). Shapes: B batch, T time, V vocab_size."""

    config: ModelConfig
    training: bool

    def __call__(self, tokens: Tensor, state: Any = None) -> tuple[Tensor, Any]: ...

    def forward(self, tokens: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        """tokens (B, T) long -> logits (B, T, V), the state after the last token (None: a
        fresh start; the transformer then runs a plain causal forward and returns None)."""
        ...

    def init_state(self, batch_size: int, device: torch.device | str = "cpu") -> Any:
        """The state before the first token: zeros, or an empty KV cache."""
        ...

    def detach_state(self, state: Any) -> Any:
        """The state cut from the graph (between truncated-BPTT training windows)."""
        ...

    def step(self, tokens: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        """ONE token per stream: tokens (B,) -> logits (B, V) and the state; the same logits as
        `forward` over the tokens one at a time (in eval mode)."""
        ...

    def stepper(self, logit_bias: Tensor | None = None) -> Stepper:
        """The weights laid out once for many `step`s; `logit_bias` (V,) is added to the logits."""
        ...

    def summary(self) -> str:
        """One line: kind, size, options, parameter count ("lstm 2x512, embed 64, 3.3M params")."""
        ...

    def num_params(self) -> int: ...

    # the parts of nn.Module that seqgen's callers use
    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]: ...

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]: ...

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]: ...

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True,
                        assign: bool = False) -> Any: ...

    def train(self, mode: bool = True) -> Any: ...

    def eval(self) -> Any: ...

    def to(self, *args: Any, **kwargs: Any) -> Any: ...
