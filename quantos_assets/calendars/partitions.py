"""Session partitions: the Dagster partitions definition of a spec's `partitions` block.

Keys are exactly the exchange's sessions (YYYY-MM-DD). They live in a
DynamicPartitionsDefinition that the sensors keep up to date (a sync sensor adds
every session from `start` to today; each schedule tick adds its own session),
so new sessions appear without a redeploy and holidays never do. See
docs/decisions.md, "Session partitions are dynamic partitions kept in sync".
"""

from __future__ import annotations

from datetime import date, datetime

from dagster import DynamicPartitionsDefinition

from quantos_assets.calendars.sessions import exchange_timezone, sessions_between, today_in
from quantos_assets.spec.derived_names import partitions_set_name
from quantos_assets.spec.models import DagSpec


def partitions_name(spec: DagSpec) -> str:
    """One set of keys per pipeline: two pipelines may start on different days."""
    return partitions_set_name(spec.pipeline_id)


def session_partitions(spec: DagSpec) -> DynamicPartitionsDefinition | None:
    if spec.partitions is None:
        return None
    return DynamicPartitionsDefinition(name=partitions_name(spec))


def session_keys(spec: DagSpec, end: date | None = None) -> list[str]:
    """Every partition key from `start` through `end` (default: today on the exchange)."""
    assert spec.partitions is not None
    code = spec.partitions.calendar
    last = end or today_in(exchange_timezone(code))
    return [d.isoformat() for d in sessions_between(code, spec.partitions.start, last)]


def missing_session_keys(
    spec: DagSpec, existing: set[str], now: datetime | None = None
) -> list[str]:
    """Sessions up to today on the exchange (at `now`) that are not partition keys yet."""
    assert spec.partitions is not None
    today = today_in(exchange_timezone(spec.partitions.calendar), now)
    return [k for k in session_keys(spec, today) if k not in existing]
