"""Decoder-only transformer (GPT, pre-norm) with a sliding-window KV cache.

    x = wte[token] + pos[position]                 (B, T, D)
    for each of L blocks:
        x = x + proj(attention(ln_1(x)))           causal multi-head self-attention (SDPA)
        x = x + mlp(ln_2(x))                       D -> 4D -> GELU -> D
    logits = ln_f(x) @ wte.T                       output layer tied to the token embedding

Shapes: B batch, T time, V vocab_size, D hidden_size, nh num_heads, hd = D / nh, C context_length,
L num_layers.

Incremental decoding (`forward(tokens, cache)`): each token's logits are those of a plain causal
forward over the *window* of tokens that ends at it. The window grows by one token per token fed;
when a token would make it longer than C, the window is first cut to its last `keep - 1` tokens
(keep = max(1, C // 2)), positions restart at 0, and the keys/values of the cut window are
recomputed in one forward pass together with the new tokens. So every C - keep + 1 tokens cost one
extra forward over keep tokens: O(1) amortised per token, and no token ever sees more than C.
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

    def _storage(self, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        if self.k is None or self.k.dtype != dtype:
            # First use, or autocast switched on/off: (re)allocate in the dtype attention runs in.
            if self.k is None:
                self.k = torch.zeros(self.shape, dtype=dtype, device=self.device)
                self.v = torch.zeros(self.shape, dtype=dtype, device=self.device)
            else:
                self.k, self.v = self.k.to(dtype), self.v.to(dtype)
        return self.k, self.v

    def window(self) -> Tensor:
        """The tokens the cache holds, oldest first: (B, length)."""
        return self.tokens[:, : self.length]

    def reset(self) -> None:
        self.length = 0


class CausalSelfAttention(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        D = config.hidden_size
        self.nh = config.num_heads
        self.qkv = nn.Linear(D, 3 * D, bias=False)
        self.proj = nn.Linear(D, D, bias=False)
        self.dropout = config.dropout
        self.resid_drop = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, cache: KVCache | None, layer: int, start: int) -> Tensor:
        # x (B, T, D); with a cache, x holds positions start..start+T-1 and the cache 0..start-1
        B, T, D = x.shape
        q, k, v = self.qkv(x).split(D, dim=2)  # 3 x (B, T, D)
        q = q.view(B, T, self.nh, D // self.nh).transpose(1, 2)  # (B, nh, T, hd)
        k = k.view(B, T, self.nh, D // self.nh).transpose(1, 2)  # (B, nh, T, hd)
        v = v.view(B, T, self.nh, D // self.nh).transpose(1, 2)  # (B, nh, T, hd)
        mask, causal = None, True
        if cache is not None:
            end = start + T
            ck, cv = cache._storage(k.dtype)
            ck[layer, :, :, start:end] = k
            cv[layer, :, :, start:end] = v
            k, v = ck[layer, :, :, :end], cv[layer, :, :, :end]  # (B, nh, end, hd)
            if T == 1:
                causal = False  # one query sees every cached key
            elif start > 0:
                # query i is at position start + i: it sees keys 0..start+i
                causal = False
                mask = torch.ones(T, end, dtype=torch.bool, device=x.device).tril(diagonal=start)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=causal,
            dropout_p=self.dropout if self.training else 0.0,
        )  # (B, nh, T, hd)
        y = y.transpose(1, 2).reshape(B, T, D)  # (B, T, D)
        return self.resid_drop(self.proj(y))


class Block(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        D = config.hidden_size
        self.ln_1 = nn.LayerNorm(D)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(D)
        self.mlp = nn.Sequential(
            nn.Linear(D, 4 * D, bias=False), nn.GELU(), nn.Linear(4 * D, D, bias=False),
            nn.Dropout(config.dropout),
        )

    def forward(self, x: Tensor, cache: KVCache | None, layer: int, start: int) -> Tensor:
        x = x + self.attn(self.ln_1(x), cache, layer, start)  # (B, T, D)
        return x + self.mlp(self.ln_2(x))  # (B, T, D)


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
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.num_layers))
        self.ln_f = nn.LayerNorm(D)
        # nanoGPT initialisation: N(0, 0.02), residual projections scaled by 1/sqrt(2L)
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * config.num_layers) if name.endswith(("proj.weight", "mlp.2.weight")) else 0.02
                nn.init.normal_(p, mean=0.0, std=std)

    def init_state(self, batch_size: int, device: torch.device | str = "cpu") -> KVCache:
        """An empty KV cache for batch_size sequences (see the module docstring for the window)."""
        return KVCache(self.config, batch_size, device)

    def _run(self, tokens: Tensor, cache: KVCache | None, start: int) -> Tensor:
        # tokens (B, T) at positions start..start+T-1 -> logits (B, T, V)
        T = tokens.shape[1]
        x = self.wte(tokens) if self.wte is not None else F.embedding(tokens, self.onehot)  # (B, T, D)
        x = self.drop(x + self.wpe[start : start + T])  # (B, T, D)
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
        cache, C = state, state.context_length
        T = tokens.shape[1]
        if cache.length + T <= C:  # the fast path: append to the cache
            start = cache.length
            cache.tokens[:, start : start + T] = tokens
            cache.length = start + T
            return self._run(tokens, cache, start), cache
        pieces = []
        i = 0
        while i < T:
            if cache.length < C:  # room left: append as many as fit
                n = min(C - cache.length, T - i)
                start = cache.length
            else:  # full: cut to the last keep-1 tokens and recompute them with the new ones
                kept = cache.tokens[:, C - (cache.keep - 1) :]  # (B, keep-1)
                n = min(C - kept.shape[1], T - i)
                chunk = torch.cat([kept, tokens[:, i : i + n]], dim=1)  # (B, keep-1+n), a copy
                cache.tokens[:, : chunk.shape[1]] = chunk
                cache.length = chunk.shape[1]
                pieces.append(self._run(chunk, cache, 0)[:, kept.shape[1] :])
                i += n
                continue
            cache.tokens[:, start : start + n] = tokens[:, i : i + n]
            cache.length = start + n
            pieces.append(self._run(tokens[:, i : i + n], cache, start))
            i += n
        return torch.cat(pieces, dim=1), cache

    def detach_state(self, state: KVCache | None) -> KVCache | None:
        return state  # nothing is carried between training windows

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def summary(self) -> str:
        c = self.config
        emb = "one-hot input, untied output" if c.embedding == "onehot" else "tied embedding"
        return (f"transformer {c.num_layers}x{c.hidden_size}, {c.num_heads} heads, context "
                f"{c.context_length}, {c.positional} positions, {emb}"
                + (f", dropout {c.dropout:g}" if c.dropout else "")
                + f", {format_count(self.num_params())} params")
