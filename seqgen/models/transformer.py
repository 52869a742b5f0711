"""Decoder-only transformer (GPT, pre-norm) with a sliding-window KV cache.

    x = wte[token] + pos[position]                 (B, T, D)
    for each of L blocks:
        x = x + proj(attention(ln_1(x)))           causal multi-head self-attention (SDPA)
        x = x + proj(gelu(fc(ln_2(x))))            D -> 4D -> GELU (tanh form) -> D
    logits = ln_f(x) @ wte.T                       output layer tied to the token embedding

Shapes: B batch, T time, V vocab_size, D hidden_size, nh num_heads, hd = D / nh, C context_length,
L num_layers.

Incremental decoding (`forward(tokens, cache)`): each token's logits are those of a plain causal
forward over the *window* of tokens that ends at it. The window grows by one token per token fed;
when a token would make it longer than C, the window is first cut to its last `keep - 1` tokens
(keep = max(1, C // 2)), positions restart at 0, and the keys/values of the cut window are
recomputed in one forward pass together with the new tokens. So every C - keep + 1 tokens cost one
extra forward over keep tokens: O(1) amortised per token, and no token ever sees more than C.
Decoding with a cache is for inference: it runs under torch.no_grad() and updates the cache in place.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqgen.errors import UsageError
from seqgen.models.config import ModelConfig
from seqgen.models.rnn import format_count


class KVCache:
    """Preallocated keys and values of every layer, plus the tokens they were computed from.

    Updated in place by the model's forward (which also returns it). `length` is a Python int, so
    the decode path never syncs with the device to know where to write.
    """

    def __init__(self, config: ModelConfig, batch_size: int, device: torch.device | str):
        c = config
        self.context_length = c.context_length
        self.keep = max(1, c.context_length // 2)
        self.shape = (c.num_layers, batch_size, c.num_heads, c.context_length, c.hidden_size // c.num_heads)
        self.device = torch.device(device)
        self.k: Tensor | None = None  # (L, B, nh, C, hd), allocated on first use in k's dtype
        self.v: Tensor | None = None  # (L, B, nh, C, hd)
        self.tokens = torch.zeros(batch_size, c.context_length, dtype=torch.long, device=device)  # (B, C)
        self.length = 0  # tokens held, the same for every batch row

    def layer(self, i: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """Keys and values of layer i: 2 x (B, nh, C, hd), in the dtype attention runs in."""
        if self.k is None or self.k.dtype != dtype:
            # First use, or autocast switched on/off: (re)allocate and keep per-layer views.
            if self.k is None:
                self.k = torch.zeros(self.shape, dtype=dtype, device=self.device)
                self.v = torch.zeros(self.shape, dtype=dtype, device=self.device)
            else:
                self.k, self.v = self.k.to(dtype), self.v.to(dtype)
            self._layers = [(self.k[i], self.v[i]) for i in range(self.shape[0])]
        return self._layers[i]

    def window(self) -> Tensor:
        """The tokens the cache holds, oldest first: (B, length)."""
        return self.tokens[:, : self.length]


class CausalSelfAttention(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        D = config.hidden_size
        self.nh = config.num_heads
        self.qkv = nn.Linear(D, 3 * D, bias=False)
        self.proj = nn.Linear(D, D, bias=False)
        self.dropout = config.dropout

    def forward(self, x: Tensor, cache: KVCache | None, layer: int, start: int) -> Tensor:
        # x (B, T, D); with a cache, x holds positions start..start+T-1 and the cache 0..start-1
        B, T, D = x.shape
        qkv = self.qkv(x).view(B, T, 3, self.nh, D // self.nh)  # (B, T, 3, nh, hd)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, nh, T, hd)
        mask, causal = None, True
        if cache is not None:
            end = start + T
            ck, cv = cache.layer(layer, k.dtype)  # 2 x (B, nh, C, hd)
            ck.narrow(2, start, T).copy_(k)
            cv.narrow(2, start, T).copy_(v)
            k, v = ck.narrow(2, 0, end), cv.narrow(2, 0, end)  # (B, nh, end, hd)
            if T == 1:
                causal = False  # one query sees every cached key
            elif start > 0:
                # query i is at position start + i: it sees keys 0..start+i
                causal = False
                mask = torch.ones(T, end, dtype=torch.bool, device=x.device).tril(diagonal=start)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, dropout_p=p)
        y = self.proj(y.transpose(1, 2).reshape(B, T, D))  # (B, T, D)
        return F.dropout(y, p, True) if p else y


class Block(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        D = config.hidden_size
        self.ln_1 = nn.LayerNorm(D)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(D)
        self.fc = nn.Linear(D, 4 * D, bias=False)
        self.proj = nn.Linear(4 * D, D, bias=False)
        self.dropout = config.dropout

    def forward(self, x: Tensor, cache: KVCache | None, layer: int, start: int) -> Tensor:
        x = x + self.attn(self.ln_1(x), cache, layer, start)  # (B, T, D)
        h = self.proj(F.gelu(self.fc(self.ln_2(x)), approximate="tanh"))  # (B, T, D)
        p = self.dropout if self.training else 0.0
        return x + (F.dropout(h, p, True) if p else h)


def sinusoidal_table(C: int, D: int) -> Tensor:
    """Vaswani et al.: PE[p, 2i] = sin(p / 10000^(2i/D)), PE[p, 2i+1] = cos(...). (C, D)"""
    pos = torch.arange(C, dtype=torch.float32)[:, None]  # (C, 1)
    freq = torch.exp(torch.arange(0, D, 2, dtype=torch.float32) * (-math.log(10000.0) / D))  # (D/2,)
    pe = torch.zeros(C, D)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)
    return pe


class TransformerLanguageModel(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        config.validate()
        self.config = config
        V, D, C = config.vocab_size, config.hidden_size, config.context_length
        if config.embedding == "onehot":
            # The one-hot vector, zero-padded to width D, enters the residual stream unchanged (a
            # fixed buffer, not saved). Nothing to tie: the output layer is its own Linear.
            self.wte = None
            self.register_buffer("onehot", torch.eye(V, D), persistent=False)  # (V, D)
            self.head = nn.Linear(D, V, bias=False)  # (V, D)
        else:
            self.wte = nn.Embedding(V, D)  # (V, D), also the output layer
            self.head = None
        if config.positional == "learned":
            self.wpe = nn.Parameter(torch.zeros(C, D))  # (C, D)
        else:
            self.register_buffer("wpe", sinusoidal_table(C, D), persistent=False)  # (C, D)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.num_layers))
        self.ln_f = nn.LayerNorm(D)
        # nanoGPT initialisation: N(0, 0.02), residual projections scaled by 1/sqrt(2L)
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * config.num_layers) if name.endswith("proj.weight") else 0.02
                nn.init.normal_(p, mean=0.0, std=std)

    def init_state(self, batch_size: int, device: torch.device | str = "cpu") -> KVCache:
        """An empty KV cache for batch_size sequences (see the module docstring for the window)."""
        return KVCache(self.config, batch_size, device)

    def embed(self, tokens: Tensor, start: int = 0) -> Tensor:
        """Block 1's input: token embedding plus position. tokens (B, T) at positions
        start..start+T-1 -> x (B, T, D)."""
        T = tokens.shape[1]
        x = self.wte(tokens) if self.wte is not None else F.embedding(tokens, self.onehot)
        return x + self.wpe[start : start + T]

    def _run(self, tokens: Tensor, cache: KVCache | None, start: int) -> Tensor:
        # tokens (B, T) at positions start..start+T-1 -> logits (B, T, V)
        x = self.embed(tokens, start)  # (B, T, D)
        if self.training and self.config.dropout:
            x = F.dropout(x, self.config.dropout, True)
        for i, block in enumerate(self.blocks):
            x = block(x, cache, i, start)
        x = self.ln_f(x)  # (B, T, D)
        if self.head is not None:
            return self.head(x)  # (B, T, V)
        return F.linear(x, self.wte.weight)  # (B, T, V), tied

    def forward(self, tokens: Tensor, state: KVCache | None = None) -> tuple[Tensor, KVCache | None]:
        # tokens (B, T) -> logits (B, T, V)
        if state is None:  # plain causal forward (training): at most C tokens
            if tokens.shape[1] > self.config.context_length:
                raise UsageError(f"a window of {tokens.shape[1]} tokens is longer than the "
                                 f"transformer's --context-length ({self.config.context_length})")
            return self._run(tokens, None, 0), None
        with torch.no_grad():  # the cache is for inference: its logits carry no gradient
            return self._decode(tokens, state), state

    def _decode(self, tokens: Tensor, cache: KVCache) -> Tensor:
        # tokens (B, T) appended to the cache's window -> logits (B, T, V)
        C = cache.context_length
        T = tokens.shape[1]
        if cache.length + T <= C:  # the fast path: append to the cache
            start = cache.length
            cache.tokens[:, start : start + T] = tokens
            cache.length = start + T
            return self._run(tokens, cache, start)
        pieces = []
        i = 0
        while i < T:
            prefix = tokens[:, :0]  # (B, 0)
            if cache.length == C:  # full: restart the window from its last keep-1 tokens
                prefix = cache.tokens[:, C - (cache.keep - 1) :]  # (B, keep-1)
                cache.length = 0
            n = min(C - cache.length - prefix.shape[1], T - i)
            chunk = torch.cat([prefix, tokens[:, i : i + n]], dim=1)  # (B, p+n), a copy
            start = cache.length
            cache.tokens[:, start : start + chunk.shape[1]] = chunk
            cache.length = start + chunk.shape[1]
            pieces.append(self._run(chunk, cache, start)[:, prefix.shape[1] :])  # (B, n, V)
            i += n
        return torch.cat(pieces, dim=1)

    def detach_state(self, state: KVCache | None) -> KVCache | None:
        return state  # nothing is carried between training windows

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def summary(self) -> str:
        c = self.config
        parts = [f"transformer {c.num_layers}x{c.hidden_size}", f"{c.num_heads} heads",
                 f"context {c.context_length}"]
        if c.positional != "learned":
            parts.append(f"{c.positional} positions")
        if c.embedding == "onehot":
            parts.append("one-hot input, untied output")
        if c.dropout:
            parts.append(f"dropout {c.dropout:g}")
        parts.append(f"{format_count(self.num_params())} params")
        return ", ".join(parts)
