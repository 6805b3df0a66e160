"""OpenLineage events of every node run, read out of band from the instance's event log.

Why a sensor and not a hook in the step: the step pays nothing (no HTTP call, no file write
on its path, no failure mode), the events come out the same whichever executor ran the
step (multiprocess, in-process, k8s_job_executor), and the cursor in the sensor's tick
record means a restarted daemon carries on where it stopped: nothing is lost, and an event
that could not be delivered is resent on the next tick (at least once; run ids and event
times are derived from the Dagster events, so a resend is the same event).

The event log is followed per run (the local SQLite event log is sharded per run, so a
global storage-id cursor is not available, see docs/decisions.md). Per run: RUN_START /
RUN_SUCCESS / RUN_FAILURE / RUN_CANCELED become the submission's START / COMPLETE / FAIL /
ABORT, STEP_START / STEP_SUCCESS / STEP_FAILURE the node's START / COMPLETE / FAIL, and a
run that ends with a node still started gives that node ABORT. The datasets of a finished
node come from the run's LOADED_INPUT and ASSET_MATERIALIZATION metadata written by
LakeIOManager (snapshot ids, artifact hashes).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DagsterEventType,
    DagsterRun,
    DefaultSensorStatus,
    SensorDefinition,
    SensorResult,
    sensor,
)

from quantos_assets.observability.lineage_facts import (
    DatasetRef,
    LineageNaming,
    RunFacts,
    dataset_ref,
)
from quantos_assets.pipeline_assets import PipelineDefs, input_key, node_asset_keys
from quantos_assets.spec.derived_names import LINEAGE_SENSOR, op_name
from resources.lineage_client import LineageDeliveryError, LineageEmitter
from resources.profile import LineageSettings, Profile
from resources.run_tag_keys import TAG_PIPELINE
from resources.table_ref import LOAD_AS
from sensors.run_event_cursor import RunEventCursor, storage_position

SENSOR_NAME = LINEAGE_SENSOR
MAX_EVENTS_PER_TICK = 2000  # a backlog drains over several ticks, each well inside the tick timeout
ASSET_JOB_PREFIX = "__ASSET_JOB"
PARTITION_TAG = "dagster/partition"

# OpenLineage run states (openlineage's RunState values; the module is imported at tick time).
RUN_STATES = {
    DagsterEventType.RUN_START: "START",
    DagsterEventType.RUN_SUCCESS: "COMPLETE",
    DagsterEventType.RUN_FAILURE: "FAIL",
    DagsterEventType.RUN_CANCELED: "ABORT",
}
STEP_STATES = {
    DagsterEventType.STEP_START: "START",
    DagsterEventType.STEP_SUCCESS: "COMPLETE",
    DagsterEventType.STEP_FAILURE: "FAIL",
}
FOLLOWED = set(RUN_STATES) | set(STEP_STATES)


@dataclass(frozen=True)
class NodeInfo:
    """What the spec says about the node behind a step key."""

    pipeline_id: str
    node_id: str
    inputs: tuple[AssetKey, ...]  # data ins and order-only edges, as the DAG draws them
    outputs: tuple[AssetKey, ...]


@dataclass(frozen=True)
class LineageIndex:
    """Step key -> node, and each pipeline's team, from the loaded specs."""

    nodes: Mapping[str, NodeInfo]
    teams: Mapping[str, str]
    pipelines: frozenset[str]

    @classmethod
    def of(cls, pipelines: list[PipelineDefs]) -> LineageIndex:
        nodes: dict[str, NodeInfo] = {}
        teams: dict[str, str] = {}
        for pipeline in pipelines:
            spec = pipeline.spec
            by_id = {n.id: n for n in spec.nodes}
            team = spec.labels.get("team") or spec.labels.get("owner")
            if team:
                teams[spec.pipeline_id] = str(team)
            for node in spec.nodes:
                if node.id not in pipeline.pools:  # external kinds are not steps
                    continue
                inputs = [input_key(spec, i) for i in node.ins]
                inputs += [
                    k
                    for e in spec.edges
                    if e.to == node.id
                    for k in node_asset_keys(spec, by_id[e.from_])
                ]
                nodes[op_name(spec.pipeline_id, node.id)] = NodeInfo(
                    spec.pipeline_id,
                    node.id,
                    tuple(dict.fromkeys(inputs)),
                    tuple(node_asset_keys(spec, node)),
                )
            # Promotion stages (a `gates` block) are nodes of the spec too: job
            # `{pipeline}.promoted.{stage}`, reading the model (and the previous stage).
            for stage in pipeline.gates.stages if pipeline.gates else ():
                nodes[stage.op.name] = NodeInfo(
                    spec.pipeline_id,
                    ".".join(stage.key.path[1:]),
                    tuple(sorted(stage.dependency_keys, key=lambda k: tuple(k.path))),
                    (stage.key,),
                )
        return cls(nodes, teams, frozenset(p.spec.pipeline_id for p in pipelines))

    def follows(self, run: DagsterRun) -> bool:
        """A pipeline's job, or a UI materialization (`__ASSET_JOB`) of some of its assets."""
        if run.job_name in self.pipelines:
            return True
        if not run.job_name.startswith(ASSET_JOB_PREFIX):
            return False
        return run.asset_selection is None or any(
            k.path[0] in self.pipelines for k in run.asset_selection
        )


