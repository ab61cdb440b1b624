"""The indicators-v1 features (the product notes' indicators): no look-ahead, defined everywhere,
the raw indicators equal to a maintained library's (bukosabino's `ta`), the warm-up honest."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import ta
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.config import SyntheticMarketConfig
from shared.core.feature_spec import (
    FEATURE_SPEC_VERSION,
    FEATURE_SPECS,
    INDICATOR_FEATURES,
    INDICATOR_WARMUP_BARS,
    INDICATORS_SPEC_VERSION,
    TEMPORAL_FEATURES,
)
from shared.data.bars import NS_PER_MINUTE, Bars
from shared.data.synthetic import generate_bars
from shared.features import indicators as ind
from shared.features.indicators import indicator_features

COLUMN = {name: j for j, name in enumerate(INDICATOR_FEATURES)}


def random_bars(seed: int, n: int, start_ns: int | None = None) -> Bars:
    """Random-walk bars with gaps, flat stretches (zero ranges) and stretches of zero volume."""
    rng = np.random.default_rng(seed)
    steps = np.ones(n, dtype=np.int64)
    jump = rng.random(n) < 0.01
    steps[jump] = rng.integers(2, 3 * 24 * 60, size=int(jump.sum()))
    start_ns = pd.Timestamp("2024-01-07 22:00").value if start_ns is None else start_ns
    ts = start_ns + np.cumsum(steps) * NS_PER_MINUTE
    moves = np.round(rng.standard_t(3, size=n) * 3, 1) * 0.01
    moves[rng.random(n) < 0.1] = 0.0
    close = np.maximum(np.round(170 + np.cumsum(moves), 3), 1.0)
    open_ = np.concatenate([[close[0]], close[:-1]])
    wick = np.round(np.abs(rng.normal(0, 2, size=(2, n))), 1) * 0.01
    wick[:, rng.random(n) < 0.1] = 0.0
    volume = rng.poisson(20, size=n).astype(np.float64)
    volume[rng.random(n) < 0.1] = 0.0
    low = np.maximum(np.minimum(open_, close) - wick[1], 0.5)
    return Bars(ts, open_, np.maximum(open_, close) + wick[0], low, close, volume)


def test_the_spec_sits_beside_micro_v1_without_changing_it():
    assert FEATURE_SPEC_VERSION == "micro-v1" and INDICATORS_SPEC_VERSION == "indicators-v1"
    assert FEATURE_SPECS == {"micro-v1": TEMPORAL_FEATURES, "indicators-v1": INDICATOR_FEATURES}
    assert len(INDICATOR_FEATURES) == len(set(INDICATOR_FEATURES)) == 40
    f = indicator_features(random_bars(0, 50))
    assert f.shape == (50, 40) and f.dtype == np.float32 and f.flags.c_contiguous


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 1500), calendar=st.sampled_from(["fx", "crypto", "nyse"]),
       data=st.data())
def test_changing_bars_after_t_changes_nothing_at_or_before_t(seed, n, calendar, data):
    """Replace every bar after a random t (prices, volumes, times): every column at or before t is
    the same bit for bit, and so is the series cut at t."""
    bars = random_bars(seed, n)
    t = data.draw(st.integers(0, n - 1))
    other = random_bars(seed ^ 0x5EED, n, start_ns=int(bars.ts[t]))
    changed = Bars(*(np.concatenate([a[: t + 1], b[t + 1 :]]) for a, b in
                     zip((bars.ts, bars.open, bars.high, bars.low, bars.close, bars.volume),
                         (other.ts, other.open, other.high, other.low, other.close, other.volume))))
    full = indicator_features(bars, calendar)
    np.testing.assert_array_equal(indicator_features(changed, calendar)[: t + 1], full[: t + 1])
    np.testing.assert_array_equal(indicator_features(bars[: t + 1], calendar), full[: t + 1])


@pytest.mark.parametrize("n", [1, 2, 3, 15, 300])
def test_defined_everywhere_from_the_first_bar(n):
    for seed in range(5):
        assert np.isfinite(indicator_features(random_bars(seed, n), "fx")).all()


def test_a_flat_market_without_volume():
    """Zero ranges, zero changes, zero volume: neutral values, no division by zero."""
    n = 400
    ts = pd.Timestamp("2024-01-08").value + np.arange(n) * NS_PER_MINUTE
    flat = np.full(n, 170.0)
    f = indicator_features(Bars(ts, flat, flat, flat, flat, np.zeros(n)), "fx")
    assert np.isfinite(f).all()
    halves = ["rsi_14", "stoch_k", "stoch_d"]
    ones = ["volume_ma", "volume_ma_ratio", "is_trading_hour"]
    time = ["hour_sin", "hour_cos", "dow_sin", "dow_cos"]
    for name, j in COLUMN.items():
        expected = 0.5 if name in halves else 1.0 if name in ones else None if name in time else 0.0
        if expected is not None:
            np.testing.assert_array_equal(f[:, j], expected, err_msg=name)


def test_one_change_after_a_flat_start():
    """A step up after flat bars: RSI and %K at 1, z-scores at their bound sqrt(count - 1)."""
    ts = pd.Timestamp("2024-01-08").value + np.arange(10) * NS_PER_MINUTE
    close = np.array([100.0] * 9 + [101.0])
    f = indicator_features(Bars(ts, close, close, close, close, np.ones(10)), "crypto")
    assert f[-1, COLUMN["rsi_14"]] == 1.0 and f[-1, COLUMN["stoch_k"]] == 1.0
    assert f[-1, COLUMN["close"]] == pytest.approx(3.0)  # one of 10 values apart: z = sqrt(9)
    assert f[-1, COLUMN["return_1"]] == pytest.approx(np.log(1.01))
    assert f[-1, COLUMN["realized_vol_12"]] == pytest.approx(np.log(1.01) / 3.0)  # 9 returns, one nonzero


@pytest.fixture(scope="module")
def synthetic():
    bars = generate_bars(SyntheticMarketConfig(weeks=1, seed=5), max_bars=3000)
    frame = bars.to_frame()
    return bars, frame["high"], frame["low"], frame["close"], frame["volume"]


def _same(ours, theirs, first: int, **tolerance):
    """Equal from bar `first` on: where `ta` is defined (its NaN / zero warm-up comes before)."""
    theirs = np.asarray(theirs, dtype=np.float64)
    assert np.isfinite(theirs[first:]).all()
    np.testing.assert_allclose(ours[first:], theirs[first:], **{"rtol": 1e-9, "atol": 1e-9, **tolerance})


def test_moving_averages_and_macd_equal_ta(synthetic):
    bars, _, _, close, _ = synthetic
    for k in ind.SMA_WINDOWS:
        _same(ind.sma(bars.close, k), ta.trend.SMAIndicator(close, k).sma_indicator(), k - 1)
    for k in ind.EMA_SPANS:  # both seed the EMA with the first close (pandas ewm, adjust=False)
        _same(ind.ema(bars.close, k), ta.trend.EMAIndicator(close, k).ema_indicator(), k - 1)
    # ta seeds the signal EMA at bar 25, the first where its MACD line exists; ours at bar 0 (the
    # line is 0 there). The seeds' weight is 0.8^(t - 25): equal past the warm-up.
    reference = ta.trend.MACD(close, window_slow=26, window_fast=12, window_sign=9)
    line, signal, hist = ind.macd(bars.close)
    _same(line, reference.macd(), 25)
    _same(signal, reference.macd_signal(), INDICATOR_WARMUP_BARS)
    _same(hist, reference.macd_diff(), INDICATOR_WARMUP_BARS)


def test_momentum_equals_ta(synthetic):
    bars, high, low, close, _ = synthetic
    # ta's RSI is Wilder's smoothing as pandas ewm(alpha=1/14, adjust=False) from gains and losses
    # of 0 at bar 0, not Wilder's original seed (the mean of the first 14 changes): ours is ta's
    _same(ind.rsi(bars.close), ta.momentum.RSIIndicator(close, 14).rsi(), 14)
    reference = ta.momentum.StochasticOscillator(high, low, close, window=14, smooth_window=3)
    k, d = ind.stochastic(bars.high, bars.low, bars.close)
    _same(k, reference.stoch(), 13)
    _same(d, reference.stoch_signal(), 15)
    f = indicator_features(bars)
    _same(f[:, COLUMN["rsi_14"]], ta.momentum.RSIIndicator(close, 14).rsi() / 100, 14, rtol=1e-6, atol=1e-7)


def test_volatility_equals_ta(synthetic):
    bars, high, low, close, _ = synthetic
    reference = ta.volatility.BollingerBands(close, window=20, window_dev=2)  # population std, as ours
    upper, middle, lower = ind.bollinger(bars.close)
    _same(upper, reference.bollinger_hband(), 19)
    _same(middle, reference.bollinger_mavg(), 19)
    _same(lower, reference.bollinger_lband(), 19)
    f = indicator_features(bars)
    _same(f[:, COLUMN["bb_width"]], reference.bollinger_wband() / 100, 19, rtol=1e-6, atol=1e-9)  # ta's is in %
    # ta's ATR is 0 before bar 13, then the mean TR of bars 0-13 (bar 0's TR is h - l), then Wilder
    _same(ind.atr(bars.high, bars.low, bars.close), ta.volatility.AverageTrueRange(high, low, close, 14).average_true_range(), 13)


def test_volume_indicators_equal_ta(synthetic):
    bars, high, low, close, volume = synthetic
    # ta's OBV adds the volume when the close is unchanged, and bar 0's volume; Granville's (ours)
    # adds nothing then. The difference is the running sum of those volumes.
    unchanged = np.concatenate([[True], np.diff(bars.close) == 0])
    assert unchanged[1:].any()  # the synthetic market has unchanged closes: the difference is tested
    reference = ta.volume.OnBalanceVolumeIndicator(close, volume).on_balance_volume()
    _same(ind.obv(bars.close, bars.volume), reference - np.cumsum(np.where(unchanged, bars.volume, 0.0)), 0, atol=0)
    # ta's VWAP is a rolling one over 14 bars of the typical price (not anchored to a session), as ours
    reference = ta.volume.VolumeWeightedAveragePrice(high, low, close, volume, window=14).volume_weighted_average_price()
    _same(ind.vwap(bars.high, bars.low, bars.close, bars.volume), reference, 13)


def test_the_warm_up_makes_the_series_start_irrelevant(synthetic):
    """Started 700 bars later, the series gives the same features once INDICATOR_WARMUP_BARS have
    passed: windows are then full and the recursive indicators have forgotten their seed."""
    bars = synthetic[0]
    full = indicator_features(bars)
    start = 700
    late = indicator_features(bars[start:])
    np.testing.assert_allclose(late[INDICATOR_WARMUP_BARS:], full[start + INDICATOR_WARMUP_BARS :], rtol=1e-5, atol=1e-6)
    assert np.abs(late[:INDICATOR_WARMUP_BARS] - full[start : start + INDICATOR_WARMUP_BARS]).max() > 1e-3  # it was needed


@pytest.mark.parametrize(
    "ts, hour, dow, fx, crypto, nyse",
    [
        ("2024-01-08 14:29", 14 + 29 / 60, 0, 1, 1, 0),  # Monday 09:29 New York: the exchange is shut
        ("2024-01-08 14:30", 14.5, 0, 1, 1, 1),   # 09:30: it opens
        ("2024-01-10 20:59", 20 + 59 / 60, 2, 1, 1, 1),  # Wednesday 15:59 New York
        ("2024-01-10 21:00", 21.0, 2, 1, 1, 0),   # 16:00 New York: the exchange has closed
        ("2024-01-13 12:00", 12.0, 5, 0, 1, 0),   # Saturday: FX is closed, crypto is not
        ("2024-01-14 21:59", 21 + 59 / 60, 6, 0, 1, 0),  # Sunday 16:59 New York, FX opens at 17:00
        ("2024-01-14 22:00", 22.0, 6, 1, 1, 0),
    ],
)
def test_time_columns(ts, hour, dow, fx, crypto, nyse):
    stamp = np.array([pd.Timestamp(ts).value], dtype=np.int64)
    one = np.array([100.0])
    bars = Bars(stamp, one, one, one, one, one)
    for calendar, open_ in (("fx", fx), ("crypto", crypto), ("nyse", nyse)):
        f = indicator_features(bars, calendar)[0]
        assert f[COLUMN["is_trading_hour"]] == open_, calendar
    hour_angle, dow_angle = 2 * np.pi * hour / 24, 2 * np.pi * dow / 7
    got = f[[COLUMN[name] for name in ("hour_sin", "hour_cos", "dow_sin", "dow_cos")]]
    np.testing.assert_allclose(got, [np.sin(hour_angle), np.cos(hour_angle), np.sin(dow_angle), np.cos(dow_angle)], atol=1e-6)


def test_empty_input():
    empty = Bars(*(np.empty(0, dtype=dt) for dt in (np.int64, float, float, float, float, float)))
    assert indicator_features(empty).shape == (0, 40)
