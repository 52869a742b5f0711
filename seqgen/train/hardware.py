"""What the hardware decides for a run: its precision (fp32 or bf16 autocast)."""

from __future__ import annotations


def resolve_precision(name: str, device: str, kind: str) -> str:
    """fp32 or bf16. `auto`: bf16 for the transformer on hardware with native bf16 (a CUDA GPU
    from Ampere on; a CPU with AMX/AVX-512 BF16), fp32 otherwise. The RNN kinds stay fp32: on
    the CPU the benchmark shows bf16 autocast slowing torch's LSTM/GRU kernels down, and on CUDA
    torch's autocast runs cuDNN RNNs in fp16 whatever dtype is asked for, without a gradient
    scaler (not measured here: no GPU was lent)."""
    import torch

    if name != "auto" or kind != "transformer":
        return name if name != "auto" else "fp32"
    if device.startswith("cuda"):
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
