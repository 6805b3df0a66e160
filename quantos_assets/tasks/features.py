"""Cross-sectional momentum features and the forward-return target per (date, symbol).

Features are ranked across symbols each day (mapped to [-0.5, 0.5]): a
cross-sectional model cares which stocks lead, not the market's level, and
ranks are robust to the fat tails of raw returns. The target is the forward
return in excess of that day's cross-sectional mean, for the same reason.
Rows whose lookbacks are incomplete are dropped; the last `horizon` days keep
a null target (they are what a live model would score).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def compute(
    daily_bars: pa.Table,
    horizon: int = 5,
    momentum_window: int = 60,
    skip: int = 5,
    volatility_window: int = 20,
    reversal_window: int = 5,
    liquidity_window: int = 20,
) -> pa.Table:
    """Features from daily bars (date, symbol, close, volume)."""
    df = daily_bars.select(["date", "symbol", "close", "volume"]).to_pandas()
    df = df.sort_values(["symbol", "date"], kind="stable").reset_index(drop=True)
    by_symbol = df.groupby("symbol", sort=False)
    log_close = np.log(df["close"])
    ret_1d = by_symbol["close"].pct_change()

    df["mom"] = log_close.groupby(df["symbol"]).shift(skip) - log_close.groupby(df["symbol"]).shift(
        momentum_window
    )
    df["rev"] = -(log_close - log_close.groupby(df["symbol"]).shift(reversal_window))
    df["vol"] = ret_1d.groupby(df["symbol"]).transform(lambda r: r.rolling(volatility_window).std())
    df["adv"] = by_symbol["volume"].transform(lambda v: v.rolling(liquidity_window).mean())
    df["dollar_adv"] = (
        (df["close"] * df["volume"])
        .groupby(df["symbol"])
        .transform(lambda v: v.rolling(liquidity_window).mean())
    )
    fwd = log_close.groupby(df["symbol"]).shift(-horizon) - log_close
    fwd_1d = log_close.groupby(df["symbol"]).shift(-1) - log_close

    df = df.dropna(subset=["mom", "rev", "vol", "adv"]).copy()
    df["fwd_return"] = fwd.loc[df.index] - fwd.loc[df.index].groupby(df["date"]).transform("mean")
    df["fwd_return_1d"] = fwd_1d.loc[df.index]
    by_date = df.groupby("date", sort=False)
    for raw, ranked in (("mom", "mom_rank"), ("rev", "rev_rank"), ("vol", "vol_rank")):
        df[ranked] = by_date[raw].rank(pct=True) - 0.5
    df["mom_vol_adj"] = df["mom"] / (df["vol"] * np.sqrt(momentum_window - skip))

    columns = [
        "date",
        "symbol",
        "close",
        "adv",
        "dollar_adv",
        "mom",
        "rev",
        "vol",
        "mom_rank",
        "rev_rank",
        "vol_rank",
        "mom_vol_adj",
        "fwd_return",
        "fwd_return_1d",
    ]
    out = df[columns].sort_values(["date", "symbol"], kind="stable").reset_index(drop=True)
    table = pa.Table.from_pandas(out, preserve_index=False).replace_schema_metadata(None)
    table = table.set_column(0, "date", table["date"].cast(pa.date32()))
    return table.set_column(1, "symbol", table["symbol"].cast(pa.string()))
