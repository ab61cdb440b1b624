"""The 9 temporal micro features and the per-bar market outcome (numba).

For bar t with close c, high h, low l, pip size p (windows count bars and
are truncated at the start of the series, so every value is defined):

  position_in_range_60         (c_t - min l[t-59..t]) / (max h[t-59..t] - min l[t-59..t]); 0.5 if the range is 0
  min_max_scaled_momentum_60   m60_t = (c_t - c_{t-60}) / p, min-max scaled over m60[t-1439..t]
  min_max_scaled_rolling_range r_t = (max h[t-59..t] - min l[t-59..t]) / p, min-max scaled over r[t-1439..t]
  min_max_scaled_momentum_5    m5_t = (c_t - c_{t-5}) / p, min-max scaled over m5[t-1439..t]
  price_change_pips            tanh((c_t - c_{t-1}) / p / 10); 0 at the first bar
  dow_cos, dow_sin             cos, sin(2 pi d / 5), d = day of the trading week 0..4
  hour_cos, hour_sin           cos, sin(2 pi H / 120), H = hours since the week opened (Sunday 22:00 UTC), capped at 120

Min-max scaling: (x - min) / (max - min) over the trailing window, 0.5 when
max == min. Every lookback ends at t: no feature at t reads a bar after t, and
each value is computed exactly from its own lookback, so it is the same
whatever the series starts or ends with (the live service relies on that).

Market outcome of bar t: d_t = (c_t - c_{t-1}) / p against the threshold
0.33 * std(d[t-20..t-1]) (sample std of the 20 changes before t, fewer at the
start, NEUTRAL until two exist): UP if d_t > threshold, DOWN if d_t <
-threshold, NEUTRAL otherwise. The threshold is known before bar t closes.
"""

from __future__ import annotations

import numba
import numpy as np

from shared.data.bars import NS_PER_MINUTE, WEEK_MINUTES, WEEK_OPEN_OFFSET_MINUTES, Bars
from shared.features.spec import (
    NORMALIZATION_BARS,
    OUTCOME_STD_BARS,
    OUTCOME_THRESHOLD_STD,
    PRICE_CHANGE_SCALE_PIPS,
    RANGE_BARS,
    SHORT_MOMENTUM_BARS,
    TEMPORAL_FEATURES,
    TRADING_WEEK_HOURS,
    MarketOutcome,
)

NUM_TEMPORAL = len(TEMPORAL_FEATURES)


TILE_BARS = 32_768
HALO_BARS = NORMALIZATION_BARS - 1 + RANGE_BARS  # history a tile needs before its first bar


@numba.njit(cache=True)
def _rolling_min_max(lo_src, hi_src, first, last, window, lo_out, hi_out, scratch):
    """For t in [first, last): min of lo_src and max of hi_src over
    [max(first, t-window+1), t], into lo_out / hi_out[t - first].

    van Herk / Gil-Werman: within blocks of `window` bars take running extremes
    forwards (g) and backwards (h); a window spans at most two blocks, so its
    minimum is min(h[start], g[t]). Branch-free and exact: min and max do not
    round, so a value never depends on where the blocks start.
    """
    n = last - first
    lo_x = lo_src[first:last]
    hi_x = hi_src[first:last]
    g_lo, g_hi, h_lo, h_hi = scratch[0], scratch[1], scratch[2], scratch[3]
    for block_first in range(0, n, window):
        block_end = min(block_first + window, n)
        lo = lo_x[block_first]
        hi = hi_x[block_first]
        for i in range(block_first, block_end):
            lo = min(lo, lo_x[i])
            hi = max(hi, hi_x[i])
            g_lo[i] = lo
            g_hi[i] = hi
        lo = lo_x[block_end - 1]
        hi = hi_x[block_end - 1]
        for j in range(block_end - block_first):
            i = block_end - 1 - j
            lo = min(lo, lo_x[i])
            hi = max(hi, hi_x[i])
            h_lo[i] = lo
            h_hi[i] = hi
    head = min(window, n)
    lo_out[:head] = g_lo[:head]
    hi_out[:head] = g_hi[:head]
    for i in range(head, n):
        lo_out[i] = min(h_lo[i - window + 1], g_lo[i])
        hi_out[i] = max(h_hi[i - window + 1], g_hi[i])


@numba.njit(cache=True)
def _scaled(x_t, lo, hi):
    span = hi - lo
    return (x_t - lo) / span if span > 0 else 0.5


