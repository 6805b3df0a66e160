"""Which lake tables a team's pipelines may read as external inputs (deploy/teams.yaml `reads`).

An external input reads a table no node of the spec writes, in the one catalog every team
shares, so naming it is as strong as reading it: without a grant a spec could read another
desk's tables, or another team's pipeline outputs, around the isolation of namespaces. A
grant is `namespace.table` where either part may hold `*` globs (`market.*`, `vendor_*.*`);
the default is none. A namespace that is a registered pipeline's id is readable only with a
grant that names that namespace without a glob: `*.*` opens market data, never a pipeline.

Whose grants apply is the pipeline's own team (`labels.team`, else `owner`; none: the
`defaults`), as for python_task entrypoints, the same on every path: `quantos validate`,
admission (gateway, Kafka, scheduled jobs, `quantos register`) and the code location, which
leaves out a registered spec whose reads its team is not granted.
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from fnmatch import fnmatchcase
from typing import Protocol

from quantos_assets.spec.models import DagSpec
from quantos_assets.tenancy.teams import TeamsFile, pipeline_team

Problem = tuple[str, str]


class ReadPolicy(Protocol):
    """What the check needs of deploy/teams.yaml (tenancy.teams.TeamsFile)."""

    def reads_for(self, team: str | None) -> list[str]: ...


def granted(table: tuple[str, str], grants: Sequence[str]) -> bool:
    """Some grant matches `namespace.table`, part by part."""
    return any(_matches(grant, table) for grant in grants)


def granted_by_name(table: tuple[str, str], grants: Sequence[str]) -> bool:
    """Some grant matches the table and names its namespace outright (no glob in it)."""
    return any(_matches(g, table) and g.partition(".")[0] == table[0] for g in grants)


def _matches(grant: str, table: tuple[str, str]) -> bool:
    namespace, _, name = grant.partition(".")
    return fnmatchcase(table[0], namespace) and fnmatchcase(table[1], name)


def describe_grants(grants: Sequence[str], team: str | None) -> str:
    whose = f"team {team}" if team else "pipelines without labels.team (defaults)"
    listed = ", ".join(grants) if grants else "none"
    return f"{whose} may read: {listed} (deploy/teams.yaml reads)"


def read_problems(
    spec: DagSpec, grants: Sequence[str], team: str | None, pipelines: Container[str]
) -> list[Problem]:
    """(field path, message) per external input the grants do not cover; `pipelines`: the
    registered pipeline ids, whose namespaces need a grant naming them."""
    problems: list[Problem] = []
    for name, external in spec.external_inputs.items():
        table = external.identifier
        path = f"external_inputs.{name}.table"
        if table[0] in pipelines and not granted_by_name(table, grants):
            problems.append(
                (
                    path,
                    (
                        f"'{external.table}' is in the namespace of pipeline '{table[0]}': only a "
                        f"grant naming '{table[0]}' opens it; {describe_grants(grants, team)}"
                    ),
                )
            )
        elif not granted(table, grants):
            problems.append(
                (path, f"'{external.table}' is not granted: {describe_grants(grants, team)}")
            )
    return problems


def pipeline_read_refusals(
    spec: DagSpec, policy: ReadPolicy, pipelines: Container[str]
) -> list[str]:
    """`read_problems` against the grants of the pipeline's own team, one line each."""
    if not spec.external_inputs:
        return []
    team = pipeline_team(spec.labels)
    grants = policy.reads_for(team)
    return [f"{p}: {m}" for p, m in read_problems(spec, grants, team, pipelines)]


def external_namespaces(policy: TeamsFile) -> set[str]:
    """The namespace part of every team's read grants (globs kept, a bare `*` left out: it
    names no namespace in particular)."""
    grants = [*policy.defaults.reads, *(g for t in policy.teams.values() for g in t.reads)]
    return {g.partition(".")[0] for g in grants} - {"*"}


def namespace_takeover(pipeline_id: str, policy: TeamsFile) -> str | None:
    """Why a NEW pipeline may not take this id, or None. A pipeline writes its outs to
    `<pipeline_id>.<out>`: one named like a namespace the teams file grants as external data
    (`market` for `market.*`) would overwrite that data for every team that reads it. (An
    already registered pipeline keeps its id: a grant naming it shares its outs; the caller
    asks the registry only when this says no.)"""
    for namespace in sorted(external_namespaces(policy)):
        if fnmatchcase(pipeline_id, namespace):
            return (
                f"'{pipeline_id}' is the lake namespace '{namespace}', which deploy/teams.yaml "
                "grants as external data to read: a pipeline there would overwrite its tables"
            )
    return None
