"""The trainers a ray_job may name: a name -> how to build an untrained estimator.

A closed registry (not "import any class") keeps a compiler-emitted spec from
running arbitrary code on the training cluster, and lets a spec be checked
before it runs: an unknown trainer is an error at load time, not after an hour.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

# scikit-learn is imported inside the builders: it takes seconds to import and
# the registry is loaded with every code location, which never trains.


@dataclass(frozen=True)
class Trainer:
    name: str
    # (hyperparameters, seed) -> an unfitted scikit-learn estimator
    build: Callable[[Mapping[str, Any], int], Any]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    def hyperparameter_names(self) -> set[str]:
        return set(self.defaults)

    def estimator(self, hyperparameters: Mapping[str, Any], seed: int) -> Any:
        return self.build({**self.defaults, **hyperparameters}, seed)


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
    )
}


class UnknownTrainer(KeyError):
    """params.trainer names no registered trainer."""


def trainer_names() -> list[str]:
    return sorted(TRAINERS)


def get_trainer(name: str) -> Trainer:
    try:
        return TRAINERS[name]
    except KeyError:
        raise UnknownTrainer(name) from None
