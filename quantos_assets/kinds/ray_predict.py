"""ray_job in `params.mode: predict`: a trained model's forecasts for a feature table.

The node takes two ins, a model (outs[0] of a training ray_job) and a feature table, and
writes one out, the predictions table: the table's date and symbol columns, `prediction` and
`model_sha256`, one row per feature row. The table arrives as a reference to its snapshot
(or its session's partition) and is scored on Ray (trainers/batch_predict.py); the
predictions go back through the IO manager like any table, so they are committed, recorded
and partitioned by session the way every other out is.

Everything that can be checked from the spec, the model file's header and the table's schema
is checked before any Ray work starts: a model whose features the table lacks is one line.

params:
    mode           predict (default train: kinds/ray_job.py)
    date_column    the table's date column, kept in the output (default "date")
    symbol_column  the series a sequence model's windows are cut along, kept in the output
                   (default "symbol")
    workers        actors scoring in parallel (default 1), each loading the model once; each
                   gets resources.cpu / workers CPUs (its torch threads) and one GPU when the
                   node asks for GPUs (so gpu is 0 or workers, as for training)
"""

from __future__ import annotations

from typing import Any

from dagster import AssetExecutionContext

from quantos_assets.kinds.base import NodeRun, NodeRunError, NodeValue, resource
from quantos_assets.spec.models import DagSpec, Node, NodeKind
from quantos_assets.trainers.batch_predict import (
    ActorPool,
    KeyColumns,
    ModelFileError,
    describe_model,
    predict_table,
)
from resources.artifact import Artifact
from resources.table_ref import TableRef

MODES = ("train", "predict")
PREDICT_PARAMS = frozenset({"mode", "date_column", "symbol_column", "workers"})


def ray_job_mode(node: Node) -> Any:
    """`params.mode` of a ray_job as written (quantos validate rejects anything but MODES)."""
    return node.params.get("mode", "train")


def is_predict(node: Node) -> bool:
    return node.kind is NodeKind.ray_job and ray_job_mode(node) == "predict"


def mode_problems(spec: DagSpec, index: int) -> list[tuple[str, str]]:
    """quantos validate's checks of a ray_job's mode, as (spec path, message)."""
    node = spec.nodes[index]
    where = f"nodes[{index}]"
    mode = ray_job_mode(node)
    if mode not in MODES:
        return [(f"{where}.params.mode", f"mode must be train or predict, not {mode!r}")]
    if mode != "predict":
        return []
    problems = [
        (
            f"{where}.params.{name}",
            (
                f"a predict ray_job takes params {', '.join(sorted(PREDICT_PARAMS))} "
                f"(the model decides trainer and features), not {name!r}"
            ),
        )
        for name in node.params
        if name not in PREDICT_PARAMS
    ]
    producers = {out: n for n in spec.nodes for out in n.outs}
    models = [i for i in node.ins if _is_model_out(producers.get(i), i)]
    if len(models) != 1 or len(node.ins) != 2:
        problems.append(
            (
                f"{where}.ins",
                (
                    "a predict ray_job takes two ins, a model (outs[0] of a training ray_job) "
                    f"and a feature table, not {node.ins} ({len(models)} model(s))"
                ),
            )
        )
    if len(node.outs) != 1:
        problems.append(
            (
                f"{where}.outs",
                f"a predict ray_job writes one predictions table: one out, not {len(node.outs)}",
            )
        )
    return problems


def _is_model_out(producer: Node | None, out: str) -> bool:
    return (
        producer is not None
        and producer.kind is NodeKind.ray_job
        and not is_predict(producer)
        and producer.outs[:1] == [out]
    )


