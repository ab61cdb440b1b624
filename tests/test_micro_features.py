"""Micro features and market outcomes: no look-ahead, equal to the pandas
reference, calendar and gap cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.data.bars import NS_PER_MINUTE, Bars
from shared.features import TEMPORAL_FEATURES, MarketOutcome
from shared.features.micro import BLOCK_BARS, TILE_BARS, _tanh_scaled, market_outcomes, temporal_features
from tests.reference_features import reference_features

PIP = 0.01


def random_bars(seed: int, n: int, *, gaps: bool = True) -> Bars:
    """Random-walk bars with random gaps (weekend-length ones too) and flat stretches."""
    rng = np.random.default_rng(seed)
    steps = np.ones(n, dtype=np.int64)
    if gaps:
        jump = rng.random(n) < 0.01
        steps[jump] = rng.integers(2, 3 * 24 * 60, size=int(jump.sum()))
    ts = pd.Timestamp("2024-01-07 22:00").value + np.cumsum(steps) * NS_PER_MINUTE
    moves = np.round(rng.standard_t(3, size=n) * 3, 1) * PIP
    moves[rng.random(n) < 0.05] = 0.0  # flat bars: zero ranges and zero changes happen
    close = np.round(170 + np.cumsum(moves), 3)
    open_ = np.concatenate([[close[0]], close[:-1]])
    wick = np.round(np.abs(rng.normal(0, 2, size=(2, n))), 1) * PIP
    return Bars(ts, open_, np.maximum(open_, close) + wick[0], np.minimum(open_, close) - wick[1], close, np.ones(n))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 5000), data=st.data())
def test_no_look_ahead_prefix_equals_full_series(seed, n, data):
    """A feature or outcome at bar t is the same computed on bars[:t+1] as on
    the whole series: nothing at t depends on a later bar."""
    bars = random_bars(seed, n)
    full_features, full_outcomes = temporal_features(bars, PIP), market_outcomes(bars, PIP)
    for t in data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=5)):
        prefix = bars[: t + 1]
        np.testing.assert_array_equal(temporal_features(prefix, PIP)[t], full_features[t])
        assert market_outcomes(prefix, PIP)[t] == full_outcomes[t]


def test_no_look_ahead_across_tile_boundaries(market_bars):
    """The kernel works in tiles with a halo of history: cutting the series
    anywhere around a tile edge changes nothing before the cut."""
    full = temporal_features(market_bars, PIP)
    # a tile's day-long blocks start BLOCK_BARS - 1 bars before it: cut around their edges too
    block_edges = [TILE_BARS + 1 + k * BLOCK_BARS + d for k in (0, 1) for d in (-1, 0, 1)]
    for cut in (TILE_BARS - 1, TILE_BARS, TILE_BARS + 1, TILE_BARS + 1500, 2 * TILE_BARS - 7, *block_edges):
        np.testing.assert_array_equal(temporal_features(market_bars[:cut], PIP), full[:cut])


def test_changing_a_future_bar_changes_nothing_before_it():
    bars = random_bars(3, 4000)
    before = temporal_features(bars, PIP)
    outcomes = market_outcomes(bars, PIP)
    t = 2500
    bars.close[t:] += 1.0
    bars.high[t:] += 1.0
    bars.low[t:] += 1.0
    np.testing.assert_array_equal(temporal_features(bars, PIP)[:t], before[:t])
    np.testing.assert_array_equal(market_outcomes(bars, PIP)[:t], outcomes[:t])
    assert not np.array_equal(temporal_features(bars, PIP)[t], before[t])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equal_to_the_pandas_reference(seed):
    bars = random_bars(seed, 20_000)
    expected, expected_outcomes = reference_features(bars, PIP)
    assert list(expected.columns) == list(TEMPORAL_FEATURES)
    got = temporal_features(bars, PIP)
    # features are rounded once to float32
    np.testing.assert_allclose(got, expected.to_numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(market_outcomes(bars, PIP), expected_outcomes.to_numpy())


def test_equal_to_the_pandas_reference_on_the_synthetic_market(market_bars):
    expected, expected_outcomes = reference_features(market_bars, PIP)
    np.testing.assert_allclose(temporal_features(market_bars, PIP), expected.to_numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(market_outcomes(market_bars, PIP), expected_outcomes.to_numpy())


def _one_bar_at(ts: str) -> Bars:
    stamp = np.array([pd.Timestamp(ts).value], dtype=np.int64)
    one = np.array([170.0])
    return Bars(stamp, one, one + 0.01, one - 0.01, one, one)


@pytest.mark.parametrize(
    "ts, hours, day",
    [
        ("2024-01-07 22:00", 0.0, 0),     # Sunday open
        ("2024-01-08 21:59", 23 + 59 / 60, 0),
        ("2024-01-08 22:00", 24.0, 1),
        ("2024-01-10 10:30", 60.5, 2),    # Wednesday
        ("2024-01-12 21:59", 119 + 59 / 60, 4),  # Friday close
        ("2024-01-13 12:00", 120.0, 4),   # Saturday (closed): capped
    ],
)
def test_calendar_features(ts, hours, day):
    f = temporal_features(_one_bar_at(ts), PIP)[0]
    names = list(TEMPORAL_FEATURES)
    np.testing.assert_allclose(f[names.index("hour_cos")], np.cos(2 * np.pi * hours / 120), atol=1e-6)
    np.testing.assert_allclose(f[names.index("hour_sin")], np.sin(2 * np.pi * hours / 120), atol=1e-6)
    np.testing.assert_allclose(f[names.index("dow_cos")], np.cos(2 * np.pi * day / 5), atol=1e-6)
    np.testing.assert_allclose(f[names.index("dow_sin")], np.sin(2 * np.pi * day / 5), atol=1e-6)


def test_the_vectorised_tanh_matches_numpy():
    """price_change_pips uses its own tanh (libm's would be a call per bar):
    within a few float64 ulp of numpy's everywhere, near 0 too, so the float32
    feature is numpy's but for an exact tie."""
    x = np.concatenate([
        np.linspace(-600.0, 600.0, 200_001),           # pips, beyond where tanh saturates
        np.geomspace(1e-12, 1.0, 2_000), -np.geomspace(1e-12, 1.0, 2_000),
        [0.0, -0.0, 1e-300, -1e-300, 1e6, -1e6],
    ])
    got = np.empty_like(x)
    _tanh_scaled(x, 10.0, got)
    expected = np.tanh(x / 10.0)
    np.testing.assert_array_max_ulp(got, expected, maxulp=4)
    np.testing.assert_array_max_ulp(got.astype(np.float32), expected.astype(np.float32), maxulp=1)
    assert np.all(np.abs(got) <= 1.0)


def test_calendar_across_the_week_open_and_off_minute_stamps():
    """The calendar steps on by one per consecutive minute: check it where the
    minute of the week wraps (Sunday 22:00 UTC; OANDA opens at 21:00 in
    summer), after gaps, and on stamps that are not on the minute."""
    sunday = pd.Timestamp("2024-06-09 21:00").value + np.arange(120) * NS_PER_MINUTE
    later = pd.Timestamp("2024-06-10 09:00:30").value + np.arange(90) * NS_PER_MINUTE
    gap_then_steps = pd.Timestamp("2024-06-12 23:59:59").value + np.array([0, 1, 61, 121, 3600]) * NS_PER_MINUTE // 60
    ts = np.concatenate([sunday, later, gap_then_steps])
    close = 170 + np.cumsum(np.resize([0.01, -0.02, 0.015], len(ts)))
    bars = Bars(ts, close, close + 0.01, close - 0.01, close, np.ones(len(ts)))
    expected, _ = reference_features(bars, PIP)
    calendar = [TEMPORAL_FEATURES.index(name) for name in ("dow_cos", "dow_sin", "hour_cos", "hour_sin")]
    np.testing.assert_allclose(temporal_features(bars, PIP)[:, calendar], expected.to_numpy()[:, calendar], atol=1e-6)


def test_windows_count_bars_across_a_weekend_gap():
    """Lookbacks count bars, not minutes: after a weekend the 60-bar range
    still reaches back into Friday's bars."""
    friday = pd.Timestamp("2024-01-12 21:00").value + np.arange(60) * NS_PER_MINUTE
    sunday = pd.Timestamp("2024-01-14 22:00").value + np.arange(30) * NS_PER_MINUTE
    ts = np.concatenate([friday, sunday])
    close = np.concatenate([np.full(60, 180.0), np.full(30, 181.0)])
    close[10] = 179.0  # Friday's low, 80 bars before the last bar: outside the 60-bar window
    close[40] = 179.5  # inside the window of the last bar
    bars = Bars(ts, close, close, close, close, np.ones(90))
    f = temporal_features(bars, PIP)
    # last bar: window = bars 30..89, low 179.5, high 181.0
    assert f[-1, 0] == pytest.approx(1.0)
    # the range is 150 pips; the day's ranges went from 0 (flat start) to 200 (when bar 10 was in the window)
    assert f[-1, 2] == pytest.approx(150 / 200)
    assert f[60, 2] == pytest.approx(1.0)
    assert f[60, 4] == pytest.approx(np.tanh(100 / 10), rel=1e-6)  # the weekend jump is one price change


def test_flat_market_is_neutral_and_mid_range():
    n = 100
    ts = pd.Timestamp("2024-01-08").value + np.arange(n) * NS_PER_MINUTE
    flat = np.full(n, 170.0)
    bars = Bars(ts, flat, flat, flat, flat, np.ones(n))
    f = temporal_features(bars, PIP)
    np.testing.assert_array_equal(f[:, :4], 0.5)
    np.testing.assert_array_equal(f[:, 4], 0.0)
    assert np.all(market_outcomes(bars, PIP) == MarketOutcome.NEUTRAL)


def test_outcomes_follow_the_threshold():
    n = 40
    ts = pd.Timestamp("2024-01-08").value + np.arange(n) * NS_PER_MINUTE
    changes = np.tile([1.0, -1.0], n // 2)  # +-1 pip: std ~1.03, threshold ~0.34 pips
    changes[30], changes[31], changes[32] = 0.2, 5.0, -5.0
    close = 170 + np.cumsum(changes) * PIP
    bars = Bars(ts, close, close + 0.01, close - 0.01, close, np.ones(n))
    outcomes = market_outcomes(bars, PIP)
    assert outcomes[0] == outcomes[1] == outcomes[2] == MarketOutcome.NEUTRAL  # too few changes before
    assert outcomes[30] == MarketOutcome.NEUTRAL
    assert outcomes[31] == MarketOutcome.UP and outcomes[32] == MarketOutcome.DOWN
    assert outcomes[20] == MarketOutcome.UP and outcomes[21] == MarketOutcome.DOWN


def test_empty_input():
    empty = Bars(*(np.empty(0, dtype=dt) for dt in (np.int64, float, float, float, float, float)))
    assert temporal_features(empty, PIP).shape == (0, 9)
    assert market_outcomes(empty, PIP).shape == (0,)
