"""Batch inference on Ray: a trained model's forecast for every row of a feature table.

The table is read by Ray Data on the cluster (resources/table_ref.py) and scored by an actor
pool (`map_batches` with a callable class), so the model is loaded once per actor and the
feature rows never pass through the step process; only the narrow result (the key columns
and one forecast per row) comes back to be written by the IO manager.

A sequence model reads each symbol's last `lookback` rows, cut exactly as training cut them
(trainers/windows.py: rows with a null feature dropped, the rest in date order, windows never
crossing symbols). To see whole symbols, the rows are first sorted by symbol (a range
partition: every row of a symbol lands in the same block) and each actor call gets one block.
A row gets a null forecast when its own features are not complete or fewer than `lookback`
complete rows of its symbol end at it, so the output has exactly one row per input row.
A model that reads one row (lookback 1: `mlp` by default, scikit-learn) needs no sort.
"""

from __future__ import annotations

import hashlib
import io
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

PREDICTION = "prediction"
MODEL_SHA256 = "model_sha256"
# At least this many blocks per actor, so the actors finish close together.
BLOCKS_PER_ACTOR = 4


class ModelFileError(ValueError):
    """The bytes are not a model predict can load (one-line message)."""


@dataclass(frozen=True)
class PredictModel:
    """What the step must know of a model before any Ray work: which columns it reads and
    how many rows per forecast. Read on the driver from the model file's own header."""

    framework: Literal["torch", "sklearn"]
    trainer: str
    features: tuple[str, ...]
    lookback: int
    sha256: str


@dataclass(frozen=True)
class KeyColumns:
    """The columns that name a row: kept in the output beside its forecast."""

    date: str = "date"
    symbol: str = "symbol"


@dataclass(frozen=True)
class ActorPool:
    """`actors` actors of `cpus_per_actor` CPUs (torch threads) and `gpus_per_actor` GPUs."""

    actors: int = 1
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0


def describe_model(data: bytes) -> PredictModel:
    """The model file's framework, trainer, features and lookback (ModelFileError if none)."""
    from quantos_assets.trainers.torch_artifact import is_torch_model, load_torch_model

    sha256 = hashlib.sha256(data).hexdigest()
    if is_torch_model(data):
        try:
            model = load_torch_model(data)
        except Exception as err:  # noqa: BLE001 - any unreadable file is one line to the user
            raise ModelFileError(
                f"not a readable PyTorch model file ({_first_line(err)})"
            ) from None
        return PredictModel("torch", model.trainer, tuple(model.features), model.lookback, sha256)
    estimator = _unpickle(data)
    names = getattr(estimator, "feature_names_in_", None)
    if names is None or not hasattr(estimator, "predict"):
        raise ModelFileError(
            f"a {type(estimator).__name__} without feature names: predict needs a model fitted by "
            "a ray_job trainer"
        )
    return PredictModel(
        "sklearn", type(estimator).__name__, tuple(str(n) for n in names), 1, sha256
    )


def predict_table(
    dataset: Any,
    data: bytes,
    model: PredictModel,
    keys: KeyColumns,
    pool: ActorPool,
    date_type: pa.DataType,
) -> pa.Table:
    """The forecasts of `model` (its bytes: `data`) for every row of `dataset` (a lazy Ray
    Dataset of at least the key and feature columns, its date column of `date_type`): the key
    columns, `prediction` (float64, null where there is no forecast) and `model_sha256`, one
    row per input row, sorted by date and symbol."""
    import ray

    scored = predict_dataset(dataset, data, model, keys, pool)
    parts = [t for t in ray.get(scored.to_arrow_refs()) if t.num_rows]
    if not parts:
        return output_schema(keys, date_type).empty_table()
    table = pa.concat_tables(parts)
    return table.take(
        pc.sort_indices(table, sort_keys=[(keys.date, "ascending"), (keys.symbol, "ascending")])
    )


def output_schema(keys: KeyColumns, date_type: pa.DataType) -> pa.Schema:
    return pa.schema(
        [
            pa.field(keys.date, date_type),
            pa.field(keys.symbol, pa.string()),
            pa.field(PREDICTION, pa.float64()),
            pa.field(MODEL_SHA256, pa.string()),
        ]
    )


def predict_dataset(
    dataset: Any, data: bytes, model: PredictModel, keys: KeyColumns, pool: ActorPool
) -> Any:
    """The lazy scored Dataset (see predict_table); its input is materialized first."""
    import ray.data

    from resources.ray_cluster import configure_ray_data

    # On the dataset's own context (a Dataset copies the process's when it is made, and what is
    # derived from it copies its): the sort below must be the pull-based sort shuffle, not Ray
    # 2.60's default hash shuffle that starts aggregator actors first, whoever made the dataset.
    configure_ray_data(dataset.context)
    # Read (and sorted) before the actors start: the pool holds every CPU the node pays for,
    # and Ray Data tasks still waiting for a CPU then would never run.
    rows = dataset.select_columns([keys.date, keys.symbol, *model.features]).materialize()
    # A sort makes as many blocks as it is given and moves blocks x blocks pieces: Ray reads a
    # small table (a session's partition) as one block, a large one as a block per row group
    # (134 for 2 M rows: a 3.2 s sort, against 0.45 s for the same rows in 8 blocks). So the
    # rows go in as a few blocks per actor (every actor gets work), more only when a block
    # would pass Ray Data's target block size.
    rows = rows.repartition(
        sort_blocks(rows.size_bytes(), pool.actors, rows.context.target_max_block_size)
    )
    if model.lookback > 1:
        rows = rows.sort(keys.symbol)
    rows = rows.materialize()
    options: dict[str, Any] = {"num_gpus": pool.gpus_per_actor} if pool.gpus_per_actor else {}
    return rows.map_batches(
        Predictor,
        fn_constructor_kwargs={
            "data": data,
            "model": model,
            "keys": keys,
            "threads": max(1, int(pool.cpus_per_actor)),
        },
        # A whole block per call: a block holds every row of its symbols (the sort above).
        batch_size=None,
        batch_format="pyarrow",
        zero_copy_batch=True,
        compute=ray.data.ActorPoolStrategy(size=max(1, pool.actors)),
        num_cpus=pool.cpus_per_actor,
        **options,
    )


