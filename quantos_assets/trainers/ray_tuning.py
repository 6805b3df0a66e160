"""A hyperparameter search over a torch trainer: Ray Tune runs the trials, each trial one
Ray Train fit (trainers/torch_fit.py) on the same prepared windows.

Ray Train V2's pattern: a Tune trial is a light driver (no CPU of its own) that starts a
TorchTrainer with the trial's hyperparameters; the trainer's workers hold the resources,
so the trials that run at once are what the cluster can place (`concurrent`). Trials are
sampled by Tune's random search seeded with the node's seed: the same spec tries the same
configurations. Every trial's checkpoints live under the node's run path, named by the
trial, and the Tune experiment beside them: a retried step restores the search, keeps the
finished trials and resumes the rest from their checkpoints.
"""

from __future__ import annotations

import dataclasses
import posixpath
from typing import Any

from quantos_assets.trainers.search_space import Search
from quantos_assets.trainers.torch_fit import (
    CheckpointPlace,
    Fitted,
    TorchPlacement,
    checkpoint_state,
    fit_torch,
)
from quantos_assets.trainers.training import TrainingDataError

# A trial's own process only waits on its TorchTrainer: no CPU, so the CPUs go to the workers
# and as many trials run at once as worker groups fit. Tune refuses an all-zero request, hence
# one byte of memory.
_TRIAL_DRIVER = {"CPU": 0, "memory": 1}


@dataclasses.dataclass(frozen=True)
class Searched:
    """The best trial's fit and hyperparameters, and every trial (params, metrics, status)."""

    best: Fitted
    hyperparameters: dict[str, Any]
    trials: list[dict[str, Any]]


def tune_torch(
    config: dict[str, Any],
    placement: TorchPlacement,
    checkpoints: CheckpointPlace,
    datasets: dict[str, Any],
    search: Search,
    concurrent: int,
) -> Searched:
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    trainable = tune.with_resources(
        tune.with_parameters(
            _trial, base=config, placement=placement, checkpoints=checkpoints, datasets=datasets
        ),
        _TRIAL_DRIVER,
    )
    name = f"{checkpoints.name}-search"
    experiment = posixpath.join(checkpoints.path, name)
    if tune.Tuner.can_restore(experiment, storage_filesystem=checkpoints.filesystem):
        tuner = tune.Tuner.restore(
            experiment, trainable, resume_errored=True, storage_filesystem=checkpoints.filesystem
        )
    else:
        tuner = tune.Tuner(
            trainable,
            param_space={key: d.to_tune() for key, d in search.space.items()},
            tune_config=tune.TuneConfig(
                num_samples=search.trials,
                search_alg=BasicVariantGenerator(random_state=int(config["seed"])),
                max_concurrent_trials=max(1, min(concurrent, search.trials)),
            ),
            run_config=tune.RunConfig(
                name=name,
                storage_path=checkpoints.path,
                storage_filesystem=checkpoints.filesystem,
                verbose=0,
            ),
        )
    grid = tuner.fit()
    trials = [_trial_record(result, search) for result in grid]
    finished = [
        (t, r)
        for t, r in zip(trials, grid, strict=True)
        if r.error is None and search.metric in r.metrics
    ]
    if not finished:
        reasons = "; ".join(sorted({str(t["error"]) for t in trials})) or "no trial reported"
        raise TrainingDataError(f"every trial of the search failed: {reasons}")
    sign = 1.0 if search.mode == "min" else -1.0
    record, result = min(
        finished, key=lambda pair: (sign * float(pair[1].metrics[search.metric]), pair[0]["trial"])
    )
    record["best"] = True
    state = checkpoint_state(_checkpoint(result.metrics["last_checkpoint"], checkpoints.filesystem))
    best = Fitted(
        state=state,
        checkpoint=result.metrics["last_checkpoint"],
        best_checkpoint=result.metrics.get("best_checkpoint"),
    )
    return Searched(
        best=best, hyperparameters={**config["hyperparameters"], **result.config}, trials=trials
    )


def _trial(
    trial_config: dict[str, Any],
    base: dict[str, Any],
    placement: TorchPlacement,
    checkpoints: CheckpointPlace,
    datasets: dict[str, Any],
) -> None:
    """One trial: the base training config with this trial's hyperparameters, fitted under a
    run name of its own (what a restored search resumes from)."""
    from ray import tune

    trial_id = tune.get_context().get_trial_id()
    fitted = fit_torch(
        {**base, "hyperparameters": {**base["hyperparameters"], **trial_config}},
        placement,
        dataclasses.replace(checkpoints, name=f"{checkpoints.name}-{trial_id}"),
        datasets,
    )
    state = fitted.state
    last = state["history"][-1]
    tune.report(
        {
            "best_val_loss": state["best_loss"],
            "val_loss": last["val_loss"],
            "train_loss": last["train_loss"],
            "best_epoch": state["best_epoch"],
            "epochs_run": len(state["history"]),
            "last_checkpoint": fitted.checkpoint,
            "best_checkpoint": fitted.best_checkpoint,
        }
    )


def _checkpoint(path: str, filesystem: Any) -> Any:
    from ray.train import Checkpoint

    return Checkpoint(path, filesystem=filesystem)


def _trial_record(result: Any, search: Search) -> dict[str, Any]:
    metrics = result.metrics or {}
    record: dict[str, Any] = {
        "trial": metrics.get("trial_id") or _trial_id(result),
        "hyperparameters": {key: result.config.get(key) for key in search.space},
        "best": False,
    }
    if result.error is not None:
        lines = [line for line in str(result.error).splitlines() if line.strip()]
        record["error"] = lines[-1] if lines else type(result.error).__name__
        return record
    for key in (
        "best_val_loss",
        "val_loss",
        "train_loss",
        "best_epoch",
        "epochs_run",
        "best_checkpoint",
    ):
        record[key] = metrics.get(key)
    return record


def _trial_id(result: Any) -> str:
    return posixpath.basename(str(getattr(result, "path", "") or "")).split("_")[-1] or "?"
