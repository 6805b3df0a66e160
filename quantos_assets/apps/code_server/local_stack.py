"""The embedded default's stack: one in-place code server per location, then `dagster dev`.

`dagster dev` starts and restarts its own code servers, and its reload restarts one (see
in_place.py for why that is the floor of a submission's wait). This stack starts an
in-place server (`python -m quantos_assets.apps.code_server`) for every `python_module`
entry of the workspace file instead, each on a Unix socket in a private directory (mode
0700: no other local user can reach a code server, where a loopback port would let any of
them ask it for snapshots or runs), writes a workspace of `grpc_server` entries naming those
sockets, and runs `dagster dev` on it. The webserver and the daemon watch each server's id,
so an in-place reload reaches both without a restart. A server that exits (a reload after a
code change shuts it down on purpose) is started again. `make run` and the end-to-end tests'
per-team stacks run this; other entries of the workspace file pass through unchanged.

`python -m quantos_assets.apps.code_server.local_stack -w workspace.yaml [dagster dev options]`
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = ["CodeServer", "main", "served_workspace"]

_SERVER_MODULE = "quantos_assets.apps.code_server"
# How long a code server may take to load before the stack gives up on it (a location that
# fails to load still answers, with its error: only a hung import reaches this).
START_TIMEOUT_SECONDS = 600.0


@dataclass
class CodeServer:
    """One location's in-place code server and how to start it again."""

    location: str
    socket: Path
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.socket.unlink(missing_ok=True)
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL)

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def answers(self) -> bool:
        from dagster._grpc.client import DagsterGrpcClient

        if not self.socket.exists():
            return False
        try:
            DagsterGrpcClient(socket=str(self.socket)).ping("")
        except Exception:  # noqa: BLE001 - any failure means: not serving yet
            return False
        return True


def served_workspace(
    workspace: dict[str, Any], folder: Path
) -> tuple[dict[str, Any], list[CodeServer]]:
    """The workspace `dagster dev` is given (each `python_module` entry replaced by a
    `grpc_server` entry on its socket under `folder`), and the servers to start for it."""
    entries: list[dict[str, Any]] = []
    servers: list[CodeServer] = []
    for entry in workspace.get("load_from") or []:
        module = entry.get("python_module") if isinstance(entry, dict) else None
        if not isinstance(module, dict):
            entries.append(entry)
            continue
        spec = {"module_name": module} if isinstance(module, str) else module
        name = spec.get("location_name") or spec["module_name"]
        socket = folder / f"{len(servers)}.sock"
        argv = [sys.executable, "-m", _SERVER_MODULE, "--socket", str(socket)]
        argv += ["-m", spec["module_name"], "--location-name", name, "--lazy-load-user-code"]
        if spec.get("attribute"):
            argv += ["-a", spec["attribute"]]
        argv += ["-d", str(Path(spec.get("working_directory") or Path.cwd()).absolute())]
        servers.append(CodeServer(location=name, socket=socket, argv=argv))
        entries.append({"grpc_server": {"socket": str(socket), "location_name": name}})
    return {**workspace, "load_from": entries}, servers


def _prepare_instance() -> None:
    """Create (or migrate) the instance's storage once, before the servers start: each opens
    the instance, and several creating a fresh one at once race on its schema (dagster dev
    opens it before it starts its own servers, for the same reason)."""
    if os.environ.get("DAGSTER_HOME"):
        from dagster import DagsterInstance

        with DagsterInstance.get():
            pass


def _wait_serving(servers: list[CodeServer], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    waiting = list(servers)
    while waiting:
        for server in list(waiting):
            code = server.exited()
            if code is not None:
                raise SystemExit(f"code server of {server.location} exited with {code} at start")
            if server.answers():
                waiting.remove(server)
        if waiting and time.monotonic() > deadline:
            names = ", ".join(s.location for s in waiting)
            raise SystemExit(f"code servers not serving within {timeout:.0f} s: {names}")
        time.sleep(0.2)


def _stop(procs: list[subprocess.Popen[bytes]], grace: float = 10.0) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _interrupted(_signum: int, _frame: object) -> None:
    """SIGTERM ends the stack as Ctrl-C does: dagster dev and the servers are stopped first."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m quantos_assets.apps.code_server.local_stack",
        description="In-place code servers for the workspace's locations, then dagster dev "
        "with the other options (-h is dagster dev's host, as in `dagster dev -h`).",
        add_help=False,
    )
    ap.add_argument("--help", action="help")
    ap.add_argument("-w", "--workspace", default="workspace.yaml", type=Path)
    args, dev_args = ap.parse_known_args(argv)
    try:
        workspace = yaml.safe_load(args.workspace.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        print(f"{args.workspace}: {str(err).splitlines()[0]}", file=sys.stderr)
        return 2
    folder = Path(tempfile.mkdtemp(prefix="quantos-code-servers-"))  # mode 0700
    served, servers = served_workspace(workspace, folder)
    served_file = folder / "workspace.yaml"
    served_file.write_text(yaml.safe_dump(served, sort_keys=False))
    dev: subprocess.Popen[bytes] | None = None
    signal.signal(signal.SIGTERM, _interrupted)
    try:
        _prepare_instance()
        for server in servers:
            server.start()
        _wait_serving(servers, START_TIMEOUT_SECONDS)
        dagster = Path(sys.executable).parent / "dagster"
        dev = subprocess.Popen([str(dagster), "dev", "-w", str(served_file), *dev_args])
        while dev.poll() is None:
            time.sleep(1.0)
            for server in servers:
                code = server.exited()
                if code is not None:
                    print(
                        f"code server of {server.location} exited ({code}): starting it again",
                        file=sys.stderr,
                        flush=True,
                    )
                    server.start()
        return dev.returncode
    except KeyboardInterrupt:  # Ctrl-C reached dagster dev too: its exit status is the stack's
        if dev is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                dev.wait(timeout=30)
        return dev.returncode if dev is not None and dev.returncode is not None else 130
    finally:
        _stop([p for p in [dev, *(s.proc for s in servers)] if p is not None])
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
