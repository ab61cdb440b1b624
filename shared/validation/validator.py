"""Validating a candidate: deterministic replay on validation sessions,
statistics, Monte Carlo, baselines, the gate. No I/O here but the report
writers at the bottom; the validation service schedules and promotes."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from shared.config import GateConfig, ValidationConfig
from shared.core.calendar import trading_days
from shared.core.errors import StopError
from shared.core.instruments import get_instrument
from shared.env import TradingEnv
from shared.features.store import FeatureSet
from shared.search import NetworkSearch
from shared.validation.evaluation import Evaluation, evaluate, flat_policy, random_policy, raw_network_policy, search_policy
from shared.validation.statistics import MonteCarlo, TradeStats, deflated_sharpe, monte_carlo, paired_sign_flip_p, trade_stats
from shared.volume.candidates import Candidate
from shared.volume.checkpoints import atomic_write_bytes, atomic_write_json


class ValidationTimeout(StopError, RuntimeError):
    pass


@dataclass
class ValidationReport:
    episode: int
    sha256: str
    sessions: int
    seconds: float
    stats: TradeStats
    monte_carlo: MonteCarlo | None
    baselines: dict[str, TradeStats]
    search_beats_raw: bool         # strictly ahead
    equity_curve: list[float]
    session_pnl: list[float] = field(default_factory=list)  # [sessions] pips, in session order
    deflated_sharpe: float | None = None                     # over session P&L, given the candidates tried
    split: str = "validation"

    @property
    def search_vs_raw(self) -> str:
        """ahead, tie or behind: the search's total pips against the raw network's."""
        search, raw = self.stats.total_pips, self.baselines["raw_network"].total_pips
        return "tie" if abs(search - raw) < 1e-9 else ("ahead" if search > raw else "behind")

    def to_dict(self) -> dict:
        return {
            "episode": self.episode, "sha256": self.sha256, "sessions": self.sessions, "seconds": self.seconds,
            "stats": self.stats.to_dict(),
            "monte_carlo": self.monte_carlo.to_dict() if self.monte_carlo else None,
            "baselines": {name: s.to_dict() for name, s in self.baselines.items()},
            "search_beats_raw": self.search_beats_raw,
            "search_vs_raw": self.search_vs_raw if "raw_network" in self.baselines else None,
            "session_pnl": self.session_pnl, "deflated_sharpe": self.deflated_sharpe, "split": self.split,
        }


def _daily_pnl(features: FeatureSet, starts: np.ndarray, evaluation: Evaluation) -> np.ndarray:
    _, index = np.unique(trading_days(features.bars.ts[starts]), return_inverse=True)
    return np.bincount(index, weights=evaluation.episode_pnl_pips)


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
        return trade_stats(e.trades_pips, _daily_pnl(features, starts, e), e.action_counts, e.position_changes)

    main = stats(searched)
    baselines = {"raw_network": stats(raw), "random": stats(rnd), "flat": stats(flat)}
    mc = None
    if len(searched.trades_pips):
        instrument = get_instrument(features.instrument)
        days = max(1, len(np.unique(trading_days(features.bars.ts[starts]))))
        mc = monte_carlo(searched.trades_pips, runs=config.mc_runs, seed=config.seed, pip_size=instrument.pip_size,
                         price=float(np.mean(features.bars.close[starts])),
                         trades_per_year=len(searched.trades_pips) / days * 252)
    equity = np.concatenate([[0.0], np.cumsum(searched.trades_pips)]).tolist()
    return ValidationReport(
        episode=candidate.episode, sha256=candidate.sha256, sessions=len(starts),
        seconds=time.monotonic() - started, stats=main, monte_carlo=mc, baselines=baselines,
        search_beats_raw=main.total_pips > baselines["raw_network"].total_pips, equity_curve=equity,
        session_pnl=[float(x) for x in searched.episode_pnl_pips],
        deflated_sharpe=deflated_sharpe(searched.episode_pnl_pips, trials), split=split,
    )


def score_of(stats: dict, score: str) -> float:
    value = stats.get(score)
    return float(value) if value is not None else float("-inf")


def gate(report: ValidationReport, champion: dict | None, config: GateConfig) -> list[str]:
    """Reasons the candidate fails the gate; empty when it passes and beats the champion."""
    s = report.stats
    reasons = []
    if s.trades < config.min_trades:
        reasons.append(f"{s.trades} trades < {config.min_trades}")
    if not s.expectancy_pips > config.min_expectancy_pips:
        reasons.append(f"expectancy {s.expectancy_pips:.2f} pips <= {config.min_expectancy_pips}")
    # no trades: every resample is empty, so the final P&L is exactly 0
    p5 = report.monte_carlo.final_pips["5"] if report.monte_carlo else 0.0
    if not p5 > config.min_mc_p5_final_pips:
        reasons.append(f"Monte Carlo 5th-percentile P&L {p5:.1f} pips <= {config.min_mc_p5_final_pips}")
    if s.max_drawdown_pips > config.max_drawdown_pips:
        reasons.append(f"max drawdown {s.max_drawdown_pips:.1f} pips > {config.max_drawdown_pips}")
    if champion is not None:
        reason = _versus_champion(report, champion, config)
        if reason is not None:
            reasons.append(reason)
    return reasons


def _versus_champion(report: ValidationReport, champion: dict, config: GateConfig) -> str | None:
    """Why the candidate does not beat the champion, or None. With the champion's session
    P&L on the same sessions, a paired test (a point score picked as the best of many
    candidates is mostly luck); otherwise (a champion promoted by hand) the score."""
    theirs = champion.get("session_pnl")
    if config.selection == "paired_test" and theirs and len(theirs) == len(report.session_pnl):
        p = paired_sign_flip_p(np.asarray(report.session_pnl), np.asarray(theirs))
        if not p < config.max_p_value:
            return (f"not better than the champion on paired validation sessions "
                    f"(sign-flip p = {p:.3f} >= {config.max_p_value})")
        return None
    ours = score_of(report.stats.to_dict(), config.score)
    if not ours > score_of(champion, config.score):
        return f"{config.score} {ours:.3f} does not beat the champion's {score_of(champion, config.score):.3f}"
    return None


# --- reports --------------------------------------------------------------------------


def plain(value: dict) -> dict:
    """The same dict with numpy scalars and arrays as JSON's own types."""
    return json.loads(json.dumps(value, default=_json_default))


