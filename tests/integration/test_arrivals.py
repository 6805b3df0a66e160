"""Data-arrival triggers (issue 21 point 3, seed 002): a vendor's file landing starts exactly one
run.

Against moto's S3 server on loopback, through the real sensor daemon loop (Dagster's
execute_sensor_iteration, the code location rebuilt from the specs directory at every
iteration) on a persistent DagsterInstance: the daemon is SIGKILLed in a tick once, and three
objects arriving across that restart give exactly three runs. Not `dagster dev`: it took
45 s to load this location here (2 shared cores), and each tick would wait for the daemon's
own loop; Dagster's daemon loop run in-process exercises the same run-key and cursor code.
Then a local landing directory, tick by tick through the sensor itself, and a run whose node
reads the object's URI.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from dagster import DagsterInstance, build_sensor_context
from moto_s3 import REGION, s3_server

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2030, 1, 2, 9, 0, tzinfo=UTC).timestamp()
SENSOR = "vendor_bars__arrivals"
SPEC = """\
version: 1
pipeline_id: vendor_bars
nodes:
  - id: load
    kind: python_task
    params: {{entrypoint: "quantos_assets.tasks.landed_file:landed"}}
    outs: [landed]
triggers:
  arrivals: {{uri: "{uri}"}}
"""


def daemon_iteration(instance_ref: Any, when: float, crash_at: str | None = None) -> None:
    """One pass of the sensor daemon over the code location (rebuilt: a restarted daemon
    loads it again), at time `when`."""
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.test_utils import create_test_daemon_workspace_context, freeze_time
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
    from dagster._daemon import get_default_daemon_logger
    from dagster._daemon.sensor import execute_sensor_iteration

    sys.modules.pop("definitions.definitions", None)
    origin = InProcessCodeLocationOrigin(
        loadable_target_origin=LoadableTargetOrigin(
            module_name="definitions.definitions", attribute="defs", working_directory=str(REPO)
        ),
        location_name="quantos",
    )
    flags = {SENSOR: {crash_at: signal.SIGKILL}} if crash_at else None
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
    sys.modules.pop("definitions.definitions", None)


def _killed_iteration(instance: DagsterInstance, when: float, crash_at: str) -> None:
    process = multiprocessing.get_context("spawn").Process(
        target=daemon_iteration, args=(instance.get_ref(), when, crash_at)
    )
    process.start()
    process.join(timeout=120)
    assert process.exitcode == -signal.SIGKILL, f"daemon was not killed at {crash_at}"


def _runs(instance: DagsterInstance, job: str = "vendor_bars") -> Counter[tuple[str, str]]:
    return Counter(
        (r.tags["quantos/arrival_uri"], r.tags["quantos/arrival_version"])
        for r in instance.get_runs()
        if r.job_name == job
    )


def _last_skip(instance: DagsterInstance) -> str | None:
    [state] = [s for s in instance.all_instigator_state() if s.name == SENSOR]
    [tick] = instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=1)
    return tick.skip_reason


@pytest.fixture
def location(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The specs directory of a code location without the dbt models; queued runs stay queued
    (this is about which runs are created, not executed)."""
    specs = data_dir / "specs"
    specs.mkdir()
    (Path(os.environ["DAGSTER_HOME"]) / "dagster.yaml").write_text(
        "telemetry: {enabled: false}\n"
        "run_coordinator: {module: dagster._core.run_coordinator, class: QueuedRunCoordinator}\n"
    )
    monkeypatch.setenv("QUANTOS_SPECS_DIR", str(specs))
    monkeypatch.setenv("QUANTOS_DBT", "off")
    return specs


