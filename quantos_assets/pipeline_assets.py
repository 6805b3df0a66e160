"""Translate one validated DAG spec into Dagster assets and an asset job.

One multi-asset per node keeps one step per node, so every step can be placed
on its own node pool and retried on its own (a single subsettable multi-asset
per pipeline loads faster but runs every node in one step).
"""

from __future__ import annotations

import inspect
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from dagster import (
    AssetChecksDefinition,
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    AssetOut,
    AssetsDefinition,
    AssetSelection,
    AssetSpec,
    BackfillPolicy,
    DynamicPartitionsDefinition,
    Failure,
    MaterializeResult,
    Output,
    RetryPolicy,
    define_asset_job,
    multi_asset,
)
from dagster._core.definitions.unresolved_asset_job_definition import (
    UnresolvedAssetJobDefinition,
)

from quantos_assets.bulk_build import cyclic_gc_paused
from quantos_assets.calendars.partitions import session_partitions
from quantos_assets.freshness_checks import build_freshness_checks
from quantos_assets.k8s.step_config import K8S_CONFIG_TAG, op_tag_config
from quantos_assets.kinds.base import Arrival, NodeRun, NodeRunError, Runner
from quantos_assets.kinds.registry import (
    EXTERNAL_KINDS,
    build_runners,
    dagster_kinds,
    input_metadata,
    runner_for,
)
from quantos_assets.observability.traces import step_span, tracing
from quantos_assets.placement import choose_pool
from quantos_assets.run_tags import spec_run_tags, tag_value
from quantos_assets.spec.derived_names import EXTERNAL_GROUP, external_key_parts, op_name
from quantos_assets.spec.loader import LoadedSpec
from quantos_assets.spec.models import DagSpec, Node
from resources.iceberg_tables import PARTITION_COLUMN
from resources.input_refs import RefError, pins_from_tags
from resources.lake_io_manager import LakeIOError
from resources.partition_slices import PartitionSlices
from resources.profile import Cluster, Profile
from resources.run_tag_keys import TAG_KIND, TAG_NODE, TAG_POOL
from resources.table_ref import EXTERNAL_TABLE, TableRef

# A spec may give one node `backfill: single_run` and leave the others per session (its
# `backfill` field): intended, and what Dagster's asset backfills honour asset by asset. Dagster
# warns about it at each resolution of such a pipeline's job, a multi-line UserWarning (with
# empty key lists) that `make run` printed once per pipeline and that looked like a failure.
warnings.filterwarnings(
    "ignore", message=r"Asset job \S+ materializes assets with varying BackfillPolicies"
)

if TYPE_CHECKING:
    from quantos_assets.gates.build import GateDefs


class _AssetAttrs(TypedDict, total=False):
    """What a node's AssetSpecs (external kinds) or AssetOuts (runnable kinds) share."""

    group_name: str
    kinds: set[str]
    owners: list[str]
    tags: dict[str, str]
    description: str
    metadata: dict[str, Any]


@dataclass(frozen=True)
class PipelineDefs:
    """Everything one spec contributes to the code location."""

    spec: DagSpec
    source: Path | None
    assets: list[AssetsDefinition | AssetSpec]
    job: UnresolvedAssetJobDefinition
    pools: dict[str, str]  # node id -> pool name
    # Where its steps run (the profile it was built for): the op tags' k8s config follows it,
    # and so must a submission's run config for the same pipeline.
    cluster: Cluster
    # Calendar freshness checks (a spec with a `freshness` block), judged by a sensor.
    checks: list[AssetChecksDefinition] = field(default_factory=list)
    # Promotion gate (a spec with a `gates` block): blocking checks + stage assets (in `assets`).
    gates: GateDefs | None = None
    # The lake tables it reads as external inputs, one asset each; apart from `assets` because
    # every pipeline reading a table shares its asset (definitions_for keeps one per key).
    external: list[AssetSpec] = field(default_factory=list)

    def asset_checks(self) -> list[AssetChecksDefinition]:
        """Every check the pipeline brings to Definitions."""
        return [*self.checks, *([self.gates.checks] if self.gates else [])]


def asset_key(spec: DagSpec, out: str) -> AssetKey:
    return AssetKey([spec.pipeline_id, out])


def input_key(spec: DagSpec, name: str) -> AssetKey:
    """The asset an `ins` name reads: an external input's table, else the pipeline's out."""
    external = spec.external_inputs.get(name)
    if external is not None:
        return AssetKey(external_key_parts(*external.identifier))
    return asset_key(spec, name)