def write_result(path: Path, result: dict) -> None:
    atomic_write_json(path, plain(result))


def _json_default(value: object) -> object:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_plot(path: Path, report: ValidationReport) -> None:
    """Equity curve plus Monte Carlo fan, as a PNG a person can open."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    trades = np.diff(np.asarray(report.equity_curve))
    if len(trades) > 1:
        # the fan: percentile bands of 500 bootstrap equity paths, trade by trade
        rng = np.random.default_rng(0)
        paths = np.cumsum(rng.choice(trades, size=(500, len(trades))), axis=1)
        paths = np.concatenate([np.zeros((500, 1)), paths], axis=1)
        lo, q1, q3, hi = np.percentile(paths, [5, 25, 75, 95], axis=0)
        x = np.arange(len(report.equity_curve))
        left.fill_between(x, lo, hi, color="tab:orange", alpha=0.2, label="Monte Carlo 5-95%")
        left.fill_between(x, q1, q3, color="tab:orange", alpha=0.35, label="Monte Carlo 25-75%")
    left.plot(report.equity_curve, color="tab:blue", lw=1.5, label="validation equity")
    left.legend(loc="upper left")
    left.axhline(0, color="grey", lw=0.8)
    left.set(title=f"ep {report.episode}: equity over {report.stats.trades} trades", xlabel="trade", ylabel="pips")
    mc = report.monte_carlo
    if mc is not None:
        right.hist(mc.final_pips_runs, bins=40, color="tab:green", alpha=0.8)
        for p, style in (("5", ":"), ("50", "-"), ("95", ":")):
            right.axvline(mc.final_pips[p], color="black", ls=style, lw=1, label=f"p{p} {mc.final_pips[p]:.0f}")
        right.legend()
        right.set(title=f"Monte Carlo final P&L ({mc.runs} runs); safe-f {mc.safe_f:.2f}, CAR25 {mc.car25:.1%}",
                  xlabel="pips", ylabel="runs")
    else:
        right.text(0.5, 0.5, "no trades: no Monte Carlo", ha="center", va="center")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


