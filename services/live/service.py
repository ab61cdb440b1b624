"""The live loop in a thread, the model watcher, and the FastAPI app."""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import datetime, timezone

import pandas as pd
from fastapi import FastAPI

from services.live.config import LiveSettings
from services.live.metrics import LiveMetrics
from shared.core.calendar import calendar_named
from shared.core.instruments import get_instrument
from shared.env.actions import HOLD_BUY_SELL_CLOSE
from shared.live.brokers import Broker, OperationalBrokerError, TemporaryBrokerError, UnsupportedAccountError
from shared.live.journal import Journal
from shared.live.trader import LiveTrader, model_version
from shared.service.app import Heartbeat, service_app
from shared.service.watch import VolumeWatcher
from shared.volume.candidates import Candidate, CandidateError, check_market, load_candidate
from shared.volume.promotion import read_current

log = logging.getLogger("live")
RETRY_RECONCILE_SECONDS = 5.0
ACCOUNT_REFUSED_EXIT_CODE = 2  # a start that cannot succeed: the local runner gives up on it


class LiveService:
    def __init__(self, settings: LiveSettings, broker: Broker, feed, journal: Journal) -> None:
        self.settings = settings
        self.broker = broker
        self.feed = feed
        self.journal = journal
        self.metrics = LiveMetrics(HOLD_BUY_SELL_CLOSE.actions)
        self.trader: LiveTrader | None = None
        self.calendar = calendar_named(get_instrument(settings.instrument).calendar)
        self.status = "waiting_for_model"
        self.heartbeat = Heartbeat(self.metrics.heartbeat, settings.stall_seconds, log)
        self.stop = threading.Event()
        self.lock = threading.Lock()  # the journal connection is shared by the loop and the model watcher
        self.last_reconcile = 0.0
        self.last_reconcile_attempt = 0.0
        self.broker_error: str | None = None
        self.mismatches_counted = 0  # the trader's mismatches already in the metric
        self.feed_error: str | None = None

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
        if self.trader is not None and self.trader.candidate.sha256 == pointer.sha256:
            return None
        try:
            candidate = load_candidate(self.settings.checkpoint_dir / "promoted" / pointer.model, pointer.sha256)
            # the feature spec is checked by load_candidate; the market must be this service's too
            check_market(candidate, self.settings.instrument, self.settings.granularity)
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
                if self.trader is not None:
                    candidate = self.load_promoted()
                    if candidate is not None:
                        self.trader.stage(candidate)
                        self.metrics.swaps.labels(result="swapped").inc()
                        log.info("staged model %s; it trades from the next bar", model_version(candidate))
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
        self.start_trader(candidate)
        self.status = "checking_account"
        while not self.check_account():  # a hedging account is refused before anything is traded
            self.stop.wait(RETRY_RECONCILE_SECONDS)
            self.heartbeat.beat()
            if self.stop.is_set():
                return
        self.status = "reconciling"
        while not self.reconcile():  # no trading before the broker confirmed the position
            self.stop.wait(RETRY_RECONCILE_SECONDS)
            self.heartbeat.beat()
            if self.stop.is_set():
                return
        self.status = "trading"
        while not self.stop.is_set():
            self.heartbeat.beat()
            due = time.monotonic() - self.last_reconcile > s.reconcile_seconds
            # after a broker error or an order of unknown fate: re-read the broker before the next
            # decision (retried every few seconds), not after the reconcile timer
            retry = not self.trader.reconciled and time.monotonic() - self.last_reconcile_attempt > RETRY_RECONCILE_SECONDS
            if due or retry:
                self.reconcile()
            self.risk_timer()  # the kill switch and the loss limit act whether or not bars arrive
            try:
                bars = self.feed.next_bars()
            except Exception as error:  # noqa: BLE001 - a feed that fails must not stop the risk timer
                self.metrics.feed_errors.inc()
                self.feed_error = f"{type(error).__name__}: {error}"
                log.error("feed failed (%s); retrying in %.0fs", self.feed_error, s.poll_seconds)
                self.stop.wait(s.poll_seconds)
                continue
            self.feed_error = None
            if len(bars) == 0:
                if self.feed.exhausted:
                    self.status = "replay_finished"
                self.stop.wait(s.poll_seconds if s.feed == "oanda" else 0.5)
                continue
            for i in range(len(bars)):
                self.on_bar(bars[i : i + 1])

    def start_trader(self, candidate: Candidate) -> LiveTrader:
        """Build the trader on exactly the bars before the next decision: the feed first skips
        what the journal has decided. What the last run left unfinished is settled by the
        first reconciliation, before any decision."""
        s = self.settings
        with self.lock:
            last = self.journal.last_bar_ts()
        if last is not None:
            self.feed.skip_to_after(last.value)
        with self.lock:
            self.trader = LiveTrader(s.instrument, self.broker, self.journal, candidate, self.feed.history(),
                                     simulations=s.simulations, risk=s.risk, control_dir=s.checkpoint_dir / "control",
                                     spread_pips=s.spread_pips, granularity=s.granularity, on_order=self.count_order)
        self.metrics.model_loaded(self.trader.version)
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
        """The kill switch and daily-loss stop between bars, at the feed's clock."""
        t = self.trader
        now = self.now()
        # a flatten between bars is booked on the last bar seen (its id differs from that bar's
        # decision by purpose), so the next bar is still decided on its own
        bar_ns = int(t.bars.ts[-1]) if len(t.bars) else pd.Timestamp(now).floor("min").tz_convert("UTC").tz_localize(None).value
        try:
            with self.lock:
                t.risk_check(bar_ns, now)
        except (TemporaryBrokerError, OperationalBrokerError) as error:
            self.count_broker_error(error)
        self.update_risk_metrics(now)
        self.metrics.feed_clock.set(now.timestamp())
        self.metrics.market_open.set(1 if self.calendar.market_open(now) else 0)
        self.metrics.feed_overdue.set(t.feed_overdue_seconds(now))

    def update_risk_metrics(self, now: datetime) -> None:
        t, m = self.trader, self.metrics
        m.kill_switch.set(1 if (self.settings.checkpoint_dir / "control" / "live.flatten").exists() else 0)
        m.daily_loss_stop.set(1 if t.stopped_for_the_day(now) else 0)
        m.set_stop_state(t.stop_state())
        m.flatten_attempts.set(t.flatten_attempts)
        m.position.set(t.position)
        self.count_mismatches()

    def count_mismatches(self) -> None:
        """Mismatches found anywhere: at reconciliation, before a close, before a flatten."""
        new = self.trader.mismatches - self.mismatches_counted
        if new > 0:
            self.metrics.mismatches.inc(new)
            self.mismatches_counted = self.trader.mismatches

    def reconcile(self) -> bool:
        """Settle unfinished orders, then adopt the broker's position; True once trading may go on."""
        self.last_reconcile_attempt = time.monotonic()
        try:
            with self.lock:
                settled = self.trader.settle_unfinished()
                self.trader.reconcile()
        except (TemporaryBrokerError, OperationalBrokerError) as error:
            self.count_broker_error(error)
            self.trader.reconciled = False
            return False
        finally:
            self.metrics.orders_unknown.set(self.journal.unknown_orders())
        if settled:
            log.warning("settled %d orders of unknown fate: %s", len(settled), settled)
        self.count_mismatches()
        self.last_reconcile = time.monotonic()
        self.broker_error = None  # the broker answered every question: whatever failed before has recovered
        self.metrics.position.set(self.trader.position)
        return self.trader.reconciled

    def count_order(self, order) -> None:
        """Every order the trader sends, decisions and flattens (kill switch, loss limit) alike."""
        self.metrics.orders.labels(status=order.status.value.lower()).inc()

    def count_broker_error(self, error: Exception) -> None:
        kind = "operational" if isinstance(error, OperationalBrokerError) else "temporary"
        self.metrics.broker_errors.labels(kind=kind).inc()
        self.broker_error = f"{kind}: {error}"
        if self.trader is not None:
            self.trader.reconciled = False  # what the broker holds is read again before anything else
        log.error("broker error (%s): %s", kind, error)

    def on_bar(self, bar) -> None:
        t = self.trader
        now = self.now()
        self.metrics.last_bar.set(int(bar.ts[-1]) / 1e9)
        self.metrics.feed_clock.set(now.timestamp())
        self.metrics.market_open.set(1 if self.calendar.market_open(now) else 0)
        self.metrics.feed_overdue.set(0.0)  # the bar just came
        try:
            spread = self.feed.last_spread_pips if self.feed.last_spread_pips is not None else t.spread_pips
            with self.lock:
                decision = t.on_bar(bar, now, spread_pips=spread)
        except (TemporaryBrokerError, OperationalBrokerError) as error:
            self.count_broker_error(error)
            return
        m = self.metrics
        if decision.status == "skipped":
            m.skipped.labels(reason=decision.reason).inc()
        else:
            m.decisions.labels(action=decision.action.lower()).inc()
            m.latency.observe(decision.latency_seconds)
        m.orders_unknown.set(t.unknown_orders)
        m.position.set(t.position)
        m.unrealized.set(t.unrealized_pips())
        m.realized.set(t.realized_today)
        self.update_risk_metrics(now)
        m.model_loaded(t.version)

    def health(self) -> tuple[bool, dict]:
        age = self.heartbeat.age_seconds
        ok = age <= self.settings.stall_seconds
        return ok, {"status": "ok" if ok else "stalled", "loop": self.status, "heartbeat_age_seconds": round(age, 3)}

    def ready(self) -> tuple[bool, dict]:
        t = self.trader
        ok = t is not None and t.reconciled
        return ok, {"status": self.status, "model_loaded": t is not None, "reconciled": bool(t and t.reconciled)}

    def status_page(self) -> dict:
        page = {"service": "live", "status": self.status, "broker": self.settings.broker, "feed": self.settings.feed,
                "broker_error": self.broker_error, "feed_error": self.feed_error, "config": self.settings.effective()}
        if self.trader is not None:
            page.update(self.trader.status())
            page["realized_today_pips"] = round(self.trader.realized_today, 2)
        return page


def build_app(service: LiveService) -> FastAPI:
    return service_app("live", threads=[service.loop, service.watch_models,
                                        lambda: service.heartbeat.watchdog(service.stop)],
                       stop=service.stop, health=service.health, ready=service.ready,
                       registry=service.metrics.registry, status=service.status_page)
