"""Which `module:function` a python_task may name: the per-team allow-list of module prefixes.

An entrypoint is code the platform runs on a team's behalf, so naming one is as strong as
running it: `subprocess:getoutput` with a `cmd` param would be a shell. deploy/teams.yaml
gives each team (and `defaults`) the module prefixes its entrypoints may come from
(`entrypoints`, default `quantos_assets.tasks`). A prefix matches whole dotted components:
`quantos_assets.tasks` allows `quantos_assets.tasks.noop` but not `quantos_assets.tasksx`.

The same pure check runs at admission (gateway), in `quantos validate`, and in the step
itself just before the subprocess starts (a spec placed in the registry by hand gets no
further than one that was submitted). Whose list applies is `entrypoint_team`: the
pipeline's team, or `defaults` for a pipeline without one, the same everywhere, so what was
admitted is what runs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Protocol

from quantos_assets.spec.models import DagSpec, NodeKind

# Dotted Python identifiers: what importlib.import_module resolves without a package anchor.
MODULE_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
DEFAULT_ENTRYPOINT_MODULES = ("quantos_assets.tasks",)


def entrypoint_team(labels: Mapping[str, str]) -> str | None:
    """The team whose allow-list applies: the pipeline's `labels.team` (else `owner`); None
    means the `defaults` policy. Never the submitter's team nor a run tag: a Kafka message
    can claim any team for a pipeline without one, and the step must agree with admission."""
    return labels.get("team") or labels.get("owner")


def module_of(entrypoint: str) -> str | None:
    """The module an entrypoint names, None if it is not `package.module:function`."""
    module, sep, function = entrypoint.partition(":")
    if not sep or not MODULE_PATH.match(module) or not function.isidentifier():
        return None
    return module


def module_allowed(module: str, allowed: Sequence[str]) -> bool:
    """Prefix match on whole dotted components (`a.b` allows `a.b` and `a.b.c`, not `a.bc`)."""
    return any(module == prefix or module.startswith(prefix + ".") for prefix in allowed)


def describe_allowed(allowed: Sequence[str], team: str | None) -> str:
    whose = f"team {team}" if team else "pipelines without labels.team (defaults)"
    listed = ", ".join(allowed) if allowed else "none"
    return f"{whose} may run entrypoints under: {listed} (deploy/teams.yaml entrypoints)"


def entrypoint_problem(entrypoint: str, allowed: Sequence[str], team: str | None) -> str | None:
    """Why one entrypoint may not run (None: it may)."""
    module = module_of(entrypoint)
    if module is None:
        return f"'{entrypoint}' is not of the form 'package.module:function'"
    if not module_allowed(module, allowed):
        return f"'{entrypoint}' is not allowed: {describe_allowed(allowed, team)}"
    return None


def entrypoint_problems(
    spec: DagSpec, allowed: Sequence[str], team: str | None = None
) -> list[tuple[str, str]]:
    """(field path, message) per python_task whose entrypoint the allow-list refuses."""
    problems: list[tuple[str, str]] = []
    for i, node in enumerate(spec.nodes):
        if node.kind is not NodeKind.python_task or "entrypoint" not in node.params:
            continue
        problem = entrypoint_problem(str(node.params["entrypoint"]), allowed, team)
        if problem is not None:
            problems.append((f"nodes[{i}].params.entrypoint", problem))
    return problems


def entrypoint_refusals(
    spec: DagSpec, allowed: Sequence[str], team: str | None = None
) -> list[str]:
    """One line per offending node, `nodes[i].params.entrypoint: why` (empty: all allowed)."""
    return [f"{path}: {message}" for path, message in entrypoint_problems(spec, allowed, team)]


class EntrypointPolicy(Protocol):
    """What the check needs of deploy/teams.yaml (gateway.teams.TeamsFile)."""

    def entrypoints_for(self, team: str | None) -> list[str]: ...


def pipeline_entrypoint_refusals(spec: DagSpec, policy: EntrypointPolicy) -> list[str]:
    """`entrypoint_refusals` against the allow-list of the pipeline's own team."""
    team = entrypoint_team(spec.labels)
    return entrypoint_refusals(spec, policy.entrypoints_for(team), team)
