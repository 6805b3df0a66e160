"""WarmRunLauncher: the embedded default's run launcher, with run workers started ahead.

Dagster's DefaultRunLauncher asks the code server to spawn a fresh Python for every run,
which imports Dagster and loads the code location (dbt manifest included) before the run
can report STARTED: seconds per run on this hardware, most of a submission's wait. This
launcher keeps `spares` workers that have already loaded the location
(`quantos_assets.launcher.worker`) and hands a run to one of them; the worker then does
exactly what `dagster api execute_run` does (as Dagster's Kubernetes launcher runs it).
Each worker runs one run and exits, so runs stay isolated from each other.

A worker that was started before the code changed (a new spec, an edit, a new dbt
manifest; see code_fingerprint.py) is discarded, never used: that run starts cold, as
with the default launcher. Staging/prod use dagster-k8s's K8sRunLauncher instead.

Termination and run monitoring work from any process on the host (webserver, daemon):
the worker's pid is kept in a run tag, and checked against /proc before it is signalled.
"""
from __future__ import annotations

import contextlib
import os
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

from quantos_assets.launcher.code_fingerprint import code_fingerprint

WORKER_PID_TAG = "quantos/run_worker_pid"
# How long a terminated worker gets to stop (finishing the step's cleanup) before it is killed.
TERMINATE_GRACE_SECONDS = 30.0
_WORKER_MODULE = "quantos_assets.launcher.worker"


@dataclass
class _Spare:
    proc: subprocess.Popen
    fingerprint: str
    started: float = field(default_factory=time.monotonic)


class WarmRunLauncher(RunLauncher, ConfigurableClass):
    def __init__(
        self,
        spares: int = 1,
        preload: Mapping[str, str] | None = None,
        inst_data: ConfigurableClassData | None = None,
    ) -> None:
        self._inst_data = inst_data
        self._spares_wanted = spares
        self._preload = dict(preload) if preload else None
        self._spares: dict[str, list[_Spare]] = {}  # serialized code pointer -> ready workers
        self._lock = threading.Lock()
        super().__init__()

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return {
            "spares": Field(
                IntSource, is_required=False, default_value=1,
                description="Workers kept loaded and waiting for a run (0: start every run cold).",
            ),
            "preload": Field(
                {"module": str, "attribute": str},
                is_required=False,
                description=(
                    "The code location to load spares of when the daemon starts (module and its "
                    "Definitions attribute, from the daemon's working directory), so the first "
                    "run is warm too; without it, spares start after the first launch."
                ),
            ),
        }

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]) -> WarmRunLauncher:
        return cls(inst_data=inst_data, **config_value)

    def register_instance(self, instance: DagsterInstance) -> None:
        super().register_instance(instance)
        # Only the daemon launches runs (the queue's dequeuer); the webserver's copy of the
        # launcher terminates and health-checks, and must not hold spares of its own.
        if self._preload and self._spares_wanted and in_daemon():
            pointer = ModuleCodePointer(
                module=self._preload["module"], fn_name=self._preload["attribute"], working_directory=os.getcwd()
            )
            key = serialize_value(pointer)
            workdir = Path(os.getcwd())
            with self._lock:
                self._spares.setdefault(key, [])
                self._top_up(key, workdir, self._fingerprint(workdir))

    # -- launching --------------------------------------------------------------------------

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        origin = run.job_code_origin
        if origin is None:
            raise ValueError(f"run {run.run_id} has no code origin: it cannot be launched")
        pointer = origin.repository_origin.code_pointer
        # dagster's PackableValue names no abstract CodePointer; each concrete pointer is a serdes record
        key = serialize_value(pointer)  # type: ignore[arg-type]
        workdir = Path(getattr(pointer, "working_directory", None) or os.getcwd())
        fingerprint = self._fingerprint(workdir)
        with self._lock:
            spare = self._take(key, fingerprint)
            warm = spare is not None
            proc = spare.proc if spare else self._spawn(key, workdir)
            args = ExecuteRunArgs(job_origin=origin, run_id=run.run_id, instance_ref=self._instance.get_ref())
            assert proc.stdin is not None
            # The pid first: a launcher that dies after the hand-over still leaves the run
            # terminable and its worker's health checkable.
            self._instance.add_run_tags(run.run_id, {WORKER_PID_TAG: str(proc.pid)})
            proc.stdin.write((serialize_value(args) + "\n").encode())
            proc.stdin.close()
            self._top_up(key, workdir, fingerprint)
        age = f", started {time.monotonic() - spare.started:.1f} s before" if spare else ""
        self._instance.report_engine_event(
            f"Run handed to {'a warm' if warm else 'a new'} run worker (pid {proc.pid}{age}).", run, cls=self.__class__
        )

    def _fingerprint(self, workdir: Path) -> str:
        from resources.profile import active_profile

        profile = active_profile()
        manifest = workdir / "dbt_project" / "target" / "manifest.json"
        return code_fingerprint(workdir, [profile.specs_dir, manifest])

    def _take(self, key: str, fingerprint: str) -> _Spare | None:
        """A live spare loaded from the current code; stale or dead ones are let go."""
        found = None
        keep = []
        for spare in self._spares.get(key, []):
            if found is None and spare.fingerprint == fingerprint and spare.proc.poll() is None:
                found = spare
            elif spare.fingerprint == fingerprint and spare.proc.poll() is None:
                keep.append(spare)
            else:
                _release(spare.proc)
        self._spares[key] = keep
        return found

    def _top_up(self, key: str, workdir: Path, fingerprint: str) -> None:
        while len(self._spares[key]) < self._spares_wanted:
            self._spares[key].append(_Spare(self._spawn(key, workdir), fingerprint))

    def _spawn(self, key: str, workdir: Path) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-m", _WORKER_MODULE, key], cwd=workdir, stdin=subprocess.PIPE, env=os.environ.copy()
        )
        # reap it when it exits: the launcher's process (the daemon) is its parent
        threading.Thread(target=proc.wait, name=f"reap-run-worker-{proc.pid}", daemon=True).start()
        return proc

    def dispose(self) -> None:
        with self._lock:
            for spares in self._spares.values():
                for spare in spares:
                    _release(spare.proc)
            self._spares.clear()

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
            os.kill(pid, signal.SIGTERM)  # the worker maps SIGTERM to an interrupt: the run is CANCELED
        except ProcessLookupError:
            return False
        threading.Thread(target=self._see_to_exit, args=(run_id, pid), name=f"terminate-{pid}", daemon=True).start()
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
                        run, message=f"Run worker {pid} did not stop within {TERMINATE_GRACE_SECONDS:.0f} s: killed."
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
            WorkerStatus.FAILED, f"run worker process {pid} is gone (killed, or the host restarted)", run_worker_id=str(pid)
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


def _release(proc: subprocess.Popen) -> None:
    """A spare that will not run anything: closing its stdin ends it once it has loaded."""
    try:
        if proc.stdin is not None and not proc.stdin.closed:
            proc.stdin.close()
    except OSError:
        pass
