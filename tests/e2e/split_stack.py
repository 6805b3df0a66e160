"""Dagster as deployed: code server, webserver and daemon as three processes.

`dagster dev` runs the daemon as its own child and shuts everything down when the daemon
dies, so it cannot show what happens when only the daemon is killed and restarted (what
Kubernetes does to the daemon Deployment of the Helm chart). Here the code location is
served as the image serves the chart's user-code Deployment (`dagster api grpc` args, run by
deploy/entrypoint.sh as the in-place code server), and the webserver and
the daemon load it over gRPC; each process is in its own session, so the daemon can be
SIGKILLed alone and started again on the same DAGSTER_HOME.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from dagster import DagsterInstance
from dagster._core.instance.ref import InstanceRef
from dev_server import LOCATION, REPO, Server, free_port, isolated_env, location_state, tail

BIN = Path(sys.executable).parent


def _spawn(root: Path, env: dict[str, str], name: str, args: list[str]) -> subprocess.Popen:
    """A process in its own session (so it can be signalled alone), output appended to name.log."""
    with (root / f"{name}.log").open("ab") as out:
        return subprocess.Popen(
            args,
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


@dataclass
class SplitStack:
    """A Server (webserver + GraphQL helpers) whose daemon can be killed and restarted."""

    server: Server
    root: Path
    workspace: Path
    daemon: subprocess.Popen | None = None
    _procs: list[subprocess.Popen] = field(default_factory=list)

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        proc = _spawn(self.root, self.server.env, name, args)
        self._procs.append(proc)
        return proc

    def start_daemon(self) -> None:
        assert self.daemon is None or self.daemon.poll() is not None, "a daemon is already running"
        self.daemon = self._spawn(
            "daemon", [str(BIN / "dagster-daemon"), "run", "-w", str(self.workspace)]
        )

    def kill_daemon(self) -> int:
        """SIGKILL the daemon process only (its run workers live on, as on a node); its pid."""
        assert self.daemon is not None and self.daemon.poll() is None, "no daemon running"
        pid = self.daemon.pid
        os.kill(pid, signal.SIGKILL)
        self.daemon.wait(timeout=10)
        return pid

    def daemon_log(self) -> str:
        return tail(self.root / "daemon.log", 80)

    def close(self) -> None:
        """SIGKILL each process group: nothing here has state to save (runs are in SQLite),
        and a group also holds the run workers a killed daemon left behind."""
        for proc in reversed(self._procs):
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


@contextmanager
def split_stack(
    root: Path, specs: Path, dagster_yaml: str, extra_env: dict[str, str] | None = None
) -> Iterator[SplitStack]:
    """Code server + webserver + daemon on a fresh DAGSTER_HOME with `dagster_yaml`; yields once
    the webserver has the location LOADED (the daemon is started, not waited for)."""
    fast = {"QUANTOS_DBT": "off", "QUANTOS_LOCAL_EXECUTOR": "in_process"}
    env = {**isolated_env(root, specs), **fast, **(extra_env or {})}
    home = Path(env["DAGSTER_HOME"])
    (home / "dagster.yaml").write_text(dagster_yaml)
    # Create the SQLite storages (and their schema) once: three processes doing it at the same
    # time race in alembic ("more than one head present"). `dagster dev` does this first too.
    with DagsterInstance.from_ref(InstanceRef.from_dir(str(home))):
        pass
    grpc_port, web_port = free_port(), free_port()
    workspace = root / "workspace.yaml"
    workspace.write_text(
        f"load_from:\n  - grpc_server:\n      host: 127.0.0.1\n      port: {grpc_port}\n"
        f"      location_name: {LOCATION}\n"
    )
    code_server = _spawn(
        root,
        env,
        "code_server",
        [
            sys.executable,
            "-m",
            "quantos_assets.apps.code_server",
            "-h",
            "127.0.0.1",
            "-p",
            str(grpc_port),
            "-m",
            "definitions.definitions",
            "-d",
            str(REPO),
            "--location-name",
            LOCATION,
        ],
    )
    webserver = _spawn(
        root,
        env,
        "webserver",
        [
            str(BIN / "dagster-webserver"),
            "-w",
            str(workspace),
            "-h",
            "127.0.0.1",
            "-p",
            str(web_port),
        ],
    )
    server = Server(port=web_port, proc=webserver, log=root / "webserver.log", home=home, env=env)
    stack = SplitStack(
        server=server, root=root, workspace=workspace, _procs=[code_server, webserver]
    )
    try:
        stack.start_daemon()
        deadline = time.monotonic() + 150
        status, error = None, None
        while True:
            for proc in stack._procs:
                if proc.poll() is not None:
                    pytest.fail(
                        f"{proc.args!r} exited with "
                        f"{proc.returncode}:\n{tail(root / 'webserver.log')}\n"
                        f"{tail(root / 'code_server.log')}\n{stack.daemon_log()}"
                    )
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{web_port}/server_info", timeout=5
                ) as resp:
                    resp.read()
                status, error = location_state(server)
                if status == "LOADED" and error is None:
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"location {LOCATION!r} not LOADED within 150 s (status {status}, error "
                    f"{error}):\n"
                    f"{tail(root / 'code_server.log')}"
                )
            time.sleep(0.5)
        yield stack
    finally:
        stack.close()
