"""The production run queue on PostgreSQL: at most 2 runs of a team in progress.

The instance is deploy/dagster.prod.yaml with one change: runs are launched as local
processes (DefaultRunLauncher) instead of Kubernetes Jobs, because there is no cluster here.
Queue, limits and storage are the production ones; the daemon's real dequeue loop launches the
runs through a real code server, and the runs really execute and take time.
"""
from __future__ import annotations

import time
import uuid
from pathlib import Path

import psycopg2
import pytest
import yaml
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
from dagster._core.storage.dagster_run import IN_PROGRESS_RUN_STATUSES

REPO = Path(__file__).resolve().parents[2]
TEAM_LIMIT = 2

JOB_FILE = '''
import time
from dagster import Definitions, job, op

@op
def hold():
    time.sleep(2)

@job
def hold_job():
    hold()

defs = Definitions(jobs=[hold_job])
'''


def _admin():
    conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    conn.autocommit = True
    return conn


@pytest.fixture
def pg_url():
    db = f"quantos_queue_test_{uuid.uuid4().hex[:10]}"
    conn = _admin()
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{db}"')
    conn.close()
    yield f"postgresql+psycopg2://postgres@127.0.0.1:5432/{db}"
    conn = _admin()
    with conn.cursor() as cur:
        cur.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (db,),
        )
        cur.execute(f'DROP DATABASE IF EXISTS "{db}"')
    conn.close()


def test_team_limit_holds_while_runs_are_queued(pg_url, tmp_path, monkeypatch) -> None:
    from dagster._cli.job import _create_run
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import PythonFileTarget
    from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import (
        QueuedRunCoordinatorDaemon,
    )

    home = tmp_path / "home"
    home.mkdir()
    config = yaml.safe_load((REPO / "deploy" / "dagster.prod.yaml").read_text())
    config["run_launcher"] = {"module": "dagster", "class": "DefaultRunLauncher"}
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("QUANTOS_DAGSTER_PG_URL", pg_url)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    job_file = tmp_path / "hold_defs.py"
    job_file.write_text(JOB_FILE)

    instance = DagsterInstance.from_config(str(home))
    target = PythonFileTarget(
        python_file=str(job_file), attribute=None, working_directory=str(tmp_path), location_name="queue_probe"
    )
    with WorkspaceProcessContext(instance, target) as ctx:
        workspace = ctx.create_request_context()
        location = workspace.get_code_location("queue_probe")
        repo = next(iter(location.get_repositories().values()))
        remote_job = repo.get_full_job("hold_job")
        run_ids = {"research": [], "execution": []}
        for team, count in (("research", 6), ("execution", 2)):
            for _ in range(count):
                run = _create_run(
                    instance=instance,
                    code_location=location,
                    remote_repo=repo,
                    remote_job=remote_job,
                    run_config={},
                    tags={"quantos/team": team},
                    op_selection=None,
                    run_id=None,
                )
                instance.submit_run(run.run_id, workspace)
                run_ids[team].append(run.run_id)
        queued = instance.get_runs_count(RunsFilter(statuses=[DagsterRunStatus.QUEUED]))
        assert queued == 8

        daemon = QueuedRunCoordinatorDaemon(interval_seconds=1)
        peak = {"research": 0, "execution": 0}
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            list(daemon.run_iteration(ctx))
            for team in peak:
                running = instance.get_runs_count(
                    RunsFilter(statuses=list(IN_PROGRESS_RUN_STATUSES), tags={"quantos/team": team})
                )
                peak[team] = max(peak[team], running)
                assert running <= TEAM_LIMIT, f"{team}: {running} runs in progress"
            done = instance.get_runs_count(RunsFilter(statuses=[DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE]))
            if done == 8:
                break
            time.sleep(0.3)
    statuses = {r.run_id: r.status for r in instance.get_runs()}
    instance.dispose()
    assert all(s == DagsterRunStatus.SUCCESS for s in statuses.values()), statuses
    # the limit was reached (so it was what held the others back) and never exceeded
    assert peak == {"research": TEAM_LIMIT, "execution": TEAM_LIMIT}