class Predictor:
    """Ray Data callable class: loads the model once, then scores whole blocks."""

    def __init__(
        self, data: bytes, model: PredictModel, keys: KeyColumns, threads: int = 1
    ) -> None:
        self.model = model
        self.keys = keys
        self.forecast = _forecaster(data, model, threads)

    def __call__(self, batch: pa.Table) -> pa.Table:
        keys, lookback = self.keys, self.model.lookback
        if lookback > 1:
            batch = batch.take(
                pc.sort_indices(
                    batch, sort_keys=[(keys.symbol, "ascending"), (keys.date, "ascending")]
                )
            )
        values = (
            np.column_stack(
                [
                    pc.cast(batch[f], pa.float64()).to_numpy(zero_copy_only=False)
                    for f in self.model.features
                ]
            )
            if self.model.features
            else np.zeros((batch.num_rows, 0))
        )
        complete = np.flatnonzero(~np.isnan(values).any(axis=1))
        predicted = np.full(batch.num_rows, np.nan)
        if len(complete):
            ends = window_ends(
                batch[keys.symbol].to_numpy(zero_copy_only=False)[complete], lookback
            )
            if len(ends):
                predicted[complete[ends]] = self.forecast(values[complete], ends)
        missing = np.isnan(predicted)
        return pa.table(
            {
                keys.date: batch[keys.date],
                keys.symbol: pc.cast(batch[keys.symbol], pa.string()),
                PREDICTION: pa.array(predicted, type=pa.float64(), mask=missing),
                MODEL_SHA256: pa.array(
                    np.full(batch.num_rows, self.model.sha256, dtype=object), type=pa.string()
                ),
            }
        )


def sort_blocks(size_bytes: int, actors: int, block_bytes: int | None) -> int:
    """Blocks to sort the rows into: BLOCKS_PER_ACTOR per actor, or enough to keep each
    within Ray Data's target block size."""
    return max(
        BLOCKS_PER_ACTOR * max(1, actors), -(-size_bytes // block_bytes) if block_bytes else 1
    )


def window_ends(symbols: np.ndarray, lookback: int) -> np.ndarray:
    """Indices (into rows sorted by symbol, then date) of the rows a full window ends at:
    the `lookback`-th complete row of its symbol and after."""
    n = len(symbols)
    starts = np.ones(n, dtype=bool)
    starts[1:] = symbols[1:] != symbols[:-1]
    first = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
    return np.flatnonzero(np.arange(n) - first >= lookback - 1)


def _forecaster(
    data: bytes, model: PredictModel, threads: int
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """(complete rows [n, features] float64, window end indices) -> one forecast per end."""
    if model.framework == "sklearn":
        estimator = _unpickle(data)

        def rows(values: np.ndarray, ends: np.ndarray) -> np.ndarray:
            import pandas as pd

            frame = pd.DataFrame(values[ends], columns=list(model.features))
            return np.asarray(estimator.predict(frame), dtype=np.float64)

        return rows

    import torch

    from quantos_assets.trainers.torch_artifact import load_torch_model

    torch.set_num_threads(max(1, threads))
    saved = load_torch_model(data)
    net = saved.network()
    lookback = model.lookback
    per_pass = saved.windows_per_pass()

    def windows(values: np.ndarray, ends: np.ndarray) -> np.ndarray:
        # As windows.symbol_windows cuts them: float32 rows, [n, lookback, features].
        view = np.lib.stride_tricks.sliding_window_view(values.astype(np.float32), lookback, axis=0)
        out = np.empty(len(ends), dtype=np.float64)
        with torch.inference_mode():
            for i in range(0, len(ends), per_pass):
                chunk = ends[i : i + per_pass] - (lookback - 1)
                x = np.ascontiguousarray(view[chunk].transpose(0, 2, 1))
                out[i : i + len(chunk)] = net(torch.from_numpy(x)).numpy()
        return out

    return windows


def _unpickle(data: bytes) -> Any:
    # Only a training ray_job's outs[0] reaches here (kinds/ray_predict.py checks the spec):
    # bytes our own trainer pickled, as the user guide's python_task example loads them.
    try:
        return pickle.load(io.BytesIO(data))
    except Exception as err:  # noqa: BLE001 - any unreadable file is one line to the user
        raise ModelFileError(
            f"neither a PyTorch model file nor a pickled scikit-learn model ({_first_line(err)})"
        ) from None


def _first_line(err: BaseException) -> str:
    lines = [line for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0] if lines else ''}"
