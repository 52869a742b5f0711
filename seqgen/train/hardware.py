"""What the hardware decides for a run: the device it trains on (this process's GPU under
torchrun), torch's CPU threads, and its precision (fp32 or bf16 autocast)."""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING

from seqgen.devices import resolve_device
from seqgen.errors import UsageError

if TYPE_CHECKING:
    from seqgen.train.config import TrainConfig
    from seqgen.train.distributed import Dist


def run_device(cfg: TrainConfig, dist: Dist) -> str:
    """The device the run trains on, with torch's CPU threads set (--threads, else the cores idle
    now, unless OMP_NUM_THREADS says). UsageError for --compile on a CPU without a C++ compiler,
    before the run directory is made."""
    import torch

    device = resolve_device(cfg.device)
    if cfg.compile and device == "cpu" and not (
            os.environ.get("CXX") or shutil.which("g++") or shutil.which("clang++")
            or shutil.which("c++")):  # before the run directory is made
        raise UsageError("`compile` on CPU needs a C++ compiler (g++ or clang++) on PATH for "
                         "torch.compile; install one (apt-get install g++) or train without "
                         "`compile`", params=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    elif device == "cpu" and "OMP_NUM_THREADS" not in os.environ:  # (torchrun sets it)
        torch.set_num_threads(train_threads(torch.get_num_threads()))
    if dist.enabled and device == "cuda":
        device = f"cuda:{dist.local_rank}"
        torch.cuda.set_device(device)
    return device


def train_threads(limit: int) -> int:
    """Threads for a training run: the cores idle now (`idle_threads`, a 0.1 s look), and no
    more than the last minute's load average leaves free (at least 1). A run lasts minutes: on
    the shared 2-core development machine a run that took 2 threads at a quiet moment of a
    busy minute (load 3-4) trained 3-10x slower than one thread (docs/benchmarks.md)."""
    from seqgen.devices import idle_threads, usable_cores

    threads = idle_threads(limit)
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # (no load average: Windows)
        return threads
    return max(1, min(threads, round(usable_cores() - load)))


def resolve_precision(name: str, device: str, kind: str) -> str:
    """fp32 or bf16. `auto`: bf16 for every kind on a CPU with native bf16 (AMX or AVX-512
    BF16: there bf16 autocast trains the LSTM about 1.6-1.9x and the transformer about 2-3x
    faster per second, and to a lower held-out loss per minute: docs/benchmarks.md), and for
    the transformer on a CUDA GPU with native bf16 (Ampere on); fp32 otherwise. On CUDA the RNN
    kinds stay fp32: torch's autocast runs cuDNN RNNs in fp16 whatever dtype is asked for,
    without a gradient scaler (not measured here: no GPU was lent)."""
    import torch

    if name != "auto":
        return name
    if device.startswith("cuda") and kind == "transformer":
        try:
            native = torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # (torch before the argument existed)
            native = torch.cuda.is_bf16_supported()
        return "bf16" if native else "fp32"
    if device == "cpu" and _cpu_has_bf16():
        return "bf16"
    return "fp32"


def _cpu_has_bf16() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read(1 << 16)
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags
