"""Every name a spec makes in the code location, in one place, by namespace.

A code location is one set of names per namespace (asset keys, ops, jobs, schedules and
sensors, groups, asset checks, partitions sets): two definitions sharing a name fail the
whole location, every team's pipelines with it. The builders name what they build with the
functions below, and `derived_names` lists the same names for a spec without building it,
so a registry can check a new spec against every registered one in milliseconds (and a
test checks the list against the Definitions actually built: tests/unit/test_derived_names.py).

Pipeline and node ids have no '__' inside and no '_' at either end (models.NAME_PATTERN),
so the `pipeline__suffix` names are injective across specs by construction; what is left
to check is within one spec (a node called `freshness` next to a freshness block) and
against the names the platform itself defines (`invalid_specs`, the location's sensors).
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from quantos_assets.spec.models import EXTERNAL_KINDS, DagSpec
from quantos_assets.spec.outside_rules import GateFloor

Namespace = Literal[
    "asset key", "op", "job", "schedule/sensor", "group", "asset check", "partitions set"
]
NAMESPACES: tuple[Namespace, ...] = (
    "asset key",
    "op",
    "job",
    "schedule/sensor",
    "group",
    "asset check",
    "partitions set",
)

# -- names the platform defines itself ---------------------------------------------------------

INVALID_SPECS_GROUP = "invalid_specs"  # invalid specs are shown as assets of this group
DBT_GROUP = "dbt"  # the dbt models' group and asset-key prefix
# The group of external inputs' assets no pipeline of ours produces (keys: [namespace, table])
EXTERNAL_GROUP = "external"
DBT_OPS = "dbt_models"  # the dbt models' ops: dbt_models, dbt_models__<partitions set>
GATEWAY_JOBS_SENSOR = "gateway_jobs"
KAFKA_SUBMISSIONS_SENSOR = "kafka_submissions"
LINEAGE_SENSOR = "quantos_openlineage"
STEP_NOTIFICATIONS_SENSOR = "quantos_step_notifications"
RUN_FAILURE_SENSOR = "quantos_run_failure_notifications"
ASSET_JOB = "__ASSET_JOB"  # Dagster's implicit asset job (and __ASSET_JOB_<n> variants)
LAKE_JOB = "quantos_lake_maintenance"  # lake maintenance's job (quantos_assets/lake)
# Its op: named as a node of the pipeline LAKE_JOB would be, which no spec can be.
LAKE_OP = f"{LAKE_JOB}__pass"
LAKE_SCHEDULE = "quantos_lake_maintenance_daily"

PLATFORM_SENSORS = frozenset(
    {
        GATEWAY_JOBS_SENSOR,
        KAFKA_SUBMISSIONS_SENSOR,
        LINEAGE_SENSOR,
        STEP_NOTIFICATIONS_SENSOR,
        RUN_FAILURE_SENSOR,
        LAKE_SCHEDULE,
    }
)
PLATFORM_JOBS = frozenset({LAKE_JOB})
# A pipeline id is its job, its group and the first part of its asset keys: these would
# share a group or key prefix with the platform's assets, or read as one of its sensors.
RESERVED_PIPELINE_IDS = frozenset(
    {INVALID_SPECS_GROUP, DBT_GROUP, EXTERNAL_GROUP, DBT_OPS, *PLATFORM_SENSORS, *PLATFORM_JOBS}
)
RESERVED_PIPELINE_PREFIXES = (DBT_OPS,)

# dagster._core.definitions.utils.DISALLOWED_NAMES, copied so `quantos validate` need not
# import Dagster (tests/unit/test_derived_names.py keeps the copy equal). A job, input or
# output with one of these names fails the whole code location.
DAGSTER_RESERVED_NAMES = frozenset(
    {
        "context",
        "conf",
        "config",
        "meta",
        "arg_dict",
        "dict",
        "input_arg_dict",
        "output_arg_dict",
        "int",
        "str",
        "float",
        "bool",
        "input",
        "output",
        "type",
        *keyword.kwlist,
    }
)

# -- names a spec derives (the builders call these) --------------------------------------------

PROMOTED = "promoted"  # gate stage assets: [pipeline, promoted, stage]
KAFKA_LAG_ASSET = "kafka_lag"  # lag sensors record observations on [pipeline, kafka_lag]
ARRIVALS = "arrivals"  # data-arrival sensors: p__arrivals, p__arrivals<i>
FRESHNESS_CHECK = "calendar_freshness"
CARD_CHECK = "model_card"
REPRODUCIBLE_CHECK = "reproducible"


def op_name(pipeline_id: str, node_id: str) -> str:
    """A node's op, and so its step key in every run."""
    return f"{pipeline_id}__{node_id}"


