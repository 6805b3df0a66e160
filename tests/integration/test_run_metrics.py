"""`quantos exporter`: scraped over HTTP and parsed with prometheus_client's own parser,
against a real instance holding a succeeded run with a retried step and a queued one."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import yaml
from dagster import (
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    materialize,
)
from dagster._core.remote_origin import (
    InProcessCodeLocationOrigin,
    RemoteJobOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.utils import make_new_run_id
from metrics_scrape import scrape
from profiles import LOCAL

from quantos_assets.pipeline_assets import build_pipeline
from quantos_assets.spec_rules.firm import load_spec
from resources.profile import active_profile, build_resources

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _spec(tmp_path: Path) -> Path:
    spec = {
        "version": 1,
        "pipeline_id": "metrics_demo",
        "labels": {"team": "research"},
        "slo": {"retry": {"max_attempts": 2, "backoff_sec": 0}},
        "nodes": [
            {
                "id": "rows",
                "kind": "python_task",
                "params": {"entrypoint": "quantos_assets.tasks.noop:one_row"},
                "outs": ["rows"],
            },
            {
                "id": "flaky",
                "kind": "python_task",
                "ins": ["rows"],
                "outs": ["checked"],
                "params": {
                    "entrypoint": "quantos_assets.tasks.control:fail_once",
                    "marker": str(tmp_path / "marker"),
                },
            },
        ],
    }
    path = tmp_path / "metrics_demo.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_exporter_reports_runs_queue_steps_and_retries(data_dir: Path, tmp_path: Path) -> None:
    pipeline = build_pipeline(load_spec(_spec(tmp_path)), LOCAL)
    instance = DagsterInstance.get()
    resources = build_resources(active_profile())
    tags = {"quantos/team": "research", "quantos/pipeline_id": "metrics_demo"}
    assert materialize(pipeline.assets, instance=instance, resources=resources, tags=tags).success
    # A run waiting in the queue, as the QueuedRunCoordinator stores one (origin included).
    origin = RemoteJobOrigin(
        RemoteRepositoryOrigin(
            InProcessCodeLocationOrigin(
                LoadableTargetOrigin(module_name="definitions.definitions")
            ),
            "__repository__",
        ),
        "metrics_demo",
    )
    queued = instance.add_run(
        DagsterRun(
            job_name="metrics_demo",
            run_id=make_new_run_id(),
            status=DagsterRunStatus.QUEUED,
            tags=tags,
            remote_job_origin=origin,
        )
    )
    stored = instance.get_run_by_id(queued.run_id)
    assert stored is not None and stored.status == DagsterRunStatus.QUEUED

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "quantos_assets.apps.cli.main", "exporter", "--port", str(port)],
        cwd=REPO,
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        metrics = scrape(f"http://127.0.0.1:{port}/metrics")
    finally:
        proc.kill()
        proc.wait(timeout=10)

    runs = {
        (s.labels["status"], s.labels["pipeline"], s.labels["team"]): s.value
        for s in metrics["quantos_runs"]
    }
    assert runs[("SUCCESS", "metrics_demo", "research")] == 1
    assert runs[("QUEUED", "metrics_demo", "research")] == 1
    assert [s.value for s in metrics["quantos_queue_depth"]] == [1]
    waits = {
        s.name: s.value
        for s in metrics["quantos_queue_wait_seconds"]
        if s.labels.get("pipeline") == "metrics_demo"
    }
    assert waits["quantos_queue_wait_seconds_count"] == 1  # the queued run has not started
    steps = {
        (s.name, s.labels["node"]): s.value
        for s in metrics["quantos_step_duration_seconds"]
        if s.name.endswith("_count")
    }
    assert steps == {
        ("quantos_step_duration_seconds_count", "rows"): 1,
        ("quantos_step_duration_seconds_count", "flaky"): 1,
    }
    retries = {
        s.labels["node"]: s.value
        for s in metrics["quantos_step_retries"]
        if s.name == "quantos_step_retries_total"
    }
    assert retries == {"flaky": 1}