def run_predict(context: AssetExecutionContext, run: NodeRun) -> dict[str, NodeValue]:
    """The predictions of the node's model for its feature table (see the module docstring)."""
    label = run.label
    if len(run.node.outs) != 1:
        raise NodeRunError(
            f"{label}: a predict ray_job writes one predictions table: one out, not "
            f"{len(run.node.outs)}"
        )
    model_in, artifact = _one(run, Artifact, "a model")
    table_in, ref = _one(run, TableRef, "a feature table read by reference")
    if artifact.role != "model":
        raise NodeRunError(
            f"{label}: input '{model_in}' is a {artifact.role}, not a model (outs[0] of a "
            "training ray_job)"
        )
    try:
        model = describe_model(artifact.data)
    except ModelFileError as err:
        raise NodeRunError(f"{label}: input '{model_in}' is {err}") from None
    keys = KeyColumns(
        date=str(run.node.params.get("date_column", "date")),
        symbol=str(run.node.params.get("symbol_column", "symbol")),
    )
    schema = ref.schema()
    no_keys = [c for c in (keys.date, keys.symbol) if c not in schema.names]
    if no_keys:
        raise NodeRunError(
            f"{label}: the feature table {ref.table} has no key column(s) {no_keys} "
            "(params.date_column, params.symbol_column)"
        )
    missing = [c for c in model.features if c not in schema.names]
    if missing:
        raise NodeRunError(
            f"{label}: the feature table {ref.table} lacks column(s) {missing} that model "
            f"'{model_in}' ({model.trainer}) reads"
        )
    ray_resource = resource(context, "ray")
    ray = ray_resource.init()
    pool = actor_pool(run, ray_resource)
    where = f"{ref.table}@{ref.snapshot_id}" + (
        f" partition {list(ref.partition_keys)}" if ref.partition_keys else ""
    )
    context.log.info(
        f"{label}: predicting with '{model.trainer}' ({model.framework}, lookback "
        f"{model.lookback}, "
        f"sha256 {model.sha256[:12]}) on {where} with {pool.actors} actor(s) of "
        f"{pool.cpus_per_actor:g} CPU"
        f"{' and 1 GPU' if pool.gpus_per_actor else ''}"
    )
    try:
        table = predict_table(
            ref.to_ray_dataset([keys.date, keys.symbol, *model.features]),
            artifact.data,
            model,
            keys,
            pool,
            schema.field(keys.date).type,
        )
    except ray.exceptions.RayError as err:
        raise NodeRunError(f"{label}: predict failed: {_last_line(err)}", retryable=True) from None
    except Exception as err:
        if type(err).__module__.startswith("ray."):
            raise NodeRunError(
                f"{label}: predict failed: {_last_line(err)}", retryable=True
            ) from None
        raise
    nulls = table.column("prediction").null_count
    context.log.info(
        f"{label}: {table.num_rows} predictions of '{table_in}' ({nulls} null: a null feature, or "
        f"fewer than {model.lookback} complete rows of the symbol up to that date)"
    )
    return {run.node.outs[0]: table}


def actor_pool(run: NodeRun, ray_resource: Any) -> ActorPool:
    """`params.workers` actors (default 1) sized as torch training sizes its workers
    (kinds/ray_job.torch_placement): each gets resources.cpu / workers CPUs (its torch
    threads) and one GPU when the node asks for GPUs, cut on a cluster that cannot grow."""
    # Imported here: ray_job imports this module for its dispatch on mode.
    from quantos_assets.kinds.ray_job import torch_placement

    placement = torch_placement(run, ray_resource)
    return ActorPool(
        actors=placement.workers,
        cpus_per_actor=placement.cpus_per_worker,
        gpus_per_actor=1.0 if placement.use_gpu else 0.0,
    )


def _one(run: NodeRun, kind: type, what: str) -> tuple[str, Any]:
    found = [(name, value) for name, value in run.inputs.items() if isinstance(value, kind)]
    if len(found) != 1:
        raise NodeRunError(
            f"{run.label}: a predict ray_job takes {what} as one of its two ins, got "
            f"{[n for n, _ in found] or 'none'}"
        )
    return found[0]


def _last_line(err: BaseException) -> str:
    cause = getattr(err, "cause", None) or err
    lines = [line for line in str(cause).splitlines() if line.strip()]
    return f"{type(cause).__name__}: {lines[-1] if lines else ''}"
