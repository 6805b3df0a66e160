"""Pydantic models of the DAG spec (seed 000 §3.1) and runtime params (§3.2).

Every model forbids unknown fields: a typo in a compiler-emitted spec must
fail validation, never be silently ignored. Cross-node rules (cycles, who
produces what) live in `graph_rules.py` so each error can name its field.
"""
from __future__ import annotations

from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from quantos_assets.spec.quantities import Cpu, Duration, Memory

# Ids become Dagster asset-key parts and op names: letters, digits, underscore.
Identifier = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", min_length=1, max_length=63),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class NodeKind(str, Enum):
    python_task = "python_task"
    trino_sql = "trino_sql"
    spark_sql = "spark_sql"
    ray_job = "ray_job"
    flink_job = "flink_job"
    materialize_view = "materialize_view"
    custom_crd = "custom_crd"


class Priority(str, Enum):
    low = "low"
    normal = "normal"
    high = "high"
    critical = "critical"


class Qos(str, Enum):
    spot_ok = "spot_ok"
    on_demand = "on_demand"


class Retry(Strict):
    # max_attempts counts the first attempt: 1 means "never retry".
    max_attempts: int = Field(default=1, ge=1, le=10)
    backoff_sec: float = Field(default=0, ge=0, le=3600)


class Slo(Strict):
    max_runtime: Duration | None = None
    retry: Retry = Field(default_factory=Retry)
    priority: Priority = Priority.normal
    qos: Qos = Qos.on_demand


class Resources(Strict):
    cpu: Cpu | None = None
    mem: Memory | None = None
    gpu: int | None = Field(default=None, ge=0, le=64)


class DefaultResources(Strict):
    default: Resources = Field(default_factory=Resources)


class Node(Strict):
    id: Identifier
    kind: NodeKind
    image: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    env: dict[str, str] = Field(default_factory=dict)
    resources: Resources | None = None
    ins: list[Identifier] = Field(default_factory=list)
    outs: list[Identifier] = Field(default_factory=list)


class Edge(Strict):
    from_: Identifier = Field(alias="from")
    to: Identifier


class DagSpec(Strict):
    version: Literal[1]
    pipeline_id: Identifier
    description: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    slo: Slo = Field(default_factory=Slo)
    resources: DefaultResources = Field(default_factory=DefaultResources)
    nodes: list[Node] = Field(min_length=1)
    edges: list[Edge] = Field(default_factory=list)

    def node(self, node_id: str) -> Node:
        return next(n for n in self.nodes if n.id == node_id)

    def effective_resources(self, node: Node) -> Resources:
        """Node resources over the spec default, field by field."""
        base = self.resources.default
        own = node.resources or Resources()
        return Resources(
            cpu=own.cpu if own.cpu is not None else base.cpu,
            mem=own.mem if own.mem is not None else base.mem,
            gpu=own.gpu if own.gpu is not None else base.gpu,
        )


class Affinity(Strict):
    compute_pool: str | None = None


class RuntimeParams(Strict):
    submission_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
    env: Literal["local", "dev", "staging", "prod"] = "local"
    labels: dict[str, str] = Field(default_factory=dict)
    secrets_scope: list[str] = Field(default_factory=list)
    priority: Priority | None = None
    affinity: Affinity = Field(default_factory=Affinity)
    ttl_days: int | None = Field(default=None, ge=1, le=3650)
