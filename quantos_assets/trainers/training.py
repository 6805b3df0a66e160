"""One training run: time-ordered split, fit, score, serialise.

A plain function of a DataFrame so it runs the same inside a Ray task, a
test, or a notebook. The split is by date, never random: a random split of
overlapping forward returns leaks the future into training.
"""

from __future__ import annotations

import math
import pickle
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from quantos_assets.trainers.evaluation import forecast_scores, portfolio_scores
from quantos_assets.trainers.registry import get_trainer


class TrainingDataError(ValueError):
    """The feature table cannot be trained on (too few rows or dates)."""


@dataclass(frozen=True)
class TrainingJob:
    trainer: str
    features: list[str]
    target: str = "fwd_return"
    date_column: str = "date"
    test_fraction: float = 0.2
    seed: int = 0
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    # Realised (log) returns the forecast is traded on for sharpe/max_drawdown; not a
    # feature, never trained on. None: the portfolio scores are left out.
    return_column: str | None = None
    # The series a sequence model's lookback windows are cut along (torch trainers).
    symbol_column: str = "symbol"


@dataclass(frozen=True)
class TrainingResult:
    model: bytes  # a pickled, fitted scikit-learn estimator (feature_names_in_ = features)
    metrics: dict[str, Any]
    # Library versions where the model was fitted (the Ray worker): the same seed and data
    # give the same bytes only on the same versions, so a reproducibility proof names them.
    environment: dict[str, str] = field(default_factory=dict)


def training_environment(
    libraries: tuple[str, ...] = ("scikit-learn", "numpy", "pandas"),
) -> dict[str, str]:
    import platform
    from importlib.metadata import version

    return {"python": platform.python_version(), **{name: version(name) for name in libraries}}


def split_by_time(
    frame: pd.DataFrame, date_column: str, test_fraction: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The last `test_fraction` of the distinct dates are the test set."""
    first_test = first_test_date(frame[date_column].unique(), date_column, test_fraction)
    is_test = frame[date_column] >= first_test
    return frame[~is_test], frame[is_test]


def first_test_date(distinct: Any, date_column: str, test_fraction: float) -> Any:
    """The first date of the test split: the last `test_fraction` of the distinct dates."""
    dates = pd.Series(distinct).sort_values().to_list()
    if len(dates) < 2:
        raise TrainingDataError(f"need at least 2 distinct {date_column} values, got {len(dates)}")
    n_test = min(len(dates) - 1, max(1, math.ceil(len(dates) * test_fraction)))
    return dates[len(dates) - n_test]


def train(frame: pd.DataFrame, job: TrainingJob) -> TrainingResult:
    trainer = get_trainer(job.trainer)
    trained_on = [job.date_column, *job.features, job.target]
    scored_on = (
        [job.return_column] if job.return_column and job.return_column not in trained_on else []
    )
    # Rows are chosen by the training columns only: adding the return column must not
    # change which rows (and so which model bytes) a spec produces.
    data = frame[trained_on + scored_on].dropna(subset=trained_on)
    data = data.sort_values(job.date_column, kind="stable").reset_index(drop=True)
    train_set, test_set = split_by_time(data, job.date_column, job.test_fraction)
    if len(train_set) < 10 or len(test_set) < 2:
        raise TrainingDataError(
            f"too few complete rows: {len(train_set)} to train, {len(test_set)} to test"
        )
    model = trainer.estimator(job.hyperparameters, job.seed)
    model.fit(train_set[job.features], train_set[job.target].to_numpy())
    predicted = model.predict(test_set[job.features])
    metrics: dict[str, Any] = {
        **asdict(job),
        "hyperparameters": {**trainer.defaults, **job.hyperparameters},
        "n_train": len(train_set),
        "n_test": len(test_set),
        "train_start": str(train_set[job.date_column].min()),
        "train_end": str(train_set[job.date_column].max()),
        "test_start": str(test_set[job.date_column].min()),
        "test_end": str(test_set[job.date_column].max()),
        **forecast_scores(test_set[job.date_column], predicted, test_set[job.target].to_numpy()),
    }
    if job.return_column:
        metrics.update(
            portfolio_scores(
                test_set[job.date_column], predicted, test_set[job.return_column].to_numpy()
            )
        )
    return TrainingResult(
        model=pickle.dumps(model, protocol=5), metrics=metrics, environment=training_environment()
    )
