"""ray_job: train a registered model on the node's feature table on Ray.

A scikit-learn trainer fits in one Ray task on the table the step loaded. A deep-learning
trainer (`bilstm`, `mlp`) runs on Ray Train: its input arrives as a reference to the
Iceberg snapshot its upstream committed (resources/table_ref.py), which Ray Data reads and
shards across `params.workers` TorchTrainer workers (trainers/ray_training.py).

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
    workers        torch trainers: data-parallel Ray Train workers (default 1); each gets
                   resources.cpu / workers CPUs, and one GPU when the node asks for GPUs
    min_workers    torch trainers: training goes on with this many after losing workers
                   (default 1; Ray Train's elastic worker group)
    early_stopping torch trainers: {patience: N, min_delta: x} on the validation loss
    search         torch trainers: a hyperparameter search with Ray Tune, e.g.
                   {lr: loguniform(1e-4, 1e-2), hidden: choice(32, 64), trials: 4};
                   the best trial on the validation split is the model
                   (trainers/search_space.py has the grammar)
    symbol_column  torch trainers: the series lookback windows are cut along ("symbol")
    mode           train (default) or predict: a trained model's forecasts for a feature
                   table (kinds/ray_predict.py, which documents its params and outs)
    anything else  a hyperparameter of the trainer (e.g. n_estimators, epochs, hidden)

outs: outs[0] the pickled model (Artifact role "model", model.bin) with its model
card in the materialization metadata (`model_card`: what a promotion gate checks
and what a retrain needs); outs[1], if declared, the metrics (Artifact role
"report", metrics.json).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypeVar

import pyarrow as pa
from dagster import AssetExecutionContext

from quantos_assets.kinds.base import NodeRun, NodeRunError, NodeValue, resource
from quantos_assets.kinds.loaded_inputs import loaded_inputs
from quantos_assets.kinds.ray_predict import is_predict, run_predict
from quantos_assets.placement import PlacementError, ray_train_workers, ray_worker_resources
from quantos_assets.spec.models import Node
from quantos_assets.trainers.model_card import MODEL_CARD, build_model_card
from quantos_assets.trainers.ray_training import (
    CheckpointPlace,
    EarlyStopping,
    TorchPlacement,
    train_torch,
)
from quantos_assets.trainers.registry import TRAINERS, torch_trainers, trainer_names
from quantos_assets.trainers.search_space import MAX_TRIALS, Search, SearchSpaceError, parse_search
from quantos_assets.trainers.training import TrainingDataError, TrainingJob, TrainingResult, train
from resources.artifact import Artifact
from resources.run_tag_keys import TAG_VERSION
from resources.table_ref import TableRef

RUNNER_PARAMS = frozenset(
    {
        "trainer",
        "target",
        "features",
        "date_column",
        "test_fraction",
        "seed",
        "input",
        "return_column",
        "symbol_column",
        "mode",
    }
)
_Input = TypeVar("_Input", pa.Table, TableRef)
# How a torch trainer runs, not what it learns: kept out of the hyperparameters.
TORCH_RUN_PARAMS = frozenset({"workers", "min_workers", "early_stopping", "search"})


def reads_tables_by_reference(node: Node) -> bool:
    """A torch trainer, and predict, read their table on the cluster: the step loads only a
    reference."""
    if is_predict(node):
        return True
    trainer = TRAINERS.get(str(node.params.get("trainer")))
    return trainer is not None and trainer.framework == "torch"


class RayJobRunner:
    required_resource_keys = frozenset({"ray", "artifact_store"})

    def run(self, context: AssetExecutionContext, run: NodeRun) -> dict[str, NodeValue]:
        if is_predict(run.node):
            return run_predict(context, run)
        outs = run.node.outs
        if not 1 <= len(outs) <= 2:
            raise NodeRunError(
                f"{run.label}: a ray_job declares 1 or 2 outs (model, metrics), not {len(outs)}"
            )
        if reads_tables_by_reference(run.node):
            input_name, ref = _feature_ref(run)
            job = training_job(run, ref.schema())
            result = self._train_torch(context, run, ref, job)
        else:
            input_name, table = _feature_table(run)
            job = training_job(run, table.schema)
            context.log.info(
                f"{run.label}: training '{job.trainer}' on {table.num_rows} rows, "
                f"{len(job.features)} features"
            )
            result = train_on_ray(resource(context, "ray").init(), table, job, run.label)
        m = result.metrics
        context.log.info(
            f"{run.label}: r2={m['r2']} ic={m['ic']} n_train={m['n_train']} n_test={m['n_test']}"
        )
        card = build_model_card(
            spec=run.spec,
            node=run.node,
            job=job,
            result=result,
            training_data={"input": input_name, **loaded_inputs(context).get(input_name, {})},
            code_version=_code_version(context, run),
        )
        values: dict[str, NodeValue] = {
            outs[0]: Artifact(
                data=result.model, role="model", filename="model.bin", metadata={MODEL_CARD: card}
            )
        }
        if len(outs) == 2:
            report = json.dumps(result.metrics, indent=2, sort_keys=True).encode()
            values[outs[1]] = Artifact(data=report, role="report", filename="metrics.json")
        return values

    def _train_torch(
        self, context: AssetExecutionContext, run: NodeRun, ref: TableRef, job: TrainingJob
    ) -> TrainingResult:
        ray_resource = resource(context, "ray")
        ray = ray_resource.init()
        placement = torch_placement(run, ray_resource)
        search = hyperparameter_search(run)
        store = resource(context, "artifact_store")
        # Under the run's path, named by node (and session): a retried step finds the same
        # run and Ray Train resumes it from its latest checkpoint.
        relpath = f"checkpoints/{run.spec.pipeline_id}/{context.run_id}"
        path, filesystem = store.filesystem_path(relpath)
        name = run.node.id + (f"-{run.session}" if run.session else "")
        context.log.info(
            f"{run.label}: training '{job.trainer}' on {ref.table}@{ref.snapshot_id} with "
            f"{placement.workers} Ray Train worker(s) of {placement.cpus_per_worker:g} CPU"
            f"{' and 1 GPU' if placement.use_gpu else ''}"
            f"{f', searching {search.trials} trial(s) of {sorted(search.space)}' if search else ''}"
            f"; checkpoints under {store.uri_for(relpath)}/{name}"
        )
        try:
            result = train_torch(
                ref.to_ray_dataset(),
                job,
                placement,
                CheckpointPlace(
                    path=path, name=name, uri=store.uri_for(relpath), filesystem=filesystem
                ),
                early_stopping(run),
                search,
                concurrent_trials(placement, ray_resource),
            )
        except TrainingDataError as err:
            raise NodeRunError(f"{run.label}: training '{job.trainer}' failed: {err}") from None
        except ray.exceptions.RayError as err:
            raise NodeRunError(
                f"{run.label}: training '{job.trainer}' failed: {_last_line(err)}", retryable=True
            ) from None
        except Exception as err:
            if type(err).__module__.startswith("ray."):
                raise NodeRunError(
                    f"{run.label}: training '{job.trainer}' failed: {_last_line(err)}",
                    retryable=True,
                ) from None
            raise
        t = result.metrics["training"]
        context.log.info(
            f"{run.label}: {t['epochs_run']} epoch(s) from {t['starts']}, best epoch "
            f"{t['best_epoch']} "
            f"(val loss {t['best_val_loss']:.6g}); seconds {t['seconds']}"
        )
        return result


def _code_version(context: AssetExecutionContext, run: NodeRun) -> dict[str, Any]:
    """What code trained it: the spec version the run carries, the node's image, the platform."""
    from importlib.metadata import version

    try:
        tags = context.run.tags
    except Exception:  # noqa: BLE001 - a directly invoked context has no run
        tags = {}
    return {
        "spec_version": tags.get(TAG_VERSION),
        "image": run.node.image,
        "platform": version("quantos-orchestration"),
    }


