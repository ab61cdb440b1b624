"""Every statistic against hand-computed trade lists; the Monte Carlo's reproducibility."""

from __future__ import annotations

import math

import numpy as np
import pytest

from shared.validation.statistics import max_drawdown, monte_carlo, quality_score, sharpe_daily, sqn, trade_stats


def test_statistics_by_hand():
    trades = np.array([10.0, -5.0, 20.0, -15.0, 5.0])
    daily = np.array([10.0, 0.0, 5.0])
    s = trade_stats(trades, daily, np.array([6, 2, 1, 1]), position_changes=4)
    assert s.trades == 5 and s.total_pips == 15.0
    assert s.expectancy_pips == 3.0
    assert s.win_rate == 3 / 5
    assert s.profit_factor == pytest.approx(35 / 20)
    # equity 0, 10, 5, 25, 10, 15: the worst fall is 25 -> 10
    assert s.max_drawdown_pips == 15.0
    std = np.std(trades, ddof=1)  # sample std = sqrt(((7^2)+(8^2)+(17^2)+(18^2)+(2^2))/4) = 13.038...
    assert std == pytest.approx(math.sqrt((49 + 64 + 289 + 324 + 4) / 4))
    assert s.sqn == pytest.approx(math.sqrt(5) * 3 / std)
    assert s.sqn_100 == s.sqn  # fewer than 100 trades: the cap changes nothing
    assert s.sharpe_daily == pytest.approx(5.0 / 5.0 * math.sqrt(252))  # mean 5, sample std 5
    assert s.trade_ratio == pytest.approx(0.4) and s.action_share == pytest.approx([0.6, 0.2, 0.1, 0.1])
    expected_quality = 2.0 * 3 + 1.5 * (15 - 0.01 * 15) / 5 + 2.0 + 3.0 * min(s.sqn_100, 5) + 3.0
    assert s.quality == pytest.approx(expected_quality)


def test_sqn_cap_and_edge_cases():
    trades = np.tile([3.0, -1.0], 200)  # 400 trades, mean 1, std ~2.0025
    assert sqn(trades) == pytest.approx(math.sqrt(400) / np.std(trades, ddof=1))
    assert sqn(trades, cap=100) == pytest.approx(math.sqrt(100) / np.std(trades, ddof=1))
    assert sqn(np.array([1.0])) is None and sqn(np.array([2.0, 2.0])) is None
    assert sharpe_daily(np.array([1.0])) is None


def test_all_winners_and_no_trades():
    s = trade_stats(np.array([5.0, 5.0]), np.array([10.0]), np.array([1, 1, 0, 1]), position_changes=2)
    assert s.profit_factor is None and s.max_drawdown_pips == 0.0 and s.win_rate == 1.0
    empty = trade_stats(np.array([]), np.array([]), np.array([10, 0, 0, 0]), position_changes=0)
    assert empty.trades == 0 and empty.expectancy_pips == 0.0 and empty.quality == 0.0 and empty.trade_ratio == 0.0


def test_a_losing_policy_that_trades_scores_below_flat():
    """Regression (issue 13): random scored 5.9 (bonuses for trading at all) and flat 0."""
    losing = np.random.default_rng(0).normal(-4.0, 20.0, 300)  # the spread eats a random policy
    assert losing.mean() < 0
    random_like = trade_stats(losing, np.array([losing.sum()]), np.array([100, 100, 100, 100]), position_changes=300)
    flat = trade_stats(np.array([]), np.array([0.0]), np.array([400, 0, 0, 0]), position_changes=0)
    assert random_like.quality < flat.quality == 0.0


def test_trade_ratio_counts_orders_not_action_zero():
    """Regression: the trade ratio was 1 - share of action 0, wrong where action 0 is not
    HOLD (the sized space's NEUTRAL is an order whenever a position is open)."""
    s = trade_stats(np.array([5.0]), np.array([5.0]), np.array([8, 0, 2, 0, 0, 0, 0]), position_changes=5)
    assert s.trade_ratio == pytest.approx(0.5)


def test_max_drawdown_counts_from_the_start():
    assert max_drawdown(np.array([-10.0, 5.0])) == 10.0
    assert max_drawdown(np.array([5.0, 5.0])) == 0.0


def test_quality_score_terms():
    # losing: no bonus for trading at all (issue 13: random must rank below flat)
    assert quality_score(-2.0, -40.0, 50.0, 20, None, 2) == pytest.approx(0.3 * -2 + 1.5 * (-40 - 0.5) / 20)
    # winning: the trade-count, SQN and actions-used bonuses
    assert quality_score(2.0, 80.0, 50.0, 40, 1.5, 3) == pytest.approx(2 * 2 + 1.5 * (80 - 0.5) / 40 + 10 + 4.5 + 3)