def freshness_name(pipeline_id: str) -> str:
    """The freshness checks' op and the sensor that judges them (two namespaces)."""
    return f"{pipeline_id}__freshness"


def gate_check_name(pipeline_id: str) -> str:
    return f"{pipeline_id}__gate"


def stage_op_name(pipeline_id: str, stage: str) -> str:
    """The op Dagster names after a stage asset's key (AssetKey.to_python_identifier)."""
    return f"{pipeline_id}__{PROMOTED}__{stage}"


def partitions_set_name(pipeline_id: str) -> str:
    """One set of session keys per pipeline: two pipelines may start on different days."""
    return f"{pipeline_id}__sessions"


def session_sync_name(pipeline_id: str) -> str:
    return f"{partitions_set_name(pipeline_id)}_sync"


def schedule_name(pipeline_id: str, calendar: str) -> str:
    return f"{pipeline_id}__{calendar.lower()}_schedule".replace("-", "_").replace("/", "_")


def topic_label(topic: str) -> str:
    """A topic (or topic regex) as a name part and a tag value."""
    return re.sub(r"[^A-Za-z0-9_]", "_", topic).strip("_")[:40] or "topic"


def lag_sensor_name(pipeline_id: str, topic: str, index: int) -> str:
    """`p__kafka_lag_<topic>` for the first trigger, `p__kafka_lag<i>_<topic>` after it: the
    index sits before the label, so two triggers never share a name (`x_1` as topic 0 and
    `x` as topic 1 did)."""
    label = topic_label(topic)
    return (
        f"{pipeline_id}__{KAFKA_LAG_ASSET}_{label}"
        if index == 0
        else f"{pipeline_id}__{KAFKA_LAG_ASSET}{index}_{label}"
    )


def arrivals_sensor_name(pipeline_id: str, index: int) -> str:
    """`p__arrivals` for a spec's first trigger, `p__arrivals<i>` for the one at index i
    (the index is the trigger's place in `triggers`, as for lag sensors)."""
    return f"{pipeline_id}__{ARRIVALS}" if index == 0 else f"{pipeline_id}__{ARRIVALS}{index}"


def external_key_parts(namespace: str, table: str) -> list[str]:
    """An external input's asset key: the table's own identifier, [namespace, table].

    A pipeline's outs are the tables `<pipeline_id>.<out>` keyed [pipeline_id, out], so a
    table that another pipeline of ours writes is that pipeline's asset: a reader in another
    team's code location depends on it across locations (Dagster joins the two in one graph),
    and one in the same location on the asset itself. A table nothing of ours writes (a
    vendor's market data) is one unexecutable asset that every reader shares."""
    return [namespace, table]


def asset_name(*parts: str) -> str:
    """An asset key as Dagster shows it (`pipeline/out`)."""
    return "/".join(parts)


def check_name(asset: str, check: str) -> str:
    return f"{asset}:{check}"


@dataclass(frozen=True)
class DerivedName:
    namespace: Namespace
    name: str
    field: str  # the spec field it comes from, for messages ("nodes[2].id")


