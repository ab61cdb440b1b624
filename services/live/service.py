"""The live loop in a thread, the model watcher, and the FastAPI app.

The loop trades a desk (shared.live.desk): one trader per instrument of
LIVE_INSTRUMENTS (or the one LIVE_INSTRUMENT), one search call per bar time for
all of them. One instrument reads bars from its own feed, as it always did;
several read a DeskFeed that merges theirs by bar time."""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import datetime, timezone

import pandas as pd
from fastapi import FastAPI

from services.live.config import LiveSettings
from services.live.decisions_api import add_decision_api, prune_explanations, tree_store
from services.live.metrics import LiveMetrics
from services.live.pages import add_decision_pages
from services.live.report import account_page, instrument_page, update_instrument_metrics
from shared.core.calendar import calendar_named
from shared.core.instruments import get_instrument
from shared.data.bars import Bars
from shared.env.actions import HOLD_BUY_SELL_CLOSE
from shared.live.account import AccountCurrency, currency_legs
from shared.live.brokers import Broker, OperationalBrokerError, TemporaryBrokerError, UnsupportedAccountError
from shared.live.desk import LiveDesk
from shared.live.feeds import DeskFeed
from shared.live.journal import Journal, JournalOwnershipError
from shared.live.trader import Decision, LiveTrader
from shared.service.app import Heartbeat, service_app
from shared.service.watch import VolumeWatcher
from shared.volume.candidates import Candidate, CandidateError, check_market, load_candidate
from shared.volume.promotion import read_current
from shared.volume.snapshots import EVERY_SECONDS as SNAPSHOT_SECONDS
from shared.volume.snapshots import TableSnapshots

log = logging.getLogger("live")
RETRY_RECONCILE_SECONDS = 5.0
ACCOUNT_REFUSED_EXIT_CODE = 2  # a start that cannot succeed: the local runner gives up on it