def test_monte_carlo_is_reproducible_for_a_seed():
    trades = np.random.default_rng(0).normal(1.5, 12.0, 500)
    a = monte_carlo(trades, runs=1000, seed=7)
    b = monte_carlo(trades, runs=1000, seed=7)
    c = monte_carlo(trades, runs=1000, seed=8)
    np.testing.assert_array_equal(a.final_pips_runs, b.final_pips_runs)
    assert a.to_dict() == b.to_dict()
    assert not np.array_equal(a.final_pips_runs, c.final_pips_runs)
    # bootstrap of the same trades: the median final P&L is close to the real total
    assert a.final_pips["50"] == pytest.approx(trades.sum(), rel=0.15)
    assert a.final_pips["5"] < a.final_pips["50"] < a.final_pips["95"]
    assert a.max_drawdown_pips["5"] <= a.max_drawdown_pips["95"]


def test_safe_f_keeps_the_95th_percentile_drawdown_at_the_tolerance():
    from shared.validation.statistics import _bootstrap_equity

    trades = np.random.default_rng(1).normal(2.0, 15.0, 400)
    mc = monte_carlo(trades, runs=500, seed=3, drawdown_tolerance=0.10, trades_per_year=300)
    returns = trades * 0.01 / 170.0
    dd = lambda f: np.percentile(_bootstrap_equity(returns, 500, mc.horizon_trades, 3, f)[1], 95)  # noqa: E731
    assert dd(mc.safe_f) <= 0.10 + 1e-9
    assert dd(mc.safe_f * 1.05) > 0.10
    assert mc.car25 > 0  # a positive-expectancy system grows at safe-f
    losing = monte_carlo(-np.abs(trades), runs=200, seed=3)
    assert losing.car25 < 0 and losing.final_pips["95"] < 0


def test_monte_carlo_needs_trades():
    with pytest.raises(ValueError, match="at least one trade"):
        monte_carlo(np.array([]))


def test_deflated_sharpe():
    from statistics import NormalDist

    from shared.validation.statistics import deflated_sharpe

    rng = np.random.default_rng(3)
    r = rng.normal(5.0, 20.0, 60)
    # one trial: the probabilistic Sharpe ratio against 0, by hand
    sr = r.mean() / r.std(ddof=1)
    c = r - r.mean()
    skew, kurt = np.mean(c**3) / np.mean(c**2) ** 1.5, np.mean(c**4) / np.mean(c**2) ** 2
    want = NormalDist().cdf(sr * np.sqrt(59) / np.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr**2))
    assert deflated_sharpe(r, 1) == pytest.approx(want)
    # more candidates tried: the same result is less convincing
    assert deflated_sharpe(r, 1) > deflated_sharpe(r, 10) > deflated_sharpe(r, 100)
    assert deflated_sharpe(rng.normal(30.0, 5.0, 60), 100) > 0.99  # real skill survives many trials
    assert deflated_sharpe(np.array([1.0, 1.0, 1.0]), 5) is None


def test_pbo_by_cscv_against_the_definition():
    from shared.validation.statistics import probability_of_backtest_overfitting as pbo

    rng = np.random.default_rng(0)
    noise = rng.normal(0, 10, (6, 40))
    # one candidate better in every session: chosen in-sample, best out-of-sample every time
    assert pbo(noise + np.where(np.arange(6)[:, None] == 2, 100.0, 0.0), blocks=8) == 0.0
    # in-sample winners that are the out-of-sample losers: each candidate is great on one half, awful on the other
    halves = np.where(np.arange(40) < 20, 1.0, -1.0)
    flip = np.stack([halves * 10, -halves * 10, np.zeros(40)])
    assert pbo(flip, blocks=2) == 1.0
    # by hand, 2 blocks of 1 session, 3 candidates: in-sample [1, 0, 5] chooses #2, out [3, 2, 1] ranks it 1 of 3:
    # w = 1/4, logit < 0; the other way in-sample [3, 2, 1] chooses #0, out [1, 0, 5] ranks it 2: w = 1/2, logit 0
    assert pbo(np.array([[1.0, 3.0], [0.0, 2.0], [5.0, 1.0]]), blocks=2) == 1.0
    assert pbo(np.array([[1.0, 3.0], [0.0, 2.0], [5.0, 6.0]]), blocks=2) == 0.0
    # skill-less candidates: about half the splits overfit
    draws = [pbo(rng.normal(0, 1, (20, 64)), blocks=8) for _ in range(30)]
    assert 0.35 < float(np.mean(draws)) < 0.65
    assert pbo(noise[:1], blocks=8) is None and pbo(noise[:, :5], blocks=8) is None
    with pytest.raises(ValueError, match="even"):
        pbo(noise, blocks=3)