def derived_names(spec: DagSpec, floor: GateFloor | None) -> list[DerivedName]:
    """Every name the spec makes in the code location, the pipeline's blocks first (so a
    collision within the spec is reported on the node, the thing to rename). `floor`: what
    the firm's promotion policy adds to a gate (spec_rules/firm.py), None when it is invalid."""
    pid = spec.pipeline_id
    names = [DerivedName("job", pid, "pipeline_id"), DerivedName("group", pid, "pipeline_id")]
    add = names.append
    if spec.freshness is not None:
        add(DerivedName("op", freshness_name(pid), "freshness"))
        add(DerivedName("schedule/sensor", freshness_name(pid), "freshness"))
    if spec.schedule is not None:
        add(DerivedName("schedule/sensor", schedule_name(pid, spec.schedule.calendar), "schedule"))
    if spec.partitions is not None:
        add(DerivedName("partitions set", partitions_set_name(pid), "partitions"))
        add(DerivedName("schedule/sensor", session_sync_name(pid), "partitions"))
    for i, trigger in enumerate(spec.triggers):
        if trigger.kafka_lag is not None:
            name = lag_sensor_name(pid, trigger.kafka_lag.topic, i)
        else:
            name = arrivals_sensor_name(pid, i)
        add(DerivedName("schedule/sensor", name, f"triggers[{i}]"))
    if any(t.kafka_lag is not None for t in spec.triggers):
        add(DerivedName("asset key", asset_name(pid, KAFKA_LAG_ASSET), "triggers"))
    if spec.gates is not None:
        names.extend(_gate_names(spec, floor))

    runnable_keys: list[tuple[str, str]] = []
    for i, node in enumerate(spec.nodes):
        if node.kind not in EXTERNAL_KINDS:
            add(DerivedName("op", op_name(pid, node.id), f"nodes[{i}].id"))
        keys = [(asset_name(pid, out), f"nodes[{i}].outs[{k}]") for k, out in enumerate(node.outs)]
        keys = keys or [(asset_name(pid, node.id), f"nodes[{i}].id")]
        names.extend(DerivedName("asset key", key, where) for key, where in keys)
        if node.kind not in EXTERNAL_KINDS:
            runnable_keys.extend(keys)
    if spec.freshness is not None:
        names.extend(
            DerivedName("asset check", check_name(key, FRESHNESS_CHECK), where)
            for key, where in runnable_keys
        )
    return names


def shared_names(spec: DagSpec) -> list[DerivedName]:
    """The names a spec uses without owning them: its external inputs' assets (and their
    group), which every spec reading the same table shares, and which are the producer's own
    asset when a pipeline of ours writes the table. Never a collision, so `derived_names`
    leaves them out; what the location defines is both lists."""
    names = [
        DerivedName(
            "asset key",
            asset_name(*external_key_parts(*external.identifier)),
            f"external_inputs.{name}",
        )
        for name, external in spec.external_inputs.items()
    ]
    if names:
        names.append(DerivedName("group", EXTERNAL_GROUP, "external_inputs"))
    return names


def _gate_names(spec: DagSpec, floor: GateFloor | None) -> list[DerivedName]:
    assert spec.gates is not None
    pid, gates = spec.pipeline_id, spec.gates
    names = [DerivedName("op", gate_check_name(pid), "gates")]
    model = asset_name(pid, gates.model)
    checks = [CARD_CHECK, *(f"metric_{m}" for m in sorted(gates.require)), REPRODUCIBLE_CHECK]
    stages = list(gates.stages or [])
    if floor is not None:  # the firm's floor adds bounds (and, without gates.stages, the stages)
        checks += [f"metric_{m}" for m in sorted(floor.require) if m not in gates.require]
        stages = stages or list(floor.stages)
    names.extend(
        DerivedName("asset check", check_name(model, c), "gates") for c in dict.fromkeys(checks)
    )
    for stage in stages:
        names.append(DerivedName("op", stage_op_name(pid, stage), "gates.stages"))
        names.append(DerivedName("asset key", asset_name(pid, PROMOTED, stage), "gates.stages"))
    return names


def name_index(names: Iterable[DerivedName]) -> dict[Namespace, dict[str, str]]:
    """namespace -> {name: the field of its first occurrence}."""
    index: dict[Namespace, dict[str, str]] = {ns: {} for ns in NAMESPACES}
    for n in names:
        index[n.namespace].setdefault(n.name, n.field)
    return index


def platform_conflict(namespace: Namespace, name: str) -> str | None:
    """What of the platform's own a derived name would collide with, or None."""
    if namespace == "group" and name in (INVALID_SPECS_GROUP, DBT_GROUP, EXTERNAL_GROUP):
        return f"the platform's group {name!r}"
    if namespace == "asset key" and name.split("/", 1)[0] in (
        INVALID_SPECS_GROUP,
        DBT_GROUP,
        EXTERNAL_GROUP,
    ):
        return f"the platform's assets under {name.split('/', 1)[0]!r}"
    if namespace == "schedule/sensor" and name in PLATFORM_SENSORS:
        return f"the platform's sensor {name!r}"
    if namespace == "op" and (name == DBT_OPS or name.startswith(f"{DBT_OPS}__")):
        return "the dbt models' ops"
    if (namespace == "job" and name in PLATFORM_JOBS) or (namespace == "op" and name == LAKE_OP):
        return f"the platform's job {LAKE_JOB!r}"
    if namespace == "job" and name.startswith(ASSET_JOB):
        return "Dagster's implicit asset job"
    if name.startswith("__"):
        return "Dagster's reserved names ('__' prefix)"
    return None
