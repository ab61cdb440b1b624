"""Several instruments, one model, one search per bar time.

A desk holds one LiveTrader per instrument and one NetworkSearch shared by all of
them (the model is the same). At each bar time every instrument whose bar closed
runs the first half of its decision (`LiveTrader.prepare`: guards, features);
the roots that pass go through ONE batched `search.run`; then each trader acts
on its row (`LiveTrader.act`). Instruments whose market is closed (FX at the
weekend while crypto trades) simply have no bar, or skip with `market_closed`.

The orders of one bar go out reducing ones first, each target clipped by the
account's caps across instruments (shared.live.account.AccountLimits) against
the positions the broker booked so far, so a close frees room for another
instrument's open in the same bar. A model swap is staged and applied between
bars to every trader at once, with a new shared search.

One instrument is a desk of one: the same trader, the same journal rows and
client ids as a one-instrument service always had. With several, each trader
reads its own rows of the shared journal (`Journal.scope`) and its client ids
name its instrument, since they are unique per broker account.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from shared.config import RiskConfig
from shared.core.calendar import MarketCalendar
from shared.data.bars import Bars
from shared.live.account import AccountCurrency, AccountLimits, exposure_units
from shared.live.brokers import Broker, OrderResult
from shared.live.deciders import Decider, make_decider
from shared.live.journal import Journal
from shared.live.provenance import TreeStore
from shared.live.trader import SEARCH_SEED, Decision, LiveTrader, PendingRoot, RootChoice
from shared.search import NetworkSearch
from shared.volume.candidates import Candidate

__all__ = ["LiveDesk", "shared_search"]

log = logging.getLogger("live")


def shared_search(candidate: Candidate, roots: int, simulations: int) -> Decider:
    """One search for every instrument's root (a tree arena for `roots` at once), or a forecaster's rule."""
    return make_decider(candidate, roots, simulations)


class OneInstantCalendar:
    """A market calendar that works each question out once per instant: at a bar time every
    instrument of one calendar asks the same ones about the same `now` (market open, the trading
    day), and each answer costs a pandas time-zone conversion. Otherwise the calendar itself."""

    def __init__(self, calendar: MarketCalendar) -> None:
        self.calendar = calendar
        self._last: dict[str, tuple[datetime, object]] = {}  # question -> (instant, answer)

    def __getattr__(self, name: str):
        return getattr(self.calendar, name)

    def _once(self, question: str, now: datetime):
        last = self._last.get(question)
        if last is None or last[0] != now:
            last = self._last[question] = (now, getattr(self.calendar, question)(now))
        return last[1]

    def market_open(self, now: datetime) -> bool:
        return self._once("market_open", now)

    def trading_day_start(self, now: datetime):
        return self._once("trading_day_start", now)

    def next_trading_day_start(self, now: datetime):
        return self._once("next_trading_day_start", now)


class LiveDesk:
    """The traders of one account, deciding each bar time with one search call."""

    def __init__(self, traders: Mapping[str, LiveTrader], search: NetworkSearch, *, risk: RiskConfig = RiskConfig(),
                 currency: AccountCurrency | None = None) -> None:
        self.traders = dict(traders)
        self.journal = next(iter(self.traders.values())).journal  # its views share one connection and its writes
        self.search = search
        self.limits = AccountLimits(risk)
        self.currency = currency
        self.staged: Candidate | None = None
        calendars: dict[str, OneInstantCalendar] = {}
        for trader in self.traders.values():
            trader.calendar = calendars.setdefault(trader.calendar.name, OneInstantCalendar(trader.calendar))
        if currency is not None:
            for name, trader in self.traders.items():
                trader.to_account = lambda pips, name=name: currency.value(name, pips, self.mid)

    @classmethod
    def build(cls, candidate: Candidate, broker: Broker, journal: Journal, histories: Mapping[str, Bars], *,
              simulations: int = 50, risk: RiskConfig = RiskConfig(), control_dir: Path | None = None,
              spreads: Mapping[str, float | None] | None = None, granularity: str = "M1",
              on_order: Callable[[OrderResult], None] = lambda order: None,
              clock: Callable[[], float] = time.monotonic, currency: AccountCurrency | None = None,
              trees: TreeStore | None = None) -> "LiveDesk":
        """A trader per instrument of `histories` (in order), all on one search of `candidate`; raises
        JournalOwnershipError where the journal's rows cannot be told apart (Journal.views)."""
        names = list(histories)
        several = len(names) > 1
        search = shared_search(candidate, len(names), simulations)
        views = journal.views(names)  # each instrument reads and writes its own rows
        traders = {}
        for name in names:
            traders[name] = LiveTrader(
                name, broker, views[name], candidate, histories[name],
                simulations=simulations, risk=risk, control_dir=control_dir, spread_pips=(spreads or {}).get(name),
                granularity=granularity, on_order=on_order, clock=clock, search=search, ids_name_instrument=several,
                trees=trees)
        return cls(traders, search, risk=risk, currency=currency)

    # --- the model ----------------------------------------------------------------------

    @property
    def version(self) -> str:
        return next(iter(self.traders.values())).version

    @property
    def candidate(self) -> Candidate:
        return next(iter(self.traders.values())).candidate

    def stage(self, candidate: Candidate) -> None:
        """Called off the decision path (under the caller's lock); every trader swaps before the next bar."""
        self.staged = candidate
        for trader in self.traders.values():
            trader.staged = candidate

    def _swap_staged(self) -> None:
        candidate, self.staged = self.staged, None
        self.search = shared_search(candidate, len(self.traders), next(iter(self.traders.values())).simulations)
        for trader in self.traders.values():
            trader.staged = candidate
            trader.swap_staged(self.search)

    # --- per bar time ---------------------------------------------------------------------

    def mid(self, instrument: str) -> float | None:
        """The last close of a traded instrument (the currency conversion's price)."""
        trader = self.traders.get(instrument)
        return trader.last_close if trader is not None else None

    def positions(self) -> dict[str, int]:
        return {name: trader.position for name, trader in self.traders.items()}

    def on_bars(self, bars: Mapping[str, Bars], now: datetime,
                spreads: Mapping[str, float | None] | None = None) -> dict[str, Decision]:
        """Decide the bars of one bar time (instrument -> its bar): one search call for all roots."""
        started = time.perf_counter()
        if self.staged is not None:
            self._swap_staged()
        with self.journal.one_write():  # the rows of this bar time in as few statements as orders allow
            return self._decide(bars, now, spreads, started)

    def _decide(self, bars: Mapping[str, Bars], now: datetime, spreads: Mapping[str, float | None] | None,
                started: float) -> dict[str, Decision]:
        decisions: dict[str, Decision] = {}
        pending: dict[str, PendingRoot] = {}
        for name, bar in bars.items():
            out = self.traders[name].prepare(bar, now, (spreads or {}).get(name), started=started)
            if isinstance(out, Decision):
                decisions[name] = out
            else:
                pending[name] = out
        if not pending:
            return decisions
        roots = list(pending.values())
        result = self.search.run(np.concatenate([p.temporal for p in roots]), np.concatenate([p.static for p in roots]),
                                 np.concatenate([p.legal for p in roots]), np.concatenate([p.position for p in roots]),
                                 np.full(len(roots), SEARCH_SEED, np.uint64), add_noise=False)
        actions = result.actions(0.0)
        choices = {name: RootChoice.of(result, row, actions) for row, name in enumerate(pending)}

        def reduces(name: str) -> bool:
            trader = self.traders[name]
            return abs(trader.target_of(choices[name])) < abs(trader.position)

        for name in sorted(pending, key=lambda name: not reduces(name)):  # closes first: they free room
            decisions[name] = self.traders[name].act(pending[name], choices[name], self._limit(name))
        return {name: decisions[name] for name in bars}

    def _limit(self, name: str) -> Callable[[int], tuple[int, str | None]]:
        def limit(target_units: int) -> tuple[int, str | None]:
            allowed, why = self.limits.limit(name, target_units, self.positions())
            if why is not None:
                log.warning("%s: target %d clipped to %d by %s", name, target_units, allowed, why)
            return allowed, why
        return limit

    # --- the account ----------------------------------------------------------------------

    def account_status(self) -> dict:
        positions = self.positions()
        return {"total_units": sum(abs(u) for u in positions.values()),
                "exposure_units": exposure_units(positions),
                "max_total_units": self.limits.max_total_units,
                "max_currency_exposure_units": self.limits.max_currency_units,
                "account_currency": self.currency.currency if self.currency is not None else None}
