"""The loss curve a run leaves in loss.png (matplotlib, imported only when a curve is drawn)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any


def plot_loss_curve(history: list[dict], path: str | os.PathLike, title: str = "",
                    grad_clip: float | None = None) -> Path:
    """A PNG of train and validation loss (nats per token) against step; returns `path`.

    When the history has gradient norms (before clipping), a second panel draws them on a log
    scale (every step's with --log-grad-norms; the largest since the previous log point too),
    with a dotted line at `grad_clip` when it is > 0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from seqgen.fileio import atomic_path

    tr = [(h["step"], h["train_loss"]) for h in history
          if h.get("train_loss") is not None and "val_loss" not in h]
    va = [(h["step"], h["val_loss"]) for h in history if h.get("val_loss") is not None]
    gn = [(h["step"], h["grad_norm"]) for h in history if _positive(h.get("grad_norm"))]
    gmax = [(h["step"], h["grad_norm_max"]) for h in history if _positive(h.get("grad_norm_max"))]
    if gn or gmax:
        fig, (ax, gax) = plt.subplots(2, 1, figsize=(7, 6), dpi=110, sharex=True,
                                      gridspec_kw={"height_ratios": [2, 1]})
    else:
        fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    if tr:
        ax.plot(*zip(*tr, strict=True), label="train", linewidth=1, alpha=0.8)
    if va:
        ax.plot(*zip(*va, strict=True), label="validation", marker="o", markersize=3)
        best = min(va, key=lambda p: p[1])
        ax.axhline(best[1], color="gray", linestyle=":", linewidth=1)
        ax.annotate(f"best {best[1]:.3f} @ {best[0]}", best, textcoords="offset points",
                    xytext=(5, 8), fontsize=8)
    ax.set_ylabel("loss (nats per character)")
    if title:
        ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    if tr or va:  # (a run too short for one logged point has nothing to label)
        ax.legend()
    if gn or gmax:
        if gn:
            gax.plot(*zip(*gn, strict=True), label="gradient norm", linewidth=0.8)
        if gmax:
            gax.plot(*zip(*gmax, strict=True), label="max since last point", linewidth=0.8,
                     marker=".", markersize=3, alpha=0.7)
        if grad_clip:
            gax.axhline(grad_clip, color="gray", linestyle=":", linewidth=1,
                        label=f"clip threshold {grad_clip:g}")
        gax.set_yscale("log")
        gax.set_ylabel("norm before clipping")
        gax.grid(alpha=0.3, which="both")
        gax.legend(fontsize=8)
        ax = gax
    ax.set_xlabel("step")
    path = Path(path)
    try:
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return path


def _positive(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v) and v > 0
