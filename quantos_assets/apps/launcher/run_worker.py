"""The run worker: one run executed as `dagster api execute_run` does, inside the run's span.

Both of our run launchers end here. The warm launcher's forked child (worker.py) calls
`execute_run`; a Kubernetes run pod (k8s_run_launcher.py) runs this module,
`python -m quantos_assets.apps.launcher.run_worker EXECUTE_RUN_ARGS`, where dagster-k8s's
launcher would run `dagster api execute_run EXECUTE_RUN_ARGS`. Either way the `run` span
opens before the run starts and its context is written on the run (`quantos/run_traceparent`)
for the steps' spans, in whatever process or pod they run: one submission's spans are
submission -> run -> steps wherever it runs.

With traces off (no QUANTOS_OTLP_ENDPOINT) the run pod does what `dagster api execute_run`
did and nothing more: no OpenTelemetry import, no run read, no tag written.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from quantos_assets.observability.traces import run_span, tracing
from resources.run_tag_keys import TAG_RUN_TRACEPARENT

if TYPE_CHECKING:
    from dagster._grpc.types import ExecuteRunArgs

__all__ = ["RUN_WORKER_MODULE", "execute_run", "run_worker_command"]

RUN_WORKER_MODULE = "quantos_assets.apps.launcher.run_worker"


def run_worker_command(args: ExecuteRunArgs) -> list[str]:
    """The command of a process that runs `args`'s run here: what ExecuteRunArgs'
    get_command_args is for `dagster api execute_run`, with this module instead, started by the
    code location's own interpreter (the one its job origin names, as Dagster's
    `--use-python-environment-entry-point` does)."""
    from dagster._serdes import serialize_value

    return [args.job_origin.executable_path, "-m", RUN_WORKER_MODULE, serialize_value(args)]


def execute_run(request: str, worker_tags: Mapping[str, str] | None = None) -> None:
    """Do what `dagster api execute_run REQUEST` does (REQUEST: serialized ExecuteRunArgs),
    inside the run's span. `worker_tags` (the warm worker's pid) go on the run before it
    starts, in the same write as the run span's context; with neither, nothing is written."""
    from dagster import DagsterInstance
    from dagster._cli.api import execute_run_command
    from dagster._grpc.types import ExecuteRunArgs
    from dagster._serdes import deserialize_value

    args = deserialize_value(request, ExecuteRunArgs)
    # the click command's own function: `dagster api execute_run`, minus argument parsing
    execute = execute_run_command.callback
    if execute is None:
        raise SystemExit("dagster api execute_run has no callback")
    if args.instance_ref is None:
        raise SystemExit(f"run {args.run_id}: its ExecuteRunArgs name no instance")
    with DagsterInstance.from_ref(args.instance_ref) as instance:
        run = instance.get_run_by_id(args.run_id) if tracing() is not None else None
    tags = run.tags if run is not None else {}
    with run_span(args.run_id, run.job_name if run is not None else "", tags) as traceparent:
        # Written by the worker itself before the run starts: a tag written by the launcher
        # could race the run's own status writes to the same row. The run span's context
        # goes with it, for the steps' spans in whatever process they run.
        written = dict(worker_tags or {})
        if traceparent is not None:
            written[TAG_RUN_TRACEPARENT] = traceparent
        if written:
            with DagsterInstance.from_ref(args.instance_ref) as instance:
                instance.add_run_tags(args.run_id, written)
        execute(input_json=request, compressed_input_json=None)


def main(argv: Sequence[str]) -> int:
    if len(argv) != 2:
        raise SystemExit(f"usage: python -m {RUN_WORKER_MODULE} EXECUTE_RUN_ARGS")
    execute_run(argv[1])  # a failed run with set_exit_code_on_failure exits non-zero in it
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
