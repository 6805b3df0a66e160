"""The production run queue and run monitoring on PostgreSQL.

The instance is deploy/dagster.prod.yaml with two changes, because there is no cluster (or S3)
here: runs are launched as local processes (DefaultRunLauncher) instead of Kubernetes Jobs, and
their compute logs stay local (the S3 upload: test_compute_logs_s3.py).
Queue, limits and storage are the production ones; the daemon's real dequeue loop launches the
runs through a real code server, and the runs really execute and take time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
from dagster._core.storage.dagster_run import IN_PROGRESS_RUN_STATUSES
from postgres_db import PG_URL, fresh_database

REPO = Path(__file__).resolve().parents[2]
TEAM_LIMIT = 2

# In-process executors: the queue and run monitoring act on runs, not steps, and a step
# process per run (the default multiprocess executor) doubled this file's CPU time.
JOB_FILE = """
import time
from dagster import Definitions, in_process_executor, job, op

@op
def hold():
    time.sleep(2)

@job(executor_def=in_process_executor)
def hold_job():
    hold()

@op
def overrun():
    time.sleep(120)

@job(executor_def=in_process_executor)
def slow_job():
    overrun()

defs = Definitions(jobs=[hold_job, slow_job])
"""


@pytest.fixture
def pg_url():
    with fresh_database("quantos_queue_test") as db:
        yield PG_URL.format(db=db)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def prod_queue(pg_url, tmp_path, monkeypatch):
    """The prod instance (launcher swapped) and a code server of our own serving the probe jobs.

    The server is started here, in its own process group, rather than managed by Dagster's
    workspace: run workers are its children, and a managed server outlived the test (it does
    not exit on SIGTERM), so the group is killed at teardown.
    """
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import GrpcServerTarget
    from dagster._grpc.client import DagsterGrpcClient

    home = tmp_path / "home"
    home.mkdir()
    config = yaml.safe_load((REPO / "deploy" / "dagster.prod.yaml").read_text())
    config["run_launcher"] = {"module": "dagster", "class": "DefaultRunLauncher"}
    del config["compute_logs"]
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("QUANTOS_DAGSTER_PG_URL", pg_url)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    job_file = tmp_path / "hold_defs.py"
    job_file.write_text(JOB_FILE)
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dagster",
            "api",
            "grpc",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-f",
            str(job_file),
            "-d",
            str(tmp_path),
            "--location-name",
            "queue_probe",
        ],
        env={**os.environ},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    instance = DagsterInstance.from_config(str(home))
    try:
        client = DagsterGrpcClient(port=port, host="127.0.0.1")
        deadline = time.monotonic() + 60
        while True:
            try:
                client.ping("ready")
                break
            except Exception:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.3)
        target = GrpcServerTarget(
            host="127.0.0.1", port=port, socket=None, location_name="queue_probe"
        )
        with WorkspaceProcessContext(instance, target) as ctx:
            yield instance, ctx
    finally:
        instance.dispose()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)


def _submit(instance, ctx, job_name: str, tags: dict[str, str]) -> str:
    from dagster._cli.job import _create_run

    workspace = ctx.create_request_context()
    location = workspace.get_code_location("queue_probe")
    repo = next(iter(location.get_repositories().values()))
    run = _create_run(
        instance=instance,
        code_location=location,
        remote_repo=repo,
        remote_job=repo.get_full_job(job_name),
        run_config={},
        tags=tags,
        op_selection=None,
        run_id=None,
    )
    instance.submit_run(run.run_id, workspace)
    return run.run_id


def test_team_limit_holds_while_runs_are_queued(prod_queue) -> None:
    from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import (
        QueuedRunCoordinatorDaemon,
    )

    instance, ctx = prod_queue
    # Twice research's limit: two of its runs wait in the queue while two run (a third wave
    # proved nothing more and cost two run processes); execution's two run beside them.
    for team, count in (("research", 2 * TEAM_LIMIT), ("execution", TEAM_LIMIT)):
        for _ in range(count):
            _submit(instance, ctx, "hold_job", {"quantos/team": team})
    submitted = 3 * TEAM_LIMIT
    assert instance.get_runs_count(RunsFilter(statuses=[DagsterRunStatus.QUEUED])) == submitted

    daemon = QueuedRunCoordinatorDaemon(interval_seconds=1)
    peak = {"research": 0, "execution": 0}
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        list(daemon.run_iteration(ctx))
        for team in ("research", "execution"):
            running = instance.get_runs_count(
                RunsFilter(statuses=list(IN_PROGRESS_RUN_STATUSES), tags={"quantos/team": team})
            )
            peak[team] = max(peak[team], running)
            assert running <= TEAM_LIMIT, f"{team}: {running} runs in progress"
        done = instance.get_runs_count(
            RunsFilter(statuses=[DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE])
        )
        if done == submitted:
            break
        time.sleep(0.3)
    statuses = {r.run_id: r.status for r in instance.get_runs()}
    assert all(s == DagsterRunStatus.SUCCESS for s in statuses.values()), statuses
    # the limit was reached (so it was what held the others back) and never exceeded
    assert peak == {"research": TEAM_LIMIT, "execution": TEAM_LIMIT}


STOPPED = (DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)


def test_run_monitoring_fails_a_run_past_the_specs_max_runtime(prod_queue) -> None:
    import logging

    from dagster._daemon.monitoring.run_monitoring import execute_run_monitoring_iteration
    from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import (
        QueuedRunCoordinatorDaemon,
    )

    from quantos_assets.run_tags import spec_run_tags
    from quantos_assets.spec_rules.firm import load_spec

    instance, ctx = prod_queue
    spec = load_spec(REPO / "specs" / "seed_bt_xs_bilstm_v1.yaml").spec
    spec = spec.model_copy(update={"slo": spec.slo.model_copy(update={"max_runtime": 2.0})})
    tags = spec_run_tags(spec)
    assert tags["dagster/max_runtime"] == "2"
    run_id = _submit(instance, ctx, "slow_job", {**tags, "quantos/team": "research"})
    daemon = QueuedRunCoordinatorDaemon(interval_seconds=1)
    log = logging.getLogger("test_run_monitoring")
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        list(daemon.run_iteration(ctx))
        list(execute_run_monitoring_iteration(ctx, log))
        if instance.get_run_by_id(run_id).status in STOPPED:
            break
        time.sleep(0.5)
    run = instance.get_run_by_id(run_id)
    # The monitor reports the run failed once its launcher terminated it; on a loaded machine
    # the run worker's own RUN_CANCELED (for the termination it received) can land after that
    # and have the last word. Either way the run was stopped by its max_runtime.
    assert run.status in STOPPED, run.status
    record = instance.get_run_record_by_id(run_id)
    assert record.end_time - record.start_time < 60  # the 120 s op was cut short
    messages = [e.message for e in instance.all_logs(run_id) if e.message]
    assert any("maximum runtime of 2 seconds" in m for m in messages), messages[-5:]
