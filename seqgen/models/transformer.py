"""Decoder-only transformer (GPT, pre-norm) with a sliding-window KV cache.

    x = wte[token] + pos[position]                 (B, T, D)
    for each of L blocks:
        x = x + proj(attention(ln_1(x)))           causal multi-head self-attention (SDPA)
        x = x + proj(gelu(fc(ln_2(x))))            D -> 4D -> GELU -> D (exact; tanh form in old checkpoints)
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

`step(tokens, cache)` appends ONE token per stream: `block_step` is `Block.forward` for that
token, with the weights pre-transposed once (`stepper()`, `TransformerStepper`: one mm per
product) and one SDPA call over the preallocated cache; a step that would cut the window goes
through `forward`. Sampling's fast decoding uses it; tests check it against `forward`.
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
        self.layers: list[tuple[Tensor, Tensor]] = []  # (k[i], v[i]) per layer, once allocated

    def layer(self, i: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """Keys and values of layer i: 2 x (B, nh, C, hd), in the dtype attention runs in."""
        if self.k is None or self.k.dtype != dtype:
            # First use, or autocast switched on/off: (re)allocate and keep per-layer views.
            if self.k is None:
                self.k = torch.zeros(self.shape, dtype=dtype, device=self.device)
                self.v = torch.zeros(self.shape, dtype=dtype, device=self.device)
            else:
                self.k, self.v = self.k.to(dtype), self.v.to(dtype)
            self.layers = [(self.k[i], self.v[i]) for i in range(self.shape[0])]
        return self.layers[i]

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
        # no dropout on the attention weights: on CPU it takes SDPA off its fused path (3x
        # slower training at context 512, 1 thread; docs/models.md); the output is dropped
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
        y = self.proj(y.transpose(1, 2).reshape(B, T, D))  # (B, T, D)
        return F.dropout(y, p, True) if p else y

    def probabilities(self, x: Tensor) -> Tensor:
        """The attention weights SDPA applies in a plain causal forward (it does not return them):
        softmax(q k^T / sqrt(hd)) with the causal mask. x (B, T, D) -> (B, nh, T, T), float32"""
        B, T, D = x.shape
        qkv = self.qkv(x).view(B, T, 3, self.nh, D // self.nh)  # (B, T, 3, nh, hd)
        q, k, _ = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 2 x (B, nh, T, hd)
        scores = (q.float() @ k.float().transpose(-2, -1)) / math.sqrt(D // self.nh)  # (B, nh, T, T)
        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()  # (T, T)
        return scores.masked_fill(~causal, float("-inf")).softmax(-1)


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
        self.gelu = _approximate(config.gelu)

    def forward(self, x: Tensor, cache: KVCache | None, layer: int, start: int) -> Tensor:
        x = x + self.attn(self.ln_1(x), cache, layer, start)  # (B, T, D)
        h = self.proj(F.gelu(self.fc(self.ln_2(x)), approximate=self.gelu))  # (B, T, D)
        p = self.dropout if self.training else 0.0
        return x + (F.dropout(h, p, True) if p else h)


def _approximate(gelu: str) -> str:
    """F.gelu's `approximate` for ModelConfig.gelu: "none" (exact, erf) or "tanh"."""
    return "none" if gelu == "exact" else gelu


# Block.forward for one new token per stream, with the weights laid out by TransformerStepper:
# (ln_1 weight, bias, eps, W_qkv^T, W_o^T, ln_2 weight, bias, eps, W_fc^T, W_proj^T), each W^T
# (in, out) so that every product is one mm, or one addmm that also adds the residual.
BlockWeights = tuple[Tensor, Tensor, float, Tensor, Tensor, Tensor, Tensor, float, Tensor, Tensor]


