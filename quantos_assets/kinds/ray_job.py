"""ray_job: train a registered model on the node's feature table inside a Ray task.

params:
    trainer        a name in `quantos_assets.trainers.registry` (required)
    target         the column to forecast (default "fwd_return")
    features       feature columns (default: every numeric column except the
                   target, the date column and other `fwd_*` columns)
    date_column    orders the train/test split (default "date")
    test_fraction  share of the last dates held out (default 0.2)
    seed           makes the model bytes reproducible (default 0)
    input          which `ins` table to train on, when there are several
    return_column  realised (log) returns to trade the forecast on: adds sharpe,
                   max_drawdown, ann_return to the metrics (default: none)
    anything else  a hyperparameter of the trainer (e.g. n_estimators)

outs: outs[0] the pickled model (Artifact role "model", model.bin) with its model
card in the materialization metadata (`model_card`: what a promotion gate checks
and what a retrain needs); outs[1], if declared, the metrics (Artifact role
"report", metrics.json).
"""
from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
from dagster import AssetExecutionContext

from quantos_assets.kinds.base import NodeRun, NodeRunError, NodeValue, resource
from quantos_assets.kinds.loaded_inputs import loaded_inputs
from quantos_assets.trainers.model_card import MODEL_CARD, build_model_card
from quantos_assets.trainers.registry import TRAINERS, trainer_names
from quantos_assets.trainers.training import TrainingDataError, TrainingJob, TrainingResult, train
from resources.artifact import Artifact

RUNNER_PARAMS = frozenset(
    {"trainer", "target", "features", "date_column", "test_fraction", "seed", "input", "return_column"}
)


class RayJobRunner:
    required_resource_keys = frozenset({"ray"})

    def run(self, context: AssetExecutionContext, run: NodeRun) -> dict[str, NodeValue]:
        outs = run.node.outs
        if not 1 <= len(outs) <= 2:
            raise NodeRunError(f"{run.label}: a ray_job declares 1 or 2 outs (model, metrics), not {len(outs)}")
        input_name, table = _feature_table(run)
        job = training_job(run, table)
        context.log.info(f"{run.label}: training '{job.trainer}' on {table.num_rows} rows, {len(job.features)} features")
        result = train_on_ray(resource(context, "ray").init(), table, job, run.label)
        m = result.metrics
        context.log.info(f"{run.label}: r2={m['r2']} ic={m['ic']} n_train={m['n_train']} n_test={m['n_test']}")
        card = build_model_card(
            spec=run.spec,
            node=run.node,
            job=job,
            result=result,
            training_data={"input": input_name, **loaded_inputs(context).get(input_name, {})},
        )
        values: dict[str, NodeValue] = {
            outs[0]: Artifact(data=result.model, role="model", filename="model.bin", metadata={MODEL_CARD: card})
        }
        if len(outs) == 2:
            report = json.dumps(result.metrics, indent=2, sort_keys=True).encode()
            values[outs[1]] = Artifact(data=report, role="report", filename="metrics.json")
        return values


def train_on_ray(ray: Any, table: pa.Table, job: TrainingJob, label: str) -> TrainingResult:
    """One training run as a Ray task; shared by the node and the reproducibility check, so a
    retrain goes exactly the way the original did."""
    columns = list(dict.fromkeys([job.date_column, *job.features, job.target, *filter(None, [job.return_column])]))
    frame = table.select(columns).to_pandas()
    try:
        return ray.get(ray.remote(num_cpus=1)(train).remote(frame, job))
    except ray.exceptions.RayTaskError as err:
        cause = getattr(err, "cause", None) or err
        lines = [line for line in str(cause).splitlines() if line.strip()]
        reason = f"{type(cause).__name__}: {lines[-1] if lines else ''}"
        if isinstance(cause, TrainingDataError):
            reason = str(cause)
        raise NodeRunError(f"{label}: training '{job.trainer}' failed: {reason}", retryable=True) from None


def training_job(run: NodeRun, table: pa.Table | None = None) -> TrainingJob:
    """Check params (and the table's columns, when given) and build the job."""
    params = run.node.params
    name = params.get("trainer")
    if not name:
        raise NodeRunError(f"{run.label}: ray_job has no params.trainer (one of {', '.join(trainer_names())})")
    if name not in TRAINERS:
        raise NodeRunError(
            f"{run.label}: trainer '{name}' is not in the local registry ({', '.join(trainer_names())})"
        )
    trainer = TRAINERS[name]
    hyperparameters = {k: v for k, v in params.items() if k not in RUNNER_PARAMS}
    unknown = sorted(set(hyperparameters) - trainer.hyperparameter_names())
    if unknown:
        raise NodeRunError(
            f"{run.label}: params {unknown} are not hyperparameters of trainer '{name}' "
            f"(it takes {', '.join(sorted(trainer.hyperparameter_names()))})"
        )
    test_fraction = float(params.get("test_fraction", 0.2))
    if not 0 < test_fraction < 1:
        raise NodeRunError(f"{run.label}: params.test_fraction must be between 0 and 1, not {test_fraction}")
    target = str(params.get("target", "fwd_return"))
    date_column = str(params.get("date_column", "date"))
    return_column = str(params["return_column"]) if params.get("return_column") else None
    # The return column is realised future return: never a default feature.
    excluded = {target, date_column, *filter(None, [return_column])}
    features = list(params.get("features") or (_default_features(table, excluded) if table is not None else []))
    if table is not None:
        wanted = (date_column, target, *features, *filter(None, [return_column]))
        missing = [c for c in wanted if c not in table.column_names]
        if missing:
            raise NodeRunError(f"{run.label}: the input table has no column(s) {missing}")
        if not features:
            raise NodeRunError(f"{run.label}: the input table has no numeric feature columns")
    return TrainingJob(
        trainer=name,
        features=features,
        target=target,
        date_column=date_column,
        test_fraction=test_fraction,
        seed=int(params.get("seed", 0)),
        hyperparameters=hyperparameters,
        return_column=return_column,
    )


def _feature_table(run: NodeRun) -> tuple[str, pa.Table]:
    """(input name, table) of the one table input the model trains on."""
    tables = {k: v for k, v in run.inputs.items() if isinstance(v, pa.Table)}
    wanted: Any = run.node.params.get("input")
    if wanted is not None:
        if wanted not in tables:
            raise NodeRunError(f"{run.label}: params.input '{wanted}' is not a table input ({sorted(tables)})")
        return wanted, tables[wanted]
    if len(tables) != 1:
        raise NodeRunError(
            f"{run.label}: a ray_job trains on one table input, got {sorted(tables) or 'none'}; set params.input"
        )
    return next(iter(tables.items()))


def _default_features(table: pa.Table, excluded: set[str]) -> list[str]:
    numeric = (pa.types.is_integer, pa.types.is_floating)
    return [
        f.name
        for f in table.schema
        if any(is_type(f.type) for is_type in numeric)
        and f.name not in excluded
        and not f.name.startswith("fwd_")
    ]
