"""Validating a candidate: deterministic replay on validation sessions, its
statistics, Monte Carlo and the raw-network, random and flat baselines beside
it. No I/O here: the report and its writers are shared.validation.report, the
gate shared.validation.gate; the validation service schedules and promotes."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Callable

import numpy as np

from shared.config import ValidationConfig
from shared.core.calendar import MarketCalendar, calendar_named
from shared.core.errors import StopError
from shared.core.instruments import get_instrument
from shared.env import TradingEnv
from shared.env.rollout import Evaluation, evaluate, flat_policy, random_policy
from shared.features.store import FeatureSet
from shared.search import NetworkSearch, raw_network_policy, search_policy
from shared.validation.forecaster import forecast_policy
from shared.validation.regimes import regime_results
from shared.validation.report import ValidationReport
from shared.validation.statistics import TradeStats, deflated_sharpe, monte_carlo, trade_stats
from shared.validation.strategist import strategist_policy
from shared.volume.candidates import Candidate


class ValidationTimeout(StopError, RuntimeError):
    pass


def _daily_pnl(calendar: MarketCalendar, features: FeatureSet, starts: np.ndarray, evaluation: Evaluation) -> np.ndarray:
    """Session P&L summed by the trading day each session starts in (a session longer than a day,
    at H4 or D, counts on its first day)."""
    _, index = np.unique(calendar.trading_days(features.bars.ts[starts]), return_inverse=True)
    return np.bincount(index, weights=evaluation.episode_pnl_pips)


def _days_traded(calendar: MarketCalendar, features: FeatureSet, starts: np.ndarray, episode_bars: int) -> int:
    """Trading days the sessions cover, every bar of them: what a year of trades is counted against."""
    bars = (starts[:, None] + np.arange(episode_bars)).ravel()
    return max(1, len(np.unique(calendar.trading_days(features.bars.ts[bars]))))


class Portfolio:
    """How an evaluation over one or several instruments' sessions is scored. Each instrument in its
    own pips on its own calendar; the portfolio in the set's common unit (pip_weights,
    shared.features.portfolio), its days the instruments' trading days by number, its year the
    longest of their calendars'. One instrument: the portfolio is that instrument, exactly."""

    def __init__(self, features: FeatureSet, starts: np.ndarray, episode_bars: int) -> None:
        self.features, self.starts, self.episode_bars = features, starts, episode_bars
        self.names = features.instrument_names
        self.owner = features.instrument_of(starts)
        self.calendars = [calendar_named(get_instrument(name).calendar) for name in self.names]
        self.weights = np.asarray(features.pip_weights or [1.0] * len(self.names))

    @property
    def single(self) -> bool:
        return len(self.names) == 1

    def instrument(self, evaluation: Evaluation, i: int) -> TradeStats:
        mask = self.owner == i
        part, calendar = evaluation.sessions(mask), self.calendars[i]
        return trade_stats(part.trades_pips, _daily_pnl(calendar, self.features, self.starts[mask], part),
                           part.action_counts, part.position_changes, calendar.days_per_year)

    def weighted_trades(self, evaluation: Evaluation) -> np.ndarray:
        return evaluation.trades_pips * self.weights[self.owner[evaluation.trade_session]]

    def weighted_sessions(self, evaluation: Evaluation) -> np.ndarray:
        return evaluation.episode_pnl_pips * self.weights[self.owner]

    def stats(self, evaluation: Evaluation) -> TradeStats:
        if self.single:
            return self.instrument(evaluation, 0)
        days = np.concatenate([calendar.trading_days(self.features.bars.ts[self.starts[self.owner == i]])
                               for i, calendar in enumerate(self.calendars)])
        pnl = np.concatenate([self.weighted_sessions(evaluation)[self.owner == i] for i in range(len(self.names))])
        _, index = np.unique(days, return_inverse=True)
        return trade_stats(self.weighted_trades(evaluation), np.bincount(index, weights=pnl), evaluation.action_counts,
                           evaluation.position_changes, max(c.days_per_year for c in self.calendars))

    def days_traded(self) -> int:
        return max(_days_traded(calendar, self.features, self.starts[self.owner == i], self.episode_bars)
                   for i, calendar in enumerate(self.calendars) if (self.owner == i).any())

    def per_instrument(self, searched: Evaluation, raw: Evaluation | None) -> dict[str, dict]:
        """Each instrument's results in its own pips, the search beside the raw network (where there is one)."""
        out = {}
        for i, name in enumerate(self.names):
            stats = self.instrument(searched, i)
            out[name] = {"sessions": int((self.owner == i).sum()), "pip_weight": float(self.weights[i]),
                         "stats": stats.to_dict()}
            if raw is not None:
                raw_pips = self.instrument(raw, i).total_pips
                out[name].update(raw_network_pips=raw_pips, search_vs_raw=_ahead(stats.total_pips, raw_pips))
        return out


