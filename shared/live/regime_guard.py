"""LIVE_REGIME_GUARD (issue 26): a target that opens, grows or flips a position while the market is in
a regime where the champion lost on its validation sessions is held to LIVE_REGIME_GUARD_UNITS units
on its side (0: the position held, or flat for a flip); closing and reducing always pass. The
regime is named the way the champion's report named its sessions (promoted/CURRENT's
`metrics.regimes`): by the Guardian the champion was trained beside (the window of indicator rows
ending at the bar), or by the rules (its last `horizon_bars` closes)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from shared.config import RiskConfig
from shared.data.bars import Bars
from shared.features.indicators import indicator_features
from shared.model.regimes import label, losing_regimes
from shared.volume.candidates import Candidate


def market_regime(candidate: Candidate, results: dict, bars: Bars, calendar: str) -> dict:
    """{"bar", "regime", "labeller"}: the regime at the last of `bars`, named as `results` were."""
    end = np.array([len(bars) - 1])
    guardian = candidate.guardian
    if results.get("labeller") == "guardian" and guardian is not None:
        regime = str(guardian.regimes(indicator_features(bars, calendar), end)[0][0])
    else:
        regime = str(label(bars.close, end, results["rules"])[0])
    return {"bar": str(pd.Timestamp(int(bars.ts[-1]))), "regime": regime, "labeller": results.get("labeller", "rules")}


def regime_guard(risk: RiskConfig, candidate: Candidate, bars: Bars, calendar: str, position: int,
                 target: int) -> tuple[int, str | None, dict | None]:
    """(the target allowed, why it was held back or None, the regime named or None where none was)."""
    if not risk.regime_guard or (abs(target) <= abs(position) and target * position >= 0):
        return target, None, None
    results = candidate.promoted_metrics.get("regimes")
    losing = losing_regimes(results)
    if not losing:
        return target, None, None
    named = market_regime(candidate, results, bars, calendar)
    regime = named["regime"]
    if regime not in losing:
        return target, None, named
    growing = target * position > 0
    allowed = int(np.sign(target)) * max(abs(position) if growing else 0, min(abs(target), risk.regime_guard_units))
    if allowed == target:
        return target, None, named
    return allowed, (f"regime_guard: {regime} (the champion lost {losing[regime]:+.1f} pips in its validation "
                     f"sessions of that regime)"), named
