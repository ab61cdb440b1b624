"""One decision per completed bar: features -> search -> order -> journal.

Features come from the same numba code as training, computed over a trailing
buffer long enough (WARMUP_BARS + window) that every value equals the batch
feature store's on the same bars. The broker is the truth for the position:
the trader reconciles at start (and refuses to trade until that succeeds), on
a timer, and immediately before any order that reduces the position; a
position the broker holds on both sides (a hedging account) is never traded.

The loss caps come first (shared.live.risk: kill switch, daily loss limit,
stalled feed; they also run on the service's timer). Then
market closed (Sunday 17:00 to Friday 17:00 New York is open), stale data (the
last bar more than `stale_bars` old), a spread above the limit. A new model is
staged off the decision path and swapped in between bars.

A decision is two halves so that a desk of several instruments (shared.live.desk)
can search all their roots in one call: `prepare` (the bar into the buffer, the
guards, the observation: a skip, or a root waiting for its search) and `act` (the
searched action, clipped by the risk limits, journaled, then sent). `on_bar` is
the two with a one-root search between them.

Fills are booked as the broker booked them (its units, its price) through the
one accounting (shared.core.accounting), orders settled later included, so the
daily loss and a restart see their realised P&L. An order the broker had
before this send (a lost journal replaying old bars) is never booked as new:
the broker's position is reconciled instead.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from shared.config import RiskConfig
from shared.core.accounting import mark
from shared.core.bar_sizes import bar_phase_minutes, check_granularity, phase_distance_minutes
from shared.core.calendar import NEW_YORK, calendar_named, market_open, trading_day_start
from shared.core.feature_spec import FEATURE_SPEC_VERSION, WARMUP_BARS
from shared.core.instruments import get_instrument
from shared.data.bars import NS_PER_MINUTE, Bars
from shared.env.actions import ACTION_SPACES
from shared.features.micro import on_instrument_scale, temporal_features
from shared.features.position import position_features
from shared.live.brokers import Broker, OrderResult
from shared.live.deciders import Decider, StrategistEpisode, forecast_root, make_decider, model_window_bars
from shared.live.journal import DecisionInputs, DecisionRow, Journal
from shared.live.provenance import TREE_DEPTH, TreeStore, input_hash, root_q_values
from shared.live.regime_guard import regime_guard
from shared.live.risk import LossCaps
from shared.search import SearchOutput
from shared.volume.candidates import Candidate

__all__ = ["NEW_YORK", "SEARCH_SEED", "Decision", "LiveTrader", "PendingRoot", "RootChoice", "buffer_bars", "market_open",
           "trading_day_start"]

log = logging.getLogger("live")


# live searches greedily (no root noise) with this seed at every root; a replay (shared.live.explain)
# and validation's evaluation use the same
SEARCH_SEED = 0


def buffer_bars(window_bars: int) -> int:
    """Bars kept for the features: every value equals the batch store's on the last `window_bars`."""
    return WARMUP_BARS + window_bars + 64


@dataclass
class Decision:
    bar_ts: int
    action: str
    status: str
    reason: str | None
    latency_seconds: float
    order: OrderResult | None = None


@dataclass
class PendingRoot:
    """A bar that passed the guards, waiting for its search: one root of a (batched) search."""
    ts: int
    started: float           # perf_counter seconds when its bar came in
    temporal: np.ndarray     # [1, W, 9] float32
    static: np.ndarray       # [1, 6] float32
    legal: np.ndarray        # [1, A] bool
    position: np.ndarray     # [1] int8, net units
    buffer_first_ts: int     # the feature buffer's first bar (ns): what rebuilds the input
    buffer_bars: int


@dataclass(frozen=True)
class RootChoice:
    """What the search says for one root, and the tree it built (JSON, the search crate's)."""
    action: int
    visit_counts: list[int]
    root_value: float
    prior: list[float]
    network_value: float
    tree_json: str

    @classmethod
    def of(cls, result: SearchOutput, row: int, actions: np.ndarray) -> "RootChoice":
        # the tree now: the search's arena is reused by the next bar's search
        return cls(int(actions[row]), result.visit_counts[row].tolist(), float(result.root_values[row]),
                   result.prior[row].tolist(), float(result.network_value[row]),
                   result.search.tree_json(row, TREE_DEPTH))


# the account's limit on a target (the desk's caps across instruments): target -> (allowed target, why clipped)
TargetLimit = Callable[[int], "tuple[int, str | None]"]


