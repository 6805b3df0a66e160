"""Near-free python_task entrypoints, for benchmarks that measure what runs around a node.

Imports only pyarrow. `passthrough` keeps it that way in a child process; `one_row` builds a
table from Python data, which makes pyarrow import pandas (as any such task would).
"""

from __future__ import annotations

import pyarrow as pa


def one_row() -> pa.Table:
    """A 1-row table: the cheapest value a node can produce."""
    return pa.table({"x": pa.array([1], pa.int64())})


def run(**inputs: pa.Table) -> pa.Table:
    """Ignore the inputs, return one row."""
    return one_row()


def passthrough(table: pa.Table) -> pa.Table:
    """Return the input table unchanged (its bytes still cross the process boundary both ways)."""
    return table
