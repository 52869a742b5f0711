"""Look inside a model: how the gradient flows back through time, and where attention looks.

    profile = gradients_through_time(model, tokens)   # tokens (B, T+1): T inputs, then the target
    profile.series["layer 1"][s]                      # median over the B windows of ||dL/dh_{T-s}||
    maps = attention_maps(model, ids)                 # (L, nh, T, T) attention probabilities
    plot_gradients([profile, ...], "gradients.png"); plot_attention(maps[0], chars, "layer1.png")

Gradients through time. L is the cross-entropy of the prediction made at the LAST input step (the
character after the window). For a recurrent model, h_t^k is layer k's hidden state after reading
input t (t = 1..T); dL/dh_t^k is the gradient of L with respect to that tensor, through every path
from it to the loss: to h_{t+1}^k (the recurrence) and to h_t^{k+1} (the layer above). torch's fused
nn.RNN/LSTM/GRU do not expose h_t^k of lower layers as a tensor that both paths use, so the
sequence is unrolled here one token at a time through the model's own `step` (the lecture's cell
equations in seqgen/models/rnn.py, with the module's own weights; tests check the logits equal
the fused forward's). For an LSTM, "layer k"
is h_t; the cell state c_t is a second state tensor, reported as "layer k cell": dL/dh_t is the
gradient through h_t only (holding c_t fixed), dL/dc_t includes the path through h_t = o * tanh(c_t)
and the cell's additive path c_{t+1} = f * c_t + ..., the LSTM's "gradient highway".
A transformer carries no state through time; its per-position analogue is the residual stream at
each position entering block k ("block k input"; block 1's input is the embedding plus position).

"Steps back" s = T - t: s = 0 is the last input step. Each series is the median over the B windows
(each window's own loss and gradient, windows do not interact) of the L2 norm over hidden units.

Clipping (torch.nn.utils.clip_grad_norm_, as in training) scales the whole parameter gradient by
min(1, clip / ||grad||). It does not change how the gradient is spread over time: the contribution
of every step back is scaled by the same factor, so an exploding gradient no longer makes one huge
update, and a vanished gradient stays vanished. The profile records the parameter gradient norm
of the mean loss over the windows before clipping, and the factor clipping would apply.

No typer or rich here; matplotlib is imported inside the plotting functions (Agg backend).
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from seqgen.errors import UsageError

if TYPE_CHECKING:
    import numpy as np
    from torch import Tensor, nn

    from seqgen.tokenizer import Tokenizer

RECURRENT = ("rnn", "lstm", "gru")


# --------------------------------------------------------------------------------- data
EOS_MARK = "\x00"  # stands for <eos> between documents in sampled windows


def sample_windows(documents: list[str], length: int, count: int, seed: int = 0) -> list[str]:
    """`count` windows of `length` + 1 characters (T inputs and the character to predict) at
    random offsets (fixed by `seed`) in the corpus.

    The documents are read as one stream with an end-of-document marker after each (as training
    does); the marker is ``EOS_MARK`` in the returned strings (see `encode_window`).
    """
    if length < 1:
        raise UsageError(f"`length` must be >= 1, not {length}", params=True)
    if count < 1:
        raise UsageError(f"count must be >= 1 (windows), not {count}")
    n = length + 1
    stream = EOS_MARK.join(documents) + EOS_MARK
    if len(stream) < n:
        raise UsageError(f"the corpus has {len(stream):,} characters, fewer than `length` + 1 "
                         f"({n:,}); use a smaller `length`", params=True)
    rng = random.Random(seed)
    starts = [rng.randrange(len(stream) - n + 1) for _ in range(count)]
    return [stream[s : s + n] for s in starts]


def encode_window(tokenizer: Tokenizer, window: str) -> list[int]:
    """Ids of a window from `sample_windows` (the marker -> <eos>, unknown characters -> <unk>)."""
    from seqgen.tokenizer import EOS_ID, UNK_ID

    stoi = tokenizer.stoi
    return [EOS_ID if ch == EOS_MARK else stoi.get(ch, UNK_ID) for ch in window]


def encode_windows(tokenizer: Tokenizer, windows: list[str]) -> Tensor:
    """(B, T+1) LongTensor of the windows' ids."""
    import torch

    return torch.tensor([encode_window(tokenizer, w) for w in windows], dtype=torch.long)


