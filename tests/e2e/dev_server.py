"""A real `dagster dev` (webserver + daemon) for end-to-end tests, on a free loopback port.

Started with `start_new_session=True` and stopped by signalling its whole process group:
`dagster dev` ignores SIGTERM when started as a shell background job, and run/step
workers or a local Ray may outlive it otherwise.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from dagster_graphql import DagsterGraphQLClient

REPO = Path(__file__).resolve().parents[2]
DAGSTER = Path(sys.executable).parent / "dagster"
LOCATION = "quantos"
REPOSITORY = "__repository__"
SINGLE_LOCATION_WORKSPACE = (
    "load_from:\n  - python_module:\n      module_name: definitions.definitions\n"
    f"      location_name: {LOCATION}\n"
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, n: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "<no output>"


def isolated_env(root: Path, specs: Path) -> dict[str, str]:
    """An isolated local profile: DAGSTER_HOME (queued runs, no telemetry), data, specs."""
    home = root / "dagster_home"
    home.mkdir(parents=True)
    instance = yaml.safe_load((REPO / "deploy" / "dagster.local.yaml").read_text())
    # the single test location loads with the daemon: its first run is warm too
    instance["run_launcher"]["config"]["preload"] = {
        "module": "definitions.definitions",
        "attribute": "defs",
    }
    (home / "dagster.yaml").write_text(yaml.safe_dump(instance))
    return {
        **os.environ,
        "QUANTOS_ENV": "local",
        "DAGSTER_HOME": str(home),
        "QUANTOS_DATA_DIR": str(root / "data"),
        "QUANTOS_SPECS_DIR": str(specs),
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        "DAGSTER_DISABLE_TELEMETRY": "1",
        "PYTHONWARNINGS": "ignore::DeprecationWarning",
    }


def team_workspace(root: Path, specs: Path, teams: Path | None = None) -> tuple[Path, list[str]]:
    """The per-team workspace `quantos registry workspace --used` generates for `specs` and
    the teams file (default: the repository's): its path and its location names."""
    from quantos_assets.registry_locations import RegistryLocations
    from quantos_assets.tenancy.teams import load_teams
    from quantos_assets.tenancy.workspace_file import workspace_yaml

    place = RegistryLocations.read(specs, load_teams(teams or REPO / "deploy" / "teams.yaml"))
    path = root / "workspace.yaml"
    path.write_text(workspace_yaml(place.plan, place.used()))
    return path, place.used()


@dataclass
class Server:
    port: int
    proc: subprocess.Popen
    log: Path
    home: Path
    env: dict[str, str]

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/graphql",
            data=json.dumps({"query": query, "variables": variables or {}}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            body = json.loads(resp.read())
        assert "errors" not in body, body["errors"]
        return body["data"]

    def client(self) -> DagsterGraphQLClient:
        return DagsterGraphQLClient("127.0.0.1", port_number=self.port, timeout=30)


WORKSPACE_QUERY = """
{ workspaceOrError { __typename
    ... on Workspace { locationEntries { name loadStatus
        locationOrLoadError { __typename ... on PythonError { message } } } }
    ... on PythonError { message } } }
"""


def location_state(server: Server, location: str = LOCATION) -> tuple[str | None, str | None]:
    """(loadStatus, error) of the location; (None, None) while unknown."""
    data = server.graphql(WORKSPACE_QUERY)["workspaceOrError"]
    for entry in data.get("locationEntries") or []:
        if entry["name"] == location:
            err = entry["locationOrLoadError"] or {}
            return entry["loadStatus"], err.get("message")
    return None, None


def stop(proc: subprocess.Popen, timeout: float = 10) -> None:
    """SIGTERM the process group, SIGKILL it after `timeout`; then sweep what is left.

    For processes whose clean stop is part of what is tested (a gateway releases its launch
    claims on SIGTERM) or quick; a test's `dagster dev` is killed (`kill`)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        except ProcessLookupError:
            pass
    # run workers, step workers or a local Ray may outlive the leader in its group
    kill(proc)


def kill(proc: subprocess.Popen) -> None:
    """SIGKILL the process group at once and reap its leader. For a test's `dagster dev` at
    teardown: its home is thrown away, everything it started (webserver, daemon, code
    servers, run workers, a run's local Ray) is in its group, and a SIGTERM first cost ~5 s
    per stack idle, 10 s with runs in flight (nine stacks per suite run)."""
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


@contextmanager
def dagster_dev(
    root: Path,
    specs: Path,
    extra_env: dict[str, str] | None = None,
    dagster_yaml: str | None = None,
    workspace: Path | None = None,
    location: str = LOCATION,
    timeout: float = 120,
    in_place: bool = False,
) -> Iterator[Server]:
    """Serve `specs` from a fresh DAGSTER_HOME under `root`; yields once the location is LOADED.
    `dagster_yaml` replaces the instance config (default: deploy/dagster.local.yaml);
    `workspace` the workspace file (default: one location, `quantos`, of every spec: these
    tests are about one team's surfaces, and one code server starts faster than a location
    per team; tests/e2e/test_team_locations.py serves the repository's per-team workspace).
    `in_place`: served as `make run` serves it, by quantos_assets/apps/code_server/local_stack.py
    (an in-place code server per python_module entry, then dagster dev).

    Without the dbt models and with runs in one process (QUANTOS_DBT=off,
    QUANTOS_LOCAL_EXECUTOR=in_process) unless `extra_env` says otherwise: every run and
    step process loads the code location, and these tests are about the surfaces."""
    fast = {"QUANTOS_DBT": "off", "QUANTOS_LOCAL_EXECUTOR": "in_process"}
    env = {**isolated_env(root, specs), **fast, **(extra_env or {})}
    if dagster_yaml is not None:
        (Path(env["DAGSTER_HOME"]) / "dagster.yaml").write_text(dagster_yaml)
    if workspace is None:
        workspace = root / "workspace.yaml"
        workspace.write_text(SINGLE_LOCATION_WORKSPACE)
    elif dagster_yaml is None:
        # another workspace: no preload of the single location (it would build every spec)
        instance_yaml = Path(env["DAGSTER_HOME"]) / "dagster.yaml"
        instance = yaml.safe_load(instance_yaml.read_text())
        instance["run_launcher"]["config"].pop("preload", None)
        instance_yaml.write_text(yaml.safe_dump(instance))
    port = free_port()
    log = root / "dagster_dev.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                *(
                    [sys.executable, "-m", "quantos_assets.apps.code_server.local_stack"]
                    if in_place
                    else [str(DAGSTER), "dev"]
                ),
                "-w",
                str(workspace),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    srv = Server(port=port, proc=proc, log=log, home=Path(env["DAGSTER_HOME"]), env=env)
    try:
        deadline = time.monotonic() + timeout
        status, error = None, None
        while True:
            if proc.poll() is not None:
                pytest.fail(f"dagster dev exited with {proc.returncode}:\n{tail(log)}")
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/server_info", timeout=5
                ) as resp:
                    resp.read()
                status, error = location_state(srv, location)
                if status == "LOADED":
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"dagster dev: location {location!r} not LOADED within {timeout:.0f} s "
                    f"(status {status}, error {error}):\n{tail(log)}"
                )
            time.sleep(0.5)
        assert error is None, f"code location failed to load: {error}\n{tail(log)}"
        yield srv
    finally:
        kill(proc)


@contextmanager
def gateway_process(
    env: dict[str, str], root: Path, *args: str, name: str = "gateway"
) -> Iterator[tuple[str, subprocess.Popen, Path]]:
    """`quantos gateway ARGS` on a free port with `env`; yields (URL, process, log) once
    /healthz answers, and stops its process group at the end."""
    import httpx

    port = free_port()
    log = root / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "quantos_assets.apps.cli.main",
                "gateway",
                "--port",
                str(port),
                *args,
            ],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{name} did not start:\n{tail(log)}")
            time.sleep(0.25)
        yield url, proc, log
    finally:
        stop(proc)


@contextmanager
def quantos_gateway(env: dict[str, str], root: Path) -> Iterator[str]:
    """`quantos gateway` on a free port with `env`; yields its URL once /healthz answers."""
    with gateway_process(env, root) as (url, _proc, _log):
        yield url
