"""Rules on the names a spec makes: none reserved, none made twice.

The id pattern (models.NAME_PATTERN) makes names injective across specs; these rules
cover what a pattern cannot: names Dagster or the platform keep for themselves, and two
parts of one spec deriving one name (a node `freshness` beside a freshness block both
make the op `p__freshness`). Either would fail the whole code location at load, every
team's pipelines with it, so `quantos validate` and the gateway refuse them first.
"""

from __future__ import annotations

from quantos_assets.spec.derived_names import (
    DAGSTER_RESERVED_NAMES,
    RESERVED_PIPELINE_IDS,
    RESERVED_PIPELINE_PREFIXES,
    Namespace,
    derived_names,
    platform_conflict,
)
from quantos_assets.spec.models import DagSpec
from quantos_assets.spec.outside_rules import GateFloor

Problem = tuple[str, str]


def reserved_names(spec: DagSpec) -> list[Problem]:
    """Ids Dagster or the platform keep: a job, input or group of that name breaks the location."""
    problems: list[Problem] = []
    pid = spec.pipeline_id
    if pid in DAGSTER_RESERVED_NAMES:
        problems.append(
            (
                "pipeline_id",
                (
                    f"'{pid}' is reserved by Dagster (a Python keyword or one of its own names); "
                    "it would name the pipeline's job"
                ),
            )
        )
    elif pid in RESERVED_PIPELINE_IDS or pid.startswith(RESERVED_PIPELINE_PREFIXES):
        problems.append(
            (
                "pipeline_id",
                (
                    f"'{pid}' is reserved by the platform "
                    "(its own groups, assets, jobs and sensors use it)"
                ),
            )
        )
    for i, node in enumerate(spec.nodes):
        for k, out in enumerate(node.outs):
            if out in DAGSTER_RESERVED_NAMES:
                problems.append(
                    (
                        f"nodes[{i}].outs[{k}]",
                        (
                            f"'{out}' is reserved by Dagster (a Python keyword or one of its own "
                            "names); outs name the inputs of the nodes that read them"
                        ),
                    )
                )
    for name in spec.external_inputs:
        if name in DAGSTER_RESERVED_NAMES:
            problems.append(
                (
                    f"external_inputs.{name}",
                    (
                        f"'{name}' is reserved by Dagster (a Python keyword or one of its own "
                        "names); it names the input of the nodes that read it"
                    ),
                )
            )
    return problems


def colliding_names(spec: DagSpec, floor: GateFloor | None) -> list[Problem]:
    """Two parts of the spec deriving one name, or a name the platform defines; one problem
    per field, on the later part (a node, rather than the block it collides with). `floor`:
    what the firm's promotion policy adds to a gate."""
    first: dict[tuple[Namespace, str], str] = {}
    problems: dict[str, str] = {}
    for derived in derived_names(spec, floor):
        key = (derived.namespace, derived.name)
        clash = platform_conflict(derived.namespace, derived.name)
        if clash is not None:
            problems.setdefault(
                derived.field, f"makes the {derived.namespace} '{derived.name}', which is {clash}"
            )
        elif key in first and first[key] != derived.field:
            problems.setdefault(
                derived.field,
                f"makes the {derived.namespace} '{derived.name}', which {first[key]} makes too: "
                "rename one of them",
            )
        first.setdefault(key, derived.field)
    return list(problems.items())
