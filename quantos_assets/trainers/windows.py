"""Per-symbol lookback windows: the rows a sequence model reads to forecast one date.

A window ends at a row and holds that symbol's previous `lookback` complete rows of the
feature columns, so a forecast for date d only sees d and before. Windows are cut per
symbol (a Ray Data `groupby(symbol).map_groups`), never across symbols, and each is
split by the date it ends on: the test windows may look back into the training dates
(that is history a live model has too), never the other way round.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class WindowSpec:
    features: tuple[str, ...]
    target: str | None  # None: scoring (predict), no target column
    date_column: str
    symbol_column: str
    lookback: int
    # Columns of the window's last row carried along (e.g. realised returns to score on).
    carry: tuple[str, ...] = ()

    def columns(self) -> list[str]:
        target = [self.target] if self.target else []
        return list(
            dict.fromkeys(
                [self.date_column, self.symbol_column, *self.features, *target, *self.carry]
            )
        )


def symbol_windows(group: pd.DataFrame, spec: WindowSpec) -> dict[str, np.ndarray]:
    """Every window of one symbol's rows: x [n, lookback, features], y, date, symbol, is_test."""
    rows = group.dropna(subset=list(spec.features)).sort_values(spec.date_column, kind="stable")
    n = len(rows) - spec.lookback + 1
    n_features = len(spec.features)
    if n <= 0:
        return _empty(spec, n_features)
    values = rows[list(spec.features)].to_numpy(dtype=np.float32)
    # [n, features, lookback] -> [n, lookback, features]
    x = np.lib.stride_tricks.sliding_window_view(values, spec.lookback, axis=0).transpose(0, 2, 1)
    ends = rows.iloc[spec.lookback - 1 :]
    dates = ends[spec.date_column].to_numpy()
    out: dict[str, np.ndarray] = {
        "x": np.ascontiguousarray(x),
        "date": dates,
        "symbol": ends[spec.symbol_column].astype(str).to_numpy(),
    }
    if spec.target is not None:
        out["y"] = ends[spec.target].to_numpy(dtype=np.float32, na_value=np.nan)
    for column in spec.carry:
        out[column] = ends[column].to_numpy(dtype=np.float64, na_value=np.nan)
    return out


def _empty(spec: WindowSpec, n_features: int) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {
        "x": np.zeros((0, spec.lookback, n_features), dtype=np.float32),
        "date": np.array([], dtype="datetime64[D]"),
        "symbol": np.array([], dtype=object),
    }
    if spec.target is not None:
        out["y"] = np.array([], dtype=np.float32)
    for column in spec.carry:
        out[column] = np.array([], dtype=np.float64)
    return out
