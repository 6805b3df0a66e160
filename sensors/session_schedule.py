"""A spec's `schedule` block as a Dagster schedule that fires once per exchange session.

Dagster schedules are cron-driven and cron cannot skip exchange holidays or
follow an early close. So the cron here is every distinct local fire time of
the calendar (e.g. 16:30 and 13:30 for XNYS close+30m), on trading weekdays;
each tick is looked up in the session table and skipped unless it is exactly
some session's fire time. The run targets that session's partition.

Missed ticks (daemon down) are skipped unless `catch_up: true`: a tick whose
next fire time has already passed is stale, like seed 002's LatestOnlyOperator.
With `catch_up: true` the tick also runs the sessions missed since the schedule's
last run: Dagster's scheduler evaluates only the latest missed execution time of a
schedule without a partition set (ours have none: the cron is not the partitioning),
so the earlier ones are added here, at most MAX_CATCH_UP_SESSIONS of them.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from dagster import (
    DagsterInstance,
    DefaultScheduleStatus,
    RunRequest,
    RunsFilter,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
)

from quantos_assets.calendars.partitions import partitions_name
from quantos_assets.calendars.ticks import schedule_table, schedule_timezone
from quantos_assets.pipeline_assets import PipelineDefs
from quantos_assets.spec.derived_names import schedule_name
from quantos_assets.spec.models import Schedule
from resources.run_tag_keys import TAG_SESSION

Clock = Callable[[], datetime]
_NS = 1_000_000_000
SCHEDULE_NAME_TAG = "dagster/schedule_name"  # Dagster's tag on every run a schedule launches
MAX_CATCH_UP_SESSIONS = 20  # older missed sessions are a backfill, not a tick


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
    for hour, minute, weekday in zip(local.hour, local.minute, local.weekday, strict=True):
        days.setdefault((int(hour), int(minute)), set()).add((int(weekday) + 1) % 7)
    return [
        f"{minute} {hour} * * {','.join(str(d) for d in sorted(dows))}"
        for (hour, minute), dows in sorted(days.items())
    ]


def _index_of_second(instants: tuple[int, ...], second: int) -> int | None:
    """The table index of the fire time in that epoch second. A bisect, not a dict cached
    on the table: an lru_cache keyed by the table hashed its ~9,500 entries at every tick."""
    index = bisect_left(instants, second * _NS)
    return index if index < len(instants) and instants[index] // _NS == second else None


def session_for_tick(
    schedule: Schedule, when: datetime, now: datetime | None = None
) -> str | SkipReason:
    """The partition key this tick should run, or why it is skipped."""
    instants, keys = schedule_table(schedule)
    index = _index_of_second(instants, int(when.timestamp()))
    if index is None:
        return SkipReason(
            f"{when.isoformat()} is not a session fire time of {schedule.calendar} {schedule.at}"
        )
    if not schedule.catch_up and now is not None and index + 1 < len(instants):
        following = instants[index + 1] // _NS
        if following <= now.timestamp():
            return SkipReason(
                f"stale tick for session {keys[index]}: a later session's fire time has already "
                "passed (set schedule.catch_up: true to run missed sessions)"
            )
    return keys[index]


def missed_sessions(
    schedule: Schedule, session: str, last_run: str | None, now: datetime
) -> list[str]:
    """Sessions after `last_run` (the schedule's latest run) and before `session` whose fire
    time has passed: what a daemon outage skipped. None without an earlier run, so turning a
    schedule on never runs the sessions before it (as Dagster never runs such ticks)."""
    if last_run is None:
        return []
    instants, keys = schedule_table(schedule)
    missed = [
        key
        for key, ns in zip(keys, instants, strict=True)
        if last_run < key < session and ns // _NS <= now.timestamp()
    ]
    return missed[-MAX_CATCH_UP_SESSIONS:]


def last_scheduled_session(instance: DagsterInstance, schedule_name: str) -> str | None:
    """The latest session a run of this schedule was launched for (keys sort as dates)."""
    runs = instance.get_runs(RunsFilter(tags={SCHEDULE_NAME_TAG: schedule_name}), limit=100)
    sessions = [r.tags[TAG_SESSION] for r in runs if TAG_SESSION in r.tags]
    return max(sessions, default=None)


def build_session_schedule(pipeline: PipelineDefs, clock: Clock = _utc_now) -> ScheduleDefinition:
    spec = pipeline.spec
    schedule = spec.schedule
    assert schedule is not None
    partition_set = partitions_name(spec) if spec.partitions is not None else None
    name = schedule_name(spec.pipeline_id, schedule.calendar)

    def evaluate(context: ScheduleEvaluationContext) -> Iterator[SkipReason | RunRequest]:
        # A generator: Dagster takes several run requests from a schedule only that way.
        now = clock()
        outcome = session_for_tick(schedule, context.scheduled_execution_time, now)
        if isinstance(outcome, SkipReason):
            yield outcome
            return
        sessions = [outcome]
        if schedule.catch_up:
            sessions = (
                missed_sessions(
                    schedule, outcome, last_scheduled_session(context.instance, name), now
                )
                + sessions
            )
        if partition_set is None:
            yield from (RunRequest(run_key=key, tags={TAG_SESSION: key}) for key in sessions)
            return
        # The tick registers its own sessions, so it never waits for the sync sensor.
        new = [
            key
            for key in sessions
            if not context.instance.has_dynamic_partition(partition_set, key)
        ]
        if new:
            context.instance.add_dynamic_partitions(partition_set, new)
        yield from (
            RunRequest(run_key=key, partition_key=key, tags={TAG_SESSION: key}) for key in sessions
        )

    return ScheduleDefinition(
        name=name,
        job=pipeline.job,
        cron_schedule=cron_strings(schedule),
        execution_timezone=schedule_timezone(schedule),
        execution_fn=evaluate,
        default_status=DefaultScheduleStatus.RUNNING,
        description=(
            f"Each {schedule.calendar} session at {schedule.at} ({schedule_timezone(schedule)})"
        )
        + (", catching up missed sessions" if schedule.catch_up else ", latest session only"),
    )
