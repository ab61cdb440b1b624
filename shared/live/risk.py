"""The loss caps, which come first and also run on the service's timer, so they act when no bar
arrives: the kill switch (`control/live.flatten`: flatten and stand aside while it exists), the
daily loss limit (flatten, stop until the instrument's next trading day: 17:00 New York for FX)
and a stalled feed (a position open while the market is open and the next bar of the model's size
overdue by `flatten_stale_seconds`, the wait starting again when the market opens: flatten).
On the timer open P&L is valued at the broker's price, never at the last bar's. A cap is done
only when the broker reports flat: until then every call reads the broker's position and sends a
reduce-only close for it, each attempt with a new client id, after a backoff that doubles up to
a cap."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from shared.config import RiskConfig
from shared.core.calendar import MarketCalendar
from shared.data.bars import NS_PER_MINUTE
from shared.live.brokers import OrderStatus
from shared.live.journal import DecisionRow
from shared.live.position import BrokerPosition

log = logging.getLogger("live")


class LossCaps(BrokerPosition):
    """The loss caps of LiveTrader; `_init_caps` sets their state."""

    risk: RiskConfig
    calendar: MarketCalendar
    bar_ns: int
    control_dir: Path | None
    clock: Callable[[], float]

    def _init_caps(self) -> None:
        self.stopped_day: pd.Timestamp | None = None
        self.stop_reason: str | None = None  # which cap is on
        self.flatten_attempts = 0
        self.next_flatten_at = 0.0           # when to try again (clock seconds)
        self.flatten_backoff = self.risk.flatten_retry_seconds

    def unrealized_pips(self, price: float | None = None) -> float:
        """Open P&L at `price` (default: the last bar's close)."""
        if price is None:
            price = float(self.bars.close[-1]) if len(self.bars) else None
        if self.position == 0 or not self.entry_known or price is None:
            return 0.0
        scaled = float(self.instrument.scale_prices(np.float64(price)))  # the book's prices are on the P&L scale
        return self.position * (scaled - float(self.book.entry_price[0])) / self.instrument.point

    def daily_pnl_pips(self, now: datetime, price: float | None = None) -> float:
        day = self.calendar.trading_day_start(now)
        if self.realized_day != day:  # a new trading day (or a restart): start from what the journal says
            self.realized_day, self.realized_today = day, self.journal.realized_since(day)
        return self.realized_today + self.unrealized_pips(price)

    def stopped_for_the_day(self, now: datetime) -> bool:
        """The daily-loss stop holds for the rest of its trading day only."""
        return self.stopped_day is not None and self.stopped_day == self.calendar.trading_day_start(now)

    def stop_state(self) -> str:
        """off, stopping (a cap is on and the broker has not said flat) or stopped (flat)."""
        if self.stop_reason is None:
            return "off"
        return "stopped" if self.position == 0 and self.flat_confirmed else "stopping"

    def risk_check(self, ts: int, now: datetime, *, bar_close: float | None = None) -> str | None:
        """The kill switch, the daily loss limit and a stalled feed: flatten and stand aside.
        Called for every bar (`bar_close`: value open P&L at it) and, by the service, on a
        timer (value it at the broker's price), so all act when the feed stalls, the data is
        stale or the market is closed. Never while an order's fate is unknown or the broker
        has not been read since an error: what the broker holds is not known."""
        if not self.reconciled:
            return None
        why = self._cap_on(ts, now, bar_close)
        if why is None:
            self.stop_reason = None
            self.next_flatten_at, self.flatten_backoff = 0.0, self.risk.flatten_retry_seconds
            return None
        if why != self.stop_reason:
            self.journal.event("loss_cap", {"reason": why, "position": self.position})
        self.stop_reason = why
        self._make_flat(ts, why)
        return why

    def _cap_on(self, ts: int, now: datetime, bar_close: float | None) -> str | None:
        if self.control_dir is not None and (self.control_dir / "live.flatten").exists():
            return "kill_switch"
        if self.stopped_for_the_day(now):
            return "daily_loss_limit"
        if self.position != 0 and bar_close is None and self.feed_overdue_seconds(now) > self.risk.flatten_stale_seconds:
            return "stale_feed"
        price = bar_close
        if price is None and self.position != 0 and self.entry_known:
            price = self.broker.quote(self.instrument.name).exit_price(self.position)  # never the stale bar's
        pnl = self.daily_pnl_pips(now, price)
        if pnl <= -self.risk.max_daily_loss_pips:
            self.stopped_day = self.calendar.trading_day_start(now)
            until = self.calendar.next_trading_day_start(now)
            log.error("daily loss %.1f pips reached the limit of %.1f: flattening and stopped until %s UTC "
                      "(the next %s trading day)", pnl, self.risk.max_daily_loss_pips, until, self.calendar.name)
            self.journal.event("daily_loss_stop", {"pnl_pips": pnl, "until_utc": str(until)})
            return "daily_loss_limit"
        return None

    def feed_overdue_seconds(self, now: datetime) -> float:
        """How long the next bar is overdue: the time since the last bar closed, less the length of
        the bar now forming beyond a minute (at M1 simply the time since the last close; at H1 an
        hour later), and never counting a closure (a weekend, an exchange's night): after the
        market opens the wait starts again. 0 while the market is closed."""
        if not len(self.bars) or not self.calendar.market_open(now):
            return 0.0
        now_ns = pd.Timestamp(now).value
        due_ns = int(self.bars.ts[-1]) + self.bar_ns + (self.bar_ns - NS_PER_MINUTE)
        if now_ns <= due_ns:
            return 0.0
        opened_ns = self.calendar.last_open_ns(now_ns)
        if opened_ns is not None:
            due_ns = max(due_ns, opened_ns + self.bar_ns - NS_PER_MINUTE)
        return max(0.0, (now_ns - due_ns) / 1e9)

    def _make_flat(self, ts: int, why: str) -> None:
        """Until the broker says flat: read its position, close it reduce-only, back off."""
        if self.stop_state() == "stopped":
            return
        now = self.clock()
        if now < self.next_flatten_at:
            return
        self.next_flatten_at = now + self.flatten_backoff
        self.flatten_backoff = min(self.risk.flatten_retry_max_seconds, self.flatten_backoff * 2)
        self._agree(self.broker.snapshot(self.instrument.name), why)  # the position right before the close
        if self.both_sides_open:
            self.reconciled = False  # no net close can flatten both sides: stand aside, alerted
            return
        if self.position != 0:
            self.flatten_attempts += 1
            client_id = self._client_id(ts, f"flatten#{self.journal.flatten_attempts()}")
            self.journal.record(DecisionRow(client_id, pd.Timestamp(ts), self.version, None, None, None, "CLOSE",
                                            self.position, -self.position, "decided", why))
            log.warning("flattening %d units: %s (attempt %d)", self.position, why, self.flatten_attempts)
            order = self._send(client_id, -self.position, reduce_only=True)
            if order.status is not OrderStatus.FILLED or self.position != 0 or not self.reconciled:
                return  # tried again after the backoff, with a new client id
            self._agree(self.broker.snapshot(self.instrument.name), why)  # done only when the broker says flat
        if self.stop_state() == "stopped":
            log.warning("%s: the broker reports flat", why)
            self.next_flatten_at, self.flatten_backoff = 0.0, self.risk.flatten_retry_seconds
