"""Live decides as validation did (issue 24 item 5): the live trader on the paper broker, replaying
the demo market's validation sessions, takes validation's decision at every bar (bench.parity)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.parity import PNL_TOLERANCE_PIPS, compare, play_validation, seeded_candidate
from shared.core.instruments import get_instrument
from shared.data.bars import Bars

SIMULATIONS = 10  # the demo's validation simulations; live is given the same


@pytest.fixture(scope="module")
def candidate(features, tmp_path_factory):
    return seeded_candidate(features, tmp_path_factory.mktemp("parity-model"))


@pytest.fixture(scope="module")
def starts(features):
    return features.require_sessions("validation")[:2]


@pytest.mark.parametrize("driver", ["trader", "desk"])
def test_live_takes_validations_decision_at_every_bar(features, candidate, starts, tmp_path, driver):
    report = compare(candidate, features, starts, tmp_path, simulations=SIMULATIONS, driver=driver)
    # a model that trades and holds, so positions, fills and P&L are all exercised
    assert report.trades_validation >= 20 and report.actions_validation["HOLD"] >= 100, report.actions_validation
    assert report.bars == 2 * 360 and report.decisions == 2 * 359
    assert report.mismatches == 0, report.first_mismatch
    assert report.trades_live == report.trades_validation
    # the same accounting on the same prices: equal to the bit but for a reordering (PNL_TOLERANCE_PIPS)
    assert report.pnl_live_pips == pytest.approx(report.pnl_validation_pips, abs=PNL_TOLERANCE_PIPS)
    # live's features over its trailing buffer are the store's, and its book the environment's, exactly
    assert report.max_temporal_diff == 0.0 and report.max_static_diff == 0.0
    assert json.loads(json.dumps(report.to_dict()))["mismatches"] == 0


def test_more_simulations_in_live_are_caught(features, candidate, starts, tmp_path):
    report = compare(candidate, features, starts[:1], tmp_path, simulations=SIMULATIONS, live_simulations=50)
    assert report.mismatches > 0
    first = report.first_mismatch
    assert first["action"][0] != first["action"][1] and first["cause"].startswith("equal inputs")


def test_a_perturbed_bar_is_caught_where_it_is(features, candidate, starts, tmp_path):
    """Live is fed one close 30 pips off, on a bar validation holds a position into: everything
    before it agrees, and the P&L marked at that bar does not."""
    start = int(starts[0])
    played = play_validation(candidate, features, starts[:1], SIMULATIONS)[0]
    held = int(np.flatnonzero(played.positions != 0)[0])  # a decision after which a position is open
    bar = start + held + 1
    close = features.bars.close.copy()
    close[bar] += 30 * get_instrument(features.instrument).pip_size
    b = features.bars
    perturbed = Bars(b.ts, b.open, np.maximum(b.high, close), np.minimum(b.low, close), close, b.volume)
    report = compare(candidate, features, starts[:1], tmp_path, simulations=SIMULATIONS, live_bars=perturbed)
    assert report.mismatches > 0
    first = report.first_mismatch
    assert first["step"] == held + 1 and first["cause"] == "the market features differ"
    assert abs(first["pnl_pips"][1] - first["pnl_pips"][0]) == pytest.approx(30 * abs(played.positions[held]))
