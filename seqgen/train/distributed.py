"""Several processes under `torchrun --nproc_per_node=N` (WORLD_SIZE > 1): which process this is,
the process group (gloo on CPU, nccl on CUDA), and gathering every process's rows on rank 0."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass
class Dist:
    """This process's place among the run's processes (one process: rank 0 of 1)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    enabled: bool = False
    owns_group: bool = False


def dist_setup() -> Dist:
    """Join the process group torchrun describes (WORLD_SIZE > 1), starting it unless the caller
    did; Dist() for one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch
    import torch.distributed as dist

    owns = False
    if not dist.is_initialized():
        # nccl handles CUDA tensors only: gloo takes the CPU ones (the step's stop flags, the
        # validation sums, a run trained on the CPU resumed on a GPU machine)
        dist.init_process_group("cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo")
        owns = True
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")),
                 True, owns)


def gather_rows(t: torch.Tensor, d: Dist, dim: int, sizes: list[int],
                 device: str) -> torch.Tensor | None:
    """Every process's `t` (its `sizes[rank]` rows along `dim`) joined along `dim` in rank order,
    on CPU, on rank 0 (None elsewhere). All processes must call it together."""
    import torch
    import torch.distributed as dist

    most = max(sizes)
    pad = list(t.shape)
    pad[dim] = most - t.shape[dim]
    piece = torch.cat([t, t.new_zeros(pad)], dim) if pad[dim] else t
    piece = piece.to(device).contiguous()
    parts = [torch.empty_like(piece) for _ in range(d.world)]
    dist.all_gather(parts, piece)
    if d.rank != 0:
        return None
    return torch.cat([p.narrow(dim, 0, n).cpu() for p, n in zip(parts, sizes, strict=True)], dim)
