"""The FX calendar and the loss caps' settings.

FX hours run Sunday 17:00 to Friday 17:00 New York; a trading day rolls at
17:00 New York (so the daily loss stop resets then, in summer and in winter).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import pandas as pd

NEW_YORK = ZoneInfo("America/New_York")


@dataclass(frozen=True)
class RiskConfig:
    max_units: int = 1
    max_daily_loss_pips: float = 100.0
    max_spread_pips: float = 8.0
    stale_bars: int = 2
    # a position open while the market is open and no bar has come for this long is flattened
    flatten_stale_seconds: float = 600.0
    # a flatten the broker did not fill is tried again after this, doubling up to the cap
    flatten_retry_seconds: float = 1.0
    flatten_retry_max_seconds: float = 30.0

    def __post_init__(self) -> None:
        if self.max_units < 1 or self.max_daily_loss_pips <= 0 or self.stale_bars < 1:
            raise ValueError("max_units and stale_bars must be >= 1, max_daily_loss_pips > 0")
        if self.flatten_stale_seconds <= 0 or not 0 < self.flatten_retry_seconds <= self.flatten_retry_max_seconds:
            raise ValueError("flatten_stale_seconds must be > 0 and 0 < flatten_retry_seconds <= "
                             "flatten_retry_max_seconds")


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


def trading_day_start(now: datetime) -> pd.Timestamp:
    """The start (UTC, naive) of the FX trading day `now` is in: days roll at 17:00 New York."""
    ny = pd.Timestamp(now).tz_convert(NEW_YORK)
    start = ny.replace(hour=17, minute=0, second=0, microsecond=0, nanosecond=0)
    if ny < start:
        start = (ny - pd.Timedelta(days=1)).replace(hour=17, minute=0, second=0, microsecond=0, nanosecond=0)
    return start.tz_convert("UTC").tz_localize(None)


def next_trading_day_start(now: datetime) -> pd.Timestamp:
    """When the daily loss stop set at `now` lifts (UTC, naive): the next 17:00 New York."""
    start = trading_day_start(now).tz_localize("UTC").tz_convert(NEW_YORK)
    following = (start + pd.Timedelta(hours=12)).replace(hour=17, minute=0)  # DST-proof: the next morning, then 17:00
    return following.tz_convert("UTC").tz_localize(None)
