"""The FX calendar and the loss caps' settings.

FX hours run Sunday 17:00 to Friday 17:00 New York; a trading day rolls at
17:00 New York (so the daily loss stop resets then, in summer and in winter).
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pandas as pd

NEW_YORK = ZoneInfo("America/New_York")


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