def block_step(x: Tensor, n: int, K: Tensor, V: Tensor, w: BlockWeights,
               gelu: str = "none") -> Tensor:
    """x (B, D), the token at position n; K, V (B, nh, C, hd) the layer's cache -> x (B, D).

        q, k, v = ln_1(x) W_qkv;  K[n], V[n] = k, v;  x = x + SDPA(q, K[:n+1], V[:n+1]) W_o
        x = x + gelu(ln_2(x) W_fc) W_proj
    """
    ln1_w, ln1_b, ln1_eps, W_qkv, W_o, ln2_w, ln2_b, ln2_eps, W_fc, W_proj = w
    B, D = x.shape
    nh, hd = K.shape[1], K.shape[3]
    h = F.layer_norm(x, (D,), ln1_w, ln1_b, ln1_eps)  # (B, D)
    q, k, v = torch.mm(h, W_qkv).view(B, 3, nh, 1, hd).unbind(1)  # 3 x (B, nh, 1, hd)
    K.narrow(2, n, 1).copy_(k)
    V.narrow(2, n, 1).copy_(v)
    Kn, Vn = K.narrow(2, 0, n + 1), V.narrow(2, 0, n + 1)  # (B, nh, n+1, hd)
    y = F.scaled_dot_product_attention(q, Kn, Vn)  # (B, nh, 1, hd)
    x = torch.addmm(x, y.view(B, D), W_o)  # (B, D)
    h = F.layer_norm(x, (D,), ln2_w, ln2_b, ln2_eps)
    return torch.addmm(x, F.gelu(torch.mm(h, W_fc), approximate=gelu), W_proj)  # (B, D)


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

    def trunk(self, tokens: Tensor, cache: KVCache | None = None, start: int = 0,
              inputs: list[Tensor] | None = None) -> Tensor:
        """The residual stream after the last block: tokens (B, T) at positions
        start..start+T-1 -> x (B, T, D). `inputs` collects each block's input (B, T, D)."""
        x = self.embed(tokens, start)  # (B, T, D)
        if self.training and self.config.dropout:
            x = F.dropout(x, self.config.dropout, True)
        for i, block in enumerate(self.blocks):
            if inputs is not None:
                inputs.append(x)
            x = block(x, cache, i, start)
        return x

    def logits(self, x: Tensor) -> Tensor:
        """ln_f, then the output layer: x (..., D) -> logits (..., V)."""
        x = self.ln_f(x)
        if self.head is not None:
            return self.head(x)
        return F.linear(x, self.wte.weight)  # tied to the token embedding

    def _run(self, tokens: Tensor, cache: KVCache | None, start: int) -> Tensor:
        # tokens (B, T) at positions start..start+T-1 -> logits (B, T, V)
        return self.logits(self.trunk(tokens, cache, start))

    def forward(self, tokens: Tensor, state: KVCache | None = None) -> tuple[Tensor, KVCache | None]:
        # tokens (B, T) -> logits (B, T, V)
        if state is None:  # plain causal forward (training): at most C tokens
            if tokens.shape[1] > self.config.context_length:
                raise UsageError(f"a window of {tokens.shape[1]} tokens is longer than the "
                                 f"transformer's `context_length` "
                                 f"({self.config.context_length})", params=True)
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

    def stepper(self, logit_bias: Tensor | None = None) -> TransformerStepper:
        """The weights laid out for many `step`s (see TransformerStepper)."""
        return TransformerStepper(self, logit_bias)

    def step(self, tokens: Tensor, state: KVCache | None = None) -> tuple[Tensor, KVCache]:
        """ONE token per stream appended to the cache: tokens (B,) -> logits (B, V), the cache
        (None: a new one). The same logits as `forward(tokens[:, None], cache)`. Lays the weights
        out anew on every call: for many steps hold `stepper()` and call its `step`."""
        return self.stepper().step(tokens, state)

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


class TransformerStepper:
    """The weights of a TransformerLanguageModel laid out for `step`: each matrix transposed once
    (`BlockWeights`), for one token per stream at a time through the model's own KVCache.

    Built once per sampling run by `model.stepper()`; it holds tensors derived from the
    parameters, so build a new one after the weights change. `logit_bias` (V,) is added to every
    step's logits (sampling puts -inf at <unk>; none by default).
    """

    def __init__(self, model: TransformerLanguageModel, logit_bias: Tensor | None = None):
        self.model = model
        self.C = model.config.context_length
        self.gelu = _approximate(model.config.gelu)
        self.wte = model.wte.weight.detach() if model.wte is not None else model.onehot  # (V, D)
        self.wpe = model.wpe.detach()  # (C, D)
        head = model.head.weight if model.head is not None else model.wte.weight  # (V, D)
        self.W_head_T = head.detach().t().contiguous()  # (D, V)
        self.bias = None if logit_bias is None else logit_bias.to(self.W_head_T)  # (V,)
        self.b_y = self.bias if self.bias is not None else torch.zeros_like(self.W_head_T[0])
        self.layers: list[BlockWeights] = [(
            blk.ln_1.weight.detach(), blk.ln_1.bias.detach(), blk.ln_1.eps,
            blk.attn.qkv.weight.detach().t().contiguous(),  # (D, 3D)
            blk.attn.proj.weight.detach().t().contiguous(),  # (D, D)
            blk.ln_2.weight.detach(), blk.ln_2.bias.detach(), blk.ln_2.eps,
            blk.fc.weight.detach().t().contiguous(),  # (D, 4D)
            blk.proj.weight.detach().t().contiguous(),  # (4D, D)
        ) for blk in model.blocks]
        ln_f = model.ln_f
        self.ln_f = (ln_f.weight.detach(), ln_f.bias.detach(), ln_f.eps)

    def step(self, tokens: Tensor, cache: KVCache | None = None) -> tuple[Tensor, KVCache]:
        """tokens (B,) appended to `cache` (None: a new one) -> logits (B, V), the cache."""
        if cache is None:
            cache = self.model.init_state(tokens.shape[0], tokens.device)
        n = cache.length
        if n >= self.C or cache.k is None or cache.k.dtype != torch.float32:
            # the window is full (cut and recompute: the model does it) or not yet float32
            logits, cache = self.model(tokens.view(-1, 1), cache)
            logits = logits[:, -1].float()  # (B, V)
            return (logits if self.bias is None else logits + self.bias), cache
        cache.tokens.select(1, n).copy_(tokens)
        cache.length = n + 1
        x = F.embedding(tokens, self.wte).add_(self.wpe[n])  # (B, D)
        for w, (K, V) in zip(self.layers, cache.layers, strict=True):  # K, V: (B, nh, C, hd)
            x = block_step(x, n, K, V, w, self.gelu)
        x = F.layer_norm(x, (x.shape[1],), *self.ln_f)  # (B, D)
        return torch.addmm(self.b_y, x, self.W_head_T), cache  # (B, V)
