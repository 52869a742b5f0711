"""Recurrent language models: vanilla RNN (Elman), LSTM and GRU.

One time step of layer k, in the lecture's symbols (x_t is the layer's input: the embedding of
token t for layer 1, h_t of the layer below for the others; sigma is the sigmoid, * elementwise):

    rnn:   h_t = tanh(W_hh h_{t-1} + W_xh x_t + b)             (or relu: --activation relu)
    lstm:  i, f, g, o = sigma, sigma, tanh, sigma of the four quarters of
                        W_hh h_{t-1} + W_xh x_t + b
           c_t = f * c_{t-1} + i * g
           h_t = o * tanh(c_t)
    gru:   r, z = sigma of the first two thirds of W_hh h_{t-1} + W_xh x_t + b
           n    = tanh(W_xn x_t + b_xn + r * (W_hn h_{t-1} + b_hn))
           h_t  = (1 - z) * n + z * h_{t-1}
    y_t = W_hy h_t                                              logits, from the last layer

Training (`forward`, whole windows) runs torch's fused nn.RNN / nn.LSTM / nn.GRU. `step` runs ONE
token per stream through `rnn_cell` / `lstm_cell` / `gru_cell`, the equations above written out,
with the fused modules' own parameters; sampling's fast decoding and `seqgen inspect` use it, and
tests check it against `forward` (logits, state and gradients). `stepper()` lays the weights out
for many steps once (`RecurrentStepper`): each W transposed, and layer 1's W_xh x_t + b a (V, G)
table, since x_t is an embedding row. torch's weight names: weight_ih = W_xh, weight_hh = W_hh,
both biases b_ih + b_hh = b (the GRU keeps b_hn apart, inside r * (...)), head = W_hy.

Shapes: B batch, T time, V vocab_size, E input size (embed_dim, or V for one-hot), H hidden_size,
L num_layers, G gates x H (H for rnn, 4H for lstm, 3H for gru).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqgen.models.config import ModelConfig

# The hidden state: (L, B, H) for rnn/gru, a tuple (h, c) of two (L, B, H) for lstm. `step` returns
# it per layer (a list of L (B, H) tensors in place of each (L, B, H): no stacking per token);
# `forward`, `step` and `detach_state` take either form.
Layers = Tensor | list[Tensor]
State = Layers | tuple[Layers, Layers]


# ---------------------------------------------------------------------------- one step of a cell
# Each cell takes a_x = W_xh x_t + b (B, G), this step's input projection (fresh: the cell
# overwrites it), and W_hh^T (H, G), transposed once so that W_hh h_{t-1} is one addmm.
def rnn_cell(a_x: Tensor, h: Tensor, W_hh_T: Tensor, act: Callable[[Tensor], Tensor]) -> Tensor:
    """h_t = act(W_hh h_{t-1} + W_xh x_t + b).  a_x (B, H), h (B, H) -> h_t (B, H)"""
    return act(a_x.addmm_(h, W_hh_T))


def lstm_cell(a_x: Tensor, h: Tensor, c: Tensor, W_hh_T: Tensor) -> tuple[Tensor, Tensor]:
    """c_t = f * c_{t-1} + i * g,  h_t = o * tanh(c_t).  a_x (B, 4H), h, c (B, H) -> h_t, c_t"""
    H = h.shape[1]
    a = a_x.addmm_(h, W_hh_T)  # (B, 4H): W_hh h_{t-1} + W_xh x_t + b, quarters i, f, g, o
    s = torch.sigmoid(a)  # (B, 4H): one op for i, f and o (g's quarter unused)
    i, f, o = s[:, :H], s[:, H : 2 * H], s[:, 3 * H :]  # 3 x (B, H)
    g = torch.tanh(a[:, 2 * H : 3 * H])  # (B, H)
    c = torch.addcmul(f * c, i, g)  # f * c_{t-1} + i * g
    return o * torch.tanh(c), c


def gru_cell(a_x: Tensor, h: Tensor, W_hh_T: Tensor, b_hh: Tensor) -> Tensor:
    """h_t = (1 - z) * n + z * h_{t-1}.  a_x (B, 3H) = W_xh x_t + b_ih, h (B, H), b_hh (3H,)"""
    H = h.shape[1]
    a_h = torch.addmm(b_hh, h, W_hh_T)  # (B, 3H): W_hh h_{t-1} + b_hh, thirds r, z, n
    rz = torch.sigmoid(a_x[:, : 2 * H] + a_h[:, : 2 * H])  # (B, 2H)
    r, z = rz[:, :H], rz[:, H:]  # 2 x (B, H)
    n = torch.tanh(torch.addcmul(a_x[:, 2 * H :], r, a_h[:, 2 * H :]))  # W_xn x + b_xn + r * (..)
    return torch.addcmul(n, z, h - n)  # n + z * (h_{t-1} - n) = (1 - z) * n + z * h_{t-1}


def per_layer(state: Layers) -> list[Tensor]:
    """The state of each layer: (L, B, H) or a list of L (B, H) -> a list of L (B, H) (views)."""
    return state if isinstance(state, list) else list(state.unbind(0))


def stacked(state: State | None) -> Tensor | tuple[Tensor, Tensor] | None:
    """The state as `forward` returns it: each list of L (B, H) stacked into (L, B, H)."""
    if isinstance(state, tuple):
        return (stacked(state[0]), stacked(state[1]))
    return torch.stack(state) if isinstance(state, list) else state


class RecurrentStepper:
    """The weights of an RNNLanguageModel laid out for `step`, one token per stream at a time.

    Built once per sampling run (or per `inspect` unroll) by `model.stepper()`; it holds tensors
    derived from the parameters, so build a new one after the weights change. Under grad mode
    gradients flow back to the parameters through it (inspect relies on that). `logit_bias` (V,)
    is added to every step's logits (sampling puts -inf at <unk>; zeros by default).
    """

    def __init__(self, model: RNNLanguageModel, logit_bias: Tensor | None = None):
        c = model.config
        self.kind, self.L = c.kind, c.num_layers
        self.act = torch.relu if c.activation == "relu" else torch.tanh
        gru = c.kind == "gru"
        w = [[getattr(model.rnn, f"{name}_l{k}") for name in
              ("weight_ih", "weight_hh", "bias_ih", "bias_hh")] for k in range(self.L)]
        # b: the bias added to W_xh x_t, both biases but the GRU's b_hh (kept for b_hn)
        b = [b_ih if gru else b_ih + b_hh for _, _, b_ih, b_hh in w]  # (G,)
        emb = model.embed.weight if model.embed is not None else model.onehot  # (V, E)
        W_xh0, _, b_ih0, b_hh0 = w[0]
        table = F.linear(emb.float(), W_xh0, b_ih0)  # (V, G): W_xh x + b_ih for every token
        self.table = (table if gru else table + b_hh0).contiguous()  # (V, G): + b
        self.W_xh_T = [None] + [W_xh.t().contiguous() for W_xh, _, _, _ in w[1:]]  # (H, G)
        self.W_hh_T = [W_hh.t().contiguous() for _, W_hh, _, _ in w]  # (H, G)
        self.b = b
        self.b_hh = [b_hh for _, _, _, b_hh in w]  # (G,), the GRU's b_hh
        self.W_hy_T = model.head.weight.t().contiguous()  # (H, V)
        V = c.vocab_size
        self.b_y = torch.zeros(V, dtype=self.W_hy_T.dtype, device=self.W_hy_T.device) \
            if logit_bias is None else logit_bias.to(self.W_hy_T)  # (V,)
        self.init_state = model.init_state

    def step(self, tokens: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """tokens (B,), state (None: zeros) -> logits (B, V), the state per layer (lists)."""
        if state is None:
            state = self.init_state(tokens.shape[0], tokens.device)
        kind = self.kind
        hs, cs = (per_layer(state[0]), per_layer(state[1])) if kind == "lstm" else (
            per_layer(state), None)
        new_h, new_c = [], []
        x = None  # the layer's input: (B, H) from the layer below
        for k in range(self.L):
            # a_x = W_xh x_t + b (B, G); layer 1's is a row of the table
            a_x = self.table[tokens] if k == 0 else torch.addmm(self.b[k], x, self.W_xh_T[k])
            if kind == "rnn":
                x = rnn_cell(a_x, hs[k], self.W_hh_T[k], self.act)
            elif kind == "lstm":
                x, c = lstm_cell(a_x, hs[k], cs[k], self.W_hh_T[k])
                new_c.append(c)
            else:
                x = gru_cell(a_x, hs[k], self.W_hh_T[k], self.b_hh[k])
            new_h.append(x)
        logits = torch.addmm(self.b_y, x, self.W_hy_T)  # y_t = W_hy h_t: (B, V)
        return logits, ((new_h, new_c) if kind == "lstm" else new_h)


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
        self.drop_in = nn.Dropout(config.input_dropout)  # on x_t, before the first layer
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
        x = self.drop_in(self._inputs(tokens))  # (B, T, E)
        state = stacked(state)
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

    def detach_state(self, state: State | None) -> State | None:
        """Cut the graph between windows (truncated backpropagation through time)."""
        if state is None:
            return None
        if isinstance(state, tuple):
            return (self.detach_state(state[0]), self.detach_state(state[1]))
        if isinstance(state, list):
            return [h.detach() for h in state]
        return state.detach()

    def stepper(self, logit_bias: Tensor | None = None) -> RecurrentStepper:
        """The weights laid out for many `step`s (see RecurrentStepper); no dropout."""
        return RecurrentStepper(self, logit_bias)

    def step(self, tokens: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """ONE token per stream: tokens (B,) -> logits (B, V), state per layer (see State).

        The same logits as `forward` over the tokens one at a time (no dropout: use eval()).
        Lays the weights out anew on every call: for many steps hold `stepper()` and call its
        `step`, as sampling does.
        """
        return self.stepper().step(tokens, state)

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
        if c.input_dropout:
            parts.append(f"input dropout {c.input_dropout:g}")
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
