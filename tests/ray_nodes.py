"""A real multi-node Ray cluster on loopback for tests: a head and worker nodes started
with `ray start`, each in its own process group so one node can be killed like a lost
machine. Its own temp dir keeps a plain `ray.init()` elsewhere (another test module on the
same machine) from finding and joining it."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RAY = str(Path(sys.executable).parent / "ray")
ENV = {
    **os.environ,
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
    # A lost node is declared dead after ~3 s, not Ray's default ~15-30 s of missed health checks.
    "RAY_health_check_initial_delay_ms": "1000",
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "2",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RayNodes:
    temp_dir: str
    port: int
    head: subprocess.Popen[bytes] | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def add_worker(self, cpus: int = 1) -> subprocess.Popen[bytes]:
        node = subprocess.Popen(
            [
                RAY,
                "start",
                "--address",
                self.address,
                "--node-ip-address",
                "127.0.0.1",
                f"--num-cpus={cpus}",
                "--num-gpus=0",
                "--disable-usage-stats",
                "--block",
            ],
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.workers.append(node)
        return node

    def kill(self, node: subprocess.Popen[bytes]) -> None:
        """The node's raylet and its workers die at once, as when a machine is lost."""
        os.killpg(node.pid, signal.SIGKILL)
        node.wait()

    def stop(self) -> None:
        """Only this cluster's processes (`ray stop` would stop every Ray on the machine)."""
        for node in [*self.workers, *filter(None, [self.head])]:
            if node.poll() is None:
                self.kill(node)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def start_head(cpus: int = 1, timeout: float = 60) -> RayNodes:
    temp_dir = tempfile.mkdtemp(prefix="qr-")
    nodes = RayNodes(temp_dir=temp_dir, port=_free_port())
    nodes.head = subprocess.Popen(
        [
            RAY,
            "start",
            "--head",
            "--port",
            str(nodes.port),
            "--node-ip-address",
            "127.0.0.1",
            f"--num-cpus={cpus}",
            "--num-gpus=0",
            "--include-dashboard=false",
            "--disable-usage-stats",
            f"--temp-dir={temp_dir}",
            "--block",
        ],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", nodes.port)) == 0:
                return nodes
        if nodes.head.poll() is not None:
            break
        time.sleep(0.3)
    nodes.stop()
    raise RuntimeError(f"the Ray head did not start on port {nodes.port}")


def wait_for_nodes(ray: Any, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [n for n in ray.nodes() if n.get("Alive")]
        if len(alive) >= count:
            return
        time.sleep(0.5)
    raise TimeoutError(f"fewer than {count} Ray nodes alive after {timeout} s")


@contextmanager
def two_nodes() -> Iterator[RayNodes]:
    """A head and one worker node of 1 CPU each, this process connected to them."""
    import ray

    from resources.ray_cluster import RayResource

    ray.shutdown()
    cluster = start_head(cpus=1)
    try:
        cluster.add_worker(cpus=1)
        RayResource(address=cluster.address).init()
        wait_for_nodes(ray, 2)
        yield cluster
    finally:
        ray.shutdown()
        cluster.stop()
