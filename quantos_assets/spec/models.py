"""Pydantic models of the DAG spec (seed 000 §3.1) and runtime params (§3.2).

Every model forbids unknown fields: a typo in a compiler-emitted spec must
fail validation, never be silently ignored. Cross-node rules (cycles, who
produces what) live in `graph_rules.py` so each error can name its field.
"""

from __future__ import annotations

from datetime import date
from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictFloat,
    StrictInt,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from quantos_assets.spec.quantities import Cpu, Duration, Memory

SPEC_VERSION = 1
IDENTIFIER_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
# Validation context key: the loader runs the graph rules itself so that it can
# report them together with field errors, each with its own line.
SKIP_GRAPH_RULES = "quantos_skip_graph_rules"
# Validation context key: the Calendars (spec/outside_rules.py) a spec's calendar codes and
# partitions start are checked against; the loader passes its rules' calendars. Without it
# (a model built in code, not loaded) the codes are not checked here.
CALENDARS = "quantos_calendars"

# Ids become Dagster asset-key parts and op names: letters, digits, underscore.
Identifier = Annotated[
    str,
    StringConstraints(pattern=IDENTIFIER_PATTERN, min_length=1, max_length=63),
]
# Pipeline and node ids are joined with '__' into Dagster names (op `pipeline__node`,
# schedule `pipeline__xnys_schedule`...). Without '__' inside and '_' at either end, the
# first '__' of such a name is where the pipeline id ends, so two specs can never derive
# one name, and no id can take a '__'-prefixed name Dagster reserves (`__ASSET_JOB`).
NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)*$"
Name = Annotated[
    str,
    StringConstraints(pattern=NAME_PATTERN, min_length=1, max_length=63),
]


