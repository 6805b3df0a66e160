"""python_task entrypoints the python_task tests run in a child process (no tests here).

Kept apart from the tests so the child imports pyarrow only, not dagster and
the project (seconds per subprocess).
"""

from __future__ import annotations

import os
import subprocess
from subprocess import getoutput  # noqa: F401 - lent out: an allowed module's import is no entrypoint

import pyarrow as pa
import pyarrow.compute as pc


def split_by_volume(bars: pa.Table, threshold: int) -> dict[str, pa.Table]:
    mask = pc.greater_equal(bars["volume"], threshold)
    return {"liquid": bars.filter(mask), "illiquid": bars.filter(pc.invert(mask))}


def echo_env() -> pa.Table:
    return pa.table({"view": [os.environ.get("FEATURE_VIEW", "")]})


def explode(bars: pa.Table) -> pa.Table:
    raise ValueError(f"bad bars: {bars.num_rows} rows\nsecond line the user never needs")


def wrong_outs() -> dict[str, pa.Table]:
    return {"nope": pa.table({"a": [1]})}


def fail_first_attempt(marker: str) -> pa.Table:
    """Fails once (a transient fault), then succeeds: exercises slo.retry."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise ConnectionError("transient: the feature store timed out")
    return pa.table({"ok": [1]})


def environment() -> pa.Table:
    """Everything the child sees of its surroundings: its environment and its cwd."""
    names = sorted(os.environ)
    return pa.table(
        {"name": [*names, "<cwd>"], "value": [*(os.environ[n] for n in names), os.getcwd()]}
    )


def shell(cmd: str) -> pa.Table:
    """What `subprocess:getoutput` would do if an allow-list let it through: run a shell line."""
    return pa.table(
        {
            "out": [
                subprocess.run(cmd, shell=True, capture_output=True, text=True, check=False).stdout
            ]
        }
    )


def fresh_prices(symbols: int) -> pa.Table:
    """Different prices at every run: an upstream that moves on between two runs."""
    noise = os.urandom(symbols)
    return pa.table(
        {
            "symbol": [f"S{i:03d}" for i in range(symbols)],
            "px": [100.0 + b / 10 for b in noise],
        }
    )