def external_asset(table: tuple[str, str]) -> AssetSpec:
    """A lake table no pipeline of ours writes, as the one asset every reader shares: built
    from the table alone, so two pipelines reading it build the same definition."""
    namespace, name = table
    return AssetSpec(
        key=AssetKey(external_key_parts(namespace, name)),
        group_name=EXTERNAL_GROUP,
        kinds={"iceberg"},
        description=(
            f"Iceberg table `{namespace}.{name}` of the lake, read by pipelines as an external "
            "input; written outside this platform"
        ),
        metadata={"table": f"{namespace}.{name}"},
    )


def node_asset_keys(spec: DagSpec, node: Node) -> list[AssetKey]:
    """A node without outs still shows up as one asset named after the node."""
    return [asset_key(spec, o) for o in node.outs] or [asset_key(spec, node.id)]


def build_pipeline(loaded: LoadedSpec, profile: Profile) -> PipelineDefs:
    """The spec's assets, checks and job, for the profile's cluster (steps as processes or
    pods; thin Ray drivers where a Ray cluster is configured)."""
    with cyclic_gc_paused():
        return _build_pipeline(loaded, profile)


def _build_pipeline(loaded: LoadedSpec, profile: Profile) -> PipelineDefs:
    spec = loaded.spec
    cluster = profile.cluster
    runners = build_runners(profile)
    spec_dir = loaded.path.parent if loaded.path is not None else None
    producer: dict[str, Node] = {out: n for n in spec.nodes for out in n.outs}
    by_id: dict[str, Node] = {n.id: n for n in spec.nodes}
    edge_deps: dict[str, list[str]] = {}
    for edge in spec.edges:
        edge_deps.setdefault(edge.to, []).append(edge.from_)

    _ensure_recursion_headroom(_longest_path(spec, producer, edge_deps))
    owners = _owners(spec)
    asset_tags = {tag_value(k): tag_value(v) for k, v in spec.labels.items()}
    partitions_def = session_partitions(spec)
    assets: list[AssetsDefinition | AssetSpec] = []
    pools: dict[str, str] = {}
    for node in spec.nodes:
        # What the node is handed (ins of streaming nodes are dependencies only)
        data_ins: dict[str, AssetKey] = {}
        dep_keys: dict[AssetKey, None] = {}
        for i in node.ins:
            dep_keys[input_key(spec, i)] = None
            upstream = producer.get(i)  # None: an external input
            if upstream is None or upstream.kind not in EXTERNAL_KINDS:
                data_ins[i] = input_key(spec, i)
        for upstream_id in edge_deps.get(node.id, ()):
            for key in node_asset_keys(spec, by_id[upstream_id]):
                dep_keys[key] = None
        attrs: _AssetAttrs = {
            "group_name": spec.pipeline_id,
            "kinds": dagster_kinds(node),
            "owners": owners,
            "tags": {**asset_tags, "quantos/node": node.id},
            "description": f"{node.kind.value} node `{node.id}` of pipeline `{spec.pipeline_id}`",
        }
        if node.image:
            attrs["metadata"] = {"quantos/image": node.image}
        keys = node_asset_keys(spec, node)
        if node.kind in EXTERNAL_KINDS:
            # Streaming nodes run outside Dagster: observed, never launched.
            assets.extend(AssetSpec(key=k, deps=list(dep_keys), **attrs) for k in keys)
            continue
        pool = choose_pool(spec.effective_resources(node), spec.slo.qos, spec.slo.priority)
        pools[node.id] = pool
        # AssetOut (not AssetSpec) so that outputs go through the IO manager;
        # dependencies that carry no data are declared on the multi-asset.
        outs = {"__".join(k.path): AssetOut(key=k, **attrs) for k in keys}
        data_keys = set(data_ins.values())
        order_only = [k for k in dep_keys if k not in data_keys]
        runner = runner_for(node.kind, runners)
        op_tags = _op_tags(spec, node, pool, cluster)
        assets.append(
            _node_asset(
                spec,
                node,
                spec_dir,
                outs,
                order_only,
                data_ins,
                runner,
                op_tags,
                partitions_def,
                input_metadata(node),
            )
        )

    checks = []
    if spec.freshness is not None:
        keys = [k for a in assets if isinstance(a, AssetsDefinition) for k in a.keys]
        checks.append(build_freshness_checks(spec, keys))
    gates = None
    if spec.gates is not None:
        # imported here: the gates pull pandas and the model card's stack (~1 s), which a
        # code location whose pipelines have no gate should not pay at every load
        from quantos_assets.gates.build import build_gates

        trainer = next(n for n in spec.nodes if spec.gates.model in n.outs)
        gate_attrs = {"owners": owners, "tags": asset_tags}
        gates = build_gates(loaded, _op_tags(spec, trainer, pools[trainer.id], cluster), gate_attrs)
        assets.extend(gates.stages if gates else [])
    selection = AssetSelection.groups(spec.pipeline_id).materializable().without_checks()
    job = define_asset_job(
        name=spec.pipeline_id,
        # Without the freshness checks (they judge the calendar, not one run's output);
        # with the gate's, which must run between the model and its stages.
        selection=selection | AssetSelection.checks(gates.checks) if gates else selection,
        tags=spec_run_tags(spec),
        description=spec.description or f"All nodes of pipeline {spec.pipeline_id}",
    )
    return PipelineDefs(
        spec=spec,
        source=loaded.path,
        assets=assets,
        job=job,
        pools=pools,
        cluster=cluster,
        checks=checks,
        gates=gates,
        external=[external_asset(t) for t in dict.fromkeys(spec.external_tables().values())],
    )


