"""python_task entrypoints for the fault tests (run in the node's Pipes subprocess)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pyarrow as pa


def hang_first_attempt(marker: str, rows: int = 5) -> pa.Table:
    """First attempt: write this process's pid to `marker`, then hang until killed.
    Any later attempt (marker present): return `rows` rows at once."""
    path = Path(marker)
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        tmp.write_text(str(os.getpid()))
        tmp.replace(path)
        time.sleep(600)
        raise RuntimeError("hang_first_attempt was not killed")
    return pa.table({"i": pa.array(range(rows), pa.int64())})


def hold(seconds: float = 1.0) -> pa.Table:
    """Take `seconds`, so runs overlap and concurrency limits bind."""
    started = time.time()
    time.sleep(seconds)
    return pa.table(
        {"started": pa.array([started], pa.float64()), "pid": pa.array([os.getpid()], pa.int64())}
    )
