"""The gate: a candidate's absolute thresholds (trades, expectancy, Monte Carlo 5th percentile,
drawdown, and the deflated Sharpe where VALIDATION_MIN_DEFLATED_SHARPE is set), then the champion
to beat, by a paired test on the same sessions or by a score."""

from __future__ import annotations

import numpy as np

from shared.config import GateConfig
from shared.validation.report import ValidationReport
from shared.validation.statistics import paired_sign_flip_p


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
    if config.min_deflated_sharpe is not None:  # None (no trades, too few sessions): no evidence, refused
        dsr = report.deflated_sharpe if report.deflated_sharpe is not None else 0.0
        if not dsr >= config.min_deflated_sharpe:
            reasons.append(f"deflated Sharpe {dsr:.3f} < {config.min_deflated_sharpe}")
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
