"""python_task: a `module:function` entrypoint run through dagster-pipes in a subprocess.

A subprocess keeps the node's code (and its crashes, memory, env) out of the
step process and is the same contract a Kubernetes pod gets in production:
inputs and outputs as Arrow files, params and out names as Pipes extras. The
calling convention is documented in `pipes_entry`.

The entrypoint must be under a module prefix the pipeline's team is allowed in
deploy/teams.yaml (checked here again, whatever admitted the spec), and the child
runs sandboxed: only the environment `step_environment` allows, in a working
directory of its own (not the repository's).

An image-only task on the embedded default runs here too, with the entrypoint the local
image map lists for its image (`local_images`): the same allow-list check, the same sandbox.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import tempfile
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from dagster import AssetExecutionContext, PipesSubprocessClient
from pyarrow import feather

from quantos_assets.kinds.base import NodeRun, NodeRunError, NodeValue, resource
from quantos_assets.kinds.entrypoints import entrypoint_problem, entrypoint_team
from quantos_assets.kinds.local_images import LocalImagesError, load_local_images
from quantos_assets.kinds.step_environment import prepare_workdir, scope_secrets, step_environment
from resources.artifact import Artifact
from resources.pipes_sandbox import SandboxedSubprocessClient
from resources.profile import Profile

ENTRY_MODULE = "quantos_assets.kinds.pipes_entry"


class PythonTaskRunner:
    required_resource_keys = frozenset({"pipes_subprocess_client"})

    def __init__(self, profile: Profile) -> None:
        """The profile's teams file and local image map, read at every step (an edit applies
        to the next one); on pods (staging/prod) the child gets the step's scoped secrets."""
        self.teams = (profile.teams_file, profile.teams_file_named)
        self.images = (profile.local_images_file, profile.local_images_file_named)
        self.pods = profile.cluster.pods

    def run(
        self, context: AssetExecutionContext, run: NodeRun, *, image_only: bool = False
    ) -> dict[str, NodeValue]:
        """`image_only`: the node's image runs as the entrypoint the local image map lists."""
        node = run.node
        if image_only:
            entrypoint, where = _image_entrypoint(run, self.images)
            what = f"image '{node.image}' (locally {entrypoint})"
        else:
            entrypoint = _entrypoint(run)
            where, what = "params.entrypoint", entrypoint
        params = {k: v for k, v in node.params.items() if k != "entrypoint"}
        clash = sorted(set(params) & set(run.inputs))
        if clash:
            raise NodeRunError(f"{run.label}: params {clash} have the names of inputs; rename one")
        allowed = _allowed_modules(run, entrypoint, self.teams, where)
        client = _sandboxed(resource(context, "pipes_subprocess_client"), run.label)
        # The child's cwd, HOME and TMPDIR: 0700, gone when the step ends.
        with tempfile.TemporaryDirectory(prefix=f"quantos-{node.id}-") as tmp:
            work = Path(tmp)
            (work / "out").mkdir()
            prepare_workdir(work)
            extras = {
                "entrypoint": entrypoint,
                "allowed_modules": allowed,
                "inputs": _write_inputs(run.inputs, work / "in"),
                "params": _jsonable(params, run.label),
                "outs": list(node.outs),
                "out_dir": str(work / "out"),
                "error_path": str(work / "error.txt"),
                # The partition key of a ranged run is not one session: name it.
                "session": run.session,
                # A data-arrival run's object: {"uri", "version"} (else null).
                "arrival": run.arrival.as_extra() if run.arrival else None,
            }
            try:
                client.run(
                    context=context,
                    # -P: the cwd is not put on sys.path (nothing in it can shadow a module)
                    command=[sys.executable, "-P", "-m", ENTRY_MODULE],
                    extras=extras,
                    env=step_environment(
                        node.env, work, scope_secrets(os.environ) if self.pods else {}
                    ),
                    cwd=str(work),
                )
            except Exception as err:  # noqa: BLE001 - the Pipes client raises its own (private) error type
                error_file = work / "error.txt"
                reason = error_file.read_text() if error_file.exists() else _pipes_reason(err)
                raise NodeRunError(
                    f"{run.label}: {what} failed: {reason}", retryable=True
                ) from None
            return {out: _read_out(work / "out", out, run.label) for out in node.outs}


_KILLED = re.compile(r"failed with code -(\d+)\s*$")


