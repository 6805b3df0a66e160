"""One exchange session's synthetic bars: the example of a session-partitioned python_task.

The session comes from the run (the Pipes extra `session`, set per session in a
ranged backfill run), so the same entrypoint serves the daily schedule and a
backfill of any session range.
"""

from __future__ import annotations

import hashlib

import pyarrow as pa


def bars(symbols: int = 5, seed: int = 7, session: str | None = None) -> pa.Table:
    """`symbols` rows for the session; deterministic per (seed, session)."""
    if session is None:
        from dagster_pipes import PipesContext

        context = PipesContext.get()
        session = context.extras.get("session") or context.partition_key
    if session is None:
        raise ValueError("bars needs a session: run it on a session partition")
    base = int(hashlib.sha256(f"{seed}:{session}".encode()).hexdigest()[:8], 16)
    closes = [100.0 + ((base >> i) % 1000) / 100.0 for i in range(symbols)]
    return pa.table(
        {
            "session": pa.array([session] * symbols),
            "symbol": pa.array([f"S{i:03d}" for i in range(symbols)]),
            "close": pa.array(closes, pa.float64()),
        }
    )
