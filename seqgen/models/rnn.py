"""Recurrent language models: vanilla RNN (Elman), LSTM and GRU.

    x_t = embed(token_t)                          learned (E) or one-hot (V) input vector
    h_t = recurrent layers(x_t, h_{t-1})          num_layers stacked, dropout between layers
    y_t = W_hy h_t                                logits over the vocabulary

Training uses torch's fused nn.RNN / nn.LSTM / nn.GRU. For the vanilla RNN, `forward_reference`
runs the same weights through `elman_step`, the lecture's equations written out one time step at a
time; tests check that both paths give the same outputs and gradients.

Shapes: B batch, T time, V vocab_size, E input size (embed_dim, or V for one-hot), H hidden_size,
L num_layers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqgen.models.config import ModelConfig

# The hidden state: (L, B, H) for rnn/gru, a tuple (h, c) of two (L, B, H) for lstm.
State = Tensor | tuple[Tensor, Tensor]


def elman_step(x_t: Tensor, h_prev: Tensor, W_xh: Tensor, W_hh: Tensor, b: Tensor, act) -> Tensor:
    """The lecture's RNN cell: h_t = act(W_hh h_{t-1} + W_xh x_t + b).

    x_t (B, I), h_prev (B, H), W_xh (H, I), W_hh (H, H), b (H,) -> h_t (B, H)
    """
    return act(h_prev @ W_hh.T + x_t @ W_xh.T + b)


class RNNLanguageModel(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        config.validate()
        self.config = config
        V, H, L = config.vocab_size, config.hidden_size, config.num_layers
        if config.embedding == "onehot":
            # x_t is the one-hot vector of token_t, looked up as a row of the identity (not learned,
            # not saved: a non-persistent buffer).
            self.embed = None
            self.register_buffer("onehot", torch.eye(V), persistent=False)  # (V, V)
            E = V
        else:
            self.embed = nn.Embedding(V, config.embed_dim)  # (V, E)
            E = config.embed_dim
        dropout = config.dropout if L > 1 else 0.0  # torch applies it between layers only
        if config.kind == "rnn":
            self.rnn = nn.RNN(E, H, L, nonlinearity=config.activation, dropout=dropout, batch_first=True)
        elif config.kind == "lstm":
            self.rnn = nn.LSTM(E, H, L, dropout=dropout, batch_first=True)
        elif config.kind == "gru":
            self.rnn = nn.GRU(E, H, L, dropout=dropout, batch_first=True)
        else:
            raise ValueError(f"not a recurrent kind: {config.kind}")
        self.drop = nn.Dropout(config.dropout)  # on the last layer's output, before W_hy
        self.head = nn.Linear(H, V, bias=False)  # W_hy (V, H)
        if config.kind == "rnn" and config.init == "identity":
            # IRNN (Le, Jaitly & Hinton 2015): W_hh = I and b = 0, so at the start h_t carries
            # h_{t-1} unchanged and gradients neither vanish nor explode through time.
            with torch.no_grad():
                for k in range(L):
                    getattr(self.rnn, f"weight_hh_l{k}").copy_(torch.eye(H))
                    getattr(self.rnn, f"bias_hh_l{k}").zero_()
                    getattr(self.rnn, f"bias_ih_l{k}").zero_()

    def _inputs(self, tokens: Tensor) -> Tensor:
        # tokens (B, T) -> x (B, T, E)
        if self.embed is None:
            return F.embedding(tokens, self.onehot)
        return self.embed(tokens)

    def init_state(self, batch_size: int, device: torch.device | str = "cpu") -> State:
        """Zeros: (L, B, H) for rnn/gru; (h, c) for lstm. Passing None to forward means the same."""
        c = self.config
        h = torch.zeros(c.num_layers, batch_size, c.hidden_size, device=device)
        return (h, torch.zeros_like(h)) if c.kind == "lstm" else h

    def forward(self, tokens: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        # tokens (B, T) -> logits (B, T, V), state as in init_state (float32, also under autocast)
        x = self._inputs(tokens)  # (B, T, E)
        dev = x.device.type
        if self.config.kind == "lstm" and torch.is_autocast_enabled(dev):
            # torch's CPU LSTM under autocast (oneDNN) needs its input and state already in the
            # autocast dtype; rnn casts itself, gru stays in float32.
            dtype = torch.get_autocast_dtype(dev)
            x = x.to(dtype)
            if state is not None:
                state = (state[0].to(dtype), state[1].to(dtype))
        out, state = self.rnn(x, state)  # out (B, T, H) is the last layer's h_t for every t
        logits = self.head(self.drop(out))  # (B, T, V)
        if isinstance(state, tuple):
            state = (state[0].float(), state[1].float())
        else:
            state = state.float()
        return logits, state

    def forward_reference(self, tokens: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Vanilla RNN only: `forward` written out with `elman_step`, one layer and step at a time.

        Uses the fused module's own parameters (b = b_ih + b_hh), so gradients land on the same
        tensors. Slow; for tests and for reading. Inter-layer dropout is not applied (use eval()).
        """
        assert self.config.kind == "rnn", "the reference path exists for the vanilla RNN only"
        act = torch.tanh if self.config.activation == "tanh" else torch.relu
        B, T = tokens.shape
        if state is None:
            state = self.init_state(B, tokens.device)
        x = self._inputs(tokens)  # (B, T, E), then (B, T, H) after each layer
        h_last = []
        for k in range(self.config.num_layers):
            W_xh = getattr(self.rnn, f"weight_ih_l{k}")  # (H, E) for layer 0, else (H, H)
            W_hh = getattr(self.rnn, f"weight_hh_l{k}")  # (H, H)
            b = getattr(self.rnn, f"bias_ih_l{k}") + getattr(self.rnn, f"bias_hh_l{k}")  # (H,)
            h = state[k]  # (B, H)
            hs = []
            for t in range(T):
                h = elman_step(x[:, t], h, W_xh, W_hh, b, act)
                hs.append(h)
            x = torch.stack(hs, dim=1)  # (B, T, H)
            h_last.append(h)
        logits = self.head(self.drop(x))  # y_t = W_hy h_t: (B, T, V)
        return logits, torch.stack(h_last)  # (L, B, H)

    def detach_state(self, state: State | None) -> State | None:
        """Cut the graph between windows (truncated backpropagation through time)."""
        if state is None:
            return None
        if isinstance(state, tuple):
            return (state[0].detach(), state[1].detach())
        return state.detach()

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def summary(self) -> str:
        c = self.config
        parts = [f"{c.kind} {c.num_layers}x{c.hidden_size}"]
        if c.kind == "rnn":
            parts[0] += f" {c.activation}" + (" identity-init" if c.init == "identity" else "")
        parts.append(f"one-hot {c.vocab_size}" if c.embedding == "onehot" else f"embed {c.embed_dim}")
        if c.dropout:
            parts.append(f"dropout {c.dropout:g}")
        parts.append(f"{format_count(self.num_params())} params")
        return ", ".join(parts)


def format_count(n: int) -> str:
    """1234 -> '1.2K', 2_900_000 -> '2.9M', 3_200_000_000 -> '3.2B'."""
    if n >= 1_000_000_000:
        return f"{n / 1e9:,.1f}B"
    if n >= 1_000_000:
        return f"{n / 1e6:.1f}M"
    if n >= 1_000:
        return f"{n / 1e3:.1f}K"
    return str(n)