class Strict(BaseModel):
    """Base of every spec model: unknown fields are errors, never ignored."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class NodeKind(str, Enum):  # noqa: UP042 (StrEnum would change str() and f-strings of members)
    python_task = "python_task"
    trino_sql = "trino_sql"
    spark_sql = "spark_sql"
    ray_job = "ray_job"
    flink_job = "flink_job"
    materialize_view = "materialize_view"
    custom_crd = "custom_crd"


# Streaming kinds run outside Dagster: they become observed external assets.
EXTERNAL_KINDS: frozenset[NodeKind] = frozenset({NodeKind.flink_job, NodeKind.materialize_view})


class Priority(str, Enum):  # noqa: UP042 (StrEnum would change str() and f-strings of members)
    low = "low"
    normal = "normal"
    high = "high"
    critical = "critical"


class Qos(str, Enum):  # noqa: UP042 (StrEnum would change str() and f-strings of members)
    spot_ok = "spot_ok"
    on_demand = "on_demand"


class Retry(Strict):
    # max_attempts counts the first attempt: 1 means "never retry".
    # Strict numbers: `true` or "2" in a spec is a mistake, not a 1 or a 2.
    max_attempts: StrictInt = Field(default=1, ge=1, le=10)
    backoff_sec: StrictFloat = Field(default=0, ge=0, le=3600)


class Slo(Strict):
    max_runtime: Duration | None = None
    retry: Retry = Field(default_factory=Retry)
    priority: Priority = Priority.normal
    qos: Qos = Qos.on_demand


class Resources(Strict):
    cpu: Cpu | None = None
    mem: Memory | None = None
    gpu: StrictInt | None = Field(default=None, ge=0, le=64)


class DefaultResources(Strict):
    default: Resources = Field(default_factory=Resources)


BackfillPolicyName = Literal["per_session", "single_run"]


class Node(Strict):
    id: Name
    kind: NodeKind
    image: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    env: dict[str, str] = Field(default_factory=dict)
    resources: Resources | None = None
    ins: list[Identifier] = Field(default_factory=list)
    outs: list[Identifier] = Field(default_factory=list)
    # How a backfill of many sessions runs this node (needs a partitions block):
    # per_session = one run per session; single_run = one run over the range.
    # None: the spec's partitions.backfill.
    backfill: BackfillPolicyName | None = None


class Edge(Strict):
    from_: Identifier = Field(alias="from")
    to: Identifier


def _known_calendar(code: str, info: ValidationInfo) -> str:
    calendars = (info.context or {}).get(CALENDARS)
    problem = calendars.unknown_calendar_message(code) if calendars is not None else None
    if problem:
        raise ValueError(problem)
    return code


def _market_time(text: str) -> str:
    from quantos_assets.spec.market_time import parse_market_time

    parse_market_time(text)
    return text


class Schedule(Strict):
    """Run the pipeline once per exchange session at a market-relative time."""

    calendar: str
    at: str
    timezone: str | None = None  # the exchange's when omitted
    catch_up: bool = False  # False: ticks missed while the daemon was down are skipped

    _calendar = field_validator("calendar")(classmethod(lambda cls, v, i: _known_calendar(v, i)))
    _at = field_validator("at")(classmethod(lambda cls, v: _market_time(v)))

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str | None) -> str | None:
        if value is None:
            return value
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            import difflib

            close = difflib.get_close_matches(value, sorted(zoneinfo.available_timezones()), n=3)
            hint = (
                f" (close matches: {', '.join(close)})"
                if close
                else " (an IANA name like America/New_York)"
            )
            raise ValueError(f"unknown timezone {value!r}{hint}") from None
        return value


class Partitions(Strict):
    """One partition per exchange session from `start`: no weekends, no holidays."""

    calendar: str
    start: date
    # Default backfill policy of every node; a node's own `backfill` overrides it.
    backfill: BackfillPolicyName = "per_session"

    _calendar = field_validator("calendar")(classmethod(lambda cls, v, i: _known_calendar(v, i)))

    @field_validator("start")
    @classmethod
    def _after_first_session(cls, value: date, info: ValidationInfo) -> date:
        code = info.data.get("calendar")
        calendars = (info.context or {}).get(CALENDARS)
        if code is None or calendars is None:
            return value
        first = calendars.first_session(code)
        if value < first:
            raise ValueError(
                f"start {value.isoformat()} is before the first session of {code} "
                f"that this orchestrator knows ({first.isoformat()})"
            )
        return value


class Freshness(Strict):
    """How stale the pipeline's assets may get, counted on its calendar."""

    max_lag_sessions: StrictInt | None = Field(default=None, ge=0, le=1000)
    deadline: str | None = None  # e.g. close+2h: the session's data is due by then

    @field_validator("deadline")
    @classmethod
    def _deadline(cls, value: str | None) -> str | None:
        return value if value is None else _market_time(value)


# A Kafka topic name, or a librdkafka-style regex (leading ^) over topic names.
KafkaTopic = Annotated[str, StringConstraints(pattern=r"^(\^.+|[A-Za-z0-9._-]{1,249})$")]


class KafkaLag(Strict):
    """Run the pipeline when a consumer group falls `threshold` messages behind (seed 000 §4.2)."""

    topic: KafkaTopic
    group: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    threshold: StrictInt = Field(ge=1)
    # Debounce: at most one run per min_interval, however long the lag lasts.
    min_interval: Duration = 30.0

    @field_validator("topic")
    @classmethod
    def _compiles(cls, value: str) -> str:
        if value.startswith("^"):
            import re

            try:
                re.compile(value)
            except re.error as err:
                raise ValueError(f"topic pattern {value!r} is not a valid regex: {err}") from None
        return value


def _arrival_glob(uri: str) -> str:
    from quantos_assets.spec.arrival_glob import parse_arrival_glob

    parse_arrival_glob(uri)
    return uri


class Arrivals(Strict):
    """Run the pipeline once per new version of an object matching `uri` (seed 002: a
    vendor's file landing): `s3://bucket/prefix/*.csv`, `file:///dir/*.csv` or a path relative
    to the landing root (QUANTOS_LANDING_DIR). The run carries the object's URI and version
    (sensors/arrivals.py)."""

    uri: Annotated[str, StringConstraints(max_length=1024), AfterValidator(_arrival_glob)]


