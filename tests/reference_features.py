"""A plain pandas implementation of the micro features and market outcomes,
written from the definitions in shared/features/micro.py without sharing any
of its code: the oracle the numba kernels are tested against, and the
baseline of `python -m bench.features`."""

from __future__ import annotations

import numpy as np
import pandas as pd

from shared.data.bars import Bars


def _min_max_scaled(series: pd.Series, window: int) -> pd.Series:
    lo = series.rolling(window, min_periods=1).min()
    hi = series.rolling(window, min_periods=1).max()
    span = hi - lo
    return ((series - lo) / span).where(span > 0, 0.5)


def reference_features(bars: Bars, pip: float) -> tuple[pd.DataFrame, pd.Series]:
    df = bars.to_frame()
    close, high, low = df["close"], df["high"], df["low"]
    lo60 = low.rolling(60, min_periods=1).min()
    hi60 = high.rolling(60, min_periods=1).max()
    range60 = hi60 - lo60
    out = pd.DataFrame(index=df.index)
    out["position_in_range_60"] = ((close - lo60) / range60).where(range60 > 0, 0.5)
    momentum_60 = (close - close.shift(60).fillna(close.iloc[0])) / pip
    out["min_max_scaled_momentum_60"] = _min_max_scaled(momentum_60, 1440)
    out["min_max_scaled_rolling_range"] = _min_max_scaled(range60 / pip, 1440)
    momentum_5 = (close - close.shift(5).fillna(close.iloc[0])) / pip
    out["min_max_scaled_momentum_5"] = _min_max_scaled(momentum_5, 1440)
    change = (close.diff() / pip).fillna(0.0)
    out["price_change_pips"] = np.tanh(change / 10.0)

    # Hours since the FX week opened on Sunday 22:00 UTC, capped at 120.
    since_open = df["ts"] - pd.Timedelta(hours=22)
    days_since_sunday = (since_open.dt.day_of_week + 1) % 7  # pandas: Monday = 0
    hours = (days_since_sunday * 24 + since_open.dt.hour + since_open.dt.minute / 60.0).clip(upper=120.0)
    day = np.floor(hours / 24.0).clip(upper=4.0)
    out["dow_cos"] = np.cos(2 * np.pi * day / 5.0)
    out["dow_sin"] = np.sin(2 * np.pi * day / 5.0)
    out["hour_cos"] = np.cos(2 * np.pi * hours / 120.0)
    out["hour_sin"] = np.sin(2 * np.pi * hours / 120.0)

    # Outcome: the change against 0.33 x the std of the 20 changes before it.
    previous_std = change.where(change.index > 0).rolling(20, min_periods=2).std().shift(1)
    threshold = 0.33 * previous_std
    outcome = pd.Series(1, index=df.index, dtype="int8")
    outcome[change > threshold] = 2
    outcome[change < -threshold] = 0
    outcome[threshold.isna()] = 1
    return out, outcome
