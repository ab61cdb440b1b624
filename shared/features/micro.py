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

from shared.core.feature_spec import (
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
from shared.data.bars import NS_PER_MINUTE, WEEK_MINUTES, WEEK_OPEN_OFFSET_MINUTES, Bars

NUM_TEMPORAL = len(TEMPORAL_FEATURES)

TILE_BARS = 32_768  # bars one worker computes at a time, from their own history
BLOCK_BARS = NORMALIZATION_BARS  # van Herk block of the day-long windows
assert BLOCK_BARS % RANGE_BARS == 0, "the 60-bar sub-blocks must tile a day-long block"
POS_INF = np.inf
NEG_INF = -np.inf

# How the kernels stay fast (about 30x the vectorised pandas reference):
# * each tile streams through day-long blocks whose scratch stays in cache;
# * inner loops index views from 0, so LLVM can prove the indices are never
#   negative (numba wraps negative ones, and the loop turns into gathers);
# * selects instead of data branches, divisions without numba's zero check
#   (error_model="numpy": a zero span is selected away), no libm calls.
# LLVM then vectorises the loops; the scans vectorise only across chains.


@numba.njit(cache=True)
def _previous_60_suffixes(low, high, start, suffix_lo, suffix_hi):
    """Suffix extremes of bars [start-60, start) into suffix_*[0:60]; index 60
    is the empty suffix. Bars before the series start count as absent."""
    suffix_lo[RANGE_BARS] = POS_INF
    suffix_hi[RANGE_BARS] = NEG_INF
    for j in range(RANGE_BARS - 1, -1, -1):
        t = start - RANGE_BARS + j
        suffix_lo[j] = min(suffix_lo[j + 1], low[t]) if t >= 0 else POS_INF
        suffix_hi[j] = max(suffix_hi[j + 1], high[t]) if t >= 0 else NEG_INF


@numba.njit(cache=True)
def _range_extremes_60(low, high, suffix_lo, suffix_hi, lo60, hi60):
    """min low / max high over the 60 bars ending at each bar of the views,
    van Herk over 60-bar sub-blocks: a window is a prefix of its own sub-block
    plus a suffix of the previous one (suffix_*, updated for the next call)."""
    m = len(low)
    for sub in range(0, m, RANGE_BARS):
        sub_end = min(sub + RANGE_BARS, m)
        lo = POS_INF
        hi = NEG_INF
        for i in range(sub_end - sub):
            lo = min(lo, low[sub + i])
            hi = max(hi, high[sub + i])
            lo60[sub + i] = min(lo, suffix_lo[i + 1])
            hi60[sub + i] = max(hi, suffix_hi[i + 1])
        lo = POS_INF
        hi = NEG_INF
        for i in range(sub_end - sub - 1, -1, -1):
            lo = min(lo, low[sub + i])
            hi = max(hi, high[sub + i])
            suffix_lo[i] = lo
            suffix_hi[i] = hi


@numba.njit(cache=True)
def _day_prefix_extremes(series, m, prefix_lo, prefix_hi):
    """Running min / max of each of the three series over their first m bars:
    six independent chains in one loop, so they overlap in the CPU."""
    lo0 = lo1 = lo2 = POS_INF
    hi0 = hi1 = hi2 = NEG_INF
    for i in range(m):
        x0, x1, x2 = series[0, i], series[1, i], series[2, i]
        lo0, lo1, lo2 = min(lo0, x0), min(lo1, x1), min(lo2, x2)
        hi0, hi1, hi2 = max(hi0, x0), max(hi1, x1), max(hi2, x2)
        prefix_lo[0, i], prefix_lo[1, i], prefix_lo[2, i] = lo0, lo1, lo2
        prefix_hi[0, i], prefix_hi[1, i], prefix_hi[2, i] = hi0, hi1, hi2


@numba.njit(cache=True)
def _day_suffix_extremes(series, suffix_lo, suffix_hi):
    """min / max of each series from every bar of a full block to its end."""
    lo0 = lo1 = lo2 = POS_INF
    hi0 = hi1 = hi2 = NEG_INF
    for k in range(BLOCK_BARS):
        i = BLOCK_BARS - 1 - k
        x0, x1, x2 = series[0, i], series[1, i], series[2, i]
        lo0, lo1, lo2 = min(lo0, x0), min(lo1, x1), min(lo2, x2)
        hi0, hi1, hi2 = max(hi0, x0), max(hi1, x1), max(hi2, x2)
        suffix_lo[0, i], suffix_lo[1, i], suffix_lo[2, i] = lo0, lo1, lo2
        suffix_hi[0, i], suffix_hi[1, i], suffix_hi[2, i] = hi0, hi1, hi2


@numba.njit(cache=True, error_model="numpy")
def _scaled(x, lo, hi):
    """(x - lo) / (hi - lo), 0.5 for a zero span; a select, not a branch."""
    span = hi - lo
    scaled = (x - lo) / span
    return scaled if span > 0 else 0.5


@numba.njit(cache=True, error_model="numpy")
def _range_scaled(x, lo, hi, out):
    """Min-max scaling against extremes given per bar (the 60-bar range)."""
    for i in range(len(x)):
        out[i] = _scaled(x[i], lo[i], hi[i])


@numba.njit(cache=True, error_model="numpy")
def _day_scaled(x, prefix_lo, prefix_hi, suffix_lo, suffix_hi, out):
    """Min-max scaling over the day-long window: its extremes are those of the
    block prefix and of the previous block's suffix (van Herk), views aligned
    so that suffix_*[i] starts one bar after the window's first bar."""
    for i in range(len(x)):
        out[i] = _scaled(x[i], min(prefix_lo[i], suffix_lo[i]), max(prefix_hi[i], suffix_hi[i]))


@numba.njit(cache=True, error_model="numpy")
def _change_pips(close, first, end, lag, pip, out):
    """(close[t] - close[max(t - lag, 0)]) / pip for t in [first, end), into out[0:]."""
    if first >= lag:
        now = close[first:end]
        before = close[first - lag : end - lag]
        for i in range(len(now)):
            out[i] = (now[i] - before[i]) / pip
    else:  # the start of the series
        for i in range(end - first):
            out[i] = (close[first + i] - close[max(first + i - lag, 0)]) / pip


# exp for the tanh column: Cody-Waite reduction x = k ln2 + r, |r| <= ln2 / 2,
# exp(r) - 1 as a degree-13 Taylor polynomial (truncation < 1e-17), 2^k from
# a table. Working with exp - 1 keeps full relative precision near 0.
_LN2_HI = 6.93147180369123816490e-01  # ln 2 split so that k * _LN2_HI is exact
_LN2_LO = 1.90821492927058770002e-10
_LOG2_E = 1.4426950408889634
_EXP_ARG_MAX = 40.0  # exp(-40) < 5e-18: tanh rounds to +-1 beyond it anyway
_POW2_NEG = np.array([2.0**-k for k in range(int(_EXP_ARG_MAX * _LOG2_E) + 2)])
# 1/13!, 1/12!, ..., 1/1!: Horner's order for exp(r) - 1 = r (1 + r (1/2! + ...))
_EXPM1_TAYLOR = tuple(1.0 / float(np.prod(np.arange(1, k + 1, dtype=np.float64))) for k in range(13, 0, -1))


@numba.njit(cache=True, error_model="numpy", fastmath={"contract"})
def _tanh_scaled(x, scale, out):
    """out[i] = tanh(z), z = x[i] / scale, as sign(z) * -m / (2 + m) with
    m = exp(-2|z|) - 1: within a few ulp of numpy's tanh, and a loop LLVM
    vectorises (libm's tanh would be a call per bar)."""
    for i in range(len(x)):
        z = x[i] / scale
        a = -min(2.0 * abs(z), _EXP_ARG_MAX)
        k = np.floor(a * _LOG2_E + 0.5)
        r = (a - k * _LN2_HI) - k * _LN2_LO
        q = 0.0
        for c in _EXPM1_TAYLOR:  # a constant tuple: fully unrolled
            q = q * r + c
        q = q * r  # exp(r) - 1
        two_k = _POW2_NEG[np.int64(-k)]
        m = two_k * q + (two_k - 1.0)  # exp(a) - 1 = 2^k (1 + q) - 1
        magnitude = abs(m) / (2.0 + m)
        out[i] = magnitude if z >= 0 else -magnitude


@numba.njit(cache=True)
def _minute_of_week(ts_ns):
    return (ts_ns // NS_PER_MINUTE - WEEK_OPEN_OFFSET_MINUTES) % WEEK_MINUTES


@numba.njit(cache=True)
def _write_rows(columns, ts_ns, calendar, rows):
    """rows[i] = features 0-4 from columns[:, i], then the calendar features.
    (columns is the whole C-ordered buffer: a column slice of it would be a
    strided array, and every load would multiply by runtime strides.)"""
    if len(rows) == 0:
        return
    minute = _minute_of_week(ts_ns[0])
    for i in range(len(rows)):
        if i > 0:  # consecutive minutes step the calendar on; any gap recomputes it
            step = ts_ns[i] - ts_ns[i - 1] == NS_PER_MINUTE
            minute = minute + 1 if step else _minute_of_week(ts_ns[i])
            minute = minute if minute < WEEK_MINUTES else 0
        # loads before stores: LLVM may then merge the row's stores
        f0, f1, f2, f3, f4 = columns[0, i], columns[1, i], columns[2, i], columns[3, i], columns[4, i]
        c0, c1, c2, c3 = calendar[minute, 0], calendar[minute, 1], calendar[minute, 2], calendar[minute, 3]
        rows[i, 0], rows[i, 1], rows[i, 2], rows[i, 3], rows[i, 4] = f0, f1, f2, f3, f4
        rows[i, 5], rows[i, 6], rows[i, 7], rows[i, 8] = c0, c1, c2, c3


@numba.njit(cache=True)
def _temporal_tile(ts_ns, high, low, close, pip, calendar, first, last, out):
    """Features of bars [first, last) from their own history: the day-long
    windows need the BLOCK_BARS - 1 bars before `first`, which start the
    first block, and those the 60 bars before them."""
    history_first = max(0, first - (BLOCK_BARS - 1))
    suffix_lo60 = np.empty(RANGE_BARS + 1)
    suffix_hi60 = np.empty(RANGE_BARS + 1)
    _previous_60_suffixes(low, high, history_first, suffix_lo60, suffix_hi60)
    # the previous block's suffix extremes; index BLOCK_BARS is the empty suffix
    suffix_lo = np.full((3, BLOCK_BARS + 1), POS_INF)
    suffix_hi = np.full((3, BLOCK_BARS + 1), NEG_INF)
    lo60 = np.empty(BLOCK_BARS)
    hi60 = np.empty(BLOCK_BARS)
    series = np.empty((3, BLOCK_BARS))  # momentum_60, range, momentum_5 in pips
    prefix_lo = np.empty((3, BLOCK_BARS))
    prefix_hi = np.empty((3, BLOCK_BARS))
    change = np.empty(BLOCK_BARS)
    columns = np.empty((5, BLOCK_BARS))  # features 0-4 of the block's output bars, from index 0
    for block_first in range(history_first, last, BLOCK_BARS):
        block_end = min(block_first + BLOCK_BARS, last)
        m = block_end - block_first
        _range_extremes_60(low[block_first:block_end], high[block_first:block_end],
                           suffix_lo60, suffix_hi60, lo60, hi60)
        _change_pips(close, block_first, block_end, RANGE_BARS, pip, series[0])
        for i in range(m):
            series[1, i] = (hi60[i] - lo60[i]) / pip
        _change_pips(close, block_first, block_end, SHORT_MOMENTUM_BARS, pip, series[2])
        _day_prefix_extremes(series, m, prefix_lo, prefix_hi)

        o = max(first, block_first) - block_first  # bars before `first` only feed the windows
        _range_scaled(close[block_first + o : block_end], lo60[o:m], hi60[o:m], columns[0, : m - o])
        for j in range(3):
            _day_scaled(series[j, o:m], prefix_lo[j, o:m], prefix_hi[j, o:m],
                        suffix_lo[j, o + 1 : m + 1], suffix_hi[j, o + 1 : m + 1], columns[1 + j, : m - o])
        _change_pips(close, block_first + o, block_end, 1, pip, change)
        _tanh_scaled(change[: m - o], PRICE_CHANGE_SCALE_PIPS, columns[4, : m - o])
        _write_rows(columns, ts_ns[block_first + o : block_end], calendar, out[block_first + o : block_end])
        if m == BLOCK_BARS:
            _day_suffix_extremes(series, suffix_lo, suffix_hi)


@numba.njit(parallel=True, cache=True)
def _temporal_features(ts_ns, high, low, close, pip, calendar, out):
    """All 9 features into out, tiles spread over the cores. Each value is
    computed exactly from its own lookback, so tiling never changes a result."""
    n = len(close)
    tiles = (n + TILE_BARS - 1) // TILE_BARS
    for tile in numba.prange(tiles):
        first = tile * TILE_BARS
        _temporal_tile(ts_ns, high, low, close, pip, calendar, first, min(first + TILE_BARS, n), out)


def _calendar_table() -> np.ndarray:
    """dow_cos, dow_sin, hour_cos, hour_sin for each minute of the week since Sunday 22:00 UTC."""
    hours = np.minimum(np.arange(WEEK_MINUTES) / 60.0, TRADING_WEEK_HOURS)
    day = np.minimum(np.floor(hours / 24.0), 4.0)
    angle_day, angle_hour = 2 * np.pi * day / 5.0, 2 * np.pi * hours / TRADING_WEEK_HOURS
    table = np.stack([np.cos(angle_day), np.sin(angle_day), np.cos(angle_hour), np.sin(angle_hour)], axis=1)
    return table.astype(np.float32)  # the features are float32: rounding here is rounding once


CALENDAR_TABLE = _calendar_table()  # [WEEK_MINUTES, 4] float32


@numba.njit(cache=True)
def _classify(change, threshold):
    if change > threshold:
        return 2  # UP
    if change < -threshold:
        return 0  # DOWN
    return 1  # NEUTRAL


# Reassociation lets LLVM vectorise the fixed-length 20-term sums; the order
# then depends only on the window, so each bar's value is still fixed.
@numba.njit(cache=True, fastmath={"reassoc", "contract", "nsz", "arcp"})
def _outcomes_from_series_start(close, pip, out):
    """Outcomes of every bar of `close`, taken as the start of the series."""
    n = len(close)
    change = np.zeros(n)
    for t in range(1, n):
        change[t] = (close[t] - close[t - 1]) / pip
    out[: min(n, 3)] = 1  # NEUTRAL until two earlier changes exist
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


@numba.njit(parallel=True, cache=True)
def _market_outcomes(close, pip, out):
    """Tiles over the cores. A tile starts its own series OUTCOME_STD_BARS + 1
    bars early: its bars then have their full windows, the early ones are
    dropped. (Loops written this way are the ones LLVM vectorises.)"""
    n = len(close)
    tiles = (n + TILE_BARS - 1) // TILE_BARS
    for tile in numba.prange(tiles):
        first = tile * TILE_BARS
        last = min(first + TILE_BARS, n)
        start = max(0, first - (OUTCOME_STD_BARS + 1))
        tile_out = np.empty(last - start, dtype=np.int8)
        _outcomes_from_series_start(close[start:last], pip, tile_out)
        out[first:last] = tile_out[first - start :]


def on_instrument_scale(bars: Bars, instrument) -> tuple[Bars, float]:
    """The bars on the instrument's P&L scale and one unit on it (shared.core.instruments: prices
    and the pip size, or 10,000 x ln price and 1.0): what every computation in pips reads, so the
    features of a coin or a stock are in basis points as its costs and rewards are."""
    if not instrument.in_bps:
        return bars, instrument.pip_size
    scale = instrument.scale_prices
    return Bars(bars.ts, scale(bars.open), scale(bars.high), scale(bars.low), scale(bars.close), bars.volume), 1.0


def temporal_features(bars: Bars, pip_size: float) -> np.ndarray:
    """[N, 9] float32 temporal features of `bars`, in TEMPORAL_FEATURES order
    (computed in float64, rounded once to the float32 the networks take)."""
    if len(bars) == 0:
        return np.empty((0, NUM_TEMPORAL), dtype=np.float32)
    # numpy's allocator asks the kernel for huge pages on large arrays (numba's
    # would not: 4 KiB faults on 48 MB cost more than the features). The pages
    # are faulted in here, one write per 4 KiB, from this one thread: faulted
    # from both worker threads at once, they took up to 90 ms instead of 3 on
    # the 2-vCPU VM, in bursts.
    out = np.empty((len(bars), NUM_TEMPORAL), dtype=np.float32)
    out.reshape(-1)[:: 4096 // out.itemsize] = 0.0
    _temporal_features(
        np.ascontiguousarray(bars.ts, dtype=np.int64),
        np.ascontiguousarray(bars.high, dtype=np.float64),
        np.ascontiguousarray(bars.low, dtype=np.float64),
        np.ascontiguousarray(bars.close, dtype=np.float64),
        float(pip_size),
        CALENDAR_TABLE,
        out,
    )
    return out


def market_outcomes(bars: Bars, pip_size: float) -> np.ndarray:
    """[N] int8 MarketOutcome of every bar."""
    if len(bars) == 0:
        return np.empty(0, dtype=np.int8)
    out = np.empty(len(bars), dtype=np.int8)
    _market_outcomes(np.ascontiguousarray(bars.close, dtype=np.float64), float(pip_size), out)
    return out


assert [o.value for o in MarketOutcome] == [0, 1, 2], "the numba kernels hard-code DOWN=0, NEUTRAL=1, UP=2"
