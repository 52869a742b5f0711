"""The held-out loss: how training validates and `seqgen eval` scores a checkpoint."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from seqgen.train.batches import to_tensor
from seqgen.train.distributed import Dist


def held_out_loss(model, val_ids, recurrent: bool, seq_len: int, batch_size: int,
                  autocast: Callable[[], Any] = contextlib.nullcontext, device: str = "cpu",
                  d: Dist | None = None) -> tuple[float, int]:
    """Mean cross-entropy (nats per token) over `val_ids` (at least 2 ids), and the tokens scored.

    RNN kinds (`recurrent`) read the split as up to `batch_size` parallel rows, carrying the
    state across `seq_len` windows (as in training); the transformer scores non-overlapping
    windows of `seq_len`. Under DistributedDataParallel (`d`) the windows are shared out between
    processes and the sums all-reduced. Training and `seqgen eval` both score with this.
    """
    import torch
    import torch.nn.functional as F

    d = d or Dist()
    was_training = model.training
    model.eval()
    n = len(val_ids) - 1
    T = min(seq_len, n)
    total = torch.zeros(2, dtype=torch.float64)
    with torch.no_grad():
        if recurrent:
            rows = max(1, min(batch_size, n // T))
            L = n // rows
            x_all = to_tensor(val_ids[: rows * L]).view(rows, L)
            y_all = to_tensor(val_ids[1 : rows * L + 1]).view(rows, L)
            mine = list(range(d.rank, rows, d.world))
            if mine:
                x_all, y_all = x_all[mine].to(device), y_all[mine].to(device)
                state = None
                for a in range(0, L, T):
                    x, y = x_all[:, a : a + T], y_all[:, a : a + T]
                    with autocast():
                        logits, state = model(x, state)
                    total[0] += F.cross_entropy(logits.float().flatten(0, 1), y.flatten(),
                                                reduction="sum").item()
                    total[1] += y.numel()
        else:
            windows = n // T
            starts = list(range(d.rank * T, windows * T, d.world * T))
            for i in range(0, len(starts), batch_size):
                idx = torch.tensor(starts[i : i + batch_size])[:, None] + torch.arange(T + 1)
                w = to_tensor(val_ids[idx.numpy()]).to(device)  # (b, T + 1)
                with autocast():
                    logits, _ = model(w[:, :-1], None)
                total[0] += F.cross_entropy(logits.float().flatten(0, 1), w[:, 1:].flatten(),
                                            reduction="sum").item()
                total[1] += w[:, 1:].numel()
    if d.enabled:
        import torch.distributed as dist

        dist.all_reduce(total)
    model.train(was_training)
    return (total[0] / total[1]).item(), int(total[1].item())