class LiveService:
    def __init__(self, settings: LiveSettings, broker: Broker, feed, journal: Journal) -> None:
        self.settings = settings
        self.broker = broker
        self.feed = feed  # one instrument: its feed; several: a DeskFeed
        self.journal = journal
        self.instruments = settings.traded_instruments
        self.several = len(self.instruments) > 1
        self.metrics = LiveMetrics(HOLD_BUY_SELL_CLOSE.actions, self.instruments)
        self.desk: LiveDesk | None = None
        self.calendars = {name: calendar_named(get_instrument(name).calendar) for name in self.instruments}
        self.currency = self._account_currency()
        self.status = "waiting_for_model"
        self.heartbeat = Heartbeat(self.metrics.heartbeat, settings.stall_seconds, log)
        self.stop = threading.Event()
        self.lock = threading.Lock()  # the journal connection is shared by the loop and the model watcher
        self.last_reconcile = 0.0
        self.last_reconcile_attempt = 0.0
        self.broker_error: str | None = None
        self.mismatches_counted = 0  # the traders' mismatches already in the metric
        self.feed_error: str | None = None
        self.trees = tree_store(self)  # search trees of recent and order-sending decisions
        # the journal's tables as Parquet, readable while this process holds the journal
        self.snapshots = TableSnapshots(settings.live_dir / "export", ("decisions", "events", "decision_inputs"),
                                        every_seconds=SNAPSHOT_SECONDS)
        self.last_prune = 0.0

    def _account_currency(self) -> AccountCurrency | None:
        """P&L in the account currency where every instrument's converts (several instruments of
        your own market must: the settings refuse them otherwise), else in pips only, as always."""
        currency = self.settings.currency()
        if currency is None:
            log.info("account P&L in pips only: %s do not all convert into %s",
                     ", ".join(self.instruments), self.settings.account_currency)
        return currency

    @property
    def _shown_currency(self) -> str | None:
        """The account currency P&L is shown in; None where it does not convert (pips only)."""
        return self.settings.account_currency if self.currency is not None else None

    @property
    def traders(self) -> list[LiveTrader]:
        return list(self.desk.traders.values()) if self.desk is not None else []

    @property
    def trader(self) -> LiveTrader | None:
        """The first instrument's trader (the one instrument's)."""
        return self.traders[0] if self.desk is not None else None

    # --- models ---------------------------------------------------------------------

    def load_promoted(self) -> Candidate | None:
        try:
            pointer = read_current(self.settings.checkpoint_dir)
        except (ValueError, KeyError, TypeError, OSError) as error:
            # a torn or hand-edited CURRENT: the current model keeps trading, the watcher keeps watching
            self.metrics.pointer_errors.inc()
            log.error("promoted/CURRENT cannot be read; the current model keeps trading",
                      extra={"fields": {"error": f"{type(error).__name__}: {error}"[:300]}})
            return None
        if pointer is None:
            return None
        if self.desk is not None and self.desk.candidate.sha256 == pointer.sha256:
            return None
        try:
            candidate = load_candidate(self.settings.checkpoint_dir / "promoted" / pointer.model, pointer.sha256)
            candidate.promoted_metrics = dict(pointer.metrics or {})
            # the feature spec is checked by load_candidate; the market must be this service's too, every instrument
            for instrument in self.instruments:
                check_market(candidate, instrument, self.settings.granularity)
            return candidate
        except CandidateError as error:
            self.metrics.swaps.labels(result="refused").inc()
            log.error("refused promoted model %s: %s; the current model keeps trading", pointer.model, error)
            self.journal_event("model_refused", {"model": pointer.model, "reason": str(error)})
            return None

    def journal_event(self, kind: str, detail: dict) -> None:
        with self.lock:
            self.journal.event(kind, detail)

    def watch_models(self) -> None:
        """Off the decision path: load and verify a new CURRENT, then stage it."""
        watcher = VolumeWatcher(self.settings.checkpoint_dir / "promoted", ("CURRENT",)).start()
        try:
            while not self.stop.is_set():
                if self.desk is not None:
                    candidate = self.load_promoted()
                    if candidate is not None:
                        with self.lock:  # every instrument swaps at the same bar time
                            self.desk.stage(candidate)
                        self.metrics.swaps.labels(result="swapped").inc()
                        log.info("staged model %s; it trades from the next bar", candidate.version)
                watcher.wait(self.settings.model_wait_seconds, self.stop)
        finally:
            watcher.stop()

    # --- the loop ---------------------------------------------------------------------

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.feed.now_ns() / 1e9, timezone.utc)

    def loop(self) -> None:
        try:
            self._run()
        except BaseException:  # noqa: BLE001 - a crashed loop takes the process down
            log.exception("live loop failed")
            os._exit(1)

    def _wait_until(self, done) -> bool:
        """Call `done` every few seconds until it says True; False if stopped first."""
        while not done():
            self.stop.wait(RETRY_RECONCILE_SECONDS)
            self.heartbeat.beat()
            if self.stop.is_set():
                return False
        return True

    def _run(self) -> None:
        s = self.settings
        candidate = None
        while candidate is None and not self.stop.is_set():
            self.heartbeat.beat()
            candidate = self.load_promoted()
            if candidate is None:
                self.stop.wait(s.model_wait_seconds)
        if candidate is None:
            return
        try:
            self.start_trader(candidate)
        except JournalOwnershipError as error:  # no restart can fix it: a person decides whose rows they are
            log.error("refusing to start: %s", error)
            self.journal_event("journal_refused", {"reason": str(error)})
            os._exit(ACCOUNT_REFUSED_EXIT_CODE)
        self.status = "checking_account"
        if not self._wait_until(self.check_account):  # a hedging account is refused before anything is traded
            return
        self.status = "reconciling"
        if not self._wait_until(self.reconcile):  # no trading before the broker confirmed the positions
            return
        self.status = "trading"
        while not self.stop.is_set():
            self.heartbeat.beat()
            due = time.monotonic() - self.last_reconcile > s.reconcile_seconds
            # after a broker error or an order of unknown fate: re-read the broker before the next
            # decision (retried every few seconds), not after the reconcile timer
            retry = not all(t.reconciled for t in self.traders) and \
                time.monotonic() - self.last_reconcile_attempt > RETRY_RECONCILE_SECONDS
            if due or retry:
                self.reconcile()
            self.risk_timer()  # the kill switch and the loss limit act whether or not bars arrive
            try:
                times = self._next_bar_times()
            except Exception as error:  # noqa: BLE001 - a feed that fails must not stop the risk timer
                self.metrics.feed_errors.inc()
                self.feed_error = f"{type(error).__name__}: {error}"
                log.error("feed failed (%s); retrying in %.0fs", self.feed_error, s.poll_seconds)
                self.stop.wait(s.poll_seconds)
                continue
            self.feed_error = None
            if not times:
                if self.feed.exhausted:
                    self.status = "replay_finished"
                self.stop.wait(s.poll_seconds if s.feed == "oanda" else 0.5)
                continue
            for bars in times:
                self.on_bar(bars)

    def _next_bar_times(self) -> list[dict[str, Bars]]:
        """The bars the feed has, one mapping (instrument -> bar) per bar time."""
        if isinstance(self.feed, DeskFeed):
            bars = self.feed.next_bars()
            return [bars] if bars else []
        bars = self.feed.next_bars()
        return [{self.instruments[0]: bars[i : i + 1]} for i in range(len(bars))]

    def _journal_of(self, name: str) -> Journal:
        return self.journal.views(self.instruments)[name]

    def start_trader(self, candidate: Candidate) -> LiveTrader:
        """Build the desk on exactly the bars before each instrument's next decision: its feed
        first skips what the journal has decided for it. What the last run left unfinished is
        settled by the first reconciliation, before any decision. Returns the first trader."""
        s = self.settings
        histories = {}
        for name in self.instruments:
            with self.lock:
                last = self._journal_of(name).last_bar_ts()
            if isinstance(self.feed, DeskFeed):
                if last is not None:
                    self.feed.skip_to_after(name, last.value)
                histories[name] = self.feed.history(name)
            else:
                if last is not None:
                    self.feed.skip_to_after(last.value)
                histories[name] = self.feed.history()
        with self.lock:
            self.desk = LiveDesk.build(candidate, self.broker, self.journal, histories, simulations=s.simulations,
                                       risk=s.risk, control_dir=s.checkpoint_dir / "control",
                                       spreads={name: s.spread_pips for name in self.instruments},
                                       granularity=s.granularity, on_order=self.count_order, currency=self.currency,
                                       trees=self.trees)
        self.metrics.model_loaded(self.desk.version)
        return self.trader

    def check_account(self) -> bool:
        """True once the broker confirmed an account this service can trade; a refused one
        (hedging) ends the process with the reason: no restart can fix it."""
        try:
            self.broker.check_account()
            return True
        except UnsupportedAccountError as error:
            log.error("refusing the broker account: %s", error)
            self.journal_event("account_refused", {"reason": str(error)})
            os._exit(ACCOUNT_REFUSED_EXIT_CODE)
        except (TemporaryBrokerError, OperationalBrokerError) as error:
            self.count_broker_error(error)
            return False

    def risk_timer(self) -> None:
        """The kill switch and daily-loss stop between bars, at the feed's clock, per instrument."""
        now = self.now()
        for t in self.traders:
            # a flatten between bars is booked on the last bar seen (its id differs from that bar's
            # decision by purpose), so the next bar is still decided on its own
            bar_ns = int(t.bars.ts[-1]) if len(t.bars) else \
                pd.Timestamp(now).floor("min").tz_convert("UTC").tz_localize(None).value
            try:
                with self.lock:
                    t.risk_check(bar_ns, now)
            except (TemporaryBrokerError, OperationalBrokerError) as error:
                self.count_broker_error(error)
            name = t.instrument.name
            self.metrics.market_open.labels(instrument=name).set(1 if self.calendars[name].market_open(now) else 0)
            self.metrics.feed_overdue.labels(instrument=name).set(t.feed_overdue_seconds(now))
        self.update_risk_metrics(now)
        self.metrics.feed_clock.set(now.timestamp())
        try:  # explanations and copies: their failure (a full disk) must never stop trading
            prune_explanations(self)
            with self.lock:
                self.snapshots.write(self.journal.con, time.monotonic())
        except Exception as error:  # noqa: BLE001 - logged, and tried again at the next timer
            log.error("journal copies or retention failed: %s", error)

    def update_risk_metrics(self, now: datetime) -> None:
        m = self.metrics
        m.kill_switch.set(1 if (self.settings.checkpoint_dir / "control" / "live.flatten").exists() else 0)
        for t in self.traders:
            with self.lock:
                update_instrument_metrics(m, t, now, self._shown_currency)
        if self.desk is not None:
            positions = self.desk.positions()
            m.total_units.set(sum(abs(u) for u in positions.values()))
            exposure = self.desk.account_status()["exposure_units"]
            for currency in {c for name in self.instruments for c in currency_legs(name)}:
                m.exposure.labels(currency=currency).set(exposure.get(currency, 0))
        self.count_mismatches()

    def count_mismatches(self) -> None:
        """Mismatches found anywhere: at reconciliation, before a close, before a flatten."""
        found = sum(t.mismatches for t in self.traders)
        if found > self.mismatches_counted:
            self.metrics.mismatches.inc(found - self.mismatches_counted)
            self.mismatches_counted = found

    def reconcile(self) -> bool:
        """Settle unfinished orders, then adopt the broker's positions; True once trading may go on."""
        self.last_reconcile_attempt = time.monotonic()
        settled = []
        try:
            with self.lock:
                for t in self.traders:
                    settled += t.settle_unfinished()
                    t.reconcile()
        except (TemporaryBrokerError, OperationalBrokerError) as error:
            self.count_broker_error(error)
            return False
        finally:
            self.metrics.orders_unknown.set(self.journal.unknown_orders())
        if settled:
            log.warning("settled %d orders of unknown fate: %s", len(settled), settled)
        self.count_mismatches()
        self.last_reconcile = time.monotonic()
        self.broker_error = None  # the broker answered every question: whatever failed before has recovered
        for t in self.traders:
            self.metrics.position.labels(instrument=t.instrument.name).set(t.position)
        return all(t.reconciled for t in self.traders)

    def count_order(self, order) -> None:
        """Every order a trader sends, decisions and flattens (kill switch, loss limit) alike."""
        self.metrics.orders.labels(status=order.status.value.lower()).inc()

    def count_broker_error(self, error: Exception) -> None:
        kind = "operational" if isinstance(error, OperationalBrokerError) else "temporary"
        self.metrics.broker_errors.labels(kind=kind).inc()
        self.broker_error = f"{kind}: {error}"
        for t in self.traders:
            t.reconciled = False  # what the broker holds is read again before anything else
        log.error("broker error (%s): %s", kind, error)

    def on_bar(self, bars: Bars | dict[str, Bars]) -> dict[str, Decision]:
        """The bars of one bar time (one instrument: its bar), decided with one search."""
        if not isinstance(bars, dict):
            bars = {self.instruments[0]: bars}
        now = self.now()
        m = self.metrics
        spreads = self.feed.last_spread_pips if isinstance(self.feed, DeskFeed) else \
            {self.instruments[0]: self.feed.last_spread_pips}
        for name, bar in bars.items():
            m.last_bar.labels(instrument=name).set(int(bar.ts[-1]) / 1e9)
            m.market_open.labels(instrument=name).set(1 if self.calendars[name].market_open(now) else 0)
            m.feed_overdue.labels(instrument=name).set(0.0)  # the bar just came
            if spreads.get(name) is None:
                spreads[name] = self.desk.traders[name].spread_pips
        m.feed_clock.set(now.timestamp())
        try:
            with self.lock:
                decisions = self.desk.on_bars(bars, now, spreads)
        except (TemporaryBrokerError, OperationalBrokerError) as error:
            self.count_broker_error(error)
            return {}
        latencies = []
        for name, decision in decisions.items():
            if decision.status == "skipped":
                m.skipped.labels(instrument=name, reason=decision.reason).inc()
            else:
                m.decisions.labels(instrument=name, action=decision.action.lower()).inc()
                latencies.append(decision.latency_seconds)
        if latencies:  # one bar time, one search: bar in to the last order out
            m.latency.observe(max(latencies))
        m.orders_unknown.set(sum(t.unknown_orders for t in self.traders))
        for name in bars:
            t = self.desk.traders[name]
            m.unrealized.labels(instrument=name).set(t.unrealized_pips())
        self.update_risk_metrics(now)
        m.model_loaded(self.desk.version)
        return decisions

    def health(self) -> tuple[bool, dict]:
        age = self.heartbeat.age_seconds
        ok = age <= self.settings.stall_seconds
        return ok, {"status": "ok" if ok else "stalled", "loop": self.status, "heartbeat_age_seconds": round(age, 3)}

    def ready(self) -> tuple[bool, dict]:
        reconciled = self.desk is not None and all(t.reconciled for t in self.traders)
        return reconciled, {"status": self.status, "model_loaded": self.desk is not None, "reconciled": reconciled}

    def status_page(self) -> dict:
        page = {"service": "live", "status": self.status, "broker": self.settings.broker, "feed": self.settings.feed,
                "broker_error": self.broker_error, "feed_error": self.feed_error, "config": self.settings.effective()}
        if self.desk is None:
            return page
        now = self.now()
        with self.lock:
            if not self.several:  # one instrument: its status at the top level, as always
                page.update(instrument_page(self.trader, now, self._shown_currency))
                return page
            page["model_version"] = self.desk.version
            page["instruments"] = {t.instrument.name: instrument_page(t, now, self._shown_currency)
                                   for t in self.traders}
            page["account"] = account_page(self.desk, self.broker, now)
        return page


def build_app(service: LiveService) -> FastAPI:
    app = service_app("live", threads=[service.loop, service.watch_models,
                                       lambda: service.heartbeat.watchdog(service.stop)],
                      stop=service.stop, health=service.health, ready=service.ready,
                      registry=service.metrics.registry, status=service.status_page)
    add_decision_pages(app)  # first: /decisions/view before /decisions/{decision_id}
    add_decision_api(app, service)
    return app

