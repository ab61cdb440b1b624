"""Every policy's results per market regime (issue 26): each validated session is labelled by the
regime of the window that ends at its first bar (shared/model/regimes.py: bull, bear, sideways or
volatile, from the last `regime_horizon_bars` one-bar returns, bars before the session only), the
volatile threshold fitted on the windows ending at the train sessions' starts. These are the rules
that name the Guardian's latent clusters; the clusters themselves are not used yet (the Guardian
is not a training family).

What it says: where a candidate makes and loses its pips, beside the baselines on the same
sessions (a champion that loses in volatile sessions while flat does not is the case for a
regime guard)."""

from __future__ import annotations

import numpy as np

from shared.config.challengers import GuardianConfig
from shared.features.store import FeatureSet
from shared.model.regimes import REGIMES, fit_volatility_threshold, label


def regime_rules(features: FeatureSet, config: GuardianConfig = GuardianConfig()) -> dict:
    """The labelling rules as fitted on this market: the volatile threshold from the windows ending
    at the train sessions' starts. What a report carries, and live labels its own bars with."""
    n = config.regime_horizon_bars
    train = features.require_sessions("train")
    threshold = fit_volatility_threshold(features.bars.close, train[train >= n], n, quantile=config.volatile_quantile)
    return {"horizon_bars": n, "trend_threshold": config.trend_threshold, "volatility_threshold": threshold}


def regime_results(features: FeatureSet, starts: np.ndarray, session_pips: dict[str, np.ndarray]) -> dict:
    """{"rules": regime_rules, "by_regime": per_regime} of the sessions starting at `starts`."""
    rules = regime_rules(features)
    return {"rules": rules, "by_regime": per_regime(label(features.bars.close, starts, rules), session_pips)}


def per_regime(regimes: np.ndarray, session_pips: dict[str, np.ndarray]) -> dict[str, dict]:
    """{regime: {"sessions": n, policy: total pips}} for the regimes present, in REGIMES order;
    `session_pips` maps each policy (the candidate, the baselines) to its [S] session P&L."""
    out = {}
    for regime in REGIMES:
        chosen = regimes == regime
        if chosen.any():
            out[regime] = {"sessions": int(chosen.sum()),
                           **{name: round(float(np.asarray(pips)[chosen].sum()), 1) for name, pips in session_pips.items()}}
    return out
