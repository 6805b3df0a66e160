"""Benchmark: the bilstm trainer through our Ray Train path against a bare PyTorch loop.

    uv run python bench/ray_train.py [--symbols 40] [--days 520] [--epochs 10]

Same data (the seed example's size by default: 40 symbols x 520 sessions of features in an
Iceberg table), same network, hyperparameters, seed, batch size and thread count, in one run:
  bare     one process: the table read whole, windows cut with the same function, a plain
           `for batch in loader` loop of the same epochs (what a researcher writes in a notebook)
  ray_1    trainers/ray_training.train_torch on 1 Ray Train worker of 1 CPU: Ray Data reads and
           windows the snapshot, TorchTrainer trains it with a checkpoint per epoch, the test
           windows are scored by a Ray Data actor pool
  ray_2    the same on 2 workers of 1 CPU each (this machine has 2 cores)
  scoring  the windows scored by our actor pool (the path a predict node and the test metrics
           use) against the bare network's forward pass over the same windows, in rows/s

Prints a `name ratio=X` line per comparison; the LAST line is `ratio=` of ray_1 over bare
(wall time of the whole training call; goal <= 1.3).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from quantos_assets.tasks.features import compute
from quantos_assets.tasks.market_data import generate
from quantos_assets.trainers.ray_training import CheckpointPlace, TorchPlacement, train_torch
from quantos_assets.trainers.registry import get_trainer
from quantos_assets.trainers.scoring import score_windows
from quantos_assets.trainers.training import TrainingJob, first_test_date
from quantos_assets.trainers.windows import WindowSpec, symbol_windows
from resources.artifact_store import ArtifactStore
from resources.lake_io_manager import LakeIOManager
from resources.ray_cluster import RayResource

FEATURES = ["mom_rank", "rev_rank", "vol_rank", "mom_vol_adj"]


def bare_training(frame: pd.DataFrame, job: TrainingJob) -> tuple[float, Any, np.ndarray]:
    """The notebook version: returns (seconds, trained network, test windows)."""
    import torch

    started = time.perf_counter()
    torch.manual_seed(job.seed)
    torch.set_num_threads(1)
    hp = {**get_trainer(job.trainer).defaults, **job.hyperparameters}
    spec = WindowSpec(tuple(job.features), job.target, job.date_column, job.symbol_column, int(hp["lookback"]))
    parts = [symbol_windows(group, spec) for _, group in frame.groupby(job.symbol_column, sort=True)]
    x = np.concatenate([p["x"] for p in parts])
    y = np.concatenate([p["y"] for p in parts])
    dates = np.concatenate([p["date"] for p in parts])
    labelled = ~np.isnan(y)
    x, y, dates = x[labelled], y[labelled], dates[labelled]
    first_test = np.datetime64(first_test_date(np.unique(dates), job.date_column, job.test_fraction))
    train = dates < first_test
    net = get_trainer(job.trainer).module(hp, len(job.features))
    last = x[train][:, -1, :]
    net.scale.set(torch.tensor(last.mean(axis=0)), torch.tensor(last.std(axis=0)))
    optimizer = torch.optim.Adam(net.parameters(), lr=float(hp["lr"]))
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.from_numpy(x[train]), torch.from_numpy(y[train])),
        batch_size=int(hp["batch_size"]), shuffle=True,
    )
    loss_fn = torch.nn.MSELoss()
    for _ in range(int(hp["epochs"])):
        net.train()
        for xb, yb in loader:
            optimizer.zero_grad()
            loss_fn(net(xb), yb).backward()
            optimizer.step()
        net.eval()
        with torch.no_grad():
            loss_fn(net(torch.from_numpy(x[~train])), torch.from_numpy(y[~train]))
    return time.perf_counter() - started, net, x[~train]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--symbols", type=int, default=40)
    parser.add_argument("--days", type=int, default=520)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()

    import torch

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store = ArtifactStore(root=str(root / "artifacts"))
        lake = LakeIOManager(catalog_uri=f"sqlite:///{root / 'catalog.db'}", warehouse=str(root / "warehouse"),
                             artifact_store=store)
        end = (pd.Timestamp("2020-01-01") + pd.tseries.offsets.BDay(args.days + 80)).date().isoformat()
        table = compute(generate(symbols=args.symbols, start="2020-01-01", end=end, seed=7))
        ref = lake.table_ref("bench", "features", lake.write_arrow("bench", "features", table).snapshot_id)
        job = TrainingJob(trainer="bilstm", features=FEATURES, seed=1,
                          hyperparameters={"epochs": args.epochs, "hidden": 32, "lookback": 20, "batch_size": 256})
        print(f"data: {table.num_rows} rows, {args.symbols} symbols, {args.epochs} epochs", flush=True)

        bare_s, net, test_x = bare_training(table.to_pandas(), job)
        print(f"bare pytorch: {bare_s:.1f} s", flush=True)

        RayResource(num_cpus=2).init()
        times: dict[int, float] = {}
        models: dict[int, bytes] = {}
        for workers in (1, 2):
            path, _ = store.filesystem_path(f"checkpoints/bench/{workers}")
            started = time.perf_counter()
            result = train_torch(ref.to_ray_dataset(), job, TorchPlacement(workers=workers, cpus_per_worker=1),
                                 CheckpointPlace(path=path, name="train", uri=path))
            times[workers] = time.perf_counter() - started
            models[workers] = result.model
            print(f"ray_{workers}: {times[workers]:.1f} s  phases {result.metrics['training']['seconds']}", flush=True)

        import ray.data

        model = models[1]
        windows = ray.data.from_numpy(test_x.astype(np.float32)).map_batches(
            lambda b: {"x": b["data"]}, batch_format="numpy"
        ).materialize()
        n = len(test_x)
        started = time.perf_counter()
        scored = score_windows(windows, model, actors=2, cpus_per_actor=1).count()
        ours = n / (time.perf_counter() - started)
        assert scored == n
        torch.set_num_threads(1)
        started = time.perf_counter()
        with torch.no_grad():
            for i in range(0, n, 4096):
                net(torch.from_numpy(test_x[i:i + 4096]))
        bare_rows = n / (time.perf_counter() - started)
        print(f"scoring: ours {ours:,.0f} rows/s (2 actors), bare forward {bare_rows:,.0f} rows/s (1 thread)")
        print(f"scoring ratio={bare_rows / ours:.2f}")
        print(f"ray_2_vs_ray_1 ratio={times[2] / times[1]:.2f}")
        print(f"ratio={times[1] / bare_s:.2f}")


if __name__ == "__main__":
    main()
