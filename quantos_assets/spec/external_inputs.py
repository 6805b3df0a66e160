"""Rules on a spec's external inputs: lake tables its nodes read that no node of it writes.

An external input is read under a local name, like an out; the table itself is named by
namespace and table. What a team may read is not the spec's to say (deploy/teams.yaml
`reads`, quantos_assets/tenancy/read_grants.py); these rules need only the spec.
"""

from __future__ import annotations

from quantos_assets.spec.models import DagSpec

Problem = tuple[str, str]


def external_input_problems(spec: DagSpec) -> list[Problem]:
    """A name that is also an out (which would the nodes read?), and a table in the
    pipeline's own namespace (its outs, read by name, pinned by the run that wrote them)."""
    made: dict[str, str] = {}
    for i, node in enumerate(spec.nodes):
        for k, out in enumerate(node.outs):
            made.setdefault(out, f"node '{node.id}' (nodes[{i}].outs[{k}])")
    problems: list[Problem] = []
    for name, external in spec.external_inputs.items():
        if name in made:
            problems.append(
                (
                    f"external_inputs.{name}",
                    (
                        f"'{name}' is also an out of {made[name]}: an input is read from the lake "
                        "or made by a node, not both; rename one of them"
                    ),
                )
            )
        namespace, table = external.identifier
        if namespace == spec.pipeline_id:
            problems.append(
                (
                    f"external_inputs.{name}.table",
                    (
                        f"'{external.table}' is in this pipeline's own namespace: read the out "
                        f"'{table}' by its name in ins"
                    ),
                )
            )
    return problems
