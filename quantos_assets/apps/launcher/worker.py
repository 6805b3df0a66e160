"""The process that loads a code location once and forks one run worker per run.

`python -m quantos_assets.apps.launcher.worker POINTER REPLY_FD`: POINTER is the serialized code
pointer of the location. Once the location is loaded (the asset graph and jobs resolved),
this process writes `ready` to REPLY_FD and then reads lines on stdin, each the serialized
`ExecuteRunArgs` of one run. For each it forks; the child records its pid on the run and
does exactly what `dagster api execute_run` does inside the run's span (run_worker.py, as a
Kubernetes run pod does), then exits like any Python; the parent writes the child's pid to
REPLY_FD. A closed stdin (the launcher let it go, or the daemon died) ends it; the run
workers it forked carry on. The line `rebuild` (the specs changed, not the code) rebuilds the
location in this process (its module re-executed, every import kept) and answers `ready`:
a registry change costs the build, not a new interpreter.

Why fork: importing Dagster, dbt, pandas and the location costs ~3 s of CPU per process;
a forked child starts with all of it loaded (shared copy-on-write), so each run costs only
its own work. Loading starts no thread and opens no connection (a forked child gets
only the forking thread, and would share the parent's sockets): a location that does is
named in a warning on stderr.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import threading

from quantos_assets.apps.launcher.run_worker import execute_run
from resources.run_tag_keys import WORKER_PID_TAG


def _load(serialized_pointer: str) -> None:
    from dagster import Definitions
    from dagster._core.code_pointer import CodePointer
    from dagster._serdes import deserialize_value

    pointer = deserialize_value(serialized_pointer)
    if not isinstance(pointer, CodePointer):
        raise SystemExit(f"not a serialized code pointer: {serialized_pointer[:200]}")
    target = pointer.load_target()
    if isinstance(target, Definitions):
        # the asset graph and jobs are resolved lazily: resolve them now, not in each run
        target.get_repository_def()


def _rebuild(serialized_pointer: str) -> None:
    """Re-execute the location's module (not what it imports) and load it again: the
    Definitions are rebuilt from the registry as it is now, on the code already imported."""
    import importlib

    from dagster._core.code_pointer import ModuleCodePointer
    from dagster._serdes import deserialize_value

    pointer = deserialize_value(serialized_pointer)
    if not isinstance(pointer, ModuleCodePointer) or pointer.module not in sys.modules:
        raise SystemExit(f"cannot rebuild {serialized_pointer[:200]} in place")
    importlib.reload(sys.modules[pointer.module])
    _load(serialized_pointer)


def _serve(reply_fd: int, serialized_pointer: str) -> str | None:
    """Fork a worker per request line. Returns the request in a child, None at end of input."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the workers: no zombies
    gc.freeze()  # what is loaded is kept: no collection pass copies those pages in each child
    others = [t.name for t in threading.enumerate() if t is not threading.current_thread()]
    if others:
        print(
            f"WARNING: the code location started threads {others}: forked run workers lack them",
            file=sys.stderr,
        )
    os.write(reply_fd, b"ready\n")
    while line := sys.stdin.readline():
        request = line.strip()
        if not request:
            continue
        if request == "rebuild":
            gc.unfreeze()
            _rebuild(serialized_pointer)  # raises (and the process exits) when it cannot
            gc.freeze()
            os.write(reply_fd, b"ready\n")
            continue
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the run waits for its own subprocesses
            os.close(reply_fd)
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)  # the requests pipe is the loader's, not this run's
            os.close(devnull)
            return request
        os.write(reply_fd, f"{pid}\n".encode())
    return None


def _run(request: str) -> None:
    from dagster._utils.interrupts import setup_interrupt_handlers

    if "numpy" in sys.modules:  # a fresh process would have drawn its own seed
        sys.modules["numpy"].random.seed()
    # SIGTERM (terminate) interrupts the run like SIGINT, as in Dagster's CLI
    setup_interrupt_handlers()
    # The pid, for the launcher's termination and health checks from any process on the host.
    execute_run(request, {WORKER_PID_TAG: str(os.getpid())})


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        raise SystemExit("usage: python -m quantos_assets.apps.launcher.worker POINTER REPLY_FD")
    _load(argv[1])
    request = _serve(int(argv[2]), argv[1])
    if request is not None:
        _run(request)  # in a forked child; it then exits as a Python process does
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