def _node_asset(
    spec: DagSpec,
    node: Node,
    spec_dir: Path | None,
    outs: dict[str, AssetOut],
    order_only: list[AssetKey],
    data_ins: Mapping[str, AssetKey],
    runner: Runner,
    op_tags: dict[str, Any],
    partitions_def: DynamicPartitionsDefinition | None,
    load_as: dict[str, str],
) -> AssetsDefinition:
    """`data_ins`: what the node is handed, by `ins` name; `load_as`: how the IO manager hands
    the node its table inputs (kinds.input_metadata); an external input also names its table."""
    policy = spec.backfill_policy(node)
    retry = spec.slo.retry
    out_names = {out.key: name for name, out in outs.items()}
    span_keys = [key.to_user_string() for key in out_names if key is not None]

    def _compute(context, **inputs):
        # Unannotated on purpose: Dagster resolves a decorated function's type hints
        # several times per op, and string annotations made that most of load time
        # (mypy accepts it: see the per-module override in pyproject.toml).
        if tracing() is None:
            yield from _outputs(context, inputs)
            return
        # The step's span, under the run's span named in the run's tags (traces.py).
        run = context.run
        with step_span(
            run.tags, run.run_id, node.id, span_keys, node.kind.value, context.retry_number + 1
        ):
            yield from _outputs(context, inputs)

    def _outputs(context, inputs):
        _check_refs(context, spec, node)
        arrival = Arrival.from_tags(context.run.tags)
        if partitions_def is None or context.has_partition_key:
            session = context.partition_key if partitions_def is not None else None
            values = _run_node(
                context, runner, NodeRun(spec, node, spec_dir, inputs, session, arrival)
            )
        else:
            # A single_run backfill: one step over the range, the node run once per
            # session on that session's slice of its inputs, so each session holds
            # exactly what its own run would have produced.
            sessions = list(context.partition_keys)
            by_session = {
                s: _run_node(
                    context,
                    runner,
                    NodeRun(spec, node, spec_dir, session_inputs(inputs, s), s, arrival),
                )
                for s in sessions
            }
            values = {
                out: PartitionSlices({s: by_session[s][out] for s in sessions})
                for out in node.outs
                if all(out in by_session[s] for s in sessions)
            }
        if not node.outs:
            yield MaterializeResult(asset_key=next(iter(out_names)))
            return
        missing = [o for o in node.outs if o not in values]
        if missing:
            raise Failure(
                description=f"{spec.pipeline_id}.{node.id}: returned no value for outs {missing}",
                allow_retries=False,
            )
        for out in node.outs:
            yield Output(values[out], output_name=out_names[asset_key(spec, out)])

    # Dagster inspects the compute function's signature ~16 times per op; all node
    # functions share one, so handing it over precomputed halves translation time.
    # typeshed's FunctionType has no __signature__, which inspect.signature honours.
    _compute.__signature__ = _COMPUTE_SIGNATURE  # type: ignore[attr-defined]
    return multi_asset(
        name=op_name(spec.pipeline_id, node.id),
        outs=outs,
        deps=order_only,
        ins={
            i: AssetIn(key=key, metadata=_load_metadata(spec, i, load_as))
            for i, key in data_ins.items()
        },
        retry_policy=(
            RetryPolicy(max_retries=retry.max_attempts - 1, delay=retry.backoff_sec or None)
            if retry.max_attempts > 1
            else None
        ),
        op_tags=op_tags,
        required_resource_keys=set(runner.required_resource_keys),
        partitions_def=partitions_def,
        # per_session keeps Dagster's default: one run per partition, tagged dagster/partition.
        backfill_policy=BackfillPolicy.single_run() if policy == "single_run" else None,
    )(_compute)


