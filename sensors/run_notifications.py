"""Run notifications in the words operators already read (seed 002):

    nightly_dataload.ingest_fundamentals [2018-05-14] has retried (1/2 attempts).
    nightly_dataload.ingest_fundamentals [2018-05-14] has failed!
    nightly_dataload.daily_fundamentals [2018-05-14] is complete.

One line per node (a node is one step) with a link to the run. "Retried" is a *step* retry
under the spec's `slo.retry` (Dagster's STEP_UP_FOR_RETRY), n of m counting
`slo.retry.max_attempts`; run-level re-executions are new runs and are not announced here.

`quantos_step_notifications` follows each active or just-finished run's event log from its
own position (the cursor), so a retry is announced while the run is still going, as in the
seed; a delivery failure stops the tick at that event and the next tick resends from there
(at least once).
`quantos_run_failure_notifications` (a run_failure_sensor) covers runs that fail with no
failed step: a launch error, or run monitoring cancelling a run past `slo.max_runtime`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from dagster import (
    DagsterEventType,
    DagsterRun,
    DefaultSensorStatus,
    RunsFilter,
    SensorDefinition,
    SensorResult,
    run_failure_sensor,
    sensor,
)

from quantos_assets.pipeline_assets import PipelineDefs
from quantos_assets.spec.derived_names import RUN_FAILURE_SENSOR, STEP_NOTIFICATIONS_SENSOR
from quantos_assets.spec.models import DagSpec
from resources.notifier import Notification, Notifier, NotifyError, NotifySettings
from sensors.run_event_cursor import ACTIVE, RunEventCursor, storage_position

STEP_EVENTS = (
    DagsterEventType.STEP_UP_FOR_RETRY,
    DagsterEventType.STEP_FAILURE,
    DagsterEventType.STEP_SUCCESS,
)
PARTITION_TAG = "dagster/partition"


def _subject(pipeline: str, node: str | None, partition: str | None) -> str:
    name = f"{pipeline}.{node}" if node else pipeline
    return f"{name} [{partition}]" if partition else name


def step_notification(
    event_type: DagsterEventType,
    spec: DagSpec,
    step_key: str,
    run: DagsterRun,
    settings: NotifySettings,
    attempt: int | None = None,
) -> Notification:
    pid = spec.pipeline_id
    node = step_key.removeprefix(f"{pid}__")
    partition = run.tags.get(PARTITION_TAG)
    subject = _subject(pid, node, partition)
    max_attempts = spec.slo.retry.max_attempts
    if event_type == DagsterEventType.STEP_UP_FOR_RETRY:
        text, kind = f"{subject} has retried ({attempt}/{max_attempts} attempts).", "retried"
    elif event_type == DagsterEventType.STEP_FAILURE:
        text, kind = f"{subject} has failed!", "failed"
    else:
        text, kind = f"{subject} is complete.", "complete"
    return Notification(
        text=text,
        event=kind,
        pipeline=pid,
        node=node,
        partition=partition,
        run_id=run.run_id,
        run_url=settings.run_url(run.run_id),
        attempt=attempt,
        max_attempts=max_attempts if kind == "retried" else None,
    )


def _retry_number(instance: Any, run_id: str, step_key: str, storage_id: int) -> int:
    records = instance.get_records_for_run(
        run_id, of_type=DagsterEventType.STEP_UP_FOR_RETRY
    ).records
    return sum(
        1 for r in records if r.storage_id <= storage_id and r.event_log_entry.step_key == step_key
    )


def evaluate_step_notifications(
    instance: Any,
    cursor: str | None,
    specs: Mapping[str, DagSpec],
    settings: NotifySettings,
    now: float | None = None,
) -> SensorResult:
    now = time.time() if now is None else now
    if cursor is None:
        # First tick: announce what happens from now on, not the instance's history.
        state = RunEventCursor(since=now)
        for run in instance.get_runs(RunsFilter(statuses=ACTIVE)):
            if run.job_name in specs:
                last = instance.get_records_for_run(run.run_id, limit=1, ascending=False).records
                state.hold(run.run_id, storage_position(last[0].storage_id) if last else None)
        return SensorResult(
            skip_reason="notifications start from the next event", cursor=state.dump()
        )
    state = RunEventCursor.parse(cursor)
    notifier = Notifier(settings)
    sent = 0
    for run in state.runs_to_follow(instance, lambda r: r.job_name in specs):
        if state.is_done(run.run_id):
            continue
        position = state.position(run.run_id)
        spec = specs[run.job_name]
        conn = instance.get_records_for_run(run.run_id, cursor=position, of_type=set(STEP_EVENTS))
        for record in conn.records:
            event = record.event_log_entry.dagster_event
            if event is None or not event.step_key:
                continue
            attempt = None
            if event.event_type == DagsterEventType.STEP_UP_FOR_RETRY:
                attempt = _retry_number(instance, run.run_id, event.step_key, record.storage_id)
            try:
                notifier.send(
                    step_notification(
                        event.event_type, spec, event.step_key, run, settings, attempt
                    )
                )
            except NotifyError as err:
                state.hold(run.run_id, position)
                return SensorResult(
                    skip_reason=f"notification not delivered, will resend: {err}",
                    cursor=state.dump(),
                )
            sent += 1
            position = storage_position(record.storage_id)
        state.advance(run, position, now)
    return SensorResult(skip_reason=f"{sent} notification(s) sent", cursor=state.close_tick(now))


def build_run_notifications(
    pipelines: list[PipelineDefs], settings: NotifySettings
) -> list[SensorDefinition]:
    """The notification sensors, or none when no target is configured."""
    if not settings.enabled or not pipelines:
        return []
    specs = {p.spec.pipeline_id: p.spec for p in pipelines}

    @sensor(
        name=STEP_NOTIFICATIONS_SENSOR,
        minimum_interval_seconds=15,
        default_status=DefaultSensorStatus.RUNNING,
        description="Announces each node's retry, failure and completion (Slack / webhook).",
    )
    def quantos_step_notifications(context):  # context unannotated: see [tool.mypy]
        return evaluate_step_notifications(context.instance, context.cursor, specs, settings)

    @run_failure_sensor(
        name=RUN_FAILURE_SENSOR,
        monitored_jobs=[p.job for p in pipelines],
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            "Announces runs that failed without a failed node (launch errors, max_runtime)."
        ),
    )
    def quantos_run_failure_notifications(context):  # context unannotated: see [tool.mypy]
        if context.get_step_failure_events():
            return  # each failed node was announced by quantos_step_notifications
        run = context.dagster_run
        spec = specs.get(run.job_name)
        if spec is None:
            return
        Notifier(settings).send(run_failure_notification(spec, run, settings))

    return [quantos_step_notifications, quantos_run_failure_notifications]


def run_failure_notification(
    spec: DagSpec, run: DagsterRun, settings: NotifySettings
) -> Notification:
    partition = run.tags.get(PARTITION_TAG)
    return Notification(
        text=f"{_subject(spec.pipeline_id, None, partition)} has failed!",
        event="failed",
        pipeline=spec.pipeline_id,
        node=None,
        partition=partition,
        run_id=run.run_id,
        run_url=settings.run_url(run.run_id),
    )
