"""One decision per completed bar: features -> search -> order -> journal.

Features come from the same numba code as training, computed over a trailing
buffer long enough (WARMUP_BARS + window) that every value equals the batch
feature store's on the same bars. The broker is the truth for the position:
the trader reconciles at start (and refuses to trade until that succeeds) and
on a timer. Guards, in order: the kill switch (`control/live.flatten`:
flatten and stand aside while it exists) and the daily loss limit (flatten,
stop until the next trading day, which starts at 17:00 New York) come first
and also run on the service's timer, so they act when no bar arrives; then
market closed (Sunday 17:00 to Friday 17:00 New York is open), stale data
(the last bar more than `stale_bars` old), a spread above the limit. A new
model is staged off the decision path and swapped in
between bars.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from shared.brokers import Broker, OrderResult, OrderStatus, client_order_id
from shared.candidates import Candidate
from shared.data.bars import NS_PER_MINUTE, Bars
from shared.env.actions import ACTION_SPACES
from shared.features.micro import temporal_features
from shared.accounting import Book, fill, mark
from shared.features.position import position_features
from shared.features.spec import WARMUP_BARS, WINDOW_BARS
from shared.instruments import get_instrument
from shared.live.journal import DecisionRow, Journal
from shared.search import NetworkSearch, SearchConfig

log = logging.getLogger("live")
NEW_YORK = ZoneInfo("America/New_York")
BUFFER_BARS = WARMUP_BARS + WINDOW_BARS + 64


@dataclass(frozen=True)
class RiskConfig:
    max_units: int = 1
    max_daily_loss_pips: float = 100.0
    max_spread_pips: float = 8.0
    stale_bars: int = 2

    def __post_init__(self) -> None:
        if self.max_units < 1 or self.max_daily_loss_pips <= 0 or self.stale_bars < 1:
            raise ValueError("max_units and stale_bars must be >= 1, max_daily_loss_pips > 0")


@dataclass
class Decision:
    bar_ts: int
    action: str
    status: str
    reason: str | None
    latency_seconds: float
    order: OrderResult | None = None


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


def model_version(candidate: Candidate) -> str:
    return f"ep{candidate.episode:08d}-{candidate.sha256[:12]}"


class LiveTrader:
    def __init__(self, instrument: str, broker: Broker, journal: Journal, candidate: Candidate, history: Bars, *,
                 simulations: int = 50, risk: RiskConfig = RiskConfig(), control_dir: Path | None = None,
                 spread_pips: float | None = None,
                 on_order: Callable[[OrderResult], None] = lambda order: None) -> None:
        self.instrument = get_instrument(instrument)
        self.broker = broker
        self.journal = journal
        self.risk = risk
        self.control_dir = control_dir
        self.simulations = simulations
        self.on_order = on_order  # every order's result, decisions and flattens alike (metrics)
        self.spread_pips = self.instrument.spread_pips if spread_pips is None else spread_pips
        self.bars = history[-BUFFER_BARS:]
        # the one position accounting (as the environment and the paper broker): what our own fills
        # add up to, entry unknown until the broker confirms or corrects it
        self.book = Book.flat(1)
        self.book.units[0] = journal.filled_units()
        self.entry_known = False
        self.reconciled = False
        self.unknown_orders = 0
        self.stopped_day: pd.Timestamp | None = None
        self.staged: Candidate | None = None
        self.mismatches = 0
        self.last_transaction_id: str | None = None
        last = journal.last_bar_ts()
        self.last_decided_ns = last.value if last is not None else -1  # never decide a bar twice, restarts included
        self.realized_day: pd.Timestamp | None = None
        self.realized_today = 0.0
        self._install(candidate)

    # --- the model -------------------------------------------------------------------

    def _install(self, candidate: Candidate) -> None:
        self.candidate = candidate
        self.version = model_version(candidate)
        self.space = ACTION_SPACES[candidate.payload.get("env_config", {}).get("action_space", "hold_buy_sell_close")]
        config = SearchConfig(**{**candidate.search_config.to_dict(), "num_simulations": self.simulations})
        self.search = NetworkSearch(candidate.model, 1, self.space, config)

    def stage(self, candidate: Candidate) -> None:
        """Called off the decision path; the swap happens before the next bar."""
        self.staged = candidate

    # --- the broker is the truth ----------------------------------------------------------

    def reconcile(self) -> bool:
        """Adopt the broker's position; returns whether ours agreed. What the
        broker did since the last known transaction id goes into the journal
        with a mismatch, so a person can see why."""
        snapshot = self.broker.snapshot(self.instrument.name)
        agreed = snapshot.units == self.position
        if not agreed:
            self.mismatches += 1
            log.warning("reconciliation: the broker holds %d units, we believed %d: adopting the broker's",
                        snapshot.units, self.position)
            since = []
            if self.last_transaction_id is not None and hasattr(self.broker, "transactions_since"):
                since = [{"id": t.get("id"), "type": t.get("type"), "units": t.get("units")}
                         for t in self.broker.transactions_since(self.last_transaction_id)]
            self.journal.event("reconciliation_mismatch", {"broker_units": snapshot.units, "ours": self.position,
                                                           "broker_average_price": snapshot.average_price,
                                                           "last_transaction_id": snapshot.last_transaction_id,
                                                           "transactions_since_last_known": since})
            self._adopt(snapshot.units, snapshot.average_price)
        elif self.position != 0 and not self.entry_known:
            self._adopt(snapshot.units, snapshot.average_price)
        self.last_transaction_id = snapshot.last_transaction_id
        # An order whose fate is unknown may still fill: no decision until the journal has none.
        self.unknown_orders = self.journal.unknown_orders()
        self.reconciled = self.unknown_orders == 0
        return agreed

    def _adopt(self, units: int, average_price: float | None) -> None:
        """Take the broker's position as a new trade (its tracks start now)."""
        mark_price = float(self.bars.close[-1]) if len(self.bars) else (average_price or 0.0)
        self.book.adopt(0, units, average_price, mark_price, self.instrument.pip_size)
        self.entry_known = units == 0 or average_price is not None

    @property
    def position(self) -> int:
        return int(self.book.units[0])

    @property
    def entry_price(self) -> float | None:
        return float(self.book.entry_price[0]) if self.position != 0 and self.entry_known else None

    # --- per bar ---------------------------------------------------------------------

    def unrealized_pips(self) -> float:
        if self.position == 0 or not self.entry_known or len(self.bars) == 0:
            return 0.0
        return self.position * (float(self.bars.close[-1]) - float(self.book.entry_price[0])) / self.instrument.pip_size

    def daily_pnl_pips(self, now: datetime) -> float:
        day = trading_day_start(now)
        if self.realized_day != day:  # a new trading day (or a restart): start from what the journal says
            self.realized_day, self.realized_today = day, self.journal.realized_since(day)
        return self.realized_today + self.unrealized_pips()

    def stopped_for_the_day(self, now: datetime) -> bool:
        """The daily-loss stop holds for the rest of its trading day only."""
        return self.stopped_day is not None and self.stopped_day == trading_day_start(now)

    def risk_check(self, ts: int, now: datetime) -> str | None:
        """The kill switch and the daily loss limit: flatten and stand aside. Called for every
        bar and, by the service, on a timer, so both act when the feed stalls, the data is
        stale or the market is closed. Never while an order's fate is unknown or the broker
        has not been read since an error: a second close could open a new position."""
        if not self.reconciled:
            return None
        if self.control_dir is not None and (self.control_dir / "live.flatten").exists():
            self.flatten(ts, "kill_switch")
            return "kill_switch"
        if self.stopped_for_the_day(now):
            return "daily_loss_limit"
        if self.daily_pnl_pips(now) <= -self.risk.max_daily_loss_pips:
            self.flatten(ts, "daily_loss_limit")
            self.stopped_day = trading_day_start(now)
            return "daily_loss_limit"
        return None

    def on_bar(self, bar: Bars, now: datetime, spread_pips: float | None = None) -> Decision:
        started = time.perf_counter()
        self.bars = Bars(*(np.concatenate([a, b])[-BUFFER_BARS:] for a, b in zip(
            (self.bars.ts, self.bars.open, self.bars.high, self.bars.low, self.bars.close, self.bars.volume),
            (bar.ts, bar.open, bar.high, bar.low, bar.close, bar.volume))))
        ts = int(bar.ts[-1])
        if hasattr(self.broker, "mark"):
            self.broker.mark(float(bar.close[-1]))
        if self.position != 0:
            mark(self.book, np.array([float(bar.close[-1])]), self.instrument.pip_size)
        if self.staged is not None:
            old = self.version
            self._install(self.staged)
            self.staged = None
            self.journal.event("model_swap", {"from": old, "to": self.version})
            log.info("model swapped between bars: %s -> %s", old, self.version)

        skip = self._guard(ts, now, spread_pips)
        if skip is not None:
            return self._skip(ts, skip, started)
        return self._decide(ts, started)

    def _guard(self, ts: int, now: datetime, spread_pips: float | None) -> str | None:
        if not self.reconciled:  # at start, after any broker error, while an order's fate is unknown
            return "order_unknown" if self.unknown_orders else "not_reconciled"
        stop = self.risk_check(ts, now)
        if stop is not None:
            return stop
        if not market_open(now):
            return "market_closed"
        age_bars = (pd.Timestamp(now).value - (ts + NS_PER_MINUTE)) / NS_PER_MINUTE
        if age_bars > self.risk.stale_bars:
            return "stale_data"
        if spread_pips is not None and spread_pips > self.risk.max_spread_pips:
            return "spread_too_wide"
        if self.position not in self.space.positions:  # adopted from the broker: the model cannot act on it
            return "position_outside_action_space"
        if len(self.bars) < WARMUP_BARS + WINDOW_BARS:
            return "warming_up"
        return None

    def _skip(self, ts: int, reason: str, started: float) -> Decision:
        client_id = client_order_id(self.version, ts)
        if ts > self.last_decided_ns:
            self.last_decided_ns = ts
            self.journal.record(DecisionRow(client_id, pd.Timestamp(ts), self.version, None, None, None, "HOLD",
                                            self.position, 0, "skipped", reason))
        return Decision(ts, "HOLD", "skipped", reason, time.perf_counter() - started)

    def observation(self) -> tuple[np.ndarray, np.ndarray]:
        window = temporal_features(self.bars, self.instrument.pip_size)[-WINDOW_BARS:][None]
        static = position_features(self.book, self.space.max_units)
        return np.ascontiguousarray(window, np.float32), static

    def _decide(self, ts: int, started: float) -> Decision:
        client_id = client_order_id(self.version, ts)
        if ts <= self.last_decided_ns:  # decided before (a restart, a replayed bar): never twice
            return Decision(ts, "HOLD", "duplicate", "this bar was already decided", time.perf_counter() - started)
        self.last_decided_ns = ts
        temporal, static = self.observation()
        position = np.array([self.position], np.int8)
        result = self.search.run(temporal, static, self.space.legal_mask(position), position, np.zeros(1, np.uint64),
                                 add_noise=False)
        action = int(result.actions(0.0)[0])
        target = int(self.space.next_position(np.array([self.position], np.int8), np.array([action]))[0])
        target = int(np.clip(target, -self.risk.max_units, self.risk.max_units))
        units = target - self.position
        row = DecisionRow(client_id, pd.Timestamp(ts), self.version,
                          hashlib.sha256(temporal.tobytes() + static.tobytes()).hexdigest()[:16],
                          result.visit_counts[0].tolist(), float(result.root_values[0]), self.space.actions[action],
                          self.position, units, "decided" if units else "no_order")
        if not units:
            # nothing to act on: the decision is made; record it (before the next bar) and return
            latency = time.perf_counter() - started
            self.journal.record(row)
            return Decision(ts, self.space.actions[action], "no_order", None, latency)
        self.journal.record(row)  # an order is about to leave: the journal hears first
        order = self._send(client_id, units)
        return Decision(ts, self.space.actions[action], order.status.value, order.reason,
                        time.perf_counter() - started, order)

    def _send(self, client_id: str, units: int) -> OrderResult:
        try:
            order = self.broker.market_order(self.instrument.name, units, client_id)
        except BaseException:
            # the broker may have done anything: re-read the position before the next decision
            self.reconciled = False
            raise
        self.on_order(order)
        if order.status is OrderStatus.UNKNOWN:
            self.reconciled = False
            self.unknown_orders += 1
            log.error("order %s: fate unknown (%s); standing aside until reconciliation settles it",
                      client_id, order.reason)
        realized = None
        if order.status is OrderStatus.FILLED:
            realized = self._apply_fill(units, order.fill_price)
        self.journal.update(order, realized)
        if realized is not None and self.realized_day is not None:
            self.realized_today += realized
        return order

    def _apply_fill(self, units: int, price: float) -> float | None:
        """Book a fill in the one accounting; returns the pips it realised, if it reduced the position."""
        reducing = self.position != 0 and (self.position > 0) != (units > 0)
        mark_price = float(self.bars.close[-1]) if len(self.bars) else price
        filled = fill(self.book, np.array([units]), np.array([price]), self.instrument.pip_size,
                      np.array([mark_price]))
        self.entry_known = True
        return float(filled.realized_pips[0]) if reducing else None

    def flatten(self, ts: int, why: str) -> OrderResult | None:
        if self.position == 0:
            return None
        client_id = client_order_id(self.version, ts, "flatten")
        if self.journal.has(client_id):
            return None
        self.journal.record(DecisionRow(client_id, pd.Timestamp(ts), self.version, None, None, None, "CLOSE",
                                        self.position, -self.position, "decided", why))
        log.warning("flattening %d units: %s", self.position, why)
        return self._send(client_id, -self.position)

    def status(self) -> dict:
        return {
            "instrument": self.instrument.name, "position_units": self.position, "entry_price": self.entry_price,
            "unrealized_pips": round(self.unrealized_pips(), 2), "model_version": self.version,
            "reconciled": self.reconciled, "reconciliation_mismatches": self.mismatches,
            "last_bar": str(pd.Timestamp(int(self.bars.ts[-1]))) if len(self.bars) else None,
            "stopped_for_the_day": str(self.stopped_day) if self.stopped_day is not None else None,
            "unknown_orders": self.unknown_orders,
            "broker": self.broker.name, "at": datetime.now(timezone.utc).isoformat(),
        }