def _load_metadata(spec: DagSpec, name: str, load_as: dict[str, str]) -> dict[str, str] | None:
    external = spec.external_inputs.get(name)
    if external is None:
        return load_as or None
    return {**load_as, EXTERNAL_TABLE: external.table}


def _op_tags(spec: DagSpec, node: Node, pool: str, cluster: Cluster) -> dict[str, Any]:
    return {
        TAG_POOL: pool,
        TAG_KIND: node.kind.value,
        TAG_NODE: node.id,
        # honoured by k8s_job_executor only (prod/staging); ignored in process
        K8S_CONFIG_TAG: op_tag_config(spec, node, pool, cluster),
    }


def _check_refs(context: AssetExecutionContext, spec: DagSpec, node: Node) -> None:
    """A run pinned in time (the `quantos/refs` tag) whose refs the lake can no longer honour
    fails in every step before that step works: whichever step runs first, no node computes
    on other data than the refs name."""
    try:
        pins = pins_from_tags(context.run.tags)
        if not pins:
            return
        check = getattr(context.resources.io_manager, "check_pins", None)
        if check is not None:  # the lake; a test's own IO manager has no lake to ask
            check(spec.pipeline_id, pins, spec.external_tables(), context.run.run_id)
    except (RefError, LakeIOError) as err:
        raise Failure(
            description=f"{spec.pipeline_id}.{node.id}: {err}", allow_retries=False
        ) from None


def _run_node(context: AssetExecutionContext, runner: Runner, run: NodeRun) -> dict[str, Any]:
    try:
        return runner.run(context, run)
    except NodeRunError as err:
        # A node that cannot run here will not run on a retry either; its own
        # code failing (or a remote system) is retried under slo.retry.
        raise Failure(description=str(err), allow_retries=err.retryable) from None


def session_inputs(inputs: Mapping[str, Any], session: str) -> dict[str, Any]:
    """One session's part of inputs loaded for a range: the rows stored under its
    partition key, or its artifact."""
    import pyarrow as pa
    import pyarrow.compute as pc

    sliced: dict[str, Any] = {}
    for name, value in inputs.items():
        if isinstance(value, pa.Table) and PARTITION_COLUMN in value.column_names:
            sliced[name] = value.filter(pc.equal(value[PARTITION_COLUMN], session))
        elif isinstance(value, TableRef) and value.partition_keys is not None:
            sliced[name] = replace(value, partition_keys=(session,))
        elif isinstance(value, dict):
            sliced[name] = value[session]
        else:
            sliced[name] = value
    return sliced


def _compute_signature_template(context, **inputs):
    """Only its signature is used: the one every node's compute function has (unannotated,
    like the compute function itself)."""


_COMPUTE_SIGNATURE = inspect.signature(_compute_signature_template)


def _owners(spec: DagSpec) -> list[str]:
    owner = spec.labels.get("owner") or spec.labels.get("team")
    if not owner:
        return []
    return [owner] if "@" in owner else [f"team:{tag_value(owner)}"]


def _longest_path(
    spec: DagSpec, producer: Mapping[str, Node], edge_deps: Mapping[str, list[str]]
) -> int:
    """Nodes on the longest dependency chain (the spec is already known acyclic)."""
    depth: dict[str, int] = {}
    for node in spec.nodes:
        stack = [node.id]
        while stack:
            nid = stack[-1]
            if nid in depth:
                stack.pop()
                continue
            n = spec.node(nid)
            ups = [producer[i].id for i in n.ins if i in producer] + list(edge_deps.get(nid, ()))
            pending = [u for u in ups if u not in depth]
            if pending:
                stack.extend(pending)
                continue
            depth[nid] = 1 + max((depth[u] for u in ups), default=0)
            stack.pop()
    return max(depth.values(), default=0)


def _ensure_recursion_headroom(chain: int) -> None:
    """Dagster orders a job's steps with a recursive walk, one frame per node of the
    longest chain, so a compiler DAG deeper than ~900 nodes would fail to build.
    Python 3.11+ keeps pure-Python frames off the C stack, so a higher limit is safe."""
    needed = chain * 4 + 1000
    if needed > sys.getrecursionlimit():
        sys.setrecursionlimit(needed)