# --------------------------------------------------------------------------------- unrolling
def scale_recurrent(model: nn.Module, factor: float) -> None:
    """Multiply every layer's recurrent matrix W_hh by `factor`, in place (RNN kinds only)."""
    import torch

    if model.config.kind not in RECURRENT:
        raise UsageError("`recurrent_scale` applies to rnn, lstm and gru (a transformer has no "
                         "W_hh)", params=True)
    with torch.no_grad():
        for k in range(model.config.num_layers):
            getattr(model.rnn, f"weight_hh_l{k}").mul_(factor)


def unroll_recurrent(model: nn.Module, inputs: Tensor) -> tuple[Tensor, dict[str, list[Tensor]]]:
    """Run an rnn/lstm/gru model one step at a time from a zero state, through its own `step`
    (the cell equations of seqgen/models/rnn.py, with the fused module's parameters).

    inputs (B, T) -> (logits of the last step (B, V), {"layer k": [h_1 .. h_T], each (B, H)};
    for an LSTM also "layer k cell": [c_1 .. c_T]). The step returns each layer's h_t as the
    tensor that both the next step and the layer above read. No dropout: call it on a model in
    eval mode.
    """
    L = model.config.num_layers
    lstm = model.config.kind == "lstm"
    series: dict[str, list[Tensor]] = {f"layer {k + 1}": [] for k in range(L)}
    if lstm:
        series.update({f"layer {k + 1} cell": [] for k in range(L)})
    stepper = model.stepper()  # under grad mode: gradients reach the parameters through it
    state = None
    for t in range(inputs.shape[1]):
        logits, state = stepper.step(inputs[:, t], state)  # state per layer: lists of (B, H)
        hs, cs = state if lstm else (state, [])
        for k in range(L):
            series[f"layer {k + 1}"].append(hs[k])
            if lstm:
                series[f"layer {k + 1} cell"].append(cs[k])
    return logits, series  # (B, V)


def unroll_transformer(model: nn.Module, inputs: Tensor) -> tuple[Tensor, dict[str, list[Tensor]]]:
    """The transformer's plain causal forward, keeping the residual stream entering each block.

    inputs (B, T) -> (logits of the last position (B, V), {"block k input": [x (B, T, D)]}).
    """
    T = inputs.shape[1]
    C = model.config.context_length
    if T > C:
        raise UsageError(f"`length` ({T}) is longer than the transformer's context length ({C})",
                         params=True)
    block_inputs: list[Tensor] = []
    x = model.trunk(inputs, inputs=block_inputs)  # (B, T, D)
    series = {f"block {i + 1} input": [x_in] for i, x_in in enumerate(block_inputs)}
    return model.logits(x[:, -1]), series  # (B, V)


# --------------------------------------------------------------------------------- gradients
@dataclass
class GradientProfile:
    """Gradient norms through time for one model on a batch of windows."""

    label: str  # e.g. the model's summary
    kind: str
    series: dict[str, np.ndarray]  # name -> (T,) median ||dL/dh|| at s = 0..T-1 steps back
    length: int  # T, the input steps
    batch: int  # B, the windows
    loss: float  # mean last-step loss over the windows, nats
    grad_norm: float  # ||dL/dtheta|| of that mean loss, before clipping
    clip: float = 0.0  # clipping threshold (0: none)

    @property
    def clip_factor(self) -> float:
        """What clip_grad_norm_ multiplies every gradient by: min(1, clip / grad_norm)."""
        if self.clip <= 0 or not math.isfinite(self.grad_norm) or self.grad_norm <= self.clip:
            return 1.0
        return self.clip / self.grad_norm

    def per_step_factor(self, name: str) -> float | None:
        """Geometric mean change of the norm per step back, from s = 0 to the farthest step."""
        v = self.series[name]
        if len(v) < 2 or not (v[0] > 0 and v[-1] > 0):
            return None
        return float((v[-1] / v[0]) ** (1.0 / (len(v) - 1)))


