"""Every policy's results per market regime (issue 26): each validated session is labelled by the
regime of the window that ends at its first bar (bars before the session only), beside the
baselines on the same sessions (a champion that loses in volatile sessions while flat does not is
the case for a regime guard).

Who labels: the candidate's own Guardian where it was trained beside one (shared/model/guardian.py:
the window's latent mean against its named clusters, and a risk level; the report's `labeller` is
"guardian" and `by_risk` adds each risk level's results), else the rules that name the Guardian's
clusters (shared/model/regimes.py: bull, bear, sideways or volatile from the last
`regime_horizon_bars` one-bar returns, the volatile threshold fitted on the windows ending at the
train sessions' starts). With a Guardian, `guardian.agreement` is the share of these sessions whose
Guardian label is the rules' label. Live labels its bars the same way (LIVE_REGIME_GUARD)."""

from __future__ import annotations

import numpy as np

from shared.config.challengers import GuardianConfig
from shared.core.instruments import get_instrument
from shared.features.indicators import indicator_features
from shared.features.store import FeatureSet
from shared.model.guardian import TrainedGuardian
from shared.model.regimes import REGIMES, fit_volatility_threshold, label


def regime_rules(features: FeatureSet, config: GuardianConfig = GuardianConfig()) -> dict:
    """The labelling rules as fitted on this market: the volatile threshold from the windows ending
    at the train sessions' starts. What a report carries, and live labels its own bars with."""
    n = config.regime_horizon_bars
    train = features.require_sessions("train")
    threshold = fit_volatility_threshold(features.bars.close, train[train >= n], n, quantile=config.volatile_quantile)
    return {"horizon_bars": n, "trend_threshold": config.trend_threshold, "volatility_threshold": threshold}


def regime_results(features: FeatureSet, starts: np.ndarray, session_pips: dict[str, np.ndarray],
                   guardian: TrainedGuardian | None = None) -> dict:
    """{"labeller", "rules", "by_regime": per_regime} of the sessions starting at `starts`; with a
    Guardian also {"guardian": its training figures and agreement here, "by_risk"}."""
    rules = regime_rules(features)
    by_rules = label(features.bars.close, starts, rules)
    if guardian is None:
        return {"labeller": "rules", "rules": rules, "by_regime": per_regime(by_rules, session_pips)}
    indicators = indicator_features(features.bars, get_instrument(features.instrument_names[0]).calendar)
    names, risk = guardian.regimes(indicators, starts)
    record = guardian.record
    return {"labeller": "guardian", "rules": rules, "by_regime": per_regime(names, session_pips),
            "by_risk": per_regime(risk, session_pips, groups=range(guardian.config.risk_levels)),
            "guardian": {"clusters": list(guardian.names), "risk": guardian.risk.tolist(),
                         "train_accuracy": record.get("accuracy"), "train_steps": record.get("steps"),
                         "agreement": round(float(np.mean(names == by_rules)), 4) if len(starts) else None}}


def per_regime(regimes: np.ndarray, session_pips: dict[str, np.ndarray], groups=REGIMES) -> dict[str, dict]:
    """{group: {"sessions": n, policy: total pips}} for the groups present (regime names, or risk
    levels), in `groups` order; `session_pips` maps each policy (the candidate, the baselines) to its
    [S] session P&L."""
    out = {}
    for group in groups:
        chosen = np.asarray(regimes) == group
        if chosen.any():
            out[str(group)] = {"sessions": int(chosen.sum()),
                               **{name: round(float(np.asarray(pips)[chosen].sum()), 1)
                                  for name, pips in session_pips.items()}}
    return out
