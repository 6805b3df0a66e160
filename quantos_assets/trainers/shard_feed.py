"""The batches a Ray Train worker trains on, epoch after epoch, from its shard of the windows.

A shard that fits in the worker's memory budget is read from Ray Data once and held as two
tensors; each epoch then draws every row once in an order permuted by a generator seeded
with the seed and the epoch: a full shuffle, as a plain PyTorch DataLoader does it, without
paying Ray Data's streaming executor again every epoch (most of an epoch's time on small
and mid-sized sets). The whole shard is read before the first epoch, so a run resumed from
a checkpoint draws exactly what an uninterrupted run drew.

A shard that does not fit is streamed every epoch, and shuffled within runs of
SHUFFLE_BATCHES consecutive batches (`shuffled`). Ray Data's local shuffle buffer is not
used: what it mixes depends on where its blocks happen to end, which changes from run to
run, so the same seed gave different metrics and a gate's retrain could not reproduce a
model. Both ways draw the same batches for the same data and seed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

# A worker holds at most this much of its shard (x and y) in memory, and never more than
# half of the memory its node asks per worker (`resources.memory`).
CACHE_BYTES = 2 * 1024**3
# Streamed: batches are shuffled within runs of this many consecutive batches.
SHUFFLE_BATCHES = 4
FLOAT32 = 4


def cache_fits(
    rows: int, lookback: int, n_features: int, workers: int, memory_per_worker: float | None
) -> bool:
    """Whether one worker's share of `rows` windows (x and y, float32) fits its budget."""
    per_worker = math.ceil(rows / max(1, workers)) * (lookback * n_features + 1) * FLOAT32
    budget = CACHE_BYTES if not memory_per_worker else min(CACHE_BYTES, memory_per_worker / 2)
    return per_worker <= budget


class ShardFeed:
    """One dataset shard ("train" or "val") of one worker: held (`cached`) or streamed."""

    def __init__(self, shard: Any, device: Any, cached: bool) -> None:
        self.shard = shard
        self.device = device
        self.cached = cached
        self._held: tuple[Any, Any] | None = None

    def shuffled(self, batch_size: int, seed: int) -> Iterator[tuple[Any, Any]]:
        """This epoch's training batches, drawn in an order fixed by `seed`."""
        import torch

        if not self.cached:
            batches = self.shard.iter_torch_batches(
                batch_size=batch_size, dtypes=torch.float32, device=self.device
            )
            yield from shuffled(batches, batch_size, seed)
            return
        x, y = self._hold()
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed)).to(y.device)
        for start in range(0, len(y), batch_size):
            rows = order[start : start + batch_size]
            yield x[rows], y[rows]

    def in_order(self, batch_size: int) -> Iterator[tuple[Any, Any]]:
        """Every row once, in the shard's order (validation)."""
        import torch

        if not self.cached:
            for batch in self.shard.iter_torch_batches(
                batch_size=batch_size, dtypes=torch.float32, device=self.device
            ):
                yield batch["x"], batch["y"]
            return
        x, y = self._hold()
        for start in range(0, len(y), batch_size):
            yield x[start : start + batch_size], y[start : start + batch_size]

    def _hold(self) -> tuple[Any, Any]:
        if self._held is None:
            import numpy as np
            import torch

            xs, ys = [], []
            for block in self.shard.iter_batches(batch_size=None, batch_format="numpy"):
                xs.append(np.asarray(block["x"], dtype=np.float32))
                ys.append(np.asarray(block["y"], dtype=np.float32))
            x = np.concatenate(xs) if xs else np.zeros((0, 0, 0), dtype=np.float32)
            y = np.concatenate(ys) if ys else np.zeros(0, dtype=np.float32)
            self._held = (torch.from_numpy(x).to(self.device), torch.from_numpy(y).to(self.device))
        return self._held


def shuffled(
    batches: Iterable[dict[str, Any]], batch_size: int, seed: int
) -> Iterator[tuple[Any, Any]]:
    """(x, y) batches drawn from each run of SHUFFLE_BATCHES consecutive batches, permuted by a
    generator seeded per epoch. The batches themselves are the rows in the dataset's (kept)
    order, so this draws the same every run."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    held: list[dict[str, Any]] = []

    def drain() -> Iterator[tuple[Any, Any]]:
        x = torch.cat([b["x"] for b in held])
        y = torch.cat([b["y"] for b in held])
        order = torch.randperm(len(y), generator=generator).to(y.device)
        for start in range(0, len(y), batch_size):
            rows = order[start : start + batch_size]
            yield x[rows], y[rows]

    for batch in batches:
        held.append(batch)
        if len(held) == SHUFFLE_BATCHES:
            yield from drain()
            held = []
    if held:
        yield from drain()
