"""One Ray Train fit of a torch trainer: where its workers run, where its checkpoints go,
and what comes back (the best weights and the epoch history from the last checkpoint).

Shared by a plain training (trainers/ray_training.py) and every trial of a search
(trainers/ray_tuning.py), so a trial trains exactly the way the final model would.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quantos_assets.trainers.torch_loop import STATE_FILE, train_loop_per_worker
from quantos_assets.trainers.training import TrainingDataError

# Ray Train restarts a worker group this many times (from the latest checkpoint).
MAX_WORKER_FAILURES = 3


@dataclass(frozen=True)
class TorchPlacement:
    """Where the workers run: `workers` data-parallel workers of `cpus_per_worker` CPUs
    (and one GPU each with `use_gpu`). `min_workers` < `workers` lets training go on with
    fewer after losing a node (Ray Train's elastic worker group)."""

    workers: int = 1
    cpus_per_worker: float = 1.0
    use_gpu: bool = False
    min_workers: int = 1
    memory_per_worker: float | None = None

    def scaling(self) -> Any:
        from ray.train import ScalingConfig

        resources: dict[str, float] = {"CPU": self.cpus_per_worker}
        if self.use_gpu:
            resources["GPU"] = 1
        if self.memory_per_worker:
            resources["memory"] = self.memory_per_worker
        workers: int | tuple[int, int] = (
            (self.min_workers, self.workers) if self.min_workers < self.workers else self.workers
        )
        return ScalingConfig(
            num_workers=workers, use_gpu=self.use_gpu, resources_per_worker=resources
        )


@dataclass(frozen=True)
class CheckpointPlace:
    """Ray Train's storage: `path` (a local folder, or bucket/key with `filesystem`) and the
    run `name` under it; `uri` is how the model card names it."""

    path: str
    name: str
    uri: str
    filesystem: Any = None


@dataclass(frozen=True)
class EarlyStopping:
    patience: int
    min_delta: float = 0.0


@dataclass(frozen=True)
class Fitted:
    """A finished fit: `state` is the last checkpoint's (best weights, history, starts,
    placements), `checkpoint` its path; `best_checkpoint` the path of the best epoch's."""

    state: dict[str, Any]
    checkpoint: str
    best_checkpoint: str | None


def fit_torch(
    config: dict[str, Any],
    placement: TorchPlacement,
    checkpoints: CheckpointPlace,
    datasets: dict[str, Any],
) -> Fitted:
    """Train with `config` (train_loop_per_worker's) on `datasets` ("train", "val"). The run
    name fixes where its checkpoints go: a second fit of the same name resumes the first."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig
    from ray.train.torch import TorchTrainer

    result = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=config,
        scaling_config=placement.scaling(),
        run_config=RunConfig(
            name=checkpoints.name,
            storage_path=checkpoints.path,
            storage_filesystem=checkpoints.filesystem,
            failure_config=FailureConfig(max_failures=MAX_WORKER_FAILURES),
            checkpoint_config=CheckpointConfig(num_to_keep=None),
        ),
        datasets=datasets,
    ).fit()
    if result.checkpoint is None:
        raise TrainingDataError("training reported no checkpoint")
    state = checkpoint_state(result.checkpoint)
    return Fitted(
        state=state,
        checkpoint=str(result.checkpoint.path),
        best_checkpoint=_best_checkpoint(result, state["best_epoch"]),
    )


def checkpoint_state(checkpoint: Any) -> dict[str, Any]:
    import torch

    with checkpoint.as_directory() as folder:
        state: dict[str, Any] = torch.load(
            Path(folder) / STATE_FILE, map_location="cpu", weights_only=True
        )
    return state


def _best_checkpoint(result: Any, best_epoch: int) -> str | None:
    for checkpoint, metrics in getattr(result, "best_checkpoints", None) or []:
        if metrics.get("epoch") == best_epoch:
            return str(checkpoint.path)
    return None
