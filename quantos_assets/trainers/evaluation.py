"""Out-of-sample scores of a return forecast, as a quant reads them.

r2 says little for returns; the information coefficient (rank correlation of
forecast and realised return) does. `ic` is the mean of the daily
cross-sectional ICs, the number a cross-sectional strategy trades on;
`ic_pooled` ranks all test rows at once. `portfolio_scores` trades the forecast
(long/short quantiles) for the sharpe and drawdown a promotion gate bounds.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

# What a ray_job's metrics report (a promotion gate may bound any of them; the spec rules
# reject a bound on anything else at load time).
FORECAST_METRICS = ("r2", "mse", "ic", "ic_ir", "ic_pooled", "ic_days", "hit_rate")
PORTFOLIO_METRICS = (
    "sharpe",
    "max_drawdown",
    "ann_return",
    "portfolio_days",
)  # with params.return_column
TRAINING_COUNTS = ("n_train", "n_test")


def _finite(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def forecast_scores(dates: pd.Series, predicted: np.ndarray, actual: np.ndarray) -> dict[str, Any]:
    from sklearn.metrics import mean_squared_error, r2_score  # slow import: only when training

    frame = pd.DataFrame({"date": dates.to_numpy(), "pred": predicted, "actual": actual})
    daily = [
        group["pred"].corr(group["actual"], method="spearman")
        for _, group in frame.groupby("date", sort=True)
        if len(group) >= 3 and group["pred"].nunique() > 1
    ]
    daily_ic = pd.Series(daily, dtype="float64").dropna()
    ic_std = daily_ic.std(ddof=1) if len(daily_ic) > 1 else float("nan")
    return {
        "r2": _finite(r2_score(actual, predicted)),
        "mse": _finite(mean_squared_error(actual, predicted)),
        "ic": _finite(daily_ic.mean()) if len(daily_ic) else None,
        "ic_ir": _finite(daily_ic.mean() / ic_std) if ic_std and ic_std > 0 else None,
        "ic_pooled": _finite(frame["pred"].corr(frame["actual"], method="spearman")),
        "ic_days": len(daily_ic),
        "hit_rate": _finite(float(np.mean(np.sign(predicted) == np.sign(actual)))),
    }


TRADING_DAYS = 252


def portfolio_scores(
    dates: pd.Series, predicted: np.ndarray, realised: np.ndarray, quantile: float = 0.2
) -> dict[str, Any]:
    """The forecast traded: each test date, long the top `quantile` of names by forecast and
    short the bottom, equal-weighted (half the book each side), earning the realised return.

    Gross of costs and daily-rebalanced, like tasks/backtest.long_short: the numbers a
    promotion gate bounds (sharpe, max_drawdown) are those of the model, not of one signal.
    `realised` are log returns, so equity is exp(cumulative sum).
    """
    frame = pd.DataFrame({"date": dates.to_numpy(), "pred": predicted, "ret": realised}).dropna()
    pct = frame.groupby("date")["pred"].rank(pct=True)
    long_leg = frame.loc[pct > 1 - quantile].groupby("date")["ret"].mean()
    short_leg = frame.loc[pct <= quantile].groupby("date")["ret"].mean()
    daily = (0.5 * long_leg - 0.5 * short_leg).dropna().sort_index()
    if len(daily) < 2:
        return {
            "sharpe": None,
            "max_drawdown": None,
            "ann_return": None,
            "portfolio_days": len(daily),
        }
    std = daily.std(ddof=1)
    equity = np.exp(daily.cumsum().to_numpy())
    peak = np.maximum.accumulate(
        np.maximum(equity, 1.0)
    )  # the book starts at 1: a first-day loss counts
    return {
        "sharpe": _finite(daily.mean() / std * math.sqrt(TRADING_DAYS)) if std > 0 else None,
        "max_drawdown": _finite(float(np.max(1.0 - equity / peak))),
        "ann_return": _finite(daily.mean() * TRADING_DAYS),
        "portfolio_days": len(daily),
    }
