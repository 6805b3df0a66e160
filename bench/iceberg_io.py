"""Benchmark: the LakeIOManager's Iceberg write/read path against plain Parquet.

    uv run python bench/iceberg_io.py [--rows 5000000] [--repeat 5] [--commits 300]

Goals: write <= 1.1x pq.write_table (same codec), read <= 1.25x pq.read_table, and the latency
of a small-partition materialization after N commits <= 1.5x that of the first 50.
Prints `name ratio=X` lines; the LAST line is `ratio=<write ratio>` (repo bench convention).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from resources.artifact_store import ArtifactStore
from resources.iceberg_tables import PARQUET_CODEC, read_partitions
from resources.lake_io_manager import LakeIOManager


def build_table(rows: int, seed: int = 7) -> pa.Table:
    """Deterministic market-data-like table: ts timestamp[us], symbol, px, qty."""
    rng = np.random.default_rng(seed)
    start = np.datetime64("2024-01-02T09:30:00", "us").astype(np.int64)
    ts = start + np.cumsum(rng.integers(1, 2_000, rows, dtype=np.int64))
    symbols = np.array([f"SYM{i:04d}" for i in range(500)])
    return pa.table(
        {
            "ts": pa.array(ts, pa.timestamp("us")),
            "symbol": pa.array(symbols[rng.integers(0, len(symbols), rows)]),
            "px": pa.array(rng.normal(100.0, 5.0, rows)),
            "qty": pa.array(rng.integers(1, 10_000, rows, dtype=np.int64)),
        }
    )


def best_of(repeat: int, fn: Callable[[int], object]) -> float:
    times = []
    for i in range(repeat):
        t0 = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t0)
    return min(times)


def io_manager(root: Path) -> LakeIOManager:
    return LakeIOManager(
        catalog_uri=f"sqlite:///{root / 'catalog.db'}",
        warehouse=str(root / "warehouse"),
        artifact_store=ArtifactStore(root=str(root / "artifacts")),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--commits", type=int, default=300)
    parser.add_argument("--small-rows", type=int, default=1_000)
    args = parser.parse_args()

    data = build_table(args.rows)
    small = build_table(args.small_rows, seed=11)
    with tempfile.TemporaryDirectory(prefix="iceberg_bench_") as tmp:
        root = Path(tmp)
        lake = io_manager(root)
        lake.catalog()  # opening the catalog is per-process setup, not per-write cost

        # Interleave so both sides see the same machine state; best of N.
        pq_write, lake_write, snapshot_ids = [], [], []
        for i in range(args.repeat):
            t0 = time.perf_counter()
            pq.write_table(data, root / f"plain_{i}.parquet", compression=PARQUET_CODEC)
            pq_write.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            result = lake.write_arrow("bench", "big", data)
            lake_write.append(time.perf_counter() - t0)
            snapshot_ids.append(result.snapshot_id)
        write_ratio = min(lake_write) / min(pq_write)

        pq_read, lake_read = [], []
        for i in range(args.repeat):
            t0 = time.perf_counter()
            plain = pq.read_table(root / f"plain_{i}.parquet")
            pq_read.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            loaded = lake.read_arrow("bench", "big", snapshot_ids[-1])
            lake_read.append(time.perf_counter() - t0)
            assert loaded.num_rows == plain.num_rows == args.rows
        read_ratio = min(lake_read) / min(pq_read)

        # Small partitioned materializations: one new partition key per commit (a daily run).
        latencies = []
        for i in range(args.commits):
            t0 = time.perf_counter()
            lake.write_arrow("bench", "small", small, partition_key=f"p{i:05d}")
            latencies.append(time.perf_counter() - t0)
        first = statistics.median(latencies[:50])
        last = statistics.median(latencies[-50:])
        growth = last / first
        # Re-materializing an old partition (overwrite of one key) at the end of history.
        replace = best_of(
            args.repeat, lambda i: lake.write_arrow("bench", "small", small, partition_key="p00003")
        )
        one_key = best_of(
            args.repeat,
            lambda i: read_partitions(lake.catalog(), ("bench", "small"), ["p00007"], []),
        )

    print(f"rows={args.rows} write: lake={min(lake_write):.3f}s parquet={min(pq_write):.3f}s")
    print(f"rows={args.rows} read: lake={min(lake_read):.3f}s parquet={min(pq_read):.3f}s")
    print(
        f"small append ({args.small_rows} rows): first50 median={first * 1000:.1f}ms "
        f"last50 (of {args.commits}) median={last * 1000:.1f}ms; "
        f"replace one partition={replace * 1000:.1f}ms; read one partition={one_key * 1000:.1f}ms"
    )
    print(f"write ratio={write_ratio:.3f}")
    print(f"read ratio={read_ratio:.3f}")
    print(f"small_append_growth ratio={growth:.3f}")
    print(f"ratio={write_ratio:.3f}")


if __name__ == "__main__":
    main()