class _RunReader:
    """The facts of one Dagster run, read lazily and at most once per tick."""

    def __init__(self, instance: Any, run: DagsterRun, index: LineageIndex) -> None:
        self.instance = instance
        self.run = run
        self.index = index
        self._records: list[Any] | None = None
        pipeline = run.tags.get(TAG_PIPELINE) or _asset_job_pipeline(run) or run.job_name
        record = instance.get_run_record_by_id(run.run_id)
        created = record.create_timestamp.timestamp() if record is not None else time.time()
        self.facts = RunFacts(
            run.run_id, pipeline, created, dict(run.tags), index.teams.get(pipeline)
        )

    def io_records(self) -> list[Any]:
        if self._records is None:
            self._records = list(
                self.instance.get_records_for_run(
                    self.run.run_id,
                    of_type={DagsterEventType.LOADED_INPUT, DagsterEventType.ASSET_MATERIALIZATION},
                ).records
            )
        return self._records

    def outputs(self, step_key: str) -> list[DatasetRef]:
        refs = []
        for record in self.io_records():
            event = record.event_log_entry.dagster_event
            if (
                event.event_type == DagsterEventType.ASSET_MATERIALIZATION
                and event.step_key == step_key
            ):
                mat = event.event_specific_data.materialization
                refs.append(dataset_ref(mat.asset_key.path, _plain(mat.metadata)))
        return refs

    def inputs(self, node: NodeInfo, step_key: str, at: float) -> list[DatasetRef]:
        """What the node read: the snapshot/hash its LOADED_INPUT names, else the upstream's
        materialization in this run, else its latest one before the step (what the IO
        manager would have loaded), else the dataset with no version (never materialized)."""
        loaded: dict[tuple[str, ...], DatasetRef] = {}
        in_run: dict[tuple[str, ...], DatasetRef] = {}
        for record in self.io_records():
            event = record.event_log_entry.dagster_event
            if event.event_type == DagsterEventType.LOADED_INPUT and event.step_key == step_key:
                data = event.event_specific_data
                read = (node.pipeline_id, data.input_name)
                # What the IO manager recorded of the read; not how it was asked to load
                # (Dagster copies the AssetIn's own metadata, e.g. quantos/load_as, onto the event)
                metadata = {k: v for k, v in _plain(data.metadata or {}).items() if k != LOAD_AS}
                if metadata:
                    loaded[read] = dataset_ref(read, metadata)
            elif (
                event.event_type == DagsterEventType.ASSET_MATERIALIZATION
                and record.timestamp <= at
            ):
                mat = event.event_specific_data.materialization
                in_run[tuple(mat.asset_key.path)] = dataset_ref(
                    mat.asset_key.path, _plain(mat.metadata)
                )
        refs = []
        for key in node.inputs:
            path = tuple(key.path)
            refs.append(
                loaded.get(path) or in_run.get(path) or self._latest(key, at) or DatasetRef(path)
            )
        return refs

    def _latest(self, key: AssetKey, at: float) -> DatasetRef | None:
        partition = self.run.tags.get(PARTITION_TAG)
        result = self.instance.fetch_materializations(
            AssetRecordsFilter(
                asset_key=key,
                asset_partitions=[partition] if partition else None,
                before_timestamp=at,
            ),
            limit=1,
        )
        for record in result.records:
            mat = record.asset_materialization
            if mat is not None:
                return dataset_ref(key.path, _plain(mat.metadata))
        return None

    def unfinished_steps(self) -> list[tuple[str, float]]:
        """Steps that started and never ended (a canceled or crashed run)."""
        records = self.instance.get_records_for_run(
            self.run.run_id,
            of_type={
                DagsterEventType.STEP_START,
                DagsterEventType.STEP_SUCCESS,
                DagsterEventType.STEP_FAILURE,
                DagsterEventType.STEP_SKIPPED,
            },
        ).records
        started: dict[str, float] = {}
        for record in records:
            event = record.event_log_entry.dagster_event
            if event.event_type == DagsterEventType.STEP_START:
                started[event.step_key] = record.timestamp
            else:
                started.pop(event.step_key, None)
        return list(started.items())


