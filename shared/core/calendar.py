"""The FX trading day, one definition for every stage.

FX hours run Sunday 17:00 to Friday 17:00 New York; a trading day rolls at
17:00 New York, in summer and in winter: live's daily loss stop resets then,
and validation sums its daily P&L over the same days. (The bar store's
weekend detection, shared/data/bars.py, still assumes a fixed 22:00 UTC
reopening: an hour off in US summer, left for the markets work.)
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

NEW_YORK = ZoneInfo("America/New_York")
_NS_PER_HOUR = 3600 * 10**9


def market_open(now: datetime) -> bool:
    """FX hours: Sunday 17:00 to Friday 17:00, New York time."""
    ny = now.astimezone(NEW_YORK)
    weekday, minutes = ny.weekday(), ny.hour * 60 + ny.minute  # Monday = 0
    if weekday == 5:
        return False
    if weekday == 6:
        return minutes >= 17 * 60
    if weekday == 4:
        return minutes < 17 * 60
    return True


def trading_days(ts_ns: np.ndarray) -> np.ndarray:
    """The FX trading day of each UTC timestamp (ns), as a day number: days roll at 17:00 New York.
    Counted on New York's wall clock, so a 23- or 25-hour day at a clock change is still one day."""
    wall_ns = pd.to_datetime(np.asarray(ts_ns, dtype=np.int64), unit="ns", utc=True).tz_convert(NEW_YORK).tz_localize(None).asi8
    return (wall_ns - 17 * _NS_PER_HOUR) // (24 * _NS_PER_HOUR)


def _day_start(day: int) -> pd.Timestamp:
    """17:00 New York on the wall-clock date that opens trading day `day`, as naive UTC (17:00 is never
    skipped or repeated by a clock change)."""
    wall = pd.Timestamp(int(day) * 24 * _NS_PER_HOUR + 17 * _NS_PER_HOUR, unit="ns")
    return wall.tz_localize(NEW_YORK).tz_convert("UTC").tz_localize(None)


def trading_day_start(now: datetime) -> pd.Timestamp:
    """The start (UTC, naive) of the FX trading day `now` is in."""
    return _day_start(trading_days(np.array([pd.Timestamp(now).value]))[0])


def next_trading_day_start(now: datetime) -> pd.Timestamp:
    """When the daily loss stop set at `now` lifts (UTC, naive): the next 17:00 New York."""
    return _day_start(trading_days(np.array([pd.Timestamp(now).value]))[0] + 1)
