"""The trainers a ray_job may name: a name -> how to build an untrained estimator.

A closed registry (not "import any class") keeps a compiler-emitted spec from
running arbitrary code on the training cluster. An unknown trainer is not caught by
`quantos validate` or at load (the spec loads, `params` is free-form): it fails when the
node's step runs, before any training starts, as one line that is not retried
(`kinds/ray_job.training_job`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

# scikit-learn and PyTorch are imported inside the builders: they take seconds to import
# and the registry is loaded with every code location, which never trains.

Framework = Literal["sklearn", "torch"]


@dataclass(frozen=True)
class Trainer:
    name: str
    # sklearn: (hyperparameters, seed) -> an unfitted estimator.
    # torch: (hyperparameters, n_features) -> an untrained torch.nn.Module taking windows
    # [batch, lookback, features] to one forecast per window.
    build: Callable[[Mapping[str, Any], int], Any]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    # sklearn trains in one Ray task on the table; torch trains on Ray Train workers that
    # read the table with Ray Data (kinds/ray_job.py).
    framework: Framework = "sklearn"

    def hyperparameter_names(self) -> set[str]:
        return set(self.defaults)

    def estimator(self, hyperparameters: Mapping[str, Any], seed: int) -> Any:
        return self.build({**self.defaults, **hyperparameters}, seed)

    def module(self, hyperparameters: Mapping[str, Any], n_features: int) -> Any:
        """A torch trainer's untrained network (seed torch first: it draws the weights)."""
        return self.build({**self.defaults, **hyperparameters}, n_features)


def _ridge(hp: Mapping[str, Any], seed: int) -> Any:
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    # Scaled so one alpha means the same thing for every feature.
    return make_pipeline(StandardScaler(), Ridge(alpha=float(hp["alpha"]), random_state=seed))


def _gradient_boosting(hp: Mapping[str, Any], seed: int) -> Any:
    from sklearn.ensemble import GradientBoostingRegressor

    return GradientBoostingRegressor(
        n_estimators=int(hp["n_estimators"]),
        learning_rate=float(hp["learning_rate"]),
        max_depth=int(hp["max_depth"]),
        subsample=float(hp["subsample"]),
        min_samples_leaf=int(hp["min_samples_leaf"]),
        loss=str(hp["loss"]),
        random_state=seed,
    )


def _bilstm(hp: Mapping[str, Any], n_features: int) -> Any:
    from quantos_assets.trainers.torch_models import BiLSTMForecaster

    return BiLSTMForecaster(n_features, int(hp["hidden"]), int(hp["layers"]), float(hp["dropout"]))


def _mlp(hp: Mapping[str, Any], n_features: int) -> Any:
    from quantos_assets.trainers.torch_models import MLPForecaster

    return MLPForecaster(
        n_features, int(hp["lookback"]), int(hp["hidden"]), int(hp["layers"]), float(hp["dropout"])
    )


# What every deep-learning trainer takes (its loop, not its architecture).
TORCH_LOOP_DEFAULTS: Mapping[str, Any] = {
    "epochs": 10,
    "lr": 1e-3,
    "batch_size": 256,
    "weight_decay": 0.0,
}

TRAINERS: dict[str, Trainer] = {
    t.name: t
    for t in (
        Trainer(
            name="ridge",
            build=_ridge,
            defaults={"alpha": 1.0},
            description="standardised features, L2-regularised linear regression",
        ),
        Trainer(
            name="gradient_boosting",
            build=_gradient_boosting,
            defaults={
                "n_estimators": 200,
                "learning_rate": 0.05,
                "max_depth": 3,
                "subsample": 0.8,
                "min_samples_leaf": 50,
                "loss": "huber",
            },
            description="gradient-boosted regression trees (huber loss: robust to return outliers)",
        ),
        Trainer(
            name="bilstm",
            build=_bilstm,
            defaults={
                **TORCH_LOOP_DEFAULTS,
                "lookback": 20,
                "hidden": 32,
                "layers": 1,
                "dropout": 0.0,
            },
            description=(
                "bidirectional LSTM over each symbol's last `lookback` rows of features (PyTorch "
                "on Ray Train)"
            ),
            framework="torch",
        ),
        Trainer(
            name="mlp",
            build=_mlp,
            defaults={
                **TORCH_LOOP_DEFAULTS,
                "lookback": 1,
                "hidden": 64,
                "layers": 2,
                "dropout": 0.1,
            },
            description=(
                "feed-forward network on each symbol's last `lookback` rows of features (PyTorch "
                "on Ray Train)"
            ),
            framework="torch",
        ),
    )
}


class UnknownTrainer(KeyError):
    """params.trainer names no registered trainer."""


def trainer_names() -> list[str]:
    return sorted(TRAINERS)


def torch_trainers() -> list[str]:
    return sorted(name for name, t in TRAINERS.items() if t.framework == "torch")


def get_trainer(name: str) -> Trainer:
    try:
        return TRAINERS[name]
    except KeyError:
        raise UnknownTrainer(name) from None
