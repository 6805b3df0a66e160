"""WarmRunLauncher: the embedded default's run launcher, with run workers forked ready-loaded.

Dagster's DefaultRunLauncher asks the code server to spawn a fresh Python for every run,
which imports Dagster and loads the code location (dbt manifest included) before the run
can report STARTED: seconds of wait and ~3 s of CPU per run on this hardware. This launcher
keeps one process per code location that has loaded it once
(`quantos_assets.apps.launcher.worker`) and has it fork a run worker per run; the worker then
does exactly what `dagster api execute_run` does (as Dagster's Kubernetes launcher runs it).
Each worker runs one run and exits, so runs stay isolated from each other.

A loaded process started before the code changed (an edit of a module; see
code_fingerprint.py) is let go, never forked from: that run waits for a new one to load, as a
run waits for a fresh Python with the default launcher. When only the specs or the dbt
manifest changed (a submission, a registry write), the loaded process rebuilds the location
in place first (worker.py, `rebuild`): no run ever starts on the old specs, and none waits
for a new interpreter to import everything again. Staging/prod use dagster-k8s's
K8sRunLauncher instead (k8s_run_launcher.py), whose run pod runs the same run worker code.

Termination and run monitoring work from any process on the host (webserver, daemon):
the worker's pid is kept in a run tag, and checked against /proc before it is signalled.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dagster import DagsterInstance, Field, IntSource
from dagster._core.code_pointer import ModuleCodePointer
from dagster._core.launcher.base import (
    CheckRunHealthResult,
    LaunchRunContext,
    RunLauncher,
    WorkerStatus,
)
from dagster._core.storage.dagster_run import DagsterRun
from dagster._grpc.types import ExecuteRunArgs
from dagster._serdes import ConfigurableClass, ConfigurableClassData, serialize_value

from quantos_assets.apps.launcher.code_fingerprint import location_fingerprints
from resources.run_tag_keys import WORKER_PID_TAG

__all__ = ["WarmRunLauncher", "in_daemon"]

# How long a terminated worker gets to stop (finishing the step's cleanup) before it is killed.
TERMINATE_GRACE_SECONDS = 30.0
# How long a launch waits for a code location to load and fork the run's worker.
LOAD_TIMEOUT_SECONDS = 300.0
_WORKER_MODULE = "quantos_assets.apps.launcher.worker"


class _LoaderGone(Exception):
    """The loaded process exited (or never loaded): see its stderr in the daemon's log."""


