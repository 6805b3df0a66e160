"""A run worker that loads the code location first and waits for its run on stdin.

`python -m quantos_assets.launcher.worker POINTER`: POINTER is the serialized code pointer
of the location. Once the location is loaded the worker reads one line, the serialized
`ExecuteRunArgs` of its run, and does exactly what `dagster api execute_run` does with
it (the command Dagster's Kubernetes and Docker launchers run). An empty line or a
closed stdin (a discarded spare) ends it without running anything.
"""
from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    from dagster import Definitions
    from dagster._cli.api import execute_run_command
    from dagster._core.code_pointer import CodePointer
    from dagster._serdes import deserialize_value
    from dagster._utils.interrupts import setup_interrupt_handlers

    setup_interrupt_handlers()  # SIGTERM (terminate) interrupts the run like SIGINT, as in Dagster's CLI

    pointer = deserialize_value(argv[1])
    if not isinstance(pointer, CodePointer):
        raise SystemExit(f"not a serialized code pointer: {argv[1][:200]}")
    target = pointer.load_target()
    if isinstance(target, Definitions):
        # the asset graph and jobs are resolved lazily: resolve them now, not in the run
        target.get_repository_def()
    line = sys.stdin.readline().strip()
    if not line:
        return 0
    # the click command's own function: `dagster api execute_run`, minus argument parsing
    execute_run = execute_run_command.callback
    if execute_run is None:
        raise SystemExit("dagster api execute_run has no callback")
    execute_run(input_json=line, compressed_input_json=None)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