@numba.njit(cache=True)
def _temporal_tile(ts_ns, high, low, close, pip, calendar, first, last, out):
    """Features of bars [first, last) from their own history (HALO_BARS
    before `first`), in scratch that stays in cache."""
    s0 = max(0, first - HALO_BARS)  # 60-bar extremes are needed from here
    s1 = max(0, first - (NORMALIZATION_BARS - 1))  # the scaled series from here
    m = last - s0
    scratch = np.empty((4, m))
    lo60 = np.empty(m)
    hi60 = np.empty(m)
    _rolling_min_max(low, high, s0, last, RANGE_BARS, lo60, hi60, scratch)

    k = last - s1
    series = np.empty((3, k))  # momentum_60, range, momentum_5 in pips
    for i in range(k):
        t = s1 + i
        series[0, i] = (close[t] - close[max(t - RANGE_BARS, 0)]) / pip
        series[1, i] = (hi60[t - s0] - lo60[t - s0]) / pip
        series[2, i] = (close[t] - close[max(t - SHORT_MOMENTUM_BARS, 0)]) / pip
    lo_n = np.empty((3, k))
    hi_n = np.empty((3, k))
    for j in range(3):
        _rolling_min_max(series[j], series[j], 0, k, NORMALIZATION_BARS, lo_n[j], hi_n[j], scratch)

    for t in range(first, last):
        i0 = t - s0
        i1 = t - s1
        out[t, 0] = _scaled(close[t], lo60[i0], hi60[i0])
        for j in range(3):
            out[t, 1 + j] = _scaled(series[j, i1], lo_n[j, i1], hi_n[j, i1])
        change = (close[t] - close[t - 1]) / pip if t > 0 else 0.0
        # tanh(x) = 1 - 2 / (exp(2x) + 1): equal to an ulp, and much faster here
        out[t, 4] = 1.0 - 2.0 / (np.exp(2.0 * change / PRICE_CHANGE_SCALE_PIPS) + 1.0)
        minute_of_week = (ts_ns[t] // NS_PER_MINUTE - WEEK_OPEN_OFFSET_MINUTES) % WEEK_MINUTES
        for j in range(4):
            out[t, 5 + j] = calendar[minute_of_week, j]


@numba.njit(parallel=True, cache=True)
def _temporal_features(ts_ns, high, low, close, pip, calendar):
    """All 9 features, tiles spread over the cores. Each value is computed
    exactly from its own lookback, so tiling never changes a result."""
    n = len(close)
    out = np.empty((n, 9), dtype=np.float32)
    tiles = (n + TILE_BARS - 1) // TILE_BARS
    for tile in numba.prange(tiles):
        first = tile * TILE_BARS
        _temporal_tile(ts_ns, high, low, close, pip, calendar, first, min(first + TILE_BARS, n), out)
    return out


def _calendar_table() -> np.ndarray:
    """dow_cos, dow_sin, hour_cos, hour_sin for each minute of the week since Sunday 22:00 UTC."""
    hours = np.minimum(np.arange(WEEK_MINUTES) / 60.0, TRADING_WEEK_HOURS)
    day = np.minimum(np.floor(hours / 24.0), 4.0)
    angle_day, angle_hour = 2 * np.pi * day / 5.0, 2 * np.pi * hours / TRADING_WEEK_HOURS
    return np.stack([np.cos(angle_day), np.sin(angle_day), np.cos(angle_hour), np.sin(angle_hour)], axis=1)


CALENDAR_TABLE = _calendar_table()  # [WEEK_MINUTES, 4]


# Reassociation lets LLVM vectorise the fixed-length 20-term sums; the order
# then depends only on the window, so each bar's value is still fixed.
@numba.njit(cache=True)
def _classify(change, threshold):
    if change > threshold:
        return 2  # UP
    if change < -threshold:
        return 0  # DOWN
    return 1  # NEUTRAL


# Serial on purpose: vectorised, this loop is faster than its parallel form.
# Reassociation lets LLVM vectorise the fixed-length 20-term sums; the order
# then depends only on the window, so each bar's value is still fixed.
@numba.njit(cache=True, fastmath={"reassoc", "contract", "nsz", "arcp"})
def _market_outcomes(close, pip):
    n = len(close)
    change = np.zeros(n)
    for t in range(1, n):
        change[t] = (close[t] - close[t - 1]) / pip
    out = np.ones(n, dtype=np.int8)  # NEUTRAL until two earlier changes exist
    for t in range(3, min(n, OUTCOME_STD_BARS + 1)):
        # the start of the series: the t - 1 changes there are
        window = change[1:t]
        mean = window.mean()
        var = ((window - mean) ** 2).sum() / (t - 2)
        out[t] = _classify(change[t], OUTCOME_THRESHOLD_STD * np.sqrt(var))
    for t in range(OUTCOME_STD_BARS + 1, n):
        total = 0.0
        total_sq = 0.0
        for i in range(t - OUTCOME_STD_BARS, t):
            total += change[i]
            total_sq += change[i] * change[i]
        mean = total / OUTCOME_STD_BARS
        var = (total_sq - OUTCOME_STD_BARS * mean * mean) / (OUTCOME_STD_BARS - 1)
        out[t] = _classify(change[t], OUTCOME_THRESHOLD_STD * np.sqrt(max(var, 0.0)))
    return out


def temporal_features(bars: Bars, pip_size: float) -> np.ndarray:
    """[N, 9] float32 temporal features of `bars`, in TEMPORAL_FEATURES order
    (computed in float64, rounded once to the float32 the networks take)."""
    if len(bars) == 0:
        return np.empty((0, NUM_TEMPORAL), dtype=np.float32)
    return _temporal_features(
        np.ascontiguousarray(bars.ts, dtype=np.int64),
        np.ascontiguousarray(bars.high, dtype=np.float64),
        np.ascontiguousarray(bars.low, dtype=np.float64),
        np.ascontiguousarray(bars.close, dtype=np.float64),
        float(pip_size),
        CALENDAR_TABLE,
    )


def market_outcomes(bars: Bars, pip_size: float) -> np.ndarray:
    """[N] int8 MarketOutcome of every bar."""
    if len(bars) == 0:
        return np.empty(0, dtype=np.int8)
    return _market_outcomes(np.ascontiguousarray(bars.close, dtype=np.float64), float(pip_size))


assert [o.value for o in MarketOutcome] == [0, 1, 2], "the numba kernels hard-code DOWN=0, NEUTRAL=1, UP=2"
