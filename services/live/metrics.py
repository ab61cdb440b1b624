"""Prometheus metrics of the live service (micro_live_*).

What belongs to one instrument carries an `instrument` label (its position, P&L, bars, market
hours, loss caps, decisions, skipped bars), one instrument or several; what belongs to the
service or the account has none (orders, broker errors, the decision latency of one bar time for
all instruments together, the model)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, disable_created_metrics

disable_created_metrics()

# The latency target is 25 ms: a bucket edge sits exactly there.
LATENCY_BUCKETS = (0.005, 0.01, 0.015, 0.02, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class LiveMetrics:
    def __init__(self, actions: tuple[str, ...], instruments: tuple[str, ...] = ()) -> None:
        r = self.registry = CollectorRegistry()
        self.decisions = Counter("micro_live_decisions", "Decisions by action", ["instrument", "action"], registry=r)
        for instrument in instruments:
            for action in actions:
                self.decisions.labels(instrument=instrument, action=action.lower())
        self.skipped = Counter("micro_live_skipped_bars", "Bars not traded, by reason", ["instrument", "reason"],
                               registry=r)
        self.latency = Histogram("micro_live_decision_latency_seconds", "Bar in to order out (all instruments of "
                                 "the bar time: one search)", buckets=LATENCY_BUCKETS, registry=r)
        self.orders = Counter("micro_live_orders", "Orders by status", ["status"], registry=r)
        for status in ("FILLED", "CANCELLED", "REJECTED", "UNKNOWN"):
            self.orders.labels(status=status.lower())
        self.orders_unknown = Gauge("micro_live_orders_unknown", "Orders sent whose fate the broker has not told; "
                                    "no decisions while above 0", registry=r)
        self.position = Gauge("micro_live_position_units", "Net position (broker truth)", ["instrument"], registry=r)
        self.unrealized = Gauge("micro_live_unrealized_pips", "Open P&L in pips", ["instrument"], registry=r)
        self.realized = Gauge("micro_live_realized_today_pips", "Closed P&L this trading day (from 17:00 New York) in pips",
                              ["instrument"], registry=r)
        self.realized_account = Gauge("micro_live_realized_today_account_currency",
                                      "Closed P&L this trading day in the account currency (LIVE_ACCOUNT_CURRENCY, the "
                                      "currency label), each fill converted when booked", ["instrument", "currency"],
                                      registry=r)
        self.total_units = Gauge("micro_live_account_units", "Sum of |units| over the instruments (the account cap's "
                                 "measure)", registry=r)
        self.exposure = Gauge("micro_live_currency_exposure_units", "Net units per currency over the instruments "
                              "(long 1 EURUSD: +1 EUR, -1 USD)", ["currency"], registry=r)
        # registered when the first model is loaded: before that there is no model to describe
        self._model: Info | None = None
        self.broker_errors = Counter("micro_live_broker_errors", "Broker errors by kind", ["kind"], registry=r)
        for kind in ("temporary", "operational"):
            self.broker_errors.labels(kind=kind)
        self.feed_errors = Counter("micro_live_feed_errors", "Feed requests that failed", registry=r)
        self.feed_clock = Gauge("micro_live_feed_clock_timestamp_seconds",
                                "The feed's clock: wall time live, the replayed market's time in replay", registry=r)
        self.last_bar = Gauge("micro_live_last_bar_timestamp_seconds", "Open time of the last bar seen", ["instrument"],
                              registry=r)
        self.market_open = Gauge("micro_live_market_open", "1 while the instrument's market is open (its calendar)",
                                 ["instrument"], registry=r)
        self.feed_overdue = Gauge("micro_live_feed_overdue_seconds",
                                  "How long the next bar of the model's size is overdue by the feed's clock (the "
                                  "stalled-feed flatten's measure; 0 while the market is closed)", ["instrument"],
                                  registry=r)
        self.mismatches = Counter("micro_live_reconciliation_mismatches", "Broker positions we did not expect", registry=r)
        self.swaps = Counter("micro_live_model_swaps", "Model swaps by result", ["result"], registry=r)
        for result in ("swapped", "refused"):
            self.swaps.labels(result=result)
        self.kill_switch = Gauge("micro_live_kill_switch", "1 while control/live.flatten exists", registry=r)
        self.daily_loss_stop = Gauge("micro_live_daily_loss_stop", "1 while stopped for the day", ["instrument"],
                                     registry=r)
        self.stop_state = Gauge("micro_live_stop_state", "1 for the loss caps' state: off; stopping (kill switch, "
                                "daily stop or stale-feed flatten on, the broker not yet flat); stopped (flat)",
                                ["instrument", "state"], registry=r)
        for instrument in instruments:
            self.set_stop_state(instrument, "off")
        self.flatten_attempts = Gauge("micro_live_flatten_attempts", "Flatten orders sent since the start",
                                      ["instrument"], registry=r)
        self.pointer_errors = Counter("micro_live_model_pointer_errors", "promoted/CURRENT files that could not be read",
                                      registry=r)
        self.heartbeat = Gauge("micro_live_loop_heartbeat_timestamp_seconds", "When the loop last ran", registry=r)

    def set_stop_state(self, instrument: str, state: str) -> None:
        for name in ("off", "stopping", "stopped"):
            self.stop_state.labels(instrument=instrument, state=name).set(1 if name == state else 0)

    def model_loaded(self, version: str) -> None:
        """micro_live_model_info{version=...}: only once a model is loaded."""
        if self._model is None:
            self._model = Info("micro_live_model", "The model trading now", registry=self.registry)
        self._model.info({"version": version})
