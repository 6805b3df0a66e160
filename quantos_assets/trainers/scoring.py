"""Batch scoring of windows with a trained network, as a Ray Data actor pool.

Each actor loads the model once and scores the batches streamed to it (`map_batches`),
so scoring scales with the actors the node's resources pay for and the table never
passes through the step process. Used for the test-set metrics after training, on windows
already cut; batch inference (`mode: predict`) cuts its windows in its own actors
(trainers/batch_predict.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np

PREDICTION = "prediction"


class WindowScorer:
    """Ray Data callable class: the model's forecast for every window of a batch."""

    def __init__(self, model: bytes, threads: int = 1, keep: tuple[str, ...] | None = None) -> None:
        import torch

        from quantos_assets.trainers.torch_artifact import load_torch_model

        torch.set_num_threads(max(1, threads))
        saved = load_torch_model(model)
        self.net = saved.network()
        self.per_pass = saved.windows_per_pass()
        self.keep = keep

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        x = np.ascontiguousarray(batch["x"], dtype=np.float32)
        predicted = np.empty(len(x), dtype=np.float64)
        with torch.inference_mode():
            for i in range(0, len(x), self.per_pass):
                predicted[i : i + self.per_pass] = self.net(
                    torch.from_numpy(x[i : i + self.per_pass])
                ).numpy()
        out = {k: v for k, v in batch.items() if k != "x" and (self.keep is None or k in self.keep)}
        out[PREDICTION] = predicted
        return out


def score_windows(
    windows: Any,
    model: bytes,
    actors: int,
    cpus_per_actor: float,
    keep: tuple[str, ...] | None = None,
    batch_size: int = 4096,
) -> Any:
    """A lazy Dataset: the windows' `keep` columns (default: all but x) plus `prediction`.
    The projection happens in the actor: a separate Project step would need a CPU that
    the actors may all hold."""
    return windows.map_batches(
        WindowScorer,
        fn_constructor_kwargs={
            "model": model,
            "threads": max(1, int(cpus_per_actor)),
            "keep": keep,
        },
        batch_format="numpy",
        batch_size=batch_size,
        concurrency=max(1, actors),
        num_cpus=cpus_per_actor,
    )