def test_three_objects_across_a_daemon_restart_give_three_runs(
    location: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (location / "vendor_bars.yaml").write_text(SPEC.format(uri="s3://vendor/bars/*.csv"))
    # and a pipeline on the local landing directory, through the same restarts
    local = SPEC.format(uri="vendor/*.csv").replace("vendor_bars", "vendor_files")
    (location / "vendor_files.yaml").write_text(local)
    landing = location.parent / "landing" / "vendor"
    landing.mkdir(parents=True)
    with s3_server("vendor") as endpoint:
        monkeypatch.setenv("QUANTOS_S3_ENDPOINT", endpoint)
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
        s3.put_object(Bucket="vendor", Key="bars/2030-01-02.csv", Body=b"sym,px\nA,1\n")
        (landing / "2030-01-02.csv").write_text("sym,px\nA,1\n")
        s3.put_object(Bucket="vendor", Key="bars/readme.txt", Body=b"not a csv")
        s3.put_object(Bucket="vendor", Key="bars/old/2029.csv", Body=b"one level down")
        s3.put_object(Bucket="vendor", Key="other/2030-01-02.csv", Body=b"another prefix")
        with DagsterInstance.get() as instance:
            daemon_iteration(instance.get_ref(), T0)
            assert [uri for uri, _ in _runs(instance)] == ["s3://vendor/bars/2030-01-02.csv"]

            # The daemon is killed right after the second object's run was created...
            s3.put_object(Bucket="vendor", Key="bars/2030-01-03.csv", Body=b"sym,px\nA,2\n")
            (landing / "2030-01-03.csv").write_text("sym,px\nA,2\n")
            _killed_iteration(instance, T0 + 60, "RUN_CREATED")
            assert len(_runs(instance)) == 2
            # ... and restarted when a third has landed: the interrupted tick is finished
            # (Dagster's run-key check finds the second object's run: no other one), then the
            # next tick finds the third.
            s3.put_object(Bucket="vendor", Key="bars/2030-01-04.csv", Body=b"sym,px\nA,3\n")
            (landing / "2030-01-04.csv").write_text("sym,px\nA,3\n")
            daemon_iteration(instance.get_ref(), T0 + 120)
            assert len(_runs(instance)) == 2
            daemon_iteration(instance.get_ref(), T0 + 180)
            runs = _runs(instance)
            assert sorted(uri for uri, _ in runs) == [
                f"s3://vendor/bars/2030-01-0{d}.csv" for d in (2, 3, 4)
            ]
            assert set(runs.values()) == {1}
            etag = s3.head_object(Bucket="vendor", Key="bars/2030-01-03.csv")["ETag"].strip('"')
            assert ("s3://vendor/bars/2030-01-03.csv", etag) in runs
            # The local pipeline's sensor was or was not evaluated before the kill (the
            # daemon's order): either way each file ran once.
            files = _runs(instance, "vendor_files")
            assert sorted(uri for uri, _ in files) == [
                f"file://{landing}/2030-01-0{d}.csv" for d in (2, 3, 4)
            ]
            assert set(files.values()) == {1}

            # Listed again, unchanged: nothing starts.
            daemon_iteration(instance.get_ref(), T0 + 240)
            assert len(instance.get_runs()) == 6
            assert _last_skip(instance) == (
                "no new object matching s3://vendor/bars/*.csv (3 listed)"
            )

            # A new version of a key already run: one more run, for that version.
            s3.put_object(Bucket="vendor", Key="bars/2030-01-02.csv", Body=b"sym,px\nA,1.5\n")
            daemon_iteration(instance.get_ref(), T0 + 300)
            runs = _runs(instance)
            assert len(instance.get_runs()) == 7
            assert Counter(uri for uri, _ in runs)["s3://vendor/bars/2030-01-02.csv"] == 2
            [latest] = instance.get_runs(limit=1)
            assert latest.job_name == "vendor_bars"
            assert latest.tags["dagster/run_key"] == (
                f"s3://vendor/bars/2030-01-02.csv@{latest.tags['quantos/arrival_version']}"
            )


def _sensor(uri: str, profile_env: dict[str, str]):
    from profiles import SUITE_TEAMS

    from quantos_assets.pipeline_assets import build_pipeline
    from quantos_assets.spec_rules.firm import load_spec_text
    from resources.profile import active_profile
    from sensors.arrivals import build_arrival_sensors

    profile = active_profile(
        {"QUANTOS_ENV": "local", "QUANTOS_TEAMS": str(SUITE_TEAMS), **profile_env}
    )
    loaded = load_spec_text(SPEC.format(uri=uri), "vendor_bars.yaml", "yaml")
    [sensor] = build_arrival_sensors(build_pipeline(loaded, profile), profile)
    return sensor


def test_an_unreachable_bucket_is_a_skip_reason_naming_it() -> None:
    with s3_server("vendor") as endpoint:
        missing = _sensor("s3://no-such-bucket/bars/*.csv", {"QUANTOS_S3_ENDPOINT": endpoint})
        result = missing.evaluate_tick(build_sensor_context())
        assert not result.run_requests
        assert result.skip_message.startswith(
            "s3://no-such-bucket: cannot list: NoSuchBucket (The specified bucket does not exist"
        )
        assert "\n" not in result.skip_message
    # the server is gone: nothing answers on its port (an endpoint's password is not shown)
    with_password = endpoint.replace("http://", "http://user:s3cret@")
    down = _sensor("s3://vendor/bars/*.csv", {"QUANTOS_S3_ENDPOINT": with_password})
    result = down.evaluate_tick(build_sensor_context())
    assert not result.run_requests
    assert result.skip_message.startswith("s3://vendor: cannot list: Could not connect to ")
    assert "s3cret" not in result.skip_message and "\n" not in result.skip_message
    # a malformed endpoint is a skip reason too, never a traceback
    broken = _sensor("s3://vendor/bars/*.csv", {"QUANTOS_S3_ENDPOINT": "not a url"})
    message = broken.evaluate_tick(build_sensor_context()).skip_message
    assert message.startswith("s3://vendor: cannot list: Invalid endpoint: not a url")


def test_a_landing_directory_runs_each_new_file_version_once(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    vendor = landing / "vendor"
    vendor.mkdir(parents=True)
    (tmp_path / "secret.csv").write_text("outside the landing root")
    (vendor / "escape.csv").symlink_to(tmp_path / "secret.csv")
    (vendor / ".2030-01-03.csv.part").write_text("still being written")
    (vendor / "2030-01-02.csv").write_text("sym,px\nA,1\n")
    (vendor / "2030-01-03.csv").write_text("sym,px\nA,2\n")
    sensor = _sensor("vendor/*.csv", {"QUANTOS_LANDING_DIR": str(landing)})
    assert sensor.name == SENSOR

    first = sensor.evaluate_tick(build_sensor_context())
    assert sorted(r.tags["quantos/arrival_uri"] for r in first.run_requests) == [
        f"file://{vendor}/2030-01-02.csv",
        f"file://{vendor}/2030-01-03.csv",
    ]
    again = sensor.evaluate_tick(build_sensor_context(cursor=first.cursor))
    assert not again.run_requests
    assert again.skip_message == f"no new object matching file://{landing}/vendor/*.csv (2 listed)"

    (vendor / "2030-01-04.csv").write_text("sym,px\nA,3\n")
    (vendor / "2030-01-02.csv").write_text("sym,px\nA,1.5\n")  # a new version
    third = sensor.evaluate_tick(build_sensor_context(cursor=again.cursor))
    stat = (vendor / "2030-01-02.csv").stat()
    assert [r.tags["quantos/arrival_uri"] for r in third.run_requests] == [
        f"file://{vendor}/2030-01-02.csv",
        f"file://{vendor}/2030-01-04.csv",
    ]
    assert third.run_requests[0].run_key == (
        f"file://{vendor}/2030-01-02.csv@{stat.st_mtime_ns}-{stat.st_size}"
    )
    assert not sensor.evaluate_tick(build_sensor_context(cursor=third.cursor)).run_requests


def test_a_glob_outside_the_landing_root_is_refused(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.csv").write_text("x")
    sensor = _sensor(f"file://{tmp_path}/other/*.csv", {"QUANTOS_LANDING_DIR": str(landing)})
    result = sensor.evaluate_tick(build_sensor_context())
    assert not result.run_requests
    assert result.skip_message == (
        f"file://{tmp_path}/other/*.csv is outside the landing root {landing} (QUANTOS_LANDING_DIR)"
    )


def test_every_node_of_the_run_sees_the_object(data_dir: Path, tmp_path: Path) -> None:
    """The run request's tags, run as the daemon would launch it: the python_task reads the
    Pipes extra `arrival`, a SQL node binds `:arrival_uri`."""
    from profiles import SUITE_TEAMS
    from pyiceberg.catalog.sql import SqlCatalog

    from definitions.assemble import definitions_for
    from quantos_assets.pipeline_assets import build_pipeline
    from quantos_assets.spec_rules.firm import load_spec_text
    from resources.profile import active_profile
    from sensors.arrivals import build_arrival_sensors

    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "bars.csv").write_text("sym,px\nA,1\n")
    profile = active_profile(
        {
            "QUANTOS_ENV": "local",
            "QUANTOS_TEAMS": str(SUITE_TEAMS),
            "QUANTOS_DATA_DIR": str(data_dir),
            "QUANTOS_LANDING_DIR": str(landing),
            "QUANTOS_DBT": "off",
        }
    )
    spec = SPEC.format(uri="*.csv").replace(
        "triggers:",
        "  - id: echo\n    kind: trino_sql\n"
        '    params: {sql: "select :arrival_uri as uri, :arrival_version as version"}\n'
        "    outs: [echoed]\n"
        "triggers:",
    )
    pipeline = build_pipeline(load_spec_text(spec, "vendor_bars.yaml", "yaml"), profile)
    [sensor] = build_arrival_sensors(pipeline, profile)
    [request] = sensor.evaluate_tick(build_sensor_context()).run_requests or []
    job = definitions_for([pipeline], profile).resolve_job_def("vendor_bars")
    with DagsterInstance.get() as instance:
        assert job.execute_in_process(instance=instance, tags=request.tags).success
    catalog = SqlCatalog("quantos", uri=profile.catalog_uri, warehouse=profile.warehouse)
    version = request.tags["quantos/arrival_version"]
    for out in ("landed", "echoed"):
        rows = catalog.load_table(("vendor_bars", out)).scan().to_arrow().to_pylist()
        assert [(r["uri"], r["version"]) for r in rows] == [(f"file://{landing}/bars.csv", version)]
