"""Market calendars as data: when a market is open and when its trading day rolls, one definition
for every stage (sessions, the gaps report, the synthetic market, live's market check and daily
loss stop, validation's daily P&L).

* `fx`: Sunday 17:00 to Friday 17:00 New York, on New York's wall clock (21:00 or 22:00 UTC with
  US daylight saving); a trading day rolls at 17:00 New York, in summer and in winter.
* `crypto`: always open; a trading day rolls at 00:00 UTC.
* `nyse`: exchange hours, Monday to Friday 09:30 to 16:00 New York (exchange holidays are not
  modelled: a holiday's missing bars are a gap, not a closure).

An instrument names its calendar (shared/core/instruments.toml). The module-level functions are
the FX calendar's, kept for the callers that trade FX only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

NEW_YORK = ZoneInfo("America/New_York")
UTC = ZoneInfo("UTC")
_NS_PER_MINUTE = 60 * 10**9
_NS_PER_HOUR = 3600 * 10**9
_NS_PER_DAY = 24 * _NS_PER_HOUR


@dataclass(frozen=True)
class MarketCalendar:
    """A market's week and day. `zone` is the wall clock its hours are written in; the week opens
    on `open_weekday` at `roll_hour` and closes `open_days` later (7: never closes); every
    trading day rolls at `roll_hour` and trades from `day_open_minute` to `day_close_minute`
    after it (an exchange's hours; 0 and 1440: around the clock)."""

    name: str
    zone: ZoneInfo
    roll_hour: int     # the hour a trading day (and the week) starts, on the zone's wall clock
    open_weekday: int  # Monday = 0 ... Sunday = 6
    open_days: int     # 5 for FX, 7 for a market that never closes
    days_per_year: int  # trading days a year, for annualised figures
    day_open_minute: int = 0
    day_close_minute: int = 24 * 60

    @property
    def always_open(self) -> bool:
        return self.open_days >= 7 and self.around_the_clock

    @property
    def around_the_clock(self) -> bool:
        return self.day_open_minute == 0 and self.day_close_minute == 24 * 60

    def _wall_ns(self, ts_ns: np.ndarray) -> np.ndarray:
        """UTC ns as ns on the zone's wall clock (a naive local time, counted from 1970-01-01)."""
        ts = pd.to_datetime(np.asarray(ts_ns, dtype=np.int64), unit="ns", utc=True)
        return ts.tz_convert(self.zone).tz_localize(None).asi8

    def trading_days(self, ts_ns: np.ndarray) -> np.ndarray:
        """The trading day of each UTC timestamp (ns), as a day number. Counted on the zone's wall
        clock, so a 23- or 25-hour day at a clock change is still one day."""
        return (self._wall_ns(ts_ns) - self.roll_hour * _NS_PER_HOUR) // _NS_PER_DAY

    def closed(self, ts_ns: np.ndarray) -> np.ndarray:
        """Bool per UTC timestamp (ns): the market is closed at that instant."""
        ts_ns = np.asarray(ts_ns, dtype=np.int64)
        if self.always_open:
            return np.zeros(len(ts_ns), dtype=bool)
        since_roll_ns = self._wall_ns(ts_ns) - self.roll_hour * _NS_PER_HOUR
        # trading days are numbered from 1970-01-01 (a Thursday): the day of week each opens on
        opening_weekday = (since_roll_ns // _NS_PER_DAY + 3) % 7
        closed = (opening_weekday - self.open_weekday) % 7 >= self.open_days
        if not self.around_the_clock:
            minute = (since_roll_ns % _NS_PER_DAY) // _NS_PER_MINUTE
            closed |= (minute < self.day_open_minute) | (minute >= self.day_close_minute)
        return closed

    def market_open(self, now: datetime) -> bool:
        return not bool(self.closed(np.array([pd.Timestamp(now).value]))[0])

    def last_open_ns(self, now_ns: int, lookback_days: int = 4) -> int | None:
        """When the market last opened after a closure (UTC ns, to the minute), looking back at most
        `lookback_days`; None when it has been open all that time (or never closes)."""
        if self.always_open:
            return None
        minute = int(now_ns) // _NS_PER_MINUTE * _NS_PER_MINUTE
        back = minute - np.arange(lookback_days * 24 * 60, dtype=np.int64) * _NS_PER_MINUTE
        closed = np.flatnonzero(self.closed(back))
        return int(back[closed[0]] + _NS_PER_MINUTE) if len(closed) else None

    def day_start(self, day: int) -> pd.Timestamp:
        """The roll hour on the wall-clock date that opens trading day `day`, as naive UTC (a roll
        at 17:00 or 00:00 is never skipped or repeated by a clock change)."""
        wall = pd.Timestamp(int(day) * _NS_PER_DAY + self.roll_hour * _NS_PER_HOUR, unit="ns")
        return wall.tz_localize(self.zone).tz_convert("UTC").tz_localize(None)

    def trading_day_start(self, now: datetime) -> pd.Timestamp:
        """The start (UTC, naive) of the trading day `now` is in."""
        return self.day_start(self.trading_days(np.array([pd.Timestamp(now).value]))[0])

    def next_trading_day_start(self, now: datetime) -> pd.Timestamp:
        """When a daily stop set at `now` lifts (UTC, naive): the next roll."""
        return self.day_start(self.trading_days(np.array([pd.Timestamp(now).value]))[0] + 1)

    def week_opens(self, start: pd.Timestamp, weeks: int) -> np.ndarray:
        """[weeks] UTC ns of the first `weeks` week opens at or after `start` (a market that never
        closes: every 7 days from `start`)."""
        start = pd.Timestamp(start)
        start = start.tz_convert("UTC").tz_localize(None) if start.tzinfo is not None else start
        if self.always_open:
            return start.value + np.arange(weeks, dtype=np.int64) * 7 * _NS_PER_DAY
        day = int(self.trading_days(np.array([start.value]))[0])
        opens = []
        while len(opens) < weeks:
            if (day + 3) % 7 == self.open_weekday and self.day_start(day).value >= start.value:
                opens.append(self.day_start(day).value)
            day += 1
        return np.asarray(opens, dtype=np.int64)


FX = MarketCalendar("fx", NEW_YORK, roll_hour=17, open_weekday=6, open_days=5, days_per_year=252)
CRYPTO = MarketCalendar("crypto", UTC, roll_hour=0, open_weekday=0, open_days=7, days_per_year=365)
NYSE = MarketCalendar("nyse", NEW_YORK, roll_hour=0, open_weekday=0, open_days=5, days_per_year=252,
                      day_open_minute=9 * 60 + 30, day_close_minute=16 * 60)
CALENDARS: dict[str, MarketCalendar] = {c.name: c for c in (FX, CRYPTO, NYSE)}


def calendar_named(name: str) -> MarketCalendar:
    try:
        return CALENDARS[name]
    except KeyError:
        raise ValueError(f"unknown market calendar {name!r}; known: {', '.join(CALENDARS)}") from None


def market_open(now: datetime) -> bool:
    """FX hours: Sunday 17:00 to Friday 17:00, New York time."""
    return FX.market_open(now)


def trading_days(ts_ns: np.ndarray) -> np.ndarray:
    """The FX trading day of each UTC timestamp (ns): days roll at 17:00 New York."""
    return FX.trading_days(ts_ns)


def trading_day_start(now: datetime) -> pd.Timestamp:
    """The start (UTC, naive) of the FX trading day `now` is in."""
    return FX.trading_day_start(now)


def next_trading_day_start(now: datetime) -> pd.Timestamp:
    """When the daily loss stop set at `now` lifts (UTC, naive): the next 17:00 New York."""
    return FX.next_trading_day_start(now)


def bar_in_closed_market(calendar: MarketCalendar, ts_ns: np.ndarray, bar_minutes: int) -> np.ndarray:
    """Bool per bar (open time ts_ns): all of the bar lies in closed market, read every half hour
    and at its last minute (a daily FX bar stamped Sunday 17:00 New York is open, and so is a daily
    bar of an exchange that trades from 09:30 to 16:00)."""
    ts_ns = np.asarray(ts_ns, dtype=np.int64)
    offsets = np.unique(np.append(np.arange(0, bar_minutes, 30), bar_minutes - 1)) * _NS_PER_MINUTE
    closed = np.ones(len(ts_ns), dtype=bool)
    for offset in offsets:
        closed &= calendar.closed(ts_ns + offset)
    return closed


def closure_steps(calendar: MarketCalendar, ts_ns: np.ndarray, bar_minutes: int, slack_minutes: int = 60) -> np.ndarray:
    """Bool per step between consecutive bars (open times ts_ns, ascending): the missing time is the
    market's closure (a weekend, an exchange's night), at most max(slack_minutes, bar_minutes) of it
    open (a thin Friday close or Sunday open, a daily bar's Sunday evening). A market that never
    closes has no such steps."""
    ts_ns = np.asarray(ts_ns, dtype=np.int64)
    steps = np.zeros(max(len(ts_ns) - 1, 0), dtype=bool)
    if calendar.always_open or len(ts_ns) < 2:
        return steps
    gap_start = ts_ns[:-1] + bar_minutes * _NS_PER_MINUTE
    missing_minutes = (ts_ns[1:] - gap_start) // _NS_PER_MINUTE
    allowed_open = max(slack_minutes, bar_minutes)
    night = 24 * 60 - (calendar.day_close_minute - calendar.day_open_minute)
    # the weekend of a clock change is an hour longer on the UTC clock
    longest_closure = (7 - calendar.open_days) * 24 * 60 + night + 60
    shortest_closure = night or (7 - calendar.open_days) * 24 * 60
    # a gap shorter than every closure holds closed time only if it starts or ends in it: read those
    # two minutes for every gap at once, and minute by minute only the gaps that may hold a closure
    gap_end = ts_ns[1:] - _NS_PER_MINUTE
    may_hold = calendar.closed(gap_start) | calendar.closed(gap_end) | (missing_minutes >= shortest_closure)
    for i in np.flatnonzero(may_hold & (missing_minutes > 0) & (missing_minutes <= longest_closure + allowed_open)):
        closed = calendar.closed(gap_start[i] + np.arange(missing_minutes[i], dtype=np.int64) * _NS_PER_MINUTE)
        steps[i] = closed.any() and int((~closed).sum()) <= allowed_open
    return steps
