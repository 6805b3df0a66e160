"""The training loop each Ray Train worker runs (TorchTrainer's `train_loop_per_worker`).

Data-parallel: every worker starts from the same seeded weights, reads its own shard of
the windows, and DDP (`ray.train.torch.prepare_model`) averages the gradients. Losses are
summed across workers before anyone decides anything, so every worker takes the same
early-stopping decision in the same epoch.

After each epoch rank 0 writes a checkpoint (latest weights and optimizer for a resume,
the best weights so far for the model, the epoch history) and every rank reports: Ray
Train restarts a lost worker group from the latest checkpoint, and a retried step finds
it under the same run name (kinds/ray_job.py), so neither starts again from epoch 0.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any

STATE_FILE = "state.pt"


def train_loop_per_worker(config: dict[str, Any]) -> None:
    import ray
    import ray.train
    import ray.train.torch
    import torch

    from quantos_assets.trainers.registry import get_trainer
    from quantos_assets.trainers.shard_feed import ShardFeed

    torch.manual_seed(int(config["seed"]))
    torch.set_num_threads(max(1, int(config.get("threads", 1))))
    hp = config["hyperparameters"]
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()

    net = get_trainer(config["trainer"]).module(hp, int(config["n_features"]))
    net.scale.set(
        torch.tensor(config["mean"], dtype=torch.float32),
        torch.tensor(config["std"], dtype=torch.float32),
    )
    optimizer = torch.optim.Adam(
        net.parameters(), lr=float(hp["lr"]), weight_decay=float(hp["weight_decay"])
    )
    state: dict[str, Any] = {
        "epoch": -1,
        "best_loss": math.inf,
        "best_epoch": -1,
        "history": [],
        "best": None,
        "starts": [],
    }
    resumed = ray.train.get_checkpoint()
    if resumed is not None:
        with resumed.as_directory() as folder:
            state = torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=True)
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    # Where each (re)start began: [0] for an uninterrupted run, [0, 4] after a resume at epoch 4,
    # and on which Ray nodes its workers ran (rank order).
    starts = [*state["starts"], state["epoch"] + 1]
    node = ray.get_runtime_context().get_node_id()
    nodes: list[Any] = [None] * world
    if world > 1:
        torch.distributed.all_gather_object(nodes, node)
    else:
        nodes = [node]
    placements = [*state.get("placements", []), nodes]
    model = ray.train.torch.prepare_model(net)
    device = ray.train.torch.get_device()

    cached = bool(config.get("cache", False))
    train_feed = ShardFeed(ray.train.get_dataset_shard("train"), device, cached)
    val_feed = ShardFeed(ray.train.get_dataset_shard("val"), device, cached)
    batch_size = int(hp["batch_size"])
    patience = config.get("patience")
    min_delta = float(config.get("min_delta", 0.0))
    loss_fn = torch.nn.MSELoss(reduction="sum")
    epochs = int(hp["epochs"])
    stale = sum(1 for _ in _since_best(state))

    for epoch in range(state["epoch"] + 1, epochs):
        model.train()
        train_sum = torch.zeros(2, dtype=torch.float64)
        for x, y in train_feed.shuffled(batch_size, int(config["seed"]) * 1000 + epoch):
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            (loss / len(y)).backward()
            optimizer.step()
            train_sum += torch.tensor([float(loss), len(y)], dtype=torch.float64)
        model.eval()
        val_sum = torch.zeros(2, dtype=torch.float64)
        with torch.no_grad():
            for x, y in val_feed.in_order(4 * batch_size):
                val_sum += torch.tensor([float(loss_fn(model(x), y)), len(y)], dtype=torch.float64)
        sums = torch.cat([train_sum, val_sum])
        if world > 1:
            torch.distributed.all_reduce(sums)  # every worker sees the same losses
        train_sse, train_n, val_sse, val_n = sums.tolist()
        train_loss = train_sse / max(train_n, 1.0)
        val_loss = val_sse / max(val_n, 1.0)
        improved = val_loss < state["best_loss"] - min_delta
        stale = 0 if improved else stale + 1
        weights = _unwrapped(model).state_dict()
        state = {
            "epoch": epoch,
            "model": weights,
            "optimizer": optimizer.state_dict(),
            "best_loss": val_loss if improved else state["best_loss"],
            "best_epoch": epoch if improved else state["best_epoch"],
            "best": {k: v.detach().clone() for k, v in weights.items()}
            if improved
            else state["best"],
            "history": [
                *state["history"],
                {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss},
            ],
            "starts": starts,
            "placements": placements,
        }
        stop = patience is not None and stale >= int(patience)
        metrics = {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "best_val_loss": state["best_loss"],
            "best_epoch": state["best_epoch"],
            "stopped_early": stop,
        }
        if rank == 0:
            with tempfile.TemporaryDirectory() as folder:
                torch.save(state, os.path.join(folder, STATE_FILE))
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))
        else:
            ray.train.report(metrics)
        if stop:
            break


def _since_best(state: dict[str, Any]) -> list[dict[str, Any]]:
    """The epochs after the best one (a resumed run keeps counting its patience)."""
    return [h for h in state["history"] if h["epoch"] > state["best_epoch"]]


def _unwrapped(model: Any) -> Any:
    return getattr(model, "module", model)  # DDP wraps the network
