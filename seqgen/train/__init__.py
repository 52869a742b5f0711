"""Training: TrainConfig, presets, batching, and the loop (AdamW, warmup + cosine, clipping).

    config = TrainConfig(corpus="folk", minutes=5)
    result = train(config, callback=print)          # -> TrainResult(out=Path(...), ...)

RNN kinds train with truncated backpropagation through time on *stateful* batches, as char-rnn
does: the training id stream is cut into B parallel rows, window t of each row continues window
t-1, and the hidden state is carried from one window to the next (detached, so gradients stop at
the window edge). The transformer trains on B windows drawn at random positions.

Validation loss is the mean cross-entropy in nats per token on the held-out documents (every
character and each end-of-document token is a token); bits per character = nats / ln 2.

Distributed: under `torchrun --nproc_per_node=N` (WORLD_SIZE > 1) the model is wrapped in
DistributedDataParallel (gloo on CPU, nccl on CUDA); the global batch is split across ranks so that
N processes compute the same update as one process with the same --batch-size. Only rank 0 writes
files and reports progress.

The library never prints: progress reaches the caller through `callback(ProgressEvent)`.

The modules, in the order a run meets them:
    config.py       TrainConfig, the presets, resolve_config
    start.py        the set-up: config on --resume, data, model, optimizer, run directory, lock
    hardware.py     device, threads, precision
    distributed.py  the process group under torchrun, gathers onto rank 0
    batches.py      StreamBatches (stateful RNN rows), RandomWindows
    runstate.py     RunState: what a run holds; save, restore, evaluate, the lr schedule
    loop.py         Trainer and train(): set up, then step, evaluate and save, stop
    meter.py        train loss, gradient norms, tokens/s and time between reports
    held_out.py     held_out_loss (also seqgen eval's)
    events.py       ProgressEvent, TrainResult
    plot.py         plot_loss_curve (loss.png)
"""

from seqgen.train.batches import RandomWindows, StreamBatches, rank_rows
from seqgen.train.config import (
    ARCHITECTURE,
    BATCHINGS,
    DEFAULT_MINUTES,
    DEVICES,
    MANY_PASSES,
    MODEL_PRESETS,
    PRECISIONS,
    PRESET_NAMES,
    RESOLVED,
    SCHEDULES,
    SMALL_RNN_TOKENS_PER_S,
    TRAIN_PRESETS,
    TrainConfig,
    choose_preset,
    estimated_passes,
    family,
    resolve_config,
)
from seqgen.train.events import ProgressEvent, TrainResult
from seqgen.train.hardware import resolve_precision
from seqgen.train.held_out import held_out_loss
from seqgen.train.loop import Trainer, train
from seqgen.train.plot import plot_loss_curve
from seqgen.train.start import adamw, default_out

__all__ = [
    "ARCHITECTURE", "BATCHINGS", "DEFAULT_MINUTES", "DEVICES", "MANY_PASSES", "MODEL_PRESETS",
    "PRECISIONS", "PRESET_NAMES", "RESOLVED", "SCHEDULES", "SMALL_RNN_TOKENS_PER_S",
    "TRAIN_PRESETS", "ProgressEvent", "RandomWindows", "StreamBatches", "TrainConfig",
    "TrainResult", "Trainer", "adamw", "choose_preset", "default_out", "estimated_passes",
    "family", "held_out_loss", "plot_loss_curve", "rank_rows", "resolve_config",
    "resolve_precision", "train",
]
