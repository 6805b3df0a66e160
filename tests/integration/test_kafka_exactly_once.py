"""Exactly once across crashes: the real sensor daemon loop (Dagster's execute_sensor_iteration)
on a real DagsterInstance, the code location built from a specs directory, the mock Kafka
broker. The daemon process is SIGKILLed at Dagster's own crash points (after the first run
of a tick is created; after the tick's run requests and cursor are recorded, before the
next tick commits the offsets), restarted, and the sensor cursor is even thrown away once:
every submission still ends up as exactly one run and the group's offsets reach the end."""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance
from dagster._core.scheduler.instigation import SensorInstigatorData
from kafka_broker import MockKafka

from sensors.kafka_submissions import SENSOR_NAME

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2030, 1, 2, 9, 0, tzinfo=UTC).timestamp()
TOPIC, GROUP = "orch.jobs", "quantos-orchestrator"
SPEC = """\
version: 1
pipeline_id: xs_signal
nodes:
  - id: features
    kind: trino_sql
    params: {sql: "select 1 as x"}
    outs: [feature_table]
"""


def daemon_iteration(instance_ref: Any, when: float, crash_at: str | None = None) -> None:
    """One pass of the sensor daemon over the code location, at time `when`."""
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.test_utils import create_test_daemon_workspace_context, freeze_time
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
    from dagster._daemon import get_default_daemon_logger
    from dagster._daemon.sensor import execute_sensor_iteration

    origin = InProcessCodeLocationOrigin(
        loadable_target_origin=LoadableTargetOrigin(
            module_name="definitions.definitions",
            attribute="defs",
            working_directory=str(REPO),
        ),
        location_name="quantos",
    )
    flags = {SENSOR_NAME: {crash_at: signal.SIGKILL}} if crash_at else None
    with (
        DagsterInstance.from_ref(instance_ref) as instance,
        freeze_time(when),
        create_test_daemon_workspace_context(InProcessWorkspaceLoadTarget(origin), instance) as ctx,
    ):
        list(
            execute_sensor_iteration(
                ctx, get_default_daemon_logger("SensorDaemon"), None, None, debug_crash_flags=flags
            )
        )


def _killed_iteration(instance: DagsterInstance, when: float, crash_at: str) -> None:
    process = multiprocessing.get_context("spawn").Process(
        target=daemon_iteration, args=(instance.get_ref(), when, crash_at)
    )
    process.start()
    process.join(timeout=120)
    assert process.exitcode == -signal.SIGKILL, f"daemon was not killed at {crash_at}"


def _runs_by_submission(instance: DagsterInstance) -> Counter[str | None]:
    return Counter(r.tags.get("quantos/submission_id") for r in instance.get_runs())


def _submissions(first: int, count: int) -> list[dict[str, Any]]:
    return [
        {"spec_ref": "xs_signal", "runtime_params": {"submission_id": f"sub-{n:03d}"}}
        for n in range(first, first + count)
    ]


def test_each_submission_runs_exactly_once_across_daemon_kills(
    kafka_broker: MockKafka, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    specs = data_dir / "specs"
    specs.mkdir()
    (specs / "xs_signal.yaml").write_text(SPEC)
    home = Path(os.environ["DAGSTER_HOME"])
    # Queued runs stay queued: this test is about what gets recorded, not executed.
    (home / "dagster.yaml").write_text(
        "telemetry: {enabled: false}\n"
        "run_coordinator: {module: dagster._core.run_coordinator, class: QueuedRunCoordinator}\n"
    )
    monkeypatch.setenv("QUANTOS_SPECS_DIR", str(specs))
    monkeypatch.setenv("QUANTOS_KAFKA_BOOTSTRAP", kafka_broker.bootstrap)
    monkeypatch.setenv("QUANTOS_KAFKA_TIMEOUT_S", "3")

    kafka_broker.produce(TOPIC, [*_submissions(0, 6), b"{broken"])
    with DagsterInstance.get() as instance:
        # Killed right after the first run of the tick was created.
        _killed_iteration(instance, T0, "RUN_CREATED")
        assert sum(_runs_by_submission(instance).values()) == 1
        assert all(o < 0 for o in kafka_broker.committed(TOPIC, GROUP).values())

        daemon_iteration(instance.get_ref(), T0 + 60)  # restarted: the tick resumes
        assert _runs_by_submission(instance) == {f"sub-{n:03d}": 1 for n in range(6)}

        # Killed after the next tick's requests and cursor were recorded (that tick committed
        # the first batch's offsets), before any later tick commits the second batch's.
        kafka_broker.produce(TOPIC, _submissions(6, 3))
        _killed_iteration(instance, T0 + 120, "RUN_IDS_RESERVED")
        daemon_iteration(instance.get_ref(), T0 + 180)
        assert _runs_by_submission(instance) == {f"sub-{n:03d}": 1 for n in range(9)}

        # The sensor's cursor is lost before it could commit the second batch: the next tick
        # reads those messages again and Dagster's run-key check drops them.
        [state] = [s for s in instance.all_instigator_state() if s.name == SENSOR_NAME]
        assert isinstance(state.instigator_data, SensorInstigatorData)
        instance.update_instigator_state(
            state.with_data(state.instigator_data._replace(cursor=None))
        )
        assert kafka_broker.committed(TOPIC, GROUP) != kafka_broker.end_offsets(TOPIC)
        daemon_iteration(instance.get_ref(), T0 + 240)
        daemon_iteration(instance.get_ref(), T0 + 300)
        assert _runs_by_submission(instance) == {f"sub-{n:03d}": 1 for n in range(9)}
        assert kafka_broker.committed(TOPIC, GROUP) == kafka_broker.end_offsets(TOPIC)

        runs = instance.get_runs()
        assert {r.job_name for r in runs} == {"xs_signal"}
        assert len({r.tags["dagster/run_key"] for r in runs}) == 9
    dead = kafka_broker.read_all(f"{TOPIC}.dlq")
    assert [m.value() for m in dead] == [b"{broken"]