def _ahead(search: float, raw: float) -> str:
    return "tie" if abs(search - raw) < 1e-9 else ("ahead" if search > raw else "behind")


def validate(candidate: Candidate, features: FeatureSet, config: ValidationConfig = ValidationConfig(), *,
             progress: Callable[[float], None] | None = None, trials: int = 1,
             split: str = "validation", rules: dict[str, tuple[float, ...]] | None = None) -> ValidationReport:
    """Replay the candidate greedily (no noise, fixed seeds) and score it, per instrument and as a
    portfolio (one instrument: the same). `trials`: how many candidates have been tried, for the
    deflated Sharpe. `split` is "validation" for choosing; "test" only to report a champion already
    chosen. `rules`: the rule baselines' session P&L on the same sessions (the service's momentum
    and oracle), for the results per regime."""
    started = time.monotonic()
    deadline = started + config.timeout_seconds
    starts = features.require_sessions(split)
    if config.max_sessions:
        starts = starts[: config.max_sessions]
    env = TradingEnv(features, candidate.env_config)
    searched_family = candidate.family == "muzero"  # the challengers have no search, nor a raw network beside it
    phases = 4  # search and raw network, or a forecaster's forecasts and its rule; random; flat

    def tick(phase: int) -> Callable[[int, int], None]:
        def on_step(done: int, total: int) -> None:
            if time.monotonic() > deadline:
                raise ValidationTimeout(f"validation exceeded {config.timeout_seconds:.0f}s")
            if progress is not None:
                progress((phase + done / total) / phases)
        return on_step

    raw, calibration = None, None
    if searched_family:
        search_config = replace(candidate.search_config, simulations=config.simulations)
        search = NetworkSearch(candidate.model, min(64, len(starts)), env.space, search_config)
        searched = evaluate(env, search_policy(search, seed=config.seed), starts, on_step=tick(0))
        raw = evaluate(env, raw_network_policy(search), starts, on_step=tick(1))
    elif candidate.family == "tft":
        policy, calibration = forecast_policy(candidate, features, env, starts, on_batch=tick(0))
        searched = evaluate(env, policy, starts, on_step=tick(1))
    else:  # dt: its actions depend on its own, so one pass (phase 0 and 1 both)
        searched = evaluate(env, strategist_policy(candidate, features, env), starts,
                            on_step=lambda done, total: tick(0)(2 * done, total))
    rnd = evaluate(env, random_policy(np.random.default_rng(config.seed)), starts, on_step=tick(2))
    flat = evaluate(env, flat_policy, starts, on_step=tick(3))

    portfolio = Portfolio(features, starts, env.config.episode_bars)
    main = portfolio.stats(searched)
    baselines = {"random": portfolio.stats(rnd), "flat": portfolio.stats(flat)}
    if raw is not None:
        baselines = {"raw_network": portfolio.stats(raw), **baselines}
    trades, session_pnl = portfolio.weighted_trades(searched), portfolio.weighted_sessions(searched)
    mc = None
    if len(trades):
        # in the first instrument's pips (the common unit), sized at its price
        price = float(np.mean(features.bars.close[starts[portfolio.owner == 0]]))
        calendar_year = max(c.days_per_year for c in portfolio.calendars)
        mc = monte_carlo(trades, runs=config.mc_runs, seed=config.seed,  # a unit's worth in price: a pip, or a bp
                         pip_size=get_instrument(portfolio.names[0]).price_distance(1.0, price), price=price,
                         trades_per_year=len(trades) / portfolio.days_traded() * calendar_year)
    equity = np.concatenate([[0.0], np.cumsum(trades)]).tolist()
    return ValidationReport(
        episode=candidate.episode, sha256=candidate.sha256, sessions=len(starts),
        seconds=time.monotonic() - started, stats=main, monte_carlo=mc, baselines=baselines,
        search_beats_raw=main.total_pips > baselines["raw_network"].total_pips if raw is not None else None,
        equity_curve=equity, family=candidate.family, calibration=calibration,
        session_pnl=[float(x) for x in session_pnl],
        deflated_sharpe=deflated_sharpe(session_pnl, trials), split=split,
        instruments=portfolio.per_instrument(searched, raw),
        regimes=regime_results(features, starts, {
            "candidate": session_pnl, **{name: portfolio.weighted_sessions(played) for name, played in
                                         (("raw_network", raw), ("random", rnd), ("flat", flat)) if played is not None},
            **{name: np.asarray(pnl) for name, pnl in (rules or {}).items() if len(pnl) == len(starts)}},
            candidate.guardian),
    )