def torch_placement(run: NodeRun, ray_resource: Any) -> TorchPlacement:
    """The node's resources split over its workers (placement.ray_worker_resources: the
    totals its step pod would have reserved). On a cluster that cannot grow (the local Ray)
    a request is cut so that every worker fits at once (no more than the largest node has, nor
    more than the cluster's CPUs over the workers), and GPUs are dropped where it has none."""
    try:
        per_worker = ray_worker_resources(run.spec, run.node)
    except PlacementError as err:
        raise NodeRunError(f"{run.label}: {err}") from None
    workers = ray_train_workers(run.node)
    min_workers = _positive_int(run.node.params.get("min_workers", 1), "min_workers", run.label)
    if min_workers > workers:
        raise NodeRunError(
            f"{run.label}: params.min_workers ({min_workers}) is more than params.workers "
            f"({workers})"
        )
    cpus, use_gpu, memory = per_worker["CPU"], per_worker["GPU"] > 0, per_worker["memory"] or None
    fit = ray_resource.largest_node()
    if fit is not None:
        cpus = min(cpus, fit["CPU"] or cpus, ray_resource.cpus() / workers)
        use_gpu = use_gpu and fit["GPU"] > 0
        memory = None  # a local Ray's memory is the machine's: no reservation to cut
    return TorchPlacement(
        workers=workers,
        cpus_per_worker=max(cpus, 0.1),
        use_gpu=use_gpu,
        min_workers=min_workers,
        memory_per_worker=memory,
    )


