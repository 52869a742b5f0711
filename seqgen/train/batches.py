"""The training batches: char-rnn's stateful rows for the RNN kinds (StreamBatches), windows at
random positions for the transformer (RandomWindows); each process takes its rows of the global
batch (rank_rows)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from seqgen.errors import DataError

if TYPE_CHECKING:
    import numpy as np
    import torch


def to_tensor(a: np.ndarray) -> torch.Tensor:
    """`a` (token ids) as an int64 tensor."""
    import numpy as np
    import torch

    return torch.from_numpy(np.asarray(a, dtype=np.int64))


def rank_rows(batch_size: int, rank: int, world: int) -> tuple[int, int]:
    """The rows [lo, hi) of a global batch of `batch_size` that process `rank` of `world` gets."""
    return rank * batch_size // world, (rank + 1) * batch_size // world


class StreamBatches:
    """char-rnn batching: the id stream cut into `batch_size` rows of equal length; each call
    returns the next window of `seq_len` tokens of every row, so a row's windows follow each other
    and the hidden state can be carried across them. Each epoch starts at an offset in [0, seq_len)
    drawn from the seed, so window edges move between epochs. This process gets rows
    [rank * B / world, (rank + 1) * B / world).
    """

    def __init__(self, ids: np.ndarray, batch_size: int, seq_len: int, seed: int,
                 rank: int = 0, world: int = 1):
        n = len(ids)
        self.T = seq_len
        self.B = batch_size
        self.L = (n - 1) // batch_size  # tokens per row
        if self.L < seq_len:
            raise DataError(
                f"the training split has {n:,} tokens, too few for {batch_size} rows of one "
                f"{seq_len}-token window; use a smaller `batch_size` or `seq_len`", params=True)
        lo, hi = rank_rows(batch_size, rank, world)
        span = batch_size * self.L
        self.x = ids[:span].reshape(batch_size, self.L)[lo:hi]  # (B_local, L), views of the memmap
        self.y = ids[1 : span + 1].reshape(batch_size, self.L)[lo:hi]
        self.seed = seed
        self.epoch = 0
        self.window = 0
        self._start_epoch()

    def _start_epoch(self) -> None:
        import numpy as np

        room = self.L - self.T  # the offset must leave at least one window
        rng = np.random.default_rng([self.seed, self.epoch])
        self.offset = int(rng.integers(0, min(self.T, room + 1))) if self.epoch else 0
        self.windows = (self.L - self.offset) // self.T

    def next(self) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """(x, y, fresh): x, y (B_local, T) ids; fresh means "start from a zero state"."""
        if self.window >= self.windows:
            self.epoch += 1
            self.window = 0
            self._start_epoch()
        fresh = self.window == 0
        a = self.offset + self.window * self.T
        self.window += 1
        return to_tensor(self.x[:, a : a + self.T]), to_tensor(self.y[:, a : a + self.T]), fresh

    def state_dict(self) -> dict:
        return {"kind": "stream", "epoch": self.epoch, "window": self.window}

    def load_state_dict(self, d: dict) -> None:
        self.epoch, self.window = int(d["epoch"]), int(d["window"])
        self._start_epoch()


class RandomWindows:
    """B windows of `seq_len` tokens starting at random positions (numpy PCG64 from the seed).
    All processes draw the same global batch and keep their own slice of it."""

    def __init__(self, ids: np.ndarray, batch_size: int, seq_len: int, seed: int,
                 rank: int = 0, world: int = 1):
        import numpy as np

        self.ids, self.B, self.T = ids, batch_size, seq_len
        self.high = len(ids) - seq_len  # exclusive bound of a start (the target needs T + 1)
        if self.high < 1:
            raise DataError(
                f"the training split has {len(ids):,} tokens, fewer than one {seq_len + 1}-token "
                "window; use a smaller `seq_len` or a larger corpus", params=True)
        self.lo, self.hi = rank_rows(batch_size, rank, world)
        self.rng = np.random.default_rng(seed)
        self.offsets = np.arange(seq_len + 1)

    def next(self) -> tuple[torch.Tensor, torch.Tensor, bool]:
        starts = self.rng.integers(0, self.high, size=self.B)[self.lo : self.hi]
        w = self.ids[starts[:, None] + self.offsets]  # (B_local, T + 1)
        return to_tensor(w[:, :-1]), to_tensor(w[:, 1:]), True

    def state_dict(self) -> dict:
        return {"kind": "random", "rng": self.rng.bit_generator.state}

    def load_state_dict(self, d: dict) -> None:
        self.rng.bit_generator.state = d["rng"]