class Trigger(Strict):
    """One event trigger of a pipeline: exactly one of Kafka consumer lag or data arrivals."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    kafka_lag: KafkaLag | None = None
    arrivals: Arrivals | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Trigger:
        if (self.kafka_lag is None) == (self.arrivals is None):
            raise ValueError("give exactly one of kafka_lag and arrivals")
        return self


def _bound_text(text: str) -> str:
    from quantos_assets.spec.bounds import parse_bound

    parse_bound("", text)
    return text


# ">= 1.0", "<= 0.2": one comparison and a number (quantos_assets/spec/bounds.py).
BoundText = Annotated[str, AfterValidator(_bound_text)]


class Gates(Strict):
    """Promote one model out through staging -> canary -> prod behind blocking checks.

    The firm-wide floor is deploy/policies/promotion.yaml: `require` may tighten its
    bounds and add new ones, and `stages` may stop early, never skip or loosen
    (quantos_assets/spec_rules/gates.py).
    """

    model: Identifier
    metrics: Identifier
    require: dict[Identifier, BoundText] = Field(default_factory=dict)
    # None: every stage of the firm's policy, in its order.
    stages: list[Identifier] | None = Field(default=None, min_length=1)

    @field_validator("stages")
    @classmethod
    def _unique(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            twice = sorted({s for s in value if value.count(s) > 1})
            raise ValueError(f"stage {', '.join(twice)} listed twice")
        return value


# An Iceberg table of the lake catalog by its two parts, `namespace.table`.
TABLE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$"
TableName = Annotated[
    str,
    StringConstraints(pattern=TABLE_PATTERN, min_length=3, max_length=127),
]


class ExternalInput(Strict):
    """A table of the lake that no node of this spec writes (market data, another desk's
    table), read by nodes under a local name like an out. Which namespaces a team may read is
    deploy/teams.yaml `reads` (quantos_assets/tenancy/read_grants.py)."""

    table: TableName

    @property
    def identifier(self) -> tuple[str, str]:
        """(namespace, table) as the catalog names it."""
        namespace, _, name = self.table.partition(".")
        return namespace, name


def _triggers_schema(schema: dict[str, Any]) -> None:
    """`triggers` as the loader takes it: a list of triggers, or one mapping with a key per
    kind (the shape of one trigger, each kind given at most once)."""
    items = schema.pop("items")
    schema.pop("type", None)
    schema["anyOf"] = [{"type": "array", "items": items}, items]


class DagSpec(Strict):
    """A compiler-emitted pipeline; a validated instance also passes the graph rules."""

    version: Literal[1]
    pipeline_id: Name
    description: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    slo: Slo = Field(default_factory=Slo)
    resources: DefaultResources = Field(default_factory=DefaultResources)
    nodes: list[Node] = Field(min_length=1)
    edges: list[Edge] = Field(default_factory=list)
    schedule: Schedule | None = None
    partitions: Partitions | None = None
    freshness: Freshness | None = None
    # A list of triggers, or one mapping {kind: settings, ...} read as one trigger per kind.
    triggers: list[Trigger] = Field(default_factory=list, json_schema_extra=_triggers_schema)
    gates: Gates | None = None
    # Lake tables no node of the spec writes, by the name nodes' `ins` read them under.
    external_inputs: dict[Identifier, ExternalInput] = Field(default_factory=dict, max_length=256)

    _by_id: dict[str, Node] | None = PrivateAttr(default=None)

    @field_validator("version", mode="before")
    @classmethod
    def _known_version(cls, value: Any) -> Any:
        # Literal[1] alone would also take `true` and 1.0, and say "Input should be 1".
        if type(value) is not int or value != SPEC_VERSION:
            shown = str(value).lower() if isinstance(value, bool) else repr(value)
            raise ValueError(
                f"unsupported spec version {shown} (this orchestrator reads version {SPEC_VERSION})"
            )
        return value

    @field_validator("triggers", mode="before")
    @classmethod
    def _one_mapping(cls, value: Any) -> Any:
        # `triggers: {arrivals: {...}}` (issue 21's form) is `[{arrivals: {...}}]`.
        if isinstance(value, dict):
            return [{kind: settings} for kind, settings in value.items()]
        return value

    @model_validator(mode="after")
    def _graph_rules(self, info: ValidationInfo) -> DagSpec:
        if info.context and info.context.get(SKIP_GRAPH_RULES):
            return self
        from quantos_assets.spec.graph_rules import check_graph

        problems = check_graph(self)
        if problems:
            raise ValueError("; ".join(f"{path}: {msg}" for path, msg in problems))
        return self

    def node(self, node_id: str) -> Node:
        """The node with this id (dict lookup: specs may have 10,000 nodes)."""
        if self._by_id is None or len(self._by_id) != len(self.nodes):
            self._by_id = {n.id: n for n in self.nodes}
        found = self._by_id.get(node_id)
        if found is None or found.id != node_id:
            self._by_id = {n.id: n for n in self.nodes}
            found = self._by_id.get(node_id)
        if found is None:
            raise KeyError(f"pipeline {self.pipeline_id!r} has no node {node_id!r}")
        return found

    def input_table(self, name: str) -> tuple[str, str]:
        """The Iceberg table an input name reads: an external input's table, else the out's
        own (namespace = pipeline_id)."""
        external = self.external_inputs.get(name)
        return external.identifier if external is not None else (self.pipeline_id, name)

    def external_tables(self) -> dict[str, tuple[str, str]]:
        """External input name -> (namespace, table)."""
        return {name: e.identifier for name, e in self.external_inputs.items()}

    def effective_resources(self, node: Node) -> Resources:
        """Node resources over the spec default, field by field."""
        base = self.resources.default
        own = node.resources or Resources()
        return Resources(
            cpu=own.cpu if own.cpu is not None else base.cpu,
            mem=own.mem if own.mem is not None else base.mem,
            gpu=own.gpu if own.gpu is not None else base.gpu,
        )

    def backfill_policy(self, node: Node) -> BackfillPolicyName | None:
        """The node's backfill policy; None when the spec has no session partitions."""
        if self.partitions is None:
            return None
        return node.backfill or self.partitions.backfill


