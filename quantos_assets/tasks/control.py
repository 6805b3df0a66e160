"""python_task entrypoints whose outcome the caller controls: for demos and fault tests
(retry from failure, cancel a long run) without touching real data."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow as pa


def fail_until(flag: str) -> pa.Table:
    """Fail until the file `flag` exists; then return one row. Re-executing from failure
    after creating it shows that only the failed node runs again."""
    if not Path(flag).exists():
        raise RuntimeError(f"{flag} does not exist yet")
    return pa.table({"ok": pa.array([1], pa.int64())})


def sleep(seconds: float = 60.0) -> pa.Table:
    """Take `seconds` (a run to cancel)."""
    time.sleep(seconds)
    return pa.table({"slept": pa.array([seconds], pa.float64())})


def fail_once(marker: str, **_inputs: pa.Table) -> pa.Table:
    """Fail the first attempt (leaving `marker` behind), succeed on the retry; inputs ignored."""
    path = Path(marker)
    if not path.exists():
        path.touch()
        raise RuntimeError("first attempt fails on purpose")
    return pa.table({"ok": pa.array([1], pa.int64())})
