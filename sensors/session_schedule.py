"""A spec's `schedule` block as a Dagster schedule that fires once per exchange session.

Dagster schedules are cron-driven and cron cannot skip exchange holidays or
follow an early close. So the cron here is every distinct local fire time of
the calendar (e.g. 16:30 and 13:30 for XNYS close+30m), on trading weekdays;
each tick is looked up in the session table and skipped unless it is exactly
some session's fire time. The run targets that session's partition.

Missed ticks (daemon down) are skipped unless `catch_up: true`: a tick whose
next fire time has already passed is stale, like seed 002's LatestOnlyOperator.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache

from dagster import (
    DefaultScheduleStatus,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
)

from quantos_assets.calendars.partitions import partitions_name
from quantos_assets.calendars.ticks import schedule_table, schedule_timezone
from quantos_assets.pipeline_assets import PipelineDefs
from quantos_assets.spec.models import Schedule

Clock = Callable[[], datetime]
_NS = 1_000_000_000


def _utc_now() -> datetime:
    return datetime.now(UTC)


def cron_strings(schedule: Schedule) -> list[str]:
    """One cron per distinct local fire time, limited to the weekdays that have sessions."""
    import pandas as pd

    instants, _ = schedule_table(schedule)
    local = pd.DatetimeIndex(pd.to_datetime(list(instants), utc=True)).tz_convert(
        schedule_timezone(schedule)
    )
    days: dict[tuple[int, int], set[int]] = {}
    for hour, minute, weekday in zip(local.hour, local.minute, local.weekday):
        days.setdefault((int(hour), int(minute)), set()).add((int(weekday) + 1) % 7)
    return [
        f"{minute} {hour} * * {','.join(str(d) for d in sorted(dows))}"
        for (hour, minute), dows in sorted(days.items())
    ]


@lru_cache(maxsize=256)
def _by_second(instants: tuple[int, ...], keys: tuple[str, ...]) -> dict[int, int]:
    """Epoch second of each fire time -> its index in the sorted table."""
    return {ns // _NS: i for i, ns in enumerate(instants)}


def session_for_tick(schedule: Schedule, when: datetime, now: datetime | None = None) -> str | SkipReason:
    """The partition key this tick should run, or why it is skipped."""
    instants, keys = schedule_table(schedule)
    index = _by_second(instants, keys).get(int(when.timestamp()))
    if index is None:
        return SkipReason(f"{when.isoformat()} is not a session fire time of {schedule.calendar} {schedule.at}")
    if not schedule.catch_up and now is not None and index + 1 < len(instants):
        following = instants[index + 1] // _NS
        if following <= now.timestamp():
            return SkipReason(
                f"stale tick for session {keys[index]}: a later session's fire time has already "
                "passed (set schedule.catch_up: true to run missed sessions)"
            )
    return keys[index]


def build_session_schedule(pipeline: PipelineDefs, clock: Clock = _utc_now) -> ScheduleDefinition:
    spec = pipeline.spec
    schedule = spec.schedule
    assert schedule is not None
    partition_set = partitions_name(spec) if spec.partitions is not None else None

    def evaluate(context: ScheduleEvaluationContext) -> SkipReason | RunRequest:
        outcome = session_for_tick(schedule, context.scheduled_execution_time, clock())
        if isinstance(outcome, SkipReason):
            return outcome
        if partition_set is None:
            return RunRequest(run_key=outcome, tags={"quantos/session": outcome})
        # The tick registers its own session, so it never waits for the sync sensor.
        if not context.instance.has_dynamic_partition(partition_set, outcome):
            context.instance.add_dynamic_partitions(partition_set, [outcome])
        return RunRequest(run_key=outcome, partition_key=outcome, tags={"quantos/session": outcome})

    return ScheduleDefinition(
        name=f"{spec.pipeline_id}__{schedule.calendar.lower()}_schedule".replace("-", "_").replace("/", "_"),
        job=pipeline.job,
        cron_schedule=cron_strings(schedule),
        execution_timezone=schedule_timezone(schedule),
        execution_fn=evaluate,
        default_status=DefaultScheduleStatus.RUNNING,
        description=f"Each {schedule.calendar} session at {schedule.at} ({schedule_timezone(schedule)})"
        + (", catching up missed sessions" if schedule.catch_up else ", latest session only"),
    )