class Affinity(Strict):
    compute_pool: str | None = None


class InputRef(Strict):
    """An input pinned in time: the Iceberg snapshot to read, by id or as of a moment (the
    table's snapshot current then). A re-run with the same refs reads the same data after its
    upstream has moved on."""

    snapshot_id: StrictInt | None = None
    as_of: AwareDatetime | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> InputRef:
        if (self.snapshot_id is None) == (self.as_of is None):
            raise ValueError("give exactly one of snapshot_id and as_of (with its time zone)")
        return self

    def shown(self) -> str:
        """As run tags and lineage carry it: `snapshot:<id>` or `as_of:<ISO 8601>`."""
        if self.snapshot_id is not None:
            return f"snapshot:{self.snapshot_id}"
        assert self.as_of is not None
        return f"as_of:{self.as_of.isoformat()}"


class RuntimeParams(Strict):
    """Per-submission knobs (seed 000 §3.2), separate from the reusable spec."""

    submission_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
    env: Literal["local", "dev", "staging", "prod"] = "local"
    labels: dict[str, str] = Field(default_factory=dict)
    secrets_scope: list[str] = Field(default_factory=list)
    priority: Priority | None = None
    affinity: Affinity = Field(default_factory=Affinity)
    ttl_days: StrictInt | None = Field(default=None, ge=1, le=3650)
    # Inputs pinned in time, by the name a node reads them under (`ins`: an out, or an
    # external input): a backtest re-run on the data exactly as it was (issue 19). Checked
    # against the lake before a step works.
    refs: dict[Identifier, InputRef] = Field(default_factory=dict, max_length=256)
