"""The machine: which torch device a `--device` option names (checked before any work starts),
how many CPU threads `--threads` may ask for, and how many cores are idle right now."""

from __future__ import annotations

import os
import re
import time

from seqgen.errors import UsageError

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def resolve_device(name: str) -> str:
    """The device for `device` NAME (auto: cuda, else mps, else cpu); UsageError, naming the
    option and what to use instead, for a name torch does not know or a device this machine
    lacks."""
    import torch

    name = str(name)  # (a torch.device too)
    if not _DEVICE.match(name):
        raise UsageError(f"`device` must be auto, cpu, cuda, cuda:N or mps, not {name!r}",
                         params=True)
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if mps else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"`device` {name}: CUDA is not available here (this torch has no "
                             "CUDA or there is no GPU); use `device` cpu or auto", params=True)
        index = int(name.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise UsageError(f"`device` {name}: this machine has {torch.cuda.device_count()} "
                             f"GPU(s), numbered from 0", params=True)
    if name == "mps" and not mps:
        raise UsageError("`device` mps: Apple MPS is not available here; use `device` cpu or "
                         "auto", params=True)
    return name


def threads_rule(threads: int) -> str | None:
    """What a thread count must be, when `threads` is not: between 1 and a sane limit (torch
    crashes when it cannot start the threads it was asked for)."""
    cores = os.cpu_count() or 1
    limit = max(64, 4 * cores)
    if not 1 <= threads <= limit:
        return f"between 1 and {limit} (this machine has {cores} cores)"
    return None


def check_threads(threads: int | None) -> None:
    """UsageError unless `threads` is unset or keeps `threads_rule`."""
    from seqgen.config import Rule, check_value

    if threads is not None:
        check_value("threads", threads, Rule(check=threads_rule))


def usable_cores() -> int:
    """The CPUs this process may run on (its affinity set, e.g. a container's cpuset)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # (no affinity API: macOS, Windows)
        return os.cpu_count() or 1


def idle_cores(window_s: float = 0.1) -> float | None:
    """How many of the CPUs this process may use sat idle over the next `window_s` seconds
    (Linux's /proc/stat: idle and iowait ticks over all ticks, per CPU); None elsewhere."""
    try:
        allowed = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        allowed = None

    def ticks() -> tuple[int, int]:
        idle = total = 0
        with open("/proc/stat", encoding="ascii") as f:
            for line in f:
                name, *values = line.split()
                if not (name.startswith("cpu") and name[3:].isdigit()):
                    continue  # (the "cpu" line sums all CPUs, allowed or not)
                if allowed is not None and int(name[3:]) not in allowed:
                    continue
                v = [int(x) for x in values]
                idle, total = idle + v[3] + v[4], total + sum(v)
        return idle, total

    try:
        idle0, total0 = ticks()
        time.sleep(window_s)
        idle1, total1 = ticks()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    cpus = len(allowed) if allowed is not None else (os.cpu_count() or 1)
    return (idle1 - idle0) / (total1 - total0) * cpus


def idle_threads(limit: int) -> int:
    """CPU threads for torch: as many as this process's CPUs that are idle now (`idle_cores`),
    at least 1 and at most `limit` (`limit` where Linux does not tell). With other work on the
    cores, torch's threads wait for the one that shares a core: on the 2-core development
    machine two threads ran several times slower than one there (docs/benchmarks.md)."""
    idle = idle_cores()
    return limit if idle is None else max(1, min(limit, round(idle)))