def evaluate_lineage(
    instance: Any,
    cursor: str | None,
    index: LineageIndex,
    naming: LineageNaming,
    emitter: LineageEmitter,
    now: float | None = None,
) -> SensorResult:
    now = time.time() if now is None else now
    # First tick: runs in progress and those updated within SLACK_S, each from its start.
    state = RunEventCursor.parse(cursor) if cursor else RunEventCursor(since=now)
    sent = 0
    for run in state.runs_to_follow(instance, index.follows):
        if state.is_done(run.run_id):
            continue
        position = state.position(run.run_id)
        reader = _RunReader(instance, run, index)
        conn = instance.get_records_for_run(run.run_id, cursor=position, of_type=FOLLOWED)
        for record in conn.records:
            if sent >= MAX_EVENTS_PER_TICK:
                state.hold(run.run_id, position)
                return SensorResult(
                    skip_reason=f"{sent} OpenLineage event(s) sent, more next tick",
                    cursor=state.dump(),
                )
            try:
                for event in _events_for(record, reader, naming):
                    emitter.emit(event)
                    sent += 1
            except LineageDeliveryError as err:
                # Stop at this Dagster event; the next tick resends it (and what follows).
                state.hold(run.run_id, position)
                return SensorResult(skip_reason=f"{err}; will resend", cursor=state.dump())
            position = storage_position(record.storage_id)
        state.advance(run, position, now)
    return SensorResult(
        skip_reason=f"{sent} OpenLineage event(s) sent", cursor=state.close_tick(now)
    )


def _events_for(record: Any, reader: _RunReader, naming: LineageNaming) -> list[Any]:
    # Here, not at module level: openlineage-python costs ~0.4 s to import, and every run
    # and step process loads this module with the code location.
    from quantos_assets.observability.lineage_events import node_event, pipeline_event

    event = record.event_log_entry.dagster_event
    at = record.timestamp
    if event.event_type in RUN_STATES:
        state = RUN_STATES[event.event_type]
        events = []
        if state in ("FAIL", "ABORT"):
            for step_key, started_at in reader.unfinished_steps():
                node = reader.index.nodes.get(step_key)
                if node is not None:
                    events.append(
                        node_event(
                            "ABORT",
                            max(at, started_at),
                            reader.facts,
                            node.pipeline_id,
                            node.node_id,
                            step_key,
                            naming,
                            inputs=reader.inputs(node, step_key, started_at),
                        )
                    )
        error = (event.message or None) if state == "FAIL" else None
        return [*events, pipeline_event(state, at, reader.facts, naming, error=error)]
    node = reader.index.nodes.get(event.step_key or "")
    if node is None:  # a step of something else (dbt models, checks): not a spec node
        return []
    state = STEP_STATES[event.event_type]
    inputs = reader.inputs(node, event.step_key, at)
    outputs = reader.outputs(event.step_key) if state != "START" else []
    error = None
    if state == "FAIL":
        info = event.step_failure_data.error if event.step_failure_data else None
        message = (info.message.strip() if info else "") or event.message or "step failed"
        error = (message, "".join(info.stack) if info and info.stack else None)
    return [
        node_event(
            state,
            at,
            reader.facts,
            node.pipeline_id,
            node.node_id,
            event.step_key,
            naming,
            inputs=inputs,
            outputs=outputs,
            error=error,
        )
    ]


def _asset_job_pipeline(run: DagsterRun) -> str | None:
    """A UI materialization runs `__ASSET_JOB`: its pipeline is the one its assets belong to."""
    pipelines = {k.path[0] for k in run.asset_selection or ()}
    return next(iter(pipelines)) if len(pipelines) == 1 else None


def _plain(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Dagster MetadataValues as plain values; a table schema as (name, type) columns."""
    out: dict[str, Any] = {}
    for key, value in metadata.items():
        raw = getattr(value, "value", value)
        if key == "schema" and hasattr(raw, "columns"):
            out["columns"] = [(c.name, c.type) for c in raw.columns]
        else:
            out[key] = raw
    return out


def build_lineage_sensor(
    pipelines: list[PipelineDefs], profile: Profile, settings: LineageSettings | None = None
) -> SensorDefinition | None:
    """The OpenLineage sensor, or None when lineage is off (QUANTOS_LINEAGE=off)."""
    settings = settings or profile.lineage
    if not settings.enabled or not pipelines:
        return None
    import dagster

    index = LineageIndex.of(pipelines)
    naming = LineageNaming(
        warehouse=profile.warehouse,
        default_namespace=settings.namespace,
        engine_version=dagster.__version__,
    )
    emitter = LineageEmitter(settings)

    @sensor(
        name=SENSOR_NAME,
        minimum_interval_seconds=30,
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            "OpenLineage START/COMPLETE/FAIL of every node and submission, sent to "
            f"{emitter.target}."
        ),
    )
    def quantos_openlineage(context):  # context unannotated: see [tool.mypy]
        return evaluate_lineage(context.instance, context.cursor, index, naming, emitter)

    return quantos_openlineage
