"""The feature-kit stand-in (quantos_assets/tasks/feature_kit.py): the xs_v2 view's columns,
its cross-sectional scaling and target, and one-line errors for what it cannot use."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from quantos_assets.tasks.feature_kit import FeatureKitError, build
from quantos_assets.tasks.market_data import generate

FEATURES = ["ret_1d_z", "ret_5d_z", "ret_20d_z", "ret_60d_z", "vol_20d_z", "volume_z"]


@pytest.fixture
def bars() -> pa.Table:
    return generate(symbols=8, start="2023-01-02", end="2023-06-30", seed=5)  # 130 business days


def test_xs_v2_columns_rows_and_target(bars: pa.Table, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEATURE_VIEW", "xs_v2")
    table = build(dataset_uri=bars)
    assert table.column_names == ["date", "symbol", *FEATURES, "fwd_return"]
    assert (
        table.schema.field("date").type == pa.date32()
        and table.schema.field("symbol").type == pa.string()
    )
    assert table.num_rows == 8 * (130 - 60), "the 60-day lookback's warm-up is dropped"
    df = table.to_pandas()
    assert not df[FEATURES].isna().any().any()
    by_date = df.groupby("date")[FEATURES]
    assert np.allclose(by_date.mean(), 0, atol=1e-9), "z-scored across the symbols of each date"
    assert (df[FEATURES].abs() <= 5).all().all()
    assert df["fwd_return"].isna().sum() == 8 * 5, "the last 5 dates have no target yet"
    assert np.allclose(df.dropna().groupby("date")["fwd_return"].mean(), 0, atol=1e-12)

    # fwd_return: the next 5 days' log return, less that date's cross-sectional mean.
    raw = bars.to_pandas().pivot(index="date", columns="symbol", values="close")
    fwd = np.log(raw).shift(-5) - np.log(raw)
    excess = fwd.sub(fwd.mean(axis=1), axis=0)
    row = df.iloc[0]
    assert row["fwd_return"] == pytest.approx(excess.loc[row["date"], row["symbol"]])
    assert build(horizon=1, daily=bars)["fwd_return"].null_count == 8


def test_unknown_view_and_bad_input_are_one_line(
    bars: pa.Table, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FEATURE_VIEW", raising=False)
    with pytest.raises(
        FeatureKitError, match=r"^env FEATURE_VIEW is not set; .*\(known views: xs_v2\)$"
    ):
        build(dataset_uri=bars)
    monkeypatch.setenv("FEATURE_VIEW", "xs_v9")
    with pytest.raises(
        FeatureKitError,
        match=r"^env FEATURE_VIEW is 'xs_v9': not a feature-kit view \(known: xs_v2\)$",
    ):
        build(dataset_uri=bars)
    monkeypatch.setenv("FEATURE_VIEW", "xs_v2")
    with pytest.raises(
        FeatureKitError, match=r"input 'dataset_uri' has no column\(s\) \['volume'\]"
    ):
        build(dataset_uri=bars.drop_columns(["volume"]))
    with pytest.raises(
        FeatureKitError, match=r"one table input and the param horizon; got tables \['a', 'b'\]"
    ):
        build(a=bars, b=bars)
    with pytest.raises(FeatureKitError, match=r"got tables \['a'\] and \['lookback'\]"):
        build(a=bars, lookback=3)
    with pytest.raises(FeatureKitError, match=r"params.horizon must be a positive integer, not 0"):
        build(horizon=0, a=bars)
