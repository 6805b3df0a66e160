"""The embedded default's run launcher against a real `dagster dev` (webserver + daemon).

What an operator would notice: runs start from a worker that loaded the code beforehand,
a spec changed after that worker started is never run with the old code, and a run
whose worker dies is reported as failed by the launcher's health check (what Dagster's
run monitoring asks), instead of hanging in STARTED.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from dev_server import Server, dagster_dev

from quantos_assets.apps.client.graphql import DagsterAPI
from resources.run_tag_keys import WORKER_PID_TAG

pytestmark = pytest.mark.e2e


def _spec(pipeline_id: str, entrypoint: str, **params: object) -> dict:
    return {
        "version": 1,
        "pipeline_id": pipeline_id,
        "labels": {"team": "research"},
        "nodes": [
            {
                "id": "task",
                "kind": "python_task",
                "params": {"entrypoint": entrypoint, **params},
                "outs": ["out"],
            }
        ],
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    root = tmp_path_factory.mktemp("warm")
    specs = root / "specs"
    specs.mkdir()
    (specs / "warm_one.yaml").write_text(
        yaml.safe_dump(_spec("warm_one", "quantos_assets.tasks.noop:one_row"))
    )
    (specs / "warm_slow.yaml").write_text(
        yaml.safe_dump(_spec("warm_slow", "quantos_assets.tasks.control:sleep", seconds=300))
    )
    with dagster_dev(root, specs) as srv:
        yield srv, specs


def _handed(srv: Server, run_id: str) -> str:
    """'warm', 'rebuilt' or 'new': which worker the launcher gave the run to (its engine
    event)."""
    data = srv.graphql(
        """query($id: ID!) { logsForRun(runId: $id) { ... on EventConnection { events {
             __typename ... on MessageEvent { message } } } } }""",
        {"id": run_id},
    )
    for event in data["logsForRun"]["events"]:
        message = event.get("message") or ""
        if "handed to" in message:
            if "rebuilding the location in place" in message:
                return "rebuilt"
            return "warm" if "a warm run worker" in message else "new"
    raise AssertionError(f"no hand-over event in run {run_id}")


def _wait(api: DagsterAPI, run_id: str, statuses: set[str], timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while (run := api.run(run_id))["status"] not in statuses:
        assert time.monotonic() < deadline, run
        time.sleep(0.5)
    return run


def _spare_loaded(timeout: float = 90) -> None:
    """Wait until an idle worker has finished loading the code location (it then blocks
    reading its run, with its import work done: its CPU time stops growing)."""
    deadline = time.monotonic() + timeout
    last: dict[int, int] = {}
    while time.monotonic() < deadline:
        now = {}
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                if (
                    b"quantos_assets.apps.launcher.worker"
                    not in Path(f"/proc/{pid}/cmdline").read_bytes()
                ):
                    continue
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            now[int(pid)] = int(fields[11]) + int(fields[12])  # utime + stime
        if any(last.get(pid) == cpu for pid, cpu in now.items()):
            return
        last = now
        time.sleep(1.0)
    pytest.fail("no spare run worker finished loading")


def test_runs_start_on_warm_workers_and_never_on_stale_code(server: tuple[Server, Path]) -> None:
    srv, specs = server
    api = DagsterAPI(f"http://127.0.0.1:{srv.port}")
    _spare_loaded()  # started with the daemon (the launcher's preload): the first run is warm too
    first = api.launch("warm_one", {})
    assert _wait(api, first, {"SUCCESS", "FAILURE"})["status"] == "SUCCESS"
    assert _handed(srv, first) == "warm"

    _spare_loaded()
    second = api.launch("warm_one", {})
    assert _wait(api, second, {"SUCCESS", "FAILURE"})["status"] == "SUCCESS"
    assert _handed(srv, second) == "warm"

    # A new version of the spec: the spare loaded the old one, so it must not run this as it
    # is; it rebuilds the location in place (same code, other specs) and runs the new one.
    _spare_loaded()
    changed = _spec(
        "warm_one", "quantos_assets.tasks.control:fail_until", flag=str(specs / "never")
    )
    (specs / "warm_one.yaml").write_text(yaml.safe_dump(changed))
    api.reload_location()
    third = api.launch("warm_one", {})
    assert _wait(api, third, {"SUCCESS", "FAILURE"})["status"] == "FAILURE"  # the new code ran
    assert _handed(srv, third) == "rebuilt"


def test_a_dead_worker_is_reported_failed_not_left_started(server: tuple[Server, Path]) -> None:
    srv, _ = server
    from dagster import DagsterInstance
    from dagster._core.instance.ref import InstanceRef

    api = DagsterAPI(f"http://127.0.0.1:{srv.port}")
    run_id = api.launch("warm_slow", {})
    _wait(api, run_id, {"STARTED"})
    with DagsterInstance.from_ref(InstanceRef.from_dir(str(srv.home))) as instance:
        launcher = instance.run_launcher
        run = instance.get_run_by_id(run_id)
        assert run is not None
        assert launcher.check_run_worker_health(run).status.value == "RUNNING"
        pid = int(run.tags[WORKER_PID_TAG])
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while launcher.check_run_worker_health(run).status.value != "FAILED":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert f"run worker process {pid} is gone" in (
            launcher.check_run_worker_health(run).msg or ""
        )
        assert launcher.terminate(run_id) is False  # nothing left to terminate


def test_a_location_that_no_longer_loads_fails_the_launch_in_one_line(tmp_path: Path) -> None:
    """An edit that breaks the location after the code server loaded it: the launch fails at
    once, saying so (Dagster's queue then marks the run failed), instead of the run hanging."""
    from dagster import instance_for_test
    from dagster._core.code_pointer import ModuleCodePointer
    from dagster._core.launcher.base import LaunchRunContext
    from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
    from dagster._core.storage.dagster_run import DagsterRun

    from quantos_assets.apps.launcher.run_launcher import WarmRunLauncher

    (tmp_path / "broken_location.py").write_text(
        "raise RuntimeError('a spec module no longer imports')\n"
    )
    pointer = ModuleCodePointer(
        module="broken_location", fn_name="defs", working_directory=str(tmp_path)
    )
    origin = JobPythonOrigin(
        "noop", RepositoryPythonOrigin(executable_path=sys.executable, code_pointer=pointer)
    )
    with instance_for_test(temp_dir=str(tmp_path)) as instance:
        run = instance.add_run(DagsterRun(job_name="noop", job_code_origin=origin))
        launcher = WarmRunLauncher()
        launcher.register_instance(instance)
        try:
            with pytest.raises(RuntimeError) as raised:
                launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
        finally:
            launcher.dispose()
    assert str(raised.value) == (
        "the run worker process could not load the code location (it exited with code 1); "
        "its error is in the daemon's log"
    )
