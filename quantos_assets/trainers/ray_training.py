"""A deep-learning trainer on Ray: Ray Data prepares the windows, Ray Train trains them.

The driver (the Dagster step) never holds the table: Ray Data reads the Iceberg snapshot
on the cluster, cuts each symbol's lookback windows, splits them by date and shards them
across the TorchTrainer's workers. The driver only sees the distinct dates (for the
split), the train-set mean and std of each feature (for the network's input scaling),
the checkpoints' metadata, and the test-set forecasts it scores.

Checkpoints go to the artifact store under the run's path with a name fixed by the run
and node, so Ray Train resumes from the latest one both when a worker is lost (its own
failure handling) and when the step itself is retried (a new `fit` of the same run name).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from quantos_assets.trainers.evaluation import forecast_scores, portfolio_scores
from quantos_assets.trainers.ray_tuning import tune_torch
from quantos_assets.trainers.registry import get_trainer
from quantos_assets.trainers.scoring import PREDICTION, score_windows
from quantos_assets.trainers.search_space import Search
from quantos_assets.trainers.shard_feed import cache_fits
from quantos_assets.trainers.torch_artifact import TorchModel
from quantos_assets.trainers.torch_fit import (
    CheckpointPlace,
    EarlyStopping,
    TorchPlacement,
    fit_torch,
)
from quantos_assets.trainers.training import (
    TrainingDataError,
    TrainingJob,
    TrainingResult,
    first_test_date,
    training_environment,
)
from quantos_assets.trainers.windows import WindowSpec, symbol_windows
from resources.ray_cluster import configure_ray_data

LIBRARIES = ("torch", "ray", "numpy", "pandas")
# The share of the training dates (the last ones) held out to pick the epoch and stop early.
VALIDATION_FRACTION = 0.1


def train_torch(
    dataset: Any,
    job: TrainingJob,
    placement: TorchPlacement,
    checkpoints: CheckpointPlace,
    early_stopping: EarlyStopping | None = None,
    search: Search | None = None,
    concurrent_trials: int = 1,
) -> TrainingResult:
    """Train `job` (a torch trainer) on a lazy Ray Dataset of the feature rows; with `search`,
    the best of its trials (at most `concurrent_trials` at once) becomes the model."""

    # Also done when the dataset was made (resources/table_ref.py): a dataset built another
    # way gets the same settings for what is derived from it here.
    configure_ray_data()
    trainer = get_trainer(job.trainer)
    hyperparameters = {**trainer.defaults, **job.hyperparameters}
    extra = (job.return_column,) if job.return_column else ()
    spec = WindowSpec(
        features=tuple(job.features),
        target=job.target,
        date_column=job.date_column,
        symbol_column=job.symbol_column,
        lookback=int(hyperparameters["lookback"]),
        carry=extra,
    )
    clock = _Clock()
    windows = (
        dataset.groupby(job.symbol_column)
        .map_groups(symbol_windows, fn_kwargs={"spec": spec}, batch_format="pandas")
        .map_batches(_labelled, batch_format="numpy")
        .materialize()
    )
    stats = _date_stats(windows, len(job.features))
    distinct = stats.dates
    if not distinct:
        raise TrainingDataError(f"no complete window of {spec.lookback} rows with a {job.target}")
    first_test = first_test_date(distinct, job.date_column, job.test_fraction)
    # The epoch kept and early stopping are chosen on a validation split of the last training
    # dates, never on the test windows the reported metrics are measured on.
    first_val = first_test_date(
        [d for d in distinct if d < first_test], job.date_column, VALIDATION_FRACTION
    )
    # Materialized before training: the workers hold every CPU while they train, so nothing
    # may be left for Ray Data to compute then.
    train_xy = _dates(windows, None, first_val, ("x", "y")).materialize()
    val_xy = _dates(windows, first_val, first_test, ("x", "y")).materialize()
    test_set = _dates(windows, first_test, None).materialize()
    n_train, n_val, n_test = (
        stats.count(None, first_val),
        stats.count(first_val, first_test),
        stats.count(first_test, None),
    )
    if n_train < 10 or n_val < 2 or n_test < 2:
        raise TrainingDataError(
            f"too few complete windows: {n_train} to train, {n_val} to validate, {n_test} to test"
        )
    mean, std = stats.moments(first_val)
    clock.lap("prepare")

    config = {
        "trainer": job.trainer,
        "hyperparameters": hyperparameters,
        "n_features": len(job.features),
        "seed": job.seed,
        "mean": mean,
        "std": std,
        "threads": max(1, int(placement.cpus_per_worker)),
        "patience": early_stopping.patience if early_stopping else None,
        # Each worker holds its shards in memory when they fit (trainers/shard_feed.py).
        "cache": cache_fits(
            n_train + n_val,
            spec.lookback,
            len(job.features),
            placement.workers,
            placement.memory_per_worker,
        ),
        "min_delta": early_stopping.min_delta if early_stopping else 0.0,
    }
    datasets = {"train": train_xy, "val": val_xy}
    trials: list[dict[str, Any]] | None = None
    if search is None:
        fitted = fit_torch(config, placement, checkpoints, datasets)
    else:
        searched = tune_torch(config, placement, checkpoints, datasets, search, concurrent_trials)
        fitted, hyperparameters, trials = searched.best, searched.hyperparameters, searched.trials
    clock.lap("search" if search else "train")
    state = fitted.state
    model = TorchModel(
        trainer=job.trainer,
        hyperparameters=hyperparameters,
        features=list(job.features),
        lookback=spec.lookback,
        state_dict=state["best"],
    ).to_bytes()

    scored = score_windows(
        test_set, model, placement.workers, placement.cpus_per_worker, keep=("date", "y", *extra)
    ).to_pandas()
    clock.lap("score")
    before = [d for d in distinct if d < first_val]
    metrics: dict[str, Any] = {
        **asdict(job),
        "hyperparameters": hyperparameters,
        "n_train": n_train,
        "n_validation": n_val,
        "n_test": n_test,
        "train_start": _day(before[0]),
        "train_end": _day(before[-1]),
        "validation_start": _day(first_val),
        "test_start": _day(first_test),
        "test_end": _day(distinct[-1]),
        **forecast_scores(scored["date"], scored[PREDICTION].to_numpy(), scored["y"].to_numpy()),
        "training": {
            "framework": "pytorch",
            "workers": placement.workers,
            "min_workers": placement.min_workers,
            "cpus_per_worker": placement.cpus_per_worker,
            "gpus_per_worker": 1 if placement.use_gpu else 0,
            "epochs_run": len(state["history"]),
            "epochs": int(hyperparameters["epochs"]),
            "best_epoch": state["best_epoch"],
            "best_val_loss": state["best_loss"],
            "early_stopping": asdict(early_stopping) if early_stopping else None,
            "stopped_early": len(state["history"]) < int(hyperparameters["epochs"]),
            "starts": state.get("starts", [0]),
            "placements": state.get("placements", []),
            "history": state["history"],
            "checkpoints": f"{checkpoints.uri}/{checkpoints.name}",
            "best_checkpoint": fitted.best_checkpoint,
            "seconds": clock.laps,
        },
    }
    if search is not None:
        metrics["search"] = {**search.describe(), "trials_run": trials}
    if job.return_column:
        metrics.update(
            portfolio_scores(
                scored["date"], scored[PREDICTION].to_numpy(), scored[job.return_column].to_numpy()
            )
        )
    return TrainingResult(model=model, metrics=metrics, environment=training_environment(LIBRARIES))


def _labelled(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    keep = ~np.isnan(batch["y"])
    return {k: v[keep] for k, v in batch.items()}


def _dates(windows: Any, start: Any, end: Any, columns: tuple[str, ...] | None = None) -> Any:
    """The windows ending in [start, end) (None: open), with `columns` only (None: all)."""
    return windows.map_batches(
        _between, fn_kwargs={"start": start, "end": end, "columns": columns}, batch_format="numpy"
    )


def _between(
    batch: dict[str, np.ndarray], start: Any, end: Any, columns: tuple[str, ...] | None = None
) -> dict[str, np.ndarray]:
    keep = np.ones(len(batch["date"]), dtype=bool)
    if start is not None:
        keep &= batch["date"] >= np.datetime64(start)
    if end is not None:
        keep &= batch["date"] < np.datetime64(end)
    return {k: v[keep] for k, v in batch.items() if columns is None or k in columns}


@dataclass(frozen=True)
class _DateStats:
    """Per window end date: how many windows, and the sums and squared sums of their last
    row's features. One pass over the windows gives the split dates, each split's size and
    the train-set scaling (each complete training row once, but the first lookback-1 of
    each symbol) without reading the splits again."""

    dates: list[Any]
    counts: np.ndarray  # (dates,)
    sums: np.ndarray  # (dates, 2, features): sum, sum of squares

    def count(self, start: Any, end: Any) -> int:
        return int(self.counts[self._between(start, end)].sum())

    def moments(self, end: Any) -> tuple[list[float], list[float]]:
        """Per-feature mean and std of the windows ending before `end`."""
        keep = self._between(None, end)
        n = max(float(self.counts[keep].sum()), 1.0)
        total = self.sums[keep].sum(axis=0)
        mean = total[0] / n
        var = np.maximum(total[1] / n - mean**2, 0.0)
        return mean.tolist(), np.sqrt(var).tolist()

    def _between(self, start: Any, end: Any) -> np.ndarray:
        dates = np.array(self.dates, dtype="datetime64[ns]")
        keep = np.ones(len(dates), dtype=bool)
        if start is not None:
            keep &= dates >= np.datetime64(start)
        if end is not None:
            keep &= dates < np.datetime64(end)
        return keep


def _date_stats(windows: Any, n_features: int) -> _DateStats:
    """Summed per block on the cluster, merged here (one row per block and date: a few
    thousand values; Ray Data's groupby would start a shuffle for them)."""
    rows = windows.map_batches(_block_date_stats, batch_format="numpy", batch_size=None).take_all()
    merged: dict[Any, tuple[float, np.ndarray]] = {}
    for row in rows:
        count, sums = merged.get(row["date"], (0.0, np.zeros((2, n_features))))
        merged[row["date"]] = (count + float(row["count"]), sums + np.asarray(row["sums"]))
    dates = sorted(merged)
    return _DateStats(
        dates=dates,
        counts=np.array([merged[d][0] for d in dates]),
        sums=np.array([merged[d][1] for d in dates]).reshape(len(dates), 2, n_features),
    )


def _block_date_stats(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    dates, inverse = np.unique(batch["date"], return_inverse=True)
    last = np.asarray(batch["x"], dtype=np.float64)[:, -1, :]
    sums = np.zeros((len(dates), 2, last.shape[1]))
    np.add.at(sums[:, 0], inverse, last)
    np.add.at(sums[:, 1], inverse, last**2)
    return {
        "date": dates,
        "count": np.bincount(inverse, minlength=len(dates)).astype(np.float64),
        "sums": sums,
    }


def _day(value: Any) -> str:
    return str(np.datetime64(value, "D"))


class _Clock:
    """Seconds per phase (prepare, train, score): where a slow training spends its time."""

    def __init__(self) -> None:
        import time

        self._now = time.monotonic
        self._last = self._now()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = self._now()
        self.laps[name] = round(now - self._last, 2)
        self._last = now
