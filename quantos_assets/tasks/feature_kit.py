"""The local stand-in for the image `ghcr.io/archetype/feature-kit` (deploy/local_images.yaml).

The image computes a named feature view (env `FEATURE_VIEW`) from a daily dataset; on the
embedded default this entrypoint computes the same view in a python_task subprocess. It takes
the node's one table input whatever its name (the seed calls it `dataset_uri`).

`xs_v2`, per (date, symbol), for cross-sectional models such as the seed's BiLSTM:

- `ret_{1,5,20,60}d_z`: log returns over those lookbacks;
- `vol_20d_z`: 20-day volatility of daily log returns;
- `volume_z`: log volume against its own 20-day mean (abnormal activity);
- `fwd_return`: the target, the next `horizon` days' log return in excess of that date's
  cross-sectional mean (null on the last `horizon` dates, which a live model would score).

Each feature is z-scored across the symbols of its date and clipped to ±5: a cross-sectional
model cares which names lead that day, not the market's level, and clipping keeps a halted
or split stock from dominating a batch. Rows whose lookbacks are incomplete are dropped, so
every feature column is complete; only `date`, `symbol`, the features and `fwd_return` are
written (no raw prices: a trainer that takes every numeric column as a feature must not be
handed a level).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

RETURN_LOOKBACKS = (1, 5, 20, 60)
WINDOW = 20
Z_CLIP = 5.0
REQUIRED = ("date", "symbol", "close", "volume")


class FeatureKitError(ValueError):
    """Bad input or an unknown view: the step shows this one line."""


def build(horizon: int = 5, **inputs: Any) -> pa.Table:
    """The feature view `FEATURE_VIEW` of the node's one table input."""
    view = os.environ.get("FEATURE_VIEW", "")
    compute = VIEWS.get(view)
    if compute is None:
        known = ", ".join(sorted(VIEWS))
        raise FeatureKitError(
            f"env FEATURE_VIEW is {view!r}: not a feature-kit view (known: {known})"
            if view
            else f"env FEATURE_VIEW is not set; set it in the node's env (known views: {known})"
        )
    tables = {name: value for name, value in inputs.items() if isinstance(value, pa.Table)}
    others = sorted(set(inputs) - set(tables))
    if len(tables) != 1 or others:
        raise FeatureKitError(
            f"feature-kit takes one table input and the param horizon; got tables {sorted(tables)}"
            + (f" and {others}" if others else "")
        )
    if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
        raise FeatureKitError(f"params.horizon must be a positive integer, not {horizon!r}")
    ((name, table),) = tables.items()
    missing = [c for c in REQUIRED if c not in table.column_names]
    if missing:
        raise FeatureKitError(
            f"input '{name}' has no column(s) {missing} (it has {table.column_names})"
        )
    return compute(table, horizon)


def xs_v2(dataset: pa.Table, horizon: int) -> pa.Table:
    df = dataset.select(list(REQUIRED)).to_pandas()
    df = df.sort_values(["symbol", "date"], kind="stable").reset_index(drop=True)
    symbol = df["symbol"]
    log_close = np.log(df["close"].astype("float64"))
    ret_1d = log_close.groupby(symbol).diff()
    log_volume = np.log1p(df["volume"].astype("float64"))

    raw = pd.DataFrame({"date": df["date"], "symbol": symbol})
    for days in RETURN_LOOKBACKS:
        raw[f"ret_{days}d_z"] = log_close - log_close.groupby(symbol).shift(days)
    raw["vol_20d_z"] = ret_1d.groupby(symbol).transform(lambda r: r.rolling(WINDOW).std())
    raw["volume_z"] = log_volume - log_volume.groupby(symbol).transform(
        lambda v: v.rolling(WINDOW).mean()
    )
    forward = log_close.groupby(symbol).shift(-horizon) - log_close
    features = [c for c in raw.columns if c not in ("date", "symbol")]

    raw = raw.dropna(subset=features)
    by_date = raw.groupby("date", sort=False)
    out = raw[["date", "symbol"]].copy()
    for column in features:
        mean = by_date[column].transform("mean")
        std = by_date[column].transform("std")
        out[column] = ((raw[column] - mean) / std.where(std > 0)).fillna(0.0).clip(-Z_CLIP, Z_CLIP)
    fwd = forward.loc[raw.index]
    out["fwd_return"] = fwd - fwd.groupby(raw["date"]).transform("mean")
    out = out.sort_values(["date", "symbol"], kind="stable").reset_index(drop=True)

    table = pa.Table.from_pandas(out, preserve_index=False).replace_schema_metadata(None)
    table = table.set_column(0, "date", table["date"].cast(pa.date32()))
    return table.set_column(1, "symbol", table["symbol"].cast(pa.string()))


VIEWS: dict[str, Callable[[pa.Table, int], pa.Table]] = {"xs_v2": xs_v2}