def hyperparameter_search(run: NodeRun) -> Search | None:
    try:
        return node_search(run.node.params)
    except SearchSpaceError as err:
        raise NodeRunError(
            f"{run.label}: params.search{'.' + err.field if err.field else ''}: {err}"
        ) from None


def search_problems(params: Mapping[str, Any]) -> list[tuple[str, str]]:
    """`quantos validate`'s view of params.search: (".field" under it or "", one line)."""
    if str(params.get("trainer")) not in TRAINERS:
        return []  # the unknown trainer is its own error, at run time
    try:
        node_search(params)
    except SearchSpaceError as err:
        return [(f".{err.field}" if err.field else "", str(err))]
    return []


def node_search(params: Mapping[str, Any]) -> Search | None:
    """params.search checked against the node's (known) trainer: SearchSpaceError if malformed."""
    if params.get("search") is None:
        return None
    trainer = TRAINERS[str(params["trainer"])]
    if trainer.framework != "torch":
        raise SearchSpaceError(
            "", _SEARCH_NEEDS_TORCH.format(trainers=", ".join(torch_trainers()), name=trainer.name)
        )
    fixed = {k: v for k, v in params.items() if k not in RUNNER_PARAMS | TORCH_RUN_PARAMS}
    return parse_search(params["search"], trainer.defaults, fixed)


_SEARCH_NEEDS_TORCH = "params.search tunes the deep-learning trainers ({trainers}), not '{name}'"


