"""OHLCV bars as arrays, and the calendar facts every module agrees on."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

NS_PER_MINUTE = 60_000_000_000

# OANDA granularities we store, with their length in minutes.
GRANULARITY_MINUTES: dict[str, int] = {
    "M1": 1, "M2": 2, "M4": 4, "M5": 5, "M10": 10, "M15": 15, "M30": 30,
    "H1": 60, "H2": 120, "H3": 180, "H4": 240, "H6": 360, "H8": 480, "H12": 720, "D": 1440,
}

# A fixed UTC week, Sunday 22:00 to Friday 22:00 (17:00 New York in winter): the clock the
# micro-v1 time features count on (changing it is a feature spec change). When a market is
# open is shared.core.calendar's, on New York's clock. 1970-01-04 was a Sunday.
WEEK_MINUTES = 7 * 24 * 60
TRADING_WEEK_MINUTES = 5 * 24 * 60
WEEK_OPEN_OFFSET_MINUTES = 3 * 24 * 60 + 22 * 60  # 1970-01-04 22:00 UTC
WEEKEND_CLOSED_MINUTES = WEEK_MINUTES - TRADING_WEEK_MINUTES


def check_granularity(granularity: str) -> int:
    """Minutes per bar of a stored (OANDA-spelled) granularity; anything else is a clear error."""
    try:
        return GRANULARITY_MINUTES[granularity]
    except KeyError:
        pass
    try:
        hint = f" (write it as {parse_granularity(granularity)})"
    except ValueError:
        hint = ""
    raise ValueError(f"unknown granularity {granularity!r}{hint}; known: {', '.join(GRANULARITY_MINUTES)}") from None


# Bar-size units as pandas, freqtrade, MetaTrader and people write them, in minutes.
# A capital M after a number is a month in pandas and freqtrade: not a bar size we store.
_UNIT_MINUTES = {"m": 1, "min": 1, "mins": 1, "minute": 1, "minutes": 1, "t": 1,
                 "h": 60, "hr": 60, "hour": 60, "hours": 60, "d": 1440, "day": 1440, "days": 1440}
_DAILY_NAMES = ("d", "d1", "daily", "day")


def granularity_for_minutes(minutes: int) -> str:
    """The stored name of a bar size in minutes (60 -> H1); sizes we do not store are a clear error."""
    for name, size in GRANULARITY_MINUTES.items():
        if size == minutes:
            return name
    raise ValueError(f"bars {minutes} minutes long are not a granularity we store; known: {', '.join(GRANULARITY_MINUTES)}")


def parse_granularity(text: str) -> str:
    """The stored (OANDA) name of a bar size as users write it: M5, 5m, 5min, 5T, H1, 1h, 60min, D, D1, 1d, daily."""
    raw = text.strip()
    if raw in GRANULARITY_MINUTES:
        return raw
    if raw.lower() in _DAILY_NAMES:
        return "D"
    oanda_style = re.fullmatch(r"([mhdMHD])(\d+)", raw)  # m5, h4, D1
    if oanda_style:
        letter, count = oanda_style.group(1).lower(), int(oanda_style.group(2))
        return granularity_for_minutes(count * _UNIT_MINUTES[letter])
    counted = re.fullmatch(r"(\d+)\s*([A-Za-z]+)", raw)  # 5m, 60min, 1T, 4h, 1d
    if counted and counted.group(2) != "M" and counted.group(2).lower() in _UNIT_MINUTES:
        return granularity_for_minutes(int(counted.group(1)) * _UNIT_MINUTES[counted.group(2).lower()])
    raise ValueError(
        f"unknown granularity {text!r}; write one of {', '.join(GRANULARITY_MINUTES)} or as 5m, 5min, 1h, 1d, daily"
        + (" (1M is a month, not a bar size we store)" if counted and counted.group(2) == "M" else "")
    )


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
