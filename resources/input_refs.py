"""Inputs pinned in time, as a run carries them (the `quantos/refs` run tag) and as the lake
resolves them: a snapshot id, or the snapshot that was current at a moment.

The tag is written from `RuntimeParams.refs` (quantos_assets/run_tags.py) by every launch
path: the gateway, the Kafka sensor, `quantos run --params`, a backfill launched with the
tag. Resolving reads table metadata only. A ref that names a snapshot the table no longer has
is an error, never a fallback to the current data: a backtest pinned in time must not run on
other data.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from pyiceberg.table import Table

from resources.run_tag_keys import TAG_REFS


class RefError(ValueError):
    """A ref that cannot be honoured (one line naming the ref and the table)."""


@dataclass(frozen=True)
class InputPin:
    """One pinned out: by snapshot id or as of a moment (exactly one is set)."""

    out: str
    snapshot_id: int | None = None
    as_of: datetime | None = None

    @property
    def shown(self) -> str:
        if self.snapshot_id is not None:
            return f"snapshot:{self.snapshot_id}"
        assert self.as_of is not None
        return f"as_of:{self.as_of.isoformat()}"

    def resolve(self, table: Table, name: str) -> int:
        """The snapshot id this ref reads in `table` (named `name` in errors)."""
        if self.snapshot_id is not None:
            if table.snapshot_by_id(self.snapshot_id) is None:
                raise RefError(
                    f"refs.{self.out}: snapshot {self.snapshot_id} of {name} no longer exists "
                    "(expired, or never did); pin a snapshot the table still has"
                )
            return self.snapshot_id
        assert self.as_of is not None
        snapshot = table.snapshot_as_of_timestamp(int(self.as_of.timestamp() * 1000))
        if snapshot is None:
            raise RefError(
                f"refs.{self.out}: {name} has no snapshot at or before {self.as_of.isoformat()} "
                "(it was written later, or its older snapshots expired)"
            )
        return snapshot.snapshot_id


def pins_from_tags(tags: Mapping[str, str]) -> dict[str, InputPin]:
    """The run's pinned outs; RefError if the tag is malformed (set by hand, say)."""
    raw = tags.get(TAG_REFS)
    if not raw:
        return {}
    try:
        shown = json.loads(raw)
        return {out: _parse(out, str(value)) for out, value in shown.items()}
    except (ValueError, AttributeError, TypeError):
        raise RefError(
            f"run tag {TAG_REFS}: expected JSON {{out: 'snapshot:<id>' | 'as_of:<ISO 8601>'}}"
        ) from None


def _parse(out: str, value: str) -> InputPin:
    kind, _, text = value.partition(":")
    if kind == "snapshot":
        return InputPin(out, snapshot_id=int(text))
    if kind == "as_of":
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            raise ValueError(text)
        return InputPin(out, as_of=moment)
    raise ValueError(value)
