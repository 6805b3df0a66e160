"""A daily-rebalanced long/short backtest of one signal column.

Each day, long the top `quantile` of symbols by the signal and short the
bottom, equal-weighted, earning the next day's return; costs are charged on
turnover. Deliberately simple: it shows whether a signal survives costs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa


def long_short(
    universe: pa.Table,
    signal: str = "mom_rank",
    quantile: float = 0.2,
    cost_bps: float = 5.0,
    return_column: str = "fwd_return_1d",
) -> pa.Table:
    """Daily portfolio return, turnover and cumulative equity (date, gross, cost, net, equity)."""
    df = universe.select(["date", "symbol", signal, return_column]).to_pandas().dropna()
    pct = df.groupby("date")[signal].rank(pct=True)
    df["weight"] = 0.0
    df.loc[pct > 1 - quantile, "weight"] = 1.0
    df.loc[pct <= quantile, "weight"] = -1.0
    gross_side = df.groupby(["date", np.sign(df["weight"])])["weight"].transform(
        lambda w: w.abs().sum()
    )
    df["weight"] = np.where(
        df["weight"] != 0, df["weight"] / gross_side.replace(0, np.nan) / 2, 0.0
    )

    weights = df.pivot_table(
        index="date", columns="symbol", values="weight", fill_value=0.0
    ).sort_index()
    turnover = weights.diff().abs().sum(axis=1).fillna(weights.abs().sum(axis=1))
    gross = (df["weight"] * df[return_column]).groupby(df["date"]).sum().reindex(weights.index)
    cost = turnover * cost_bps / 1e4
    net = gross - cost
    out = pd.DataFrame(
        {
            "date": weights.index,
            "gross_return": gross.to_numpy(),
            "turnover": turnover.to_numpy(),
            "cost": cost.to_numpy(),
            "net_return": net.to_numpy(),
            "equity": np.exp(net.cumsum()).to_numpy(),
        }
    )
    table = pa.Table.from_pandas(out, preserve_index=False).replace_schema_metadata(None)
    return table.set_column(0, "date", table["date"].cast(pa.date32()))