def _pipes_reason(err: Exception) -> str:
    """The Pipes client's first line, naming the signal when the process was killed: Pipes
    reports `failed with code -9`, and an operator should not have to know that a negative
    code is a signal (SIGKILL: the out-of-memory killer, or someone killed it)."""
    first = (str(err).splitlines() or [type(err).__name__])[0]
    match = _KILLED.search(first)
    if match is None:
        return first
    number = int(match.group(1))
    try:
        name = signal.Signals(number).name
    except ValueError:
        name = f"signal {number}"
    return f"its process was killed by {name} (exit code -{number})"


def _entrypoint(run: NodeRun) -> str:
    node = run.node
    entrypoint = node.params.get("entrypoint")
    if not entrypoint:
        # An image-only task reaches this runner only through PythonTaskDispatch (image_only).
        where = (
            f"; image '{node.image}' runs as a pod (staging/prod) or as its local entrypoint, "
            "through the python_task dispatch"
            if node.image
            else "; set it to 'package.module:function'"
        )
        raise NodeRunError(f"{run.label}: python_task has no params.entrypoint{where}")
    module, sep, function = str(entrypoint).partition(":")
    if not (sep and module and function.isidentifier()):
        raise NodeRunError(
            f"{run.label}: params.entrypoint '{entrypoint}' is not of the form "
            "'package.module:function'"
        )
    return str(entrypoint)


def _image_entrypoint(run: NodeRun, images_file: tuple[Path, bool]) -> tuple[str, str]:
    """(entrypoint, where it came from) of an image-only task on the embedded default."""
    try:
        images = load_local_images(*images_file)
        return images.entrypoint_for(
            str(run.node.image)
        ), f"the local entrypoint of image '{run.node.image}' ({images.where})"
    except LocalImagesError as err:
        raise NodeRunError(f"{run.label}: {err}") from None


def _write_inputs(inputs: dict[str, NodeValue], folder: Path) -> dict[str, dict[str, str]]:
    folder.mkdir()
    refs: dict[str, dict[str, str]] = {}
    for name, value in inputs.items():
        if isinstance(value, Artifact):
            path = folder / f"{name}.bin"
            path.write_bytes(value.data)
            refs[name] = {"path": str(path), "format": "bytes"}
        else:
            path = folder / f"{name}.arrow"
            feather.write_feather(value, path)
            refs[name] = {"path": str(path), "format": "arrow"}
    return refs


def _read_out(folder: Path, out: str, label: str) -> NodeValue:
    table_path, bytes_path = folder / f"{out}.arrow", folder / f"{out}.bin"
    if table_path.exists():
        # Read into memory, not mapped: the temporary folder is gone once we return.
        return feather.read_table(table_path, memory_map=False)
    if bytes_path.exists():
        return Artifact(data=bytes_path.read_bytes(), role="file", filename=f"{out}.bin")
    raise NodeRunError(f"{label}: the entrypoint wrote no value for out '{out}'")


def _allowed_modules(
    run: NodeRun, entrypoint: str, teams_file: tuple[Path, bool], where: str = "params.entrypoint"
) -> list[str]:
    """The module prefixes of the pipeline's team (deploy/teams.yaml, read now: an edit
    applies to the next step); refuses an entrypoint outside them before anything starts.
    `where`: what named the entrypoint (the spec, or the local image map), for the message."""
    from quantos_assets.tenancy.teams import TeamsFileError, load_teams

    try:
        teams = load_teams(*teams_file)
    except TeamsFileError as err:
        raise NodeRunError(f"{run.label}: cannot check {where}: {err}") from None
    team = entrypoint_team(run.spec.labels)
    allowed = teams.entrypoints_for(team)
    problem = entrypoint_problem(entrypoint, allowed, team)
    if problem is not None:
        raise NodeRunError(f"{run.label}: {where} {problem}")
    return list(allowed)


def _sandboxed(client: object, label: str) -> SandboxedSubprocessClient:
    """Whatever Pipes subprocess client is bound, the child never gets the step's os.environ."""
    if not isinstance(client, PipesSubprocessClient):
        raise NodeRunError(
            f"{label}: resource pipes_subprocess_client is a {type(client).__name__}, not a "
            "PipesSubprocessClient"
        )
    return SandboxedSubprocessClient.like(client)


def _jsonable(params: dict[str, Any], label: str) -> dict[str, Any]:
    """Pipes extras travel as JSON: YAML dates become ISO strings, anything else must be JSON."""

    def default(value: Any) -> Any:
        if isinstance(value, (date, datetime)):
            return value.isoformat()
        if isinstance(value, Decimal):
            return float(value)
        raise TypeError(type(value).__name__)

    try:
        return json.loads(json.dumps(params, default=default))
    except TypeError as err:
        raise NodeRunError(
            f"{label}: params hold a {err} value, which cannot be passed to a subprocess"
        ) from None
