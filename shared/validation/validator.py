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
from shared.features.store import FeatureSet
from shared.search import NetworkSearch
from shared.validation.evaluation import Evaluation, evaluate, flat_policy, random_policy, raw_network_policy, search_policy
from shared.validation.report import ValidationReport
from shared.validation.statistics import TradeStats, deflated_sharpe, monte_carlo, trade_stats
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


def validate(candidate: Candidate, features: FeatureSet, config: ValidationConfig = ValidationConfig(), *,
             progress: Callable[[float], None] | None = None, trials: int = 1,
             split: str = "validation") -> ValidationReport:
    """Replay the candidate greedily (no noise, fixed seeds) and score it. `trials`: how many
    candidates have been tried, for the deflated Sharpe. `split` is "validation" for choosing;
    "test" only to report a champion already chosen."""
    started = time.monotonic()
    deadline = started + config.timeout_seconds
    starts = features.require_sessions(split)
    if config.max_sessions:
        starts = starts[: config.max_sessions]
    instrument = get_instrument(features.instrument)
    calendar = calendar_named(instrument.calendar)
    env = TradingEnv(features, candidate.env_config)
    search_config = replace(candidate.search_config, simulations=config.simulations)
    search = NetworkSearch(candidate.model, min(64, len(starts)), env.space, search_config)
    phases = 4  # search, raw network, random, flat

    def tick(phase: int) -> Callable[[int, int], None]:
        def on_step(done: int, total: int) -> None:
            if time.monotonic() > deadline:
                raise ValidationTimeout(f"validation exceeded {config.timeout_seconds:.0f}s")
            if progress is not None:
                progress((phase + done / total) / phases)
        return on_step

    searched = evaluate(env, search_policy(search, seed=config.seed), starts, on_step=tick(0))
    raw = evaluate(env, raw_network_policy(search), starts, on_step=tick(1))
    rnd = evaluate(env, random_policy(np.random.default_rng(config.seed)), starts, on_step=tick(2))
    flat = evaluate(env, flat_policy, starts, on_step=tick(3))

    def stats(e: Evaluation) -> TradeStats:
        return trade_stats(e.trades_pips, _daily_pnl(calendar, features, starts, e), e.action_counts,
                           e.position_changes, calendar.days_per_year)

    main = stats(searched)
    baselines = {"raw_network": stats(raw), "random": stats(rnd), "flat": stats(flat)}
    mc = None
    if len(searched.trades_pips):
        days = _days_traded(calendar, features, starts, env.config.episode_bars)
        mc = monte_carlo(searched.trades_pips, runs=config.mc_runs, seed=config.seed, pip_size=instrument.pip_size,
                         price=float(np.mean(features.bars.close[starts])),
                         trades_per_year=len(searched.trades_pips) / days * calendar.days_per_year)
    equity = np.concatenate([[0.0], np.cumsum(searched.trades_pips)]).tolist()
    return ValidationReport(
        episode=candidate.episode, sha256=candidate.sha256, sessions=len(starts),
        seconds=time.monotonic() - started, stats=main, monte_carlo=mc, baselines=baselines,
        search_beats_raw=main.total_pips > baselines["raw_network"].total_pips, equity_curve=equity,
        session_pnl=[float(x) for x in searched.episode_pnl_pips],
        deflated_sharpe=deflated_sharpe(searched.episode_pnl_pips, trials), split=split,
    )
