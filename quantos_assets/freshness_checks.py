"""A pipeline's `freshness` block as one asset check per asset, judged on its calendar.

The same judgement (`freshness_verdicts`) runs when someone executes the checks
from the UI and on every tick of the pipeline's freshness sensor, which records
the result without launching a run (sensors/freshness.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from typing import TypedDict

from dagster import (
    AssetCheckEvaluation,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    DagsterInstance,
    multi_asset_check,
)

from quantos_assets.calendars.freshness import FreshnessVerdict, evaluate_freshness, session_of
from quantos_assets.spec.derived_names import FRESHNESS_CHECK, freshness_name
from quantos_assets.spec.models import DagSpec

CHECK_NAME = FRESHNESS_CHECK
Clock = Callable[[], datetime]


def freshness_calendar(spec: DagSpec) -> str:
    """The calendar freshness is counted on (the spec rules make the two agree)."""
    block = spec.partitions or spec.schedule
    assert block is not None, "a freshness block needs a schedule or partitions (calendar_rules)"
    return block.calendar


def latest_session(instance: DagsterInstance, spec: DagSpec, key: AssetKey) -> date | None:
    """The newest session the asset holds: its newest partition, or the trading date of
    its latest materialization."""
    if spec.partitions is not None:
        keys = instance.get_materialized_partitions(key)
        return date.fromisoformat(max(keys)) if keys else None
    event = instance.get_latest_materialization_event(key)
    if event is None:
        return None
    moment = datetime.fromtimestamp(event.timestamp, tz=UTC)
    return session_of(freshness_calendar(spec), moment)


def freshness_verdicts(
    instance: DagsterInstance, spec: DagSpec, keys: Sequence[AssetKey], now: datetime
) -> dict[AssetKey, FreshnessVerdict]:
    assert spec.freshness is not None
    calendar = freshness_calendar(spec)
    first_due = spec.partitions.start if spec.partitions is not None else None
    return {
        key: evaluate_freshness(
            spec.freshness, calendar, latest_session(instance, spec, key), now, first_due
        )
        for key in keys
    }


def verdict_metadata(verdict: FreshnessVerdict) -> dict[str, str | int]:
    return {
        "reason": verdict.reason,
        "latest_session": verdict.latest_session.isoformat() if verdict.latest_session else "none",
        "latest_closed_session": verdict.due_session.isoformat() if verdict.due_session else "none",
        "lag_sessions": verdict.lag_sessions if verdict.lag_sessions is not None else -1,
        **(
            {"overdue_session": verdict.overdue_session.isoformat()}
            if verdict.overdue_session
            else {}
        ),
    }


class _CheckFields(TypedDict):
    """What a freshness verdict says as a check result, in a run or from the sensor."""

    asset_key: AssetKey
    check_name: str
    passed: bool
    metadata: dict[str, str | int]
    severity: AssetCheckSeverity
    description: str


def _check_fields(key: AssetKey, verdict: FreshnessVerdict) -> _CheckFields:
    return {
        "asset_key": key,
        "check_name": CHECK_NAME,
        "passed": verdict.fresh,
        "metadata": verdict_metadata(verdict),
        "severity": AssetCheckSeverity.WARN,
        "description": verdict.reason,
    }


def check_evaluation(key: AssetKey, verdict: FreshnessVerdict) -> AssetCheckEvaluation:
    """The verdict as a check result recorded without a run (from the sensor)."""
    return AssetCheckEvaluation(**_check_fields(key, verdict))


def build_freshness_checks(
    spec: DagSpec, keys: Sequence[AssetKey], clock: Clock = lambda: datetime.now(UTC)
) -> AssetChecksDefinition:
    assert spec.freshness is not None
    calendar = freshness_calendar(spec)
    rule = ", ".join(
        part
        for part in (
            f"at most {spec.freshness.max_lag_sessions} closed sessions behind"
            if spec.freshness.max_lag_sessions is not None
            else "",
            f"each session by {spec.freshness.deadline}" if spec.freshness.deadline else "",
        )
        if part
    )
    specs = [
        AssetCheckSpec(
            CHECK_NAME,
            asset=key,
            blocking=False,
            description=(
                f"Fresh on the {calendar} calendar: {rule} (weekends and holidays never count)"
            ),
        )
        for key in keys
    ]

    @multi_asset_check(specs=specs, name=freshness_name(spec.pipeline_id), can_subset=True)
    def _freshness(context):  # context unannotated: see [tool.mypy]
        selected = [
            k for k in keys if any(c.asset_key == k for c in context.selected_asset_check_keys)
        ]
        for key, verdict in freshness_verdicts(context.instance, spec, selected, clock()).items():
            yield AssetCheckResult(**_check_fields(key, verdict))

    return _freshness
