"""One value per partition key: what a ranged (single-run backfill) step hands its IO manager.

Dagster gives an output of a ranged run one object for the whole range; a node that
ran session by session has one table per session, and the lake must store each under
its own key. Keeping them apart (rather than one table with a key column) means the
IO manager never guesses which rows belong to which session.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pyarrow as pa

from resources.table_ref import WrittenTable


@dataclass(frozen=True)
class PartitionSlices:
    """Tables by partition key, in key order (or, from an engine that wrote each session's
    partition itself, what it wrote)."""

    values: Mapping[str, pa.Table | WrittenTable]

    @property
    def keys(self) -> list[str]:
        return list(self.values)
