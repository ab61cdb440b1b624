"""OHLCV bars as arrays, and the calendar facts every module agrees on."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

NS_PER_MINUTE = 60_000_000_000

# A fixed UTC week, Sunday 22:00 to Friday 22:00 (17:00 New York in winter): the clock the
# micro-v1 time features count on (changing it is a feature spec change). When a market is
# open is shared.core.calendar's, on New York's clock. 1970-01-04 was a Sunday.
WEEK_MINUTES = 7 * 24 * 60
TRADING_WEEK_MINUTES = 5 * 24 * 60
WEEK_OPEN_OFFSET_MINUTES = 3 * 24 * 60 + 22 * 60  # 1970-01-04 22:00 UTC
WEEKEND_CLOSED_MINUTES = WEEK_MINUTES - TRADING_WEEK_MINUTES


def minute_of_trading_week(ts_ns: np.ndarray) -> np.ndarray:
    """Minutes since the last Sunday 22:00 UTC (micro-v1's week clock; market hours: shared.core.calendar)."""
    minutes = ts_ns // NS_PER_MINUTE
    return (minutes - WEEK_OPEN_OFFSET_MINUTES) % WEEK_MINUTES


@dataclass
class Bars:
    """Bars of one instrument and granularity, ordered by time."""

    ts: np.ndarray      # [N] int64, bar open time, ns since the epoch, UTC
    open: np.ndarray    # [N] float64
    high: np.ndarray    # [N] float64
    low: np.ndarray     # [N] float64
    close: np.ndarray   # [N] float64
    volume: np.ndarray  # [N] float64

    def __post_init__(self) -> None:
        n = len(self.ts)
        for name in ("open", "high", "low", "close", "volume"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"bars column {name} has {len(getattr(self, name))} rows, ts has {n}")

    def __len__(self) -> int:
        return len(self.ts)

    def __getitem__(self, index: slice) -> "Bars":
        return Bars(self.ts[index], self.open[index], self.high[index], self.low[index], self.close[index], self.volume[index])

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> "Bars":
        ts = pd.to_datetime(frame["ts"], utc=True).dt.tz_localize(None).astype("datetime64[ns]")
        return cls(
            ts=ts.to_numpy().astype(np.int64),
            open=frame["open"].to_numpy(np.float64),
            high=frame["high"].to_numpy(np.float64),
            low=frame["low"].to_numpy(np.float64),
            close=frame["close"].to_numpy(np.float64),
            volume=frame["volume"].to_numpy(np.float64),
        )

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "ts": self.ts.astype("datetime64[ns]"),
                "open": self.open,
                "high": self.high,
                "low": self.low,
                "close": self.close,
                "volume": self.volume,
            }
        )