class LiveTrader(LossCaps):
    def __init__(self, instrument: str, broker: Broker, journal: Journal, candidate: Candidate, history: Bars, *,
                 simulations: int = 50, risk: RiskConfig = RiskConfig(), control_dir: Path | None = None,
                 spread_pips: float | None = None, granularity: str = "M1",
                 on_order: Callable[[OrderResult], None] = lambda order: None,
                 clock: Callable[[], float] = time.monotonic, search: Decider | None = None,
                 ids_name_instrument: bool = False, trees: TreeStore | None = None) -> None:
        self.instrument = get_instrument(instrument)
        self.calendar = calendar_named(self.instrument.calendar)  # market hours, the daily stop's day
        self.bar_ns = check_granularity(granularity) * NS_PER_MINUTE  # a bar is decided when it closes
        self.broker = broker
        self.journal = journal
        self.risk = risk
        self.control_dir = control_dir
        self.simulations = simulations
        self.on_order = on_order  # every order's result, decisions, flattens and settled orders alike (metrics)
        self.clock = clock        # the flatten backoff's (monotonic seconds)
        self.ids_name_instrument = ids_name_instrument  # a desk's instruments share one account's client ids
        self.spread_pips = self.instrument.spread_pips if spread_pips is None else spread_pips
        self.trees = trees  # where search trees are kept (shared.live.provenance); None: not kept
        self._install(candidate, search)  # the model version names the client ids; its window, the bars kept
        self.bars = history[-buffer_bars(self.window_bars):]
        journal.record_bars(self.instrument.name, self.bars)  # what rebuilds the first decisions' inputs
        self.bars_misaligned = self._misaligned()
        if hasattr(broker, "mark") and len(self.bars):  # the paper broker's market is the feed's
            broker.mark(float(self.bars.close[-1]), int(self.bars.ts[-1]) + self.bar_ns, instrument=self.instrument.name)
        self._init_position()  # the one position accounting, as the environment and the paper broker
        self._init_caps()
        self.staged: Candidate | None = None
        self.last_regime: dict | None = None
        last = journal.last_bar_ts()
        self.last_decided_ns = last.value if last is not None else -1  # never decide a bar twice, restarts included

    # --- the model -------------------------------------------------------------------

    def _install(self, candidate: Candidate, search: Decider | None = None) -> None:
        """`search`: one shared by several traders of the same model (a desk), else one of its own."""
        self.candidate = candidate
        self.version = candidate.version
        self.space = ACTION_SPACES[candidate.env_config.action_space]
        # a model with a longer window than the last one warms up until the feed has brought its bars
        self.window_bars = model_window_bars(candidate)
        self.search = search if search is not None else make_decider(candidate, 1, self.simulations)
        # a Strategist's episode so far (shared.live.deciders): a new model begins a new one
        self.strategist = StrategistEpisode(candidate, self.space.max_units) if candidate.family == "dt" else None

    def _misaligned(self) -> str | None:
        """Why the feed's bars are not the model's (they open elsewhere in their period: OANDA's daily
        bars at 17:00 New York against a file's at 00:00 UTC), or None. More than an hour apart: a
        clock change moves New York's 17:00 by an hour against UTC."""
        trained = self.candidate.payload.get("bar_phase_minutes")
        minutes = self.bar_ns // NS_PER_MINUTE
        if trained is None or minutes <= 1 or len(self.bars) < 2:
            return None
        here = bar_phase_minutes(self.bars.ts, minutes)
        if phase_distance_minutes(here, int(trained), minutes) <= 60:
            return None
        why = (f"the feed's bars open at minute {here} of their period, the model's training bars at minute "
               f"{trained}: it would decide on bars it never saw; align the feed or retrain on its bars")
        log.error("standing aside: %s", why)
        self.journal.event("bars_misaligned", {"feed_phase_minutes": here, "model_phase_minutes": int(trained)})
        return why

    def stage(self, candidate: Candidate) -> None:
        """Called off the decision path; the swap happens before the next bar."""
        self.staged = candidate

    # --- per bar ---------------------------------------------------------------------

    def swap_staged(self, search: Decider | None = None) -> None:
        """Install the staged model (between bars); `search`: the desk's, shared with the other instruments."""
        old = self.version
        self._install(self.staged, search)
        self.staged = None
        self.bars_misaligned = self._misaligned()
        self.journal.event("model_swap", {"from": old, "to": self.version})
        log.info("model swapped between bars: %s -> %s", old, self.version)

    def on_bar(self, bar: Bars, now: datetime, spread_pips: float | None = None) -> Decision:
        with self.journal.one_write():  # the bar, the decision and its inputs: one transaction
            pending = self.prepare(bar, now, spread_pips)
            if isinstance(pending, Decision):
                return pending
            result = self.search.run(pending.temporal, pending.static, pending.legal, pending.position,
                                     np.full(1, SEARCH_SEED, np.uint64), add_noise=False)
            return self.act(pending, RootChoice.of(result, 0, result.actions(0.0)))

    def prepare(self, bar: Bars, now: datetime, spread_pips: float | None = None, *,
                started: float | None = None) -> Decision | PendingRoot:
        """The first half of a decision: the bar into the buffer, the model swap, the guards and
        the observation. A Decision when the bar is not decided (a guard, decided before), else
        the root to search; the bar counts as decided from here (never twice)."""
        started = time.perf_counter() if started is None else started
        self.bars = Bars(*(np.concatenate([a, b])[-buffer_bars(self.window_bars):] for a, b in zip(
            (self.bars.ts, self.bars.open, self.bars.high, self.bars.low, self.bars.close, self.bars.volume),
            (bar.ts, bar.open, bar.high, bar.low, bar.close, bar.volume))))
        self.journal.record_bars(self.instrument.name, bar)
        ts = int(bar.ts[-1])
        if hasattr(self.broker, "mark"):
            self.broker.mark(float(bar.close[-1]), ts + self.bar_ns, instrument=self.instrument.name)
        if self.position != 0:
            mark(self.book, self.instrument.scale_prices(np.array([float(bar.close[-1])])), self.instrument.point)
        if self.staged is not None:
            self.swap_staged()

        skip = self._guard(ts, now, spread_pips)
        if skip is not None:
            return self._skip(ts, skip, started)
        if ts <= self.last_decided_ns:  # decided before (a restart, a replayed bar): never twice
            return Decision(ts, "HOLD", "duplicate", "this bar was already decided", time.perf_counter() - started)
        self.last_decided_ns = ts
        temporal, static = self.observation()
        position = np.array([self.position], np.int8)
        return PendingRoot(ts, started, temporal, static, self.space.legal_mask(position), position,
                           int(self.bars.ts[0]), len(self.bars))

    def _guard(self, ts: int, now: datetime, spread_pips: float | None) -> str | None:
        if not self.reconciled:  # at start, after any broker error, while an order's fate is unknown
            if self.both_sides_open:
                return "both_sides_open"
            return "order_unknown" if self.unknown_orders else "not_reconciled"
        stop = self.risk_check(ts, now, bar_close=float(self.bars.close[-1]))
        if stop is not None:
            return stop
        if self.bars_misaligned is not None:  # never decide on bars the model did not learn on
            return "bars_misaligned"
        if not self.calendar.market_open(now):
            return "market_closed"
        age_bars = (pd.Timestamp(now).value - (ts + self.bar_ns)) / self.bar_ns
        if age_bars > self.risk.stale_bars:
            return "stale_data"
        if spread_pips is not None and spread_pips > self.risk.max_spread_pips:
            return "spread_too_wide"
        if self.position not in self.space.positions:  # adopted from the broker: the model cannot act on it
            return "position_outside_action_space"
        if len(self.bars) < WARMUP_BARS + self.window_bars:
            return "warming_up"
        return None

    def _skip(self, ts: int, reason: str, started: float, row: DecisionRow | None = None) -> Decision:
        client_id = self._client_id(ts)
        if row is not None:
            self.journal.record(dataclasses.replace(row, order_units=0, status="skipped", reason=reason))
        elif ts > self.last_decided_ns:
            self.last_decided_ns = ts
            self.journal.record(DecisionRow(client_id, pd.Timestamp(ts), self.version, None, None, None, "HOLD",
                                            self.position, 0, "skipped", reason))
        return Decision(ts, "HOLD", "skipped", reason, time.perf_counter() - started)

    def observation(self) -> tuple[np.ndarray, np.ndarray]:
        if self.strategist is not None:  # the Strategist's episode goes on, or a new one begins
            return self.strategist.root(self.bars, self.instrument, float(self.book.equity_pips()[0]), self.position)
        if self.candidate.family == "tft":  # a forecaster's inputs (shared.live.deciders)
            return forecast_root(self.bars, self.instrument, self.candidate.config, self.bar_ns // NS_PER_MINUTE,
                                 self.spread_pips)
        window = temporal_features(*on_instrument_scale(self.bars, self.instrument))[-self.window_bars:][None]
        static = position_features(self.book, self.space.max_units)
        return np.ascontiguousarray(window, np.float32), static

    def target_of(self, choice: RootChoice) -> int:
        """The position the chosen action leads to, within this instrument's max_units."""
        target = int(self.space.next_position(np.array([self.position], np.int8), np.array([choice.action]))[0])
        return int(np.clip(target, -self.risk.max_units, self.risk.max_units))

    def act(self, pending: PendingRoot, choice: RootChoice, limit: TargetLimit | None = None) -> Decision:
        """The second half: the searched action as a target, held back by the regime guard and clipped
        by `limit` (the account's caps across instruments; each reason is journaled), journaled, then
        sent."""
        ts, started = pending.ts, pending.started
        if self.strategist is not None:  # the action it took: read by its next steps
            self.strategist.chose(choice.action)
        client_id = self._client_id(ts)
        target = self.target_of(choice)
        target, clipped, regime = regime_guard(self.risk, self.candidate, self.bars, self.instrument.calendar,
                                               self.position, target)
        self.last_regime = regime or self.last_regime
        if clipped is not None:
            self.journal.event("regime_guard", {"reason": clipped, "action": self.space.actions[choice.action],
                                                "position": self.position, "allowed_target": target})
        capped = None
        if limit is not None:
            target, capped = limit(target)
        clipped = capped or clipped
        units = target - self.position
        action = self.space.actions[choice.action]
        inputs = self._inputs(pending, choice)
        row = DecisionRow(client_id, pd.Timestamp(ts), self.version, inputs.input_hash[:16],
                          choice.visit_counts, choice.root_value, action, self.position, units,
                          "decided" if units else "no_order", clipped)
        if capped is not None:
            self.journal.event("account_cap", {"reason": capped, "action": action, "position": self.position,
                                               "allowed_target": target})
        if not units:
            # nothing to act on: the decision is made; record it (before the next bar) and return
            latency = time.perf_counter() - started
            self.journal.record(row, inputs)
            self._keep_tree(client_id, choice, sent_order=False)
            return Decision(ts, action, "no_order", clipped, latency)
        reducing = self.position != 0 and (units > 0) != (self.position > 0)
        if reducing and not self._agree(self.broker.snapshot(self.instrument.name), "before a closing order"):
            # a hand close or a margin closeout since the last read: decided on a position that is gone
            return self._skip(ts, "position_changed_at_broker", started, row)
        self.journal.record(row, inputs)  # an order is about to leave: the journal hears first, and why
        # a close never opens the other way; a flip (sized spaces) is one order, sent on the position just read
        order = self._send(client_id, units, reduce_only=reducing and abs(units) <= abs(self.position))
        decision = Decision(ts, action, order.status.value, order.reason or clipped, time.perf_counter() - started,
                            order)
        self._keep_tree(client_id, choice, sent_order=True)  # after the order: not on its path
        return decision

    def _inputs(self, pending: PendingRoot, choice: RootChoice) -> DecisionInputs:
        """What the search saw and said (shared.live.provenance): enough to replay it."""
        tree = json.loads(choice.tree_json)
        return DecisionInputs(
            self.instrument.name, self.candidate.sha256, self.candidate.episode,
            self.candidate.payload.get("feature_spec_version", FEATURE_SPEC_VERSION),
            input_hash(pending.temporal, pending.static), pd.Timestamp(pending.buffer_first_ts), pending.buffer_bars,
            self.window_bars, pending.static[0].tolist(),
            {**self.search.config.to_dict(), "seed": SEARCH_SEED, "add_noise": False},
            choice.prior, root_q_values(tree, len(choice.prior)), choice.network_value, choice.action)

    def _keep_tree(self, client_id: str, choice: RootChoice, sent_order: bool) -> None:
        if self.trees is None:
            return
        try:
            self.trees.put(client_id, choice.tree_json, sent_order)
        except OSError as error:  # an explanation lost, never a decision
            log.warning("search tree of %s not kept: %s", client_id, error)

    @property
    def last_close(self) -> float | None:
        return float(self.bars.close[-1]) if len(self.bars) else None

    def status(self) -> dict:
        return {
            "instrument": self.instrument.name, "position_units": self.position, "entry_price": self.entry_price,
            "unrealized_pips": round(self.unrealized_pips(), 2), "model_version": self.version,
            "reconciled": self.reconciled, "reconciliation_mismatches": self.mismatches,
            "both_sides_open": self.both_sides_open, "bars_misaligned": self.bars_misaligned,
            "last_bar": str(pd.Timestamp(int(self.bars.ts[-1]))) if len(self.bars) else None,
            "stopped_for_the_day": str(self.stopped_day) if self.stopped_day is not None else None,
            "stopped_until_utc": str(self.calendar.next_trading_day_start(self.stopped_day.tz_localize("UTC")))
                                 if self.stopped_day is not None else None,
            "loss_cap": self.stop_reason, "loss_cap_state": self.stop_state(), "flatten_attempts": self.flatten_attempts,
            "unknown_orders": self.unknown_orders,
            "regime_guard": self.last_regime,  # the regime named at the last guarded decision (None: none yet)
            "broker": self.broker.name, "at": datetime.now(timezone.utc).isoformat(),
        }
