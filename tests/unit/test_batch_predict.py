"""The predict actor's windows are training's windows (trainers/windows.py), whatever order
the rows arrive in and wherever a feature is null; no Ray here (the actor is a plain class)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from quantos_assets.trainers import batch_predict, torch_artifact
from quantos_assets.trainers.batch_predict import (
    KeyColumns,
    Predictor,
    describe_model,
    sort_blocks,
    window_ends,
)
from quantos_assets.trainers.registry import get_trainer
from quantos_assets.trainers.torch_artifact import TorchModel, load_torch_model
from quantos_assets.trainers.windows import WindowSpec, symbol_windows

FEATURES = ["a", "b"]


def test_window_ends_start_again_at_each_symbol() -> None:
    symbols = np.array(["x", "x", "x", "y", "y", "z", "z", "z", "z"], dtype=object)
    assert window_ends(symbols, 3).tolist() == [2, 7, 8]
    assert window_ends(symbols, 1).tolist() == list(range(9))


def test_rows_are_sorted_in_a_few_blocks_per_actor_or_blocks_of_the_target_size() -> None:
    # A session's partition: every actor still gets blocks to work on.
    assert sort_blocks(5_000, actors=2, block_bytes=128 << 20) == 2 * batch_predict.BLOCKS_PER_ACTOR
    # 1 GiB of rows: 8 blocks of Ray Data's target size, not the read's block per row group.
    assert sort_blocks(1 << 30, actors=1, block_bytes=128 << 20) == 8


def test_a_forecast_does_not_depend_on_how_many_windows_go_in_one_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch

    rng = np.random.default_rng(1)
    dates = pd.bdate_range("2024-01-01", periods=40).date
    table = pa.Table.from_pandas(
        pd.DataFrame(
            [(d, s, *rng.normal(size=2)) for s in ("AAA", "BBB") for d in dates],
            columns=["date", "symbol", *FEATURES],
        ),
        preserve_index=False,
    )
    hp = {**get_trainer("bilstm").defaults, "lookback": 5, "hidden": 4}
    torch.manual_seed(0)
    data = TorchModel(
        "bilstm", hp, FEATURES, 5, get_trainer("bilstm").module(hp, 2).state_dict()
    ).to_bytes()
    one_pass = Predictor(data, describe_model(data), KeyColumns())(table)["prediction"].to_numpy(
        zero_copy_only=False
    )
    monkeypatch.setattr(
        torch_artifact, "FORWARD_BYTES", 1
    )  # the minimum: 64 windows per pass, 2 passes here
    passes = Predictor(data, describe_model(data), KeyColumns())(table)["prediction"].to_numpy(
        zero_copy_only=False
    )
    assert np.isfinite(one_pass).sum() == 2 * 36
    np.testing.assert_allclose(passes, one_pass, rtol=1e-6, equal_nan=True)


def test_the_actor_forecasts_training_windows_and_nulls_the_rest() -> None:
    import torch

    rng = np.random.default_rng(0)
    dates = pd.bdate_range("2024-01-01", periods=12).date
    frame = pd.DataFrame(
        [(d, s, *rng.normal(size=2)) for s in ("AAA", "BBB", "CCC") for d in dates],
        columns=["date", "symbol", *FEATURES],
    )
    frame.loc[[4, 15], "a"] = (
        np.nan
    )  # a null feature mid-series: that row, and windows over it, are skipped
    frame = frame.iloc[:30]  # CCC has 6 rows
    hp = {**get_trainer("bilstm").defaults, "lookback": 4, "hidden": 4}
    torch.manual_seed(0)
    data = TorchModel(
        "bilstm", hp, FEATURES, 4, get_trainer("bilstm").module(hp, 2).state_dict()
    ).to_bytes()
    model = describe_model(data)
    assert (model.framework, model.features, model.lookback) == ("torch", ("a", "b"), 4)

    shuffled = pa.Table.from_pandas(frame.sample(frac=1.0, random_state=2), preserve_index=False)
    out = (
        Predictor(data, model, KeyColumns())
        .__call__(shuffled)
        .to_pandas()
        .set_index(["date", "symbol"])
    )

    assert len(out) == len(frame) and out.index.is_unique
    net = load_torch_model(data).network()
    spec = WindowSpec(tuple(FEATURES), None, "date", "symbol", 4)
    expected: dict[tuple[object, object], float] = {}
    for _, group in frame.groupby("symbol"):
        windows = symbol_windows(group, spec)
        with torch.no_grad():
            forecast = net(torch.from_numpy(windows["x"])).numpy()
        expected.update(
            zip(
                zip(windows["date"], windows["symbol"], strict=True), forecast.tolist(), strict=True
            )
        )
    got = out["prediction"].dropna()
    assert set(got.index) == set(expected)
    np.testing.assert_allclose(
        got.loc[list(expected)].to_numpy(), list(expected.values()), rtol=1e-6
    )
    # 12 rows of AAA less its null row: 11 complete, 8 windows; BBB likewise; CCC 6 rows, 3.
    assert len(expected) == 8 + 8 + 3
