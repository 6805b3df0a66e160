"""Out-of-sample scores of a return forecast, as a quant reads them.

r2 says little for returns; the information coefficient (rank correlation of
forecast and realised return) does. `ic` is the mean of the daily
cross-sectional ICs, the number a cross-sectional strategy trades on;
`ic_pooled` ranks all test rows at once.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd


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
