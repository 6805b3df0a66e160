"""Synthetic daily bars: a stand-in market with a known, weak momentum effect.

Deterministic for a seed, so a pipeline run is reproducible and a test can
assert on numbers. Each symbol's drift follows a slow AR(1) process, which is
what makes past returns (momentum) weakly predict future ones; a market
factor and fat-ish idiosyncratic noise make it look like equities.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa


def generate(
    symbols: int | list[str] = 50,
    start: str = "2022-01-03",
    end: str = "2023-12-29",
    seed: int = 7,
    drift_persistence: float = 0.995,
) -> pa.Table:
    """Bars for every symbol on every business day in [start, end]."""
    names = [f"S{i:03d}" for i in range(symbols)] if isinstance(symbols, int) else list(symbols)
    days = pd.bdate_range(start, end)
    n_days, n_sym = len(days), len(names)
    if n_days == 0 or n_sym == 0:
        raise ValueError(f"no bars: {n_sym} symbols over {n_days} business days")
    rng = np.random.default_rng(seed)

    # Per-symbol drift: persistent, so trailing returns carry information.
    drift = np.empty((n_days, n_sym))
    drift[0] = rng.normal(0.0, 0.0012, n_sym)
    shocks = rng.normal(0.0, 0.0012 * np.sqrt(1 - drift_persistence**2), (n_days, n_sym))
    for t in range(1, n_days):
        drift[t] = drift_persistence * drift[t - 1] + shocks[t]

    vol = rng.uniform(0.012, 0.035, n_sym)
    beta = rng.uniform(0.6, 1.4, n_sym)
    market = rng.normal(0.0003, 0.01, n_days)
    idio = rng.standard_t(df=5, size=(n_days, n_sym)) * vol * np.sqrt(3 / 5)
    log_ret = drift + beta * market[:, None] + idio

    close = rng.uniform(20, 300, n_sym) * np.exp(np.cumsum(log_ret, axis=0))
    prev_close = np.vstack([close[0] * np.exp(-log_ret[0]), close[:-1]])
    open_ = prev_close * np.exp(rng.normal(0.0, 0.3, (n_days, n_sym)) * vol)
    wick = np.abs(rng.normal(0.0, 0.5, (2, n_days, n_sym))) * vol
    high = np.maximum(open_, close) * np.exp(wick[0])
    low = np.minimum(open_, close) * np.exp(-wick[1])
    # Liquidity spans three orders of magnitude, so a volume filter matters.
    base_volume = np.exp(rng.uniform(np.log(2e4), np.log(2e7), n_sym))
    volume = base_volume * np.exp(rng.normal(0.0, 0.4, (n_days, n_sym)) + 8 * np.abs(log_ret))

    return pa.table(
        {
            "date": pa.array(np.repeat(days.date, n_sym), type=pa.date32()),
            "symbol": pa.array(np.tile(names, n_days), type=pa.string()),
            "open": open_.ravel().round(4),
            "high": high.ravel().round(4),
            "low": low.ravel().round(4),
            "close": close.ravel().round(4),
            "volume": volume.ravel().astype(np.int64),
        }
    )