@dataclass
class _Loader:
    """A process that has loaded (or is loading) one code location and forks run workers."""

    proc: subprocess.Popen
    replies: int  # read end of its reply pipe: `ready`, then one pid per request
    fingerprint: str  # of the code it imported
    data: str = ""  # of the specs and dbt manifest it built the location from
    started: float = field(default_factory=time.monotonic)
    ready: bool = False
    _pending: bytes = b""

    def _line(self, timeout: float) -> str | None:
        """The next reply line, None if none came within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._pending:
            readable, _, _ = select.select(
                [self.replies], [], [], max(0.0, deadline - time.monotonic())
            )
            if not readable:
                return None
            chunk = os.read(self.replies, 4096)
            if not chunk:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=10)  # closed its end: it is exiting
                raise _LoaderGone(f"it exited with code {self.proc.returncode}")
            self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        return line.decode()

    def is_ready(self) -> bool:
        """Loaded and waiting (checked without blocking)."""
        if not self.ready:
            with contextlib.suppress(_LoaderGone):
                self.ready = self._line(0.0) == "ready"
        return self.ready

    def fork(self, request: str) -> int:
        """Hand one run's ExecuteRunArgs over; the pid of the worker forked for it."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write((request + "\n").encode())
            self.proc.stdin.flush()
        except OSError as error:  # BrokenPipeError: it has exited
            raise _LoaderGone(str(error)) from error
        deadline = time.monotonic() + LOAD_TIMEOUT_SECONDS
        while True:
            line = self._line(deadline - time.monotonic())
            if line is None:
                self.release()
                raise _LoaderGone(f"no run worker within {LOAD_TIMEOUT_SECONDS:.0f} s")
            if line == "ready":
                self.ready = True
                continue
            return int(line)

    def rebuild(self, data: str) -> None:
        """Rebuild the location from the current specs in place; `ready` when done."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(b"rebuild\n")
            self.proc.stdin.flush()
        except OSError as error:
            raise _LoaderGone(str(error)) from error
        self.ready = False
        if self._line(LOAD_TIMEOUT_SECONDS) != "ready":
            self.release()
            raise _LoaderGone(f"no rebuild within {LOAD_TIMEOUT_SECONDS:.0f} s")
        self.ready, self.data, self.started = True, data, time.monotonic()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def release(self) -> None:
        """Let it go: a closed stdin ends it (the workers it forked carry on)."""
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None and not self.proc.stdin.closed:
                self.proc.stdin.close()
        with contextlib.suppress(OSError):
            os.close(self.replies)


class WarmRunLauncher(RunLauncher, ConfigurableClass):
    def __init__(
        self,
        spares: int = 1,
        preload: Mapping[str, str] | None = None,
        inst_data: ConfigurableClassData | None = None,
    ) -> None:
        self._inst_data = inst_data
        self._warm = spares > 0
        self._preload = dict(preload) if preload else None
        self._loaders: dict[str, _Loader] = {}  # serialized code pointer -> its loaded process
        self._lock = threading.Lock()
        super().__init__()

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return {
            "spares": Field(
                IntSource,
                is_required=False,
                default_value=1,
                description=(
                    "0: every run starts a fresh Python that loads the code location; otherwise "
                    "one process per code location stays loaded and forks each run's worker."
                ),
            ),
            "preload": Field(
                {"module": str, "attribute": str},
                is_required=False,
                description=(
                    "The code location to load when the daemon starts (module and its Definitions "
                    "attribute, from the daemon's working directory), so the first run is warm "
                    "too; without it, a location is loaded at its first launch."
                ),
            ),
        }

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]
    ) -> WarmRunLauncher:
        return cls(inst_data=inst_data, **config_value)

    def register_instance(self, instance: DagsterInstance) -> None:
        super().register_instance(instance)
        # Only the daemon launches runs (the queue's dequeuer); the webserver's copy of the
        # launcher terminates and health-checks, and must not load a location of its own.
        if self._preload and self._warm and in_daemon():
            pointer = ModuleCodePointer(
                module=self._preload["module"],
                fn_name=self._preload["attribute"],
                working_directory=os.getcwd(),
            )
            key = serialize_value(pointer)
            workdir = Path(os.getcwd())
            with self._lock:
                self._loaders[key] = self._spawn(key, workdir, *self._fingerprints(workdir))

    # -- launching --------------------------------------------------------------------------

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        origin = run.job_code_origin
        if origin is None:
            raise ValueError(f"run {run.run_id} has no code origin: it cannot be launched")
        pointer = origin.repository_origin.code_pointer
        # dagster's PackableValue names no abstract CodePointer; each concrete pointer is a serdes
        # record
        key = serialize_value(pointer)  # type: ignore[arg-type]
        workdir = Path(getattr(pointer, "working_directory", None) or os.getcwd())
        fingerprint, data = self._fingerprints(workdir)
        request = serialize_value(
            ExecuteRunArgs(
                job_origin=origin, run_id=run.run_id, instance_ref=self._instance.get_ref()
            )
        )
        with self._lock:
            loader = self._loaders.pop(key, None)
            if loader is not None and (loader.fingerprint != fingerprint or not loader.alive()):
                loader.release()  # loaded from older code, or gone
                loader = None
            warm = loader is not None and loader.is_ready()
            rebuilt = False
            if loader is not None and warm and loader.data != data:
                try:  # the same code, other specs: rebuilt in place (~the build alone)
                    loader.rebuild(data)
                    rebuilt = True
                except _LoaderGone:
                    loader.release()
                    loader, warm = None, False
            loaded_for = time.monotonic() - loader.started if loader is not None else 0.0
            if loader is None:
                loader = self._spawn(key, workdir, fingerprint, data)
            try:
                pid = loader.fork(request)
            except _LoaderGone as gone:
                loader.release()
                raise RuntimeError(
                    f"the run worker process could not load the code location ({gone}); "
                    "its error is in the daemon's log"
                ) from gone
            if self._warm:
                self._loaders[key] = loader
            else:
                loader.release()  # one run per load: every run starts cold
        if rebuilt:
            how = f"a warm run worker (pid {pid}, forked after rebuilding the location in place)"
        elif warm:
            how = (
                f"a warm run worker (pid {pid}, forked from code loaded {loaded_for:.1f} s before)"
            )
        else:
            how = f"a new run worker (pid {pid}, after loading the code for it)"
        self._instance.report_engine_event(f"Run handed to {how}.", run, cls=self.__class__)

    def _fingerprints(self, workdir: Path) -> tuple[str, str]:
        """(code, data) of the location under `workdir` (code_fingerprint.py)."""
        return location_fingerprints(workdir)

    def _spawn(self, key: str, workdir: Path, fingerprint: str, data: str = "") -> _Loader:
        replies, reply_end = os.pipe()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", _WORKER_MODULE, key, str(reply_end)],
                cwd=workdir,
                stdin=subprocess.PIPE,
                env=os.environ.copy(),
                pass_fds=(reply_end,),
            )
        except BaseException:
            os.close(replies)
            raise
        finally:
            os.close(reply_end)
        # reap it when it exits: the launcher's process (the daemon) is its parent
        threading.Thread(target=proc.wait, name=f"reap-run-loader-{proc.pid}", daemon=True).start()
        return _Loader(proc, replies, fingerprint, data)

    def dispose(self) -> None:
        with self._lock:
            for loader in self._loaders.values():
                loader.release()
            self._loaders.clear()

    # -- terminating and monitoring (from any process on this host) ----------------------------

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        if run is None or run.is_finished:
            return False
        pid = _worker_pid(run)
        if pid is None:
            return False
        self._instance.report_run_canceling(run)
        try:
            os.kill(
                pid, signal.SIGTERM
            )  # the worker maps SIGTERM to an interrupt: the run is CANCELED
        except ProcessLookupError:
            return False
        threading.Thread(
            target=self._see_to_exit, args=(run_id, pid), name=f"terminate-{pid}", daemon=True
        ).start()
        return True

    def _see_to_exit(self, run_id: str, pid: int) -> None:
        """An interrupt that lands in a finalizer is ignored by Python ("Exception ignored
        in ..."), leaving the run CANCELING: signal again every 5 s, and after
        TERMINATE_GRACE_SECONDS kill the worker and its children and record the cancel."""
        deadline = time.monotonic() + TERMINATE_GRACE_SECONDS
        while _is_worker(pid):
            if time.monotonic() > deadline:
                for victim in [*_descendants(pid), pid]:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(victim, signal.SIGKILL)
                run = self._instance.get_run_by_id(run_id)
                if run is not None and not run.is_finished:
                    self._instance.report_run_canceled(
                        run,
                        message=(
                            f"Run worker {pid} did not stop within {TERMINATE_GRACE_SECONDS:.0f} "
                            "s: killed."
                        ),
                    )
                return
            time.sleep(5.0)
            with contextlib.suppress(ProcessLookupError):
                if _is_worker(pid):
                    os.kill(pid, signal.SIGTERM)

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        pid = _worker_pid(run)
        if pid is None:
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, "no run worker recorded for this run")
        if _is_worker(pid):
            return CheckRunHealthResult(WorkerStatus.RUNNING, run_worker_id=str(pid))
        return CheckRunHealthResult(
            WorkerStatus.FAILED,
            f"run worker process {pid} is gone (killed, or the host restarted)",
            run_worker_id=str(pid),
        )


def in_daemon() -> bool:
    """`dagster-daemon run`, or `dagster dev`'s `python -m dagster._daemon run`."""
    argv0 = Path(sys.argv[0]).as_posix() if sys.argv else ""
    return "dagster-daemon" in argv0 or "dagster/_daemon" in argv0


def _worker_pid(run: DagsterRun) -> int | None:
    raw = run.tags.get(WORKER_PID_TAG)
    try:
        pid = int(raw) if raw else None
    except ValueError:
        return None
    return pid


def _is_worker(pid: int) -> bool:
    """Alive and still our worker (a pid may be reused once its process is gone)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return _WORKER_MODULE.encode() in cmdline and state != "Z"


def _descendants(pid: int) -> list[int]:
    """The processes below `pid` (a node's Pipes subprocess, step workers), from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found