def gradients_through_time(model: nn.Module, tokens: Tensor, clip: float = 0.0,
                           label: str | None = None) -> GradientProfile:
    """The norm of dL/dh at every step back, per layer (see the module docstring).

    tokens (B, T+1): each row is T inputs followed by the character to predict.
    """
    import torch
    import torch.nn.functional as F

    if tokens.dim() != 2 or tokens.shape[1] < 2:
        raise UsageError("need windows of at least 2 tokens (`length` >= 1)", params=True)
    model.eval()
    inputs, target = tokens[:, :-1], tokens[:, -1]
    B, T = inputs.shape
    with torch.enable_grad():
        if model.config.kind == "transformer":
            logits, states = unroll_transformer(model, inputs)
        else:
            logits, states = unroll_recurrent(model, inputs)
        losses = F.cross_entropy(logits.float(), target, reduction="none")  # (B,)
        names = list(states)
        flat = [s for n in names for s in states[n]]
        params = [p for p in model.parameters() if p.requires_grad]
        # Rows do not interact, so the gradient of the sum at row i is dL_i/dh of row i.
        grads = torch.autograd.grad(losses.sum(), flat, retain_graph=True, allow_unused=True)
        pgrads = torch.autograd.grad(losses.mean(), params, allow_unused=True)
    norms: dict[str, np.ndarray] = {}
    i = 0
    for n in names:
        parts = [g if g is not None else torch.zeros_like(s)
                 for g, s in zip(grads[i : i + len(states[n])], states[n], strict=True)]
        i += len(states[n])
        g = torch.stack(parts, 1) if parts[0].dim() == 2 else torch.cat(parts, 1)  # (B, T, H)
        per = g.cpu().double().norm(dim=-1)  # (B, T); float64 (on the CPU: MPS has none):
        # norms of 1e-30 do not underflow
        med = per.median(dim=0).values if B > 1 else per[0]  # (T,), t = 1..T
        norms[n] = med.flip(0).numpy()  # s = 0..T-1 steps back
    pg = [g.double().reshape(-1) for g in pgrads if g is not None]
    grad_norm = float(torch.linalg.vector_norm(torch.cat(pg))) if pg else 0.0
    summary = model.summary() if hasattr(model, "summary") else model.config.kind
    return GradientProfile(label=label or summary, kind=model.config.kind, series=norms,
                           length=T, batch=B, loss=float(losses.detach().mean()), grad_norm=grad_norm,
                           clip=float(clip))


# --------------------------------------------------------------------------------- attention
def attention_maps(model: nn.Module, ids: Tensor) -> Tensor:
    """Attention probabilities of every layer and head over a prompt: (L, nh, T, T).

    ids (T,) or (1, T). Row i is position i's distribution over keys 0..i (zero above the
    diagonal; each row sums to 1). SDPA does not return these, so they are recomputed from each
    block's own q/k projection of the residual stream: softmax(q k^T / sqrt(hd)) with the causal
    mask; the residual stream itself comes from the model's own blocks.
    """
    import torch

    if model.config.kind != "transformer":
        raise UsageError(f"attention maps exist for transformer models only; this is "
                         f"{model.config.kind} (try 'seqgen inspect gradients')")
    if ids.dim() == 1:
        ids = ids[None]
    T = ids.shape[1]
    C = model.config.context_length
    if T < 1:
        raise UsageError("`prompt` is empty", params=True)
    if T > C:
        raise UsageError(f"`prompt` is {T} characters, longer than the model's context length "
                         f"({C}); shorten it", params=True)
    model.eval()
    maps = []
    with torch.no_grad():
        x = model.embed(ids)  # (1, T, D)
        for i, block in enumerate(model.blocks):
            maps.append(block.attn.probabilities(block.ln_1(x))[0])  # (nh, T, T)
            x = block(x, None, i, 0)
    return torch.stack(maps)  # (L, nh, T, T)


@dataclass
class HeadPattern:
    """What one head mostly does: the share of positions whose strongest key is each kind."""

    layer: int  # 1-based
    head: int  # 1-based
    self_share: float  # the position itself
    previous_share: float  # the position just before
    first_share: float  # position 0 (not counted when it is self or previous)
    other_share: float
    mean_distance: float  # attention-weighted mean distance back, in characters


def head_patterns(maps: Tensor) -> list[HeadPattern]:
    """Summarise each head of (L, nh, T, T) maps by where its strongest key lies."""
    import torch

    L, nh, T, _ = maps.shape
    pos = torch.arange(T, device=maps.device)
    dist = (pos[:, None] - pos[None, :]).clamp(min=0).float()  # (T, T) distance back
    out = []
    for li in range(L):
        for hi in range(nh):
            m = maps[li, hi].float()  # (T, T)
            top = m.argmax(-1)  # (T,)
            back = pos - top
            s = float((back == 0).float().mean())
            p = float((back == 1).float().mean())
            f = float(((top == 0) & (back > 1)).float().mean())
            out.append(HeadPattern(li + 1, hi + 1, s, p, f, max(0.0, 1.0 - s - p - f),
                                   float((m * dist).sum(-1).mean())))
    return out