def concurrent_trials(placement: TorchPlacement, ray_resource: Any) -> int:
    """Trials at once: as many worker groups as a fixed cluster's CPUs hold; on an
    autoscaling cluster every trial (the autoscaler adds the nodes)."""
    if ray_resource.largest_node() is None:
        return MAX_TRIALS
    return max(1, int(ray_resource.cpus() // (placement.workers * placement.cpus_per_worker)))


def early_stopping(run: NodeRun) -> EarlyStopping | None:
    value = run.node.params.get("early_stopping")
    if value in (None, False):
        return None
    if (
        not isinstance(value, dict)
        or "patience" not in value
        or set(value) - {"patience", "min_delta"}
    ):
        raise NodeRunError(
            f"{run.label}: params.early_stopping is {{patience: N, min_delta: x}}, not {value!r}"
        )
    return EarlyStopping(
        patience=_positive_int(value["patience"], "early_stopping.patience", run.label),
        min_delta=float(value.get("min_delta", 0.0)),
    )


def _positive_int(value: Any, name: str, label: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise NodeRunError(
            f"{label}: params.{name} must be a whole number of at least 1, not {value!r}"
        )
    return value


def _last_line(err: BaseException) -> str:
    cause = getattr(err, "cause", None) or err
    lines = [line for line in str(cause).splitlines() if line.strip()]
    return f"{type(cause).__name__}: {lines[-1] if lines else ''}"


def train_on_ray(ray: Any, table: pa.Table, job: TrainingJob, label: str) -> TrainingResult:
    """One training run as a Ray task; shared by the node and the reproducibility check, so a
    retrain goes exactly the way the original did."""
    columns = list(
        dict.fromkeys(
            [job.date_column, *job.features, job.target, *filter(None, [job.return_column])]
        )
    )
    frame = table.select(columns).to_pandas()
    try:
        return ray.get(ray.remote(num_cpus=1)(train).remote(frame, job))
    except ray.exceptions.RayTaskError as err:
        cause = getattr(err, "cause", None) or err
        lines = [line for line in str(cause).splitlines() if line.strip()]
        reason = f"{type(cause).__name__}: {lines[-1] if lines else ''}"
        if isinstance(cause, TrainingDataError):
            reason = str(cause)
        raise NodeRunError(
            f"{label}: training '{job.trainer}' failed: {reason}", retryable=True
        ) from None


def training_job(run: NodeRun, schema: pa.Schema | None = None) -> TrainingJob:
    """Check params (and the input's columns, when given) and build the job."""
    params = run.node.params
    name = params.get("trainer")
    if not name:
        raise NodeRunError(
            f"{run.label}: ray_job has no params.trainer (one of {', '.join(trainer_names())})"
        )
    if name not in TRAINERS:
        raise NodeRunError(
            f"{run.label}: trainer '{name}' is not in the local registry "
            f"({', '.join(trainer_names())})"
        )
    trainer = TRAINERS[name]
    if "search" in params and trainer.framework != "torch":
        raise NodeRunError(
            f"{run.label}: "
            + _SEARCH_NEEDS_TORCH.format(trainers=", ".join(torch_trainers()), name=name)
        )
    run_params = RUNNER_PARAMS | (TORCH_RUN_PARAMS if trainer.framework == "torch" else frozenset())
    hyperparameters = {k: v for k, v in params.items() if k not in run_params}
    unknown = sorted(set(hyperparameters) - trainer.hyperparameter_names())
    if unknown:
        raise NodeRunError(
            f"{run.label}: params {unknown} are not hyperparameters of trainer '{name}' "
            f"(it takes {', '.join(sorted(trainer.hyperparameter_names()))})"
        )
    test_fraction = float(params.get("test_fraction", 0.2))
    if not 0 < test_fraction < 1:
        raise NodeRunError(
            f"{run.label}: params.test_fraction must be between 0 and 1, not {test_fraction}"
        )
    target = str(params.get("target", "fwd_return"))
    date_column = str(params.get("date_column", "date"))
    return_column = str(params["return_column"]) if params.get("return_column") else None
    # The return column is realised future return: never a default feature.
    excluded = {target, date_column, *filter(None, [return_column])}
    symbol_column = str(params.get("symbol_column", "symbol"))
    features = list(
        params.get("features")
        or (_default_features(schema, excluded) if schema is not None else [])
    )
    if schema is not None:
        wanted = (date_column, target, *features, *filter(None, [return_column]))
        if trainer.framework == "torch":
            wanted = (*wanted, symbol_column)
        missing = [c for c in wanted if c not in schema.names]
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
        symbol_column=symbol_column,
    )


def _feature_table(run: NodeRun) -> tuple[str, pa.Table]:
    """(input name, table) of the one table input the model trains on."""
    return _training_input(run, pa.Table)


def _feature_ref(run: NodeRun) -> tuple[str, TableRef]:
    """(input name, reference) of the table a torch trainer reads on the cluster."""
    return _training_input(run, TableRef)


def _training_input(run: NodeRun, kind: type[_Input]) -> tuple[str, _Input]:
    found = {k: v for k, v in run.inputs.items() if isinstance(v, kind)}
    wanted: Any = run.node.params.get("input")
    if wanted is not None:
        if wanted not in found:
            raise NodeRunError(
                f"{run.label}: params.input '{wanted}' is not a table input ({sorted(found)})"
            )
        return wanted, found[wanted]
    if len(found) != 1:
        raise NodeRunError(
            f"{run.label}: a ray_job trains on one table input, got {sorted(found) or 'none'}; "
            "set params.input"
        )
    return next(iter(found.items()))


def _default_features(schema: pa.Schema, excluded: set[str]) -> list[str]:
    numeric = (pa.types.is_integer, pa.types.is_floating)
    return [
        f.name
        for f in schema
        if any(is_type(f.type) for is_type in numeric)
        and f.name not in excluded
        and not f.name.startswith("fwd_")
    ]
