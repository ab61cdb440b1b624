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


def test_the_regime_guard_holds_entries_to_the_reduced_size_and_lets_exits_pass(features):
    from types import SimpleNamespace

    from shared.config import RiskConfig
    from shared.live.regime_guard import regime_guard
    from shared.model.regimes import REGIMES

    losing_everywhere = {"labeller": "rules", "rules": regime_rules(features),
                         "by_regime": {r: {"sessions": 1, "candidate": -5.0} for r in REGIMES}}
    champion = SimpleNamespace(guardian=None, promoted_metrics={"regimes": losing_everywhere})
    bars = features.bars[:2000]

    def allowed(position, target, units=0, on=True):
        return regime_guard(RiskConfig(max_units=3, regime_guard=on, regime_guard_units=units), champion, bars, "fx",
                            position, target)[0]

    assert allowed(0, 2) == 0 and allowed(0, -3, units=1) == -1 and allowed(0, 1, units=2) == 1  # open: reduced
    assert allowed(1, 3) == 1 and allowed(1, 3, units=2) == 2 and allowed(2, 3, units=1) == 2    # grow: held
    assert allowed(-2, 2) == 0 and allowed(-2, 3, units=1) == 1                                  # flip: via flat
    assert allowed(3, 1) == 1 and allowed(-2, 0) == 0                                            # reduce, close: pass
    assert allowed(0, 2, on=False) == 2
    target, reason, named = regime_guard(RiskConfig(max_units=3, regime_guard=True), champion, bars, "fx", 0, 1)
    assert target == 0 and reason.startswith(f"regime_guard: {named['regime']} ") and named["labeller"] == "rules"