def show_char(ch: str) -> str:
    """A character as drawn on the heatmap axes and in the summary."""
    return {"\n": "\\n", " ": "␣", "\t": "\\t", EOS_MARK: "<eos>"}.get(
        ch, ch if ch.isprintable() else repr(ch)[1:-1])


# --------------------------------------------------------------------------------- plotting
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike) -> Path:
    from seqgen.fileio import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def plot_gradients(profiles: list[GradientProfile], path: str | os.PathLike,
                   title: str = "") -> Path:
    """A log-scale PNG of ||dL/dh|| against steps back, one line per model and layer.

    One colour per profile (labelled by its `label`); solid/dashed/dotted lines are layers 1/2/3;
    an LSTM's cell state is a thin line of the same style. Where clipping would shrink a model's
    gradient, a finely dotted line shows its top layer after clipping (every step scaled by the
    same factor).
    """
    import numpy as np

    plt = _pyplot()
    styles = ["-", "--", ":", "-."]
    fig, ax = plt.subplots(figsize=(10, 5), dpi=100)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for pi, prof in enumerate(profiles):
        color = colors[pi % len(colors)]
        s = np.arange(prof.length)
        prefix = f"{prof.label}: " if len(profiles) > 1 else ""
        layer_names = [n for n in prof.series if not n.endswith(" cell")]
        for li, name in enumerate(layer_names):
            for n, lw in ((name, 1.8), (name + " cell", 0.9)):
                if n not in prof.series:
                    continue
                v = np.where(prof.series[n] > 0, prof.series[n], np.nan)
                ax.plot(s, v, styles[li % len(styles)], color=color, linewidth=lw,
                        label=prefix + n, alpha=0.9 if lw > 1 else 0.7)
        if prof.clip_factor < 1.0:
            top = layer_names[-1]
            v = np.where(prof.series[top] > 0, prof.series[top] * prof.clip_factor, np.nan)
            ax.plot(s, v, linestyle=(0, (1, 1.5)), color="gray" if len(profiles) == 1 else color,
                    linewidth=1.2, alpha=0.8, label=f"{prefix}{top} after clipping at "
                    f"{prof.clip:g} (x{prof.clip_factor:.2g})")
    ax.set_yscale("log")
    ax.set_xlabel("steps back from the last input (s = T - t)")
    ax.set_ylabel("median ||dL / dh_t|| (L: loss at the last step)")
    ax.set_title(title or "Gradient flow through time", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def plot_attention(layer_maps: Tensor, chars: list[str], path: str | os.PathLike,
                   title: str = "") -> Path:
    """One PNG with a heatmap per head of one layer: (nh, T, T) maps, query rows, key columns."""
    import numpy as np

    plt = _pyplot()
    nh, T, _ = layer_maps.shape
    cols = min(nh, 4 if T <= 24 else 2)  # long prompts: fewer, larger heatmaps per row
    rows = math.ceil(nh / cols)
    cell = min(6.0, max(2.5, T * 0.13))  # inches per heatmap
    fig, axes = plt.subplots(rows, cols, figsize=(cell * cols + 0.6, cell * rows + 1.0), dpi=90,
                             squeeze=False)
    labels = [show_char(c) for c in chars]
    step = max(1, math.ceil(T / 48))  # at most ~48 labels per axis
    ticks = np.arange(0, T, step)
    fontsize = 7 if T <= 40 else 6
    for h in range(rows * cols):
        ax = axes[h // cols][h % cols]
        if h >= nh:
            ax.axis("off")
            continue
        ax.imshow(layer_maps[h].float().cpu().numpy(), cmap="viridis", vmin=0.0, vmax=1.0,
                  interpolation="nearest")
        ax.set_title(f"head {h + 1}", fontsize=8)
        ax.set_xticks(ticks, [labels[i] for i in ticks], fontsize=fontsize, family="monospace")
        ax.set_yticks(ticks, [labels[i] for i in ticks], fontsize=fontsize, family="monospace")
        ax.tick_params(length=0)
        ax.set_xlabel("key (attended to)", fontsize=7)
        if h % cols == 0:
            ax.set_ylabel("query position", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)
