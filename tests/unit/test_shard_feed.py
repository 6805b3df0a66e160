"""What a training worker draws each epoch from its shard (trainers/shard_feed.py).

The shard here is a small stand-in for Ray Data's DataIterator with the two calls the feed
makes (`iter_batches` of whole blocks as numpy, `iter_torch_batches` of fixed size); the
real iterator is exercised by the Ray training tests (tests/integration/test_ray_*.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch

from quantos_assets.trainers.shard_feed import CACHE_BYTES, ShardFeed, cache_fits

ROWS, LOOKBACK, FEATURES = 1000, 5, 3


class _Shard:
    """Rows 0..ROWS-1 in blocks of uneven size, as Ray Data hands them out in order."""

    def __init__(self) -> None:
        self.x = np.arange(ROWS * LOOKBACK * FEATURES, dtype=np.float64).reshape(
            ROWS, LOOKBACK, FEATURES
        )
        self.y = np.arange(ROWS, dtype=np.float64)
        self.reads = 0

    def iter_batches(
        self, batch_size: Any = None, batch_format: str = "numpy"
    ) -> Iterator[dict[str, np.ndarray]]:
        self.reads += 1
        for start, end in [(0, 130), (130, 600), (600, ROWS)]:
            yield {"x": self.x[start:end], "y": self.y[start:end]}

    def iter_torch_batches(
        self, batch_size: int, dtypes: Any, device: Any
    ) -> Iterator[dict[str, Any]]:
        self.reads += 1
        for start in range(0, ROWS, batch_size):
            yield {
                "x": torch.tensor(self.x[start : start + batch_size], dtype=dtypes),
                "y": torch.tensor(self.y[start : start + batch_size], dtype=dtypes),
            }


def _epoch(feed: ShardFeed, seed: int) -> list[int]:
    return [int(v) for _, y in feed.shuffled(64, seed) for v in y]


@pytest.mark.parametrize("cached", [True, False])
def test_every_row_once_per_epoch_in_an_order_fixed_by_the_seed(cached: bool) -> None:
    shard = _Shard()
    feed = ShardFeed(shard, "cpu", cached)
    first, second = _epoch(feed, 1000), _epoch(feed, 1001)
    assert sorted(first) == sorted(second) == list(range(ROWS))
    assert first != second and first != list(range(ROWS))  # shuffled, differently each epoch
    # another worker (or a retrained model) with the same seed draws the same
    assert _epoch(ShardFeed(_Shard(), "cpu", cached), 1000) == first
    for x, y in feed.shuffled(64, 7):  # x stays with its y
        assert torch.equal(x[:, 0, 0], y * LOOKBACK * FEATURES)


def test_a_held_shard_is_read_once_and_shuffled_whole() -> None:
    shard = _Shard()
    feed = ShardFeed(shard, "cpu", cached=True)
    order = _epoch(feed, 3)
    _epoch(feed, 4)
    list(feed.in_order(100))
    assert shard.reads == 1  # later epochs and validation come from memory
    assert (
        max(order[:64]) > 64 * 4
    )  # the first batch draws from the whole shard, not a run of batches
    resumed = ShardFeed(_Shard(), "cpu", cached=True)  # a run resumed at epoch 4
    assert _epoch(resumed, 4) == _epoch(ShardFeed(_Shard(), "cpu", cached=True), 4)


def test_validation_reads_every_row_in_order_either_way() -> None:
    for cached in (True, False):
        ys = [int(v) for _, y in ShardFeed(_Shard(), "cpu", cached).in_order(256) for v in y]
        assert ys == list(range(ROWS))


def test_what_fits_is_bounded_by_the_cache_and_half_the_workers_memory() -> None:
    row = (20 * 4 + 1) * 4  # a window of 20 x 4 features and its target, float32
    assert cache_fits(10_000, 20, 4, 1, None)
    assert not cache_fits(CACHE_BYTES // row + 1, 20, 4, 1, None)
    assert cache_fits(CACHE_BYTES // row + 1, 20, 4, 2, None)  # two workers hold half each
    assert not cache_fits(10_000, 20, 4, 1, memory_per_worker=2 * row * 9_999)
