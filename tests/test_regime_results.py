"""Every policy's results per market regime in the validation report (issue 26): sessions labelled
by the rules that name the Guardian's clusters, from bars up to each session's first bar only."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from shared.data.bars import Bars
from shared.model.regimes import REGIMES, label, losing_regimes
from shared.validation.regimes import per_regime, regime_rules


def test_results_are_summed_by_regime_for_every_policy():
    regimes = np.array(["bull", "volatile", "bull", "bear"])
    out = per_regime(regimes, {"candidate": np.array([1.0, -2.0, 3.0, 4.0]), "flat": np.zeros(4)})
    assert list(out) == ["bull", "bear", "volatile"]  # REGIMES order, only those present
    assert out["bull"] == {"sessions": 2, "candidate": 4.0, "flat": 0.0}
    assert out["volatile"] == {"sessions": 1, "candidate": -2.0, "flat": 0.0}
    assert losing_regimes({"rules": {}, "by_regime": out}) == {"volatile": -2.0}  # what live's guard holds back
    assert losing_regimes(None) == {} == losing_regimes({})


def test_a_sessions_regime_reads_no_bar_after_its_first(features):
    starts = features.require_sessions("validation")
    rules = regime_rules(features)
    labels = label(features.bars.close, starts, rules)
    assert len(labels) == len(starts) and set(labels) <= set(REGIMES)
    assert len(set(labels)) > 1  # the demo market has more than one kind of session
    bars, cut = features.bars, int(starts[3])
    later = Bars(bars.ts, *(np.concatenate([a[: cut + 1], a[cut + 1 :] * 3.0])
                            for a in (bars.open, bars.high, bars.low, bars.close, bars.volume)))
    assert regime_rules(replace(features, bars=later)) == rules  # fitted on train windows, before validation
    again = label(later.close, starts[:4], rules)
    assert again.tolist() == labels[:4].tolist()
