"""Training: TrainConfig, presets, batching, and the loop (AdamW, warmup + cosine, clipping).

    config = TrainConfig(corpus="folk", minutes=5)
    result = train(config, callback=print)          # -> TrainResult(out=Path(...), ...)
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
