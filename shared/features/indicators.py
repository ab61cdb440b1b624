"""The product notes' indicators as a feature spec (indicators-v1): 40 causal columns per bar.

The Quantum Alpha guide (shared/product-notes) lists its data as "44 columns" but names 38: 8
trend, 3 momentum, 7 volatility, 4 volume, 6 price, 4 returns, 3 realised volatility, 3 time.
Here each named column is one feature, but for hour and day of week, which are a sin/cos pair
each (a clock has no edge between 23:00 and 00:00): 38 + 2 = 40. The other 4 of the guide's 44
are not named anywhere (a timestamp, a symbol, targets?), so none are made up to reach 44.

For bar t with open o, high h, low l, close c, volume v, log close L = ln c (prices must be
positive: raw prices, not on_instrument_scale's). Windows count bars and are truncated at the
start of the series (a mean over the bars there are), so every value is defined from bar 0:

  sma_10, sma_20, sma_50   ln(SMA_k / c), SMA_k = mean of c over k bars
  ema_12, ema_26           ln(EMA_k / c), EMA_k: alpha 2/(k+1), seeded with c_0
  macd                     (EMA_12 - EMA_26) / c
  macd_signal              EMA_9(MACD) / c, the EMA seeded with MACD_0 = 0
  macd_hist                (MACD - EMA_9(MACD)) / c
  rsi_14                   U / (U + D), Wilder's smoothing (alpha 1/14) of gains U and losses D,
                           from U = D = 0 at bar 0; 0.5 while U + D = 0 (bar 0, a flat start)
  stoch_k                  (c - LL_14) / (HH_14 - LL_14); LL, HH: lowest low, highest high of
                           14 bars; 0.5 when HH = LL
  stoch_d                  mean of stoch_k over 3 bars
  bb_upper, bb_lower       ln((SMA_20 +- 2 sd_20) / c), sd_20 the population std of c over 20 bars
  bb_middle                ln(SMA_20 / c): the guide's middle band is SMA 20, so this is sma_20
  bb_width                 4 sd_20 / SMA_20 (upper - lower over middle)
  atr_14                   ATR_14 / c; true range TR_0 = h_0 - l_0, then max(h - l, |h - c_-1|,
                           |l - c_-1|); ATR = mean TR of the bars there are up to bar 13, then
                           Wilder's (ATR_-1 * 13 + TR) / 14
  atr_period_high, _low    ln(HH_14 / c), ln(LL_14 / c): the extremes of the ATR's 14 bars
  obv                      z_240(OBV); OBV_t = sum over s <= t of sign(c_s - c_s-1) v_s (0 at bar 0)
  volume_ma                SMA_20(v) / SMA_240(v), 1 when no volume; in [0, 12]
  volume_ma_ratio          v / SMA_20(v), 1 when no volume; in [0, 20]
  vwap                     ln(VWAP_14 / c), VWAP_14 = sum(p v) / sum(v) over 14 bars, p = (h + l + c) / 3
                           (a rolling VWAP, as ta's; the mean of p when the 14 bars have no volume)
  open, high, low          ln(o / c), ln(h / c), ln(l / c): the bar's shape
  close, volume            z_240(c), z_240(v)
  price_ma_ratio           c / SMA_20 - 1: the guide's ratio; close to -sma_20, which it duplicates
  return_k (1, 3, 12, 60)  L_t - L_t-k (from bar 0 while t < k)
  realized_vol_k           sqrt(mean of r^2) over the last k one-bar log returns r (those there are;
  (12, 48, 240)            0 at bar 0): per bar, not annualised
  hour_sin, hour_cos       sin, cos(2 pi H / 24), H = UTC hour of day of the bar's open, with minutes
  dow_sin, dow_cos         sin, cos(2 pi d / 7), d = UTC day of week, Monday 0
  is_trading_hour          1.0 if the market calendar (shared.core.calendar) is open at the bar's open

z_W(x) is the causal z-score (x_t - mean) / sd over x's last W bars (population sd, 0 when the sd
is 0); it lies in [-sqrt(W - 1), sqrt(W - 1)]. z-scoring OBV removes its arbitrary start.

Every value at bar t reads bars <= t only. The windowed ones are computed from their own lookback
alone (the same whatever the series starts with); the recursive ones (EMA, MACD, RSI, ATR) carry
a weight of the series start that is below 1e-7 after INDICATOR_WARMUP_BARS. Computed in float64,
rounded once to float32. The raw helpers (`sma`, `ema`, `macd`, `rsi`, `stochastic`, `bollinger`,
`atr`, `obv`, `vwap`) give the indicators before normalisation, in price units (RSI and
stochastic 0-100, as usual).
"""

from __future__ import annotations

import numba
import numpy as np

from shared.core.calendar import MarketCalendar, calendar_named
from shared.core.feature_spec import INDICATOR_FEATURES, INDICATOR_WARMUP_BARS
from shared.data.bars import NS_PER_MINUTE, Bars

NUM_INDICATORS = len(INDICATOR_FEATURES)

SMA_WINDOWS = (10, 20, 50)
EMA_SPANS = (12, 26)
MACD_SIGNAL_SPAN = 9
RSI_BARS = 14
STOCH_BARS, STOCH_SMOOTH_BARS = 14, 3
BOLLINGER_BARS, BOLLINGER_STDS = 20, 2.0
ATR_BARS = 14
VOLUME_MA_BARS = 20
PRICE_MA_BARS = 20     # the MA of price_ma_ratio (the guide names none; 20, the Bollinger middle)
VWAP_BARS = 14
ZSCORE_BARS = 240      # the causal z-scores of close, volume and OBV, and the long volume mean
RETURN_BARS = (1, 3, 12, 60)
REALIZED_VOL_BARS = (12, 48, 240)
_MINUTES_PER_DAY = 24 * 60
# Reassociation lets LLVM vectorise the window sums; their order then depends on the window only,
# so a value is still the same bit for bit whatever comes after it (or before its window).
_WINDOW_MATH = {"reassoc", "contract", "nsz", "arcp"}
assert INDICATOR_WARMUP_BARS == max(ZSCORE_BARS, *REALIZED_VOL_BARS, *RETURN_BARS, *SMA_WINDOWS), "warm-up = longest lookback"


# ---- raw indicators (price units), each value from bars <= t -----------------------------------

@numba.njit(cache=True, fastmath=_WINDOW_MATH)
def sma(x, window):
    """Mean of x over the `window` values ending at each t (those there are at the start)."""
    out = np.empty(len(x))
    for t in range(len(x)):
        values = x[max(0, t - window + 1) : t + 1]  # a view from 0: LLVM vectorises its loops
        total = 0.0
        for i in range(len(values)):
            total += values[i]
        out[t] = total / len(values)
    return out


@numba.njit(cache=True)
def ema(x, span):
    """EMA with alpha = 2 / (span + 1), seeded with x[0] (pandas ewm(span, adjust=False))."""
    out = np.empty(len(x))
    if len(x) == 0:
        return out
    alpha = 2.0 / (span + 1.0)
    out[0] = x[0]
    for t in range(1, len(x)):
        out[t] = (1.0 - alpha) * out[t - 1] + alpha * x[t]
    return out


def macd(close: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MACD line (EMA 12 - EMA 26), its signal (EMA 9 of the line) and histogram (line - signal)."""
    line = ema(close, EMA_SPANS[0]) - ema(close, EMA_SPANS[1])
    signal = ema(line, MACD_SIGNAL_SPAN)
    return line, signal, line - signal


@numba.njit(cache=True)
def _wilder_gains_losses(close, window):
    """Wilder-smoothed gains U and losses D (alpha 1 / window), from U = D = 0 at bar 0 (as ta)."""
    n = len(close)
    up = np.zeros(n)
    down = np.zeros(n)
    for t in range(1, n):
        change = close[t] - close[t - 1]
        gain, loss = max(change, 0.0), max(-change, 0.0)
        up[t] = up[t - 1] + (gain - up[t - 1]) / window
        down[t] = down[t - 1] + (loss - down[t - 1]) / window
    return up, down


def rsi(close: np.ndarray, window: int = RSI_BARS) -> np.ndarray:
    """RSI 0-100: 100 U / (U + D) (= 100 - 100 / (1 + U / D)); 50 while U + D = 0."""
    up, down = _wilder_gains_losses(np.asarray(close, np.float64), window)
    total = up + down
    return np.where(total > 0, 100.0 * up / np.where(total > 0, total, 1.0), 50.0)


@numba.njit(cache=True)
def rolling_extremes(low, high, window):
    """Lowest low and highest high over the `window` bars ending at each t."""
    n = len(low)
    lowest = np.empty(n)
    highest = np.empty(n)
    for t in range(n):
        lo, hi = low[t], high[t]
        for i in range(max(0, t - window + 1), t):
            lo, hi = min(lo, low[i]), max(hi, high[i])
        lowest[t], highest[t] = lo, hi
    return lowest, highest


def stochastic(high, low, close, window: int = STOCH_BARS, smooth: int = STOCH_SMOOTH_BARS):
    """%K 0-100 = 100 (c - LL) / (HH - LL), 50 when HH = LL; %D = its mean over `smooth` bars."""
    lowest, highest = rolling_extremes(low, high, window)
    span = highest - lowest
    k = np.where(span > 0, 100.0 * (close - lowest) / np.where(span > 0, span, 1.0), 50.0)
    return k, sma(k, smooth)


@numba.njit(cache=True, fastmath=_WINDOW_MATH)
def rolling_std(x, window):
    """Population std of x over the `window` values ending at each t (two passes per window)."""
    out = np.empty(len(x))
    for t in range(len(x)):
        values = x[max(0, t - window + 1) : t + 1]
        mean = 0.0
        for i in range(len(values)):
            mean += values[i]
        mean /= len(values)
        total = 0.0
        for i in range(len(values)):
            total += (values[i] - mean) ** 2
        out[t] = np.sqrt(total / len(values))
    return out


def bollinger(close, window: int = BOLLINGER_BARS, stds: float = BOLLINGER_STDS):
    """Upper, middle (SMA) and lower band: SMA +- stds * population std over `window` bars."""
    middle = sma(close, window)
    width = stds * rolling_std(close, window)
    return middle + width, middle, middle - width


@numba.njit(cache=True)
def atr(high, low, close, window=ATR_BARS):
    """Average true range: the mean TR of the bars there are until bar window - 1, then Wilder."""
    n = len(close)
    out = np.empty(n)
    total = 0.0
    for t in range(n):
        tr = high[t] - low[t]
        if t > 0:
            tr = max(tr, abs(high[t] - close[t - 1]), abs(low[t] - close[t - 1]))
        if t < window:
            total += tr
            out[t] = total / (t + 1)
        else:
            out[t] = (out[t - 1] * (window - 1) + tr) / window
    return out


@numba.njit(cache=True)
def obv(close, volume):
    """On-balance volume: + v on an up close, - v on a down close, 0 unchanged; 0 at bar 0."""
    out = np.zeros(len(close))
    for t in range(1, len(close)):
        step = volume[t] if close[t] > close[t - 1] else (-volume[t] if close[t] < close[t - 1] else 0.0)
        out[t] = out[t - 1] + step
    return out


@numba.njit(cache=True, fastmath=_WINDOW_MATH)
def vwap(high, low, close, volume, window=VWAP_BARS):
    """Rolling VWAP of the typical price (h + l + c) / 3 over `window` bars; their mean typical
    price when those bars have no volume."""
    n = len(close)
    out = np.empty(n)
    for t in range(n):
        first = max(0, t - window + 1)
        h, lo, c, v = high[first : t + 1], low[first : t + 1], close[first : t + 1], volume[first : t + 1]
        weighted = 0.0
        volume_sum = 0.0
        plain = 0.0
        for i in range(len(c)):
            typical = (h[i] + lo[i] + c[i]) / 3.0
            weighted += typical * v[i]
            volume_sum += v[i]
            plain += typical
        out[t] = weighted / volume_sum if volume_sum > 0 else plain / len(c)
    return out


# ---- normalisation ----------------------------------------------------------------------------

@numba.njit(cache=True, fastmath=_WINDOW_MATH)
def rolling_zscore(x, window):
    """(x_t - mean) / sd over the `window` values ending at t (population sd; 0 when it is 0).
    Deviations are taken from x_t, so a large level (a cumulative OBV) costs no precision."""
    out = np.empty(len(x))
    for t in range(len(x)):
        values = x[max(0, t - window + 1) : t + 1]
        now = x[t]
        shift = 0.0
        for i in range(len(values)):
            shift += values[i] - now
        shift /= len(values)  # mean - x_t
        total = 0.0
        for i in range(len(values)):
            total += (values[i] - now - shift) ** 2
        out[t] = -shift / np.sqrt(total / len(values)) if total > 0 else 0.0
    return out


@numba.njit(cache=True, fastmath=_WINDOW_MATH)
def realized_volatility(log_close, window):
    """sqrt(mean r^2) over the last `window` one-bar log returns r (those there are; 0 at bar 0)."""
    n = len(log_close)
    out = np.zeros(n)
    squares = np.zeros(n)  # squares[t]: r_t^2, r_t = log_close[t] - log_close[t - 1]
    for t in range(1, n):
        squares[t] = (log_close[t] - log_close[t - 1]) ** 2
    for t in range(1, n):
        values = squares[max(1, t - window + 1) : t + 1]
        total = 0.0
        for i in range(len(values)):
            total += values[i]
        out[t] = np.sqrt(total / len(values))
    return out


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 1 where the denominator is 0 (no volume at all)."""
    safe = denominator > 0
    return np.where(safe, numerator / np.where(safe, denominator, 1.0), 1.0)


def _time_columns(ts_ns: np.ndarray, calendar: MarketCalendar) -> list[np.ndarray]:
    minutes = ts_ns // NS_PER_MINUTE
    hour_angle = 2 * np.pi * (minutes % _MINUTES_PER_DAY) / _MINUTES_PER_DAY
    dow_angle = 2 * np.pi * ((minutes // _MINUTES_PER_DAY + 3) % 7) / 7.0  # 1970-01-01 was a Thursday
    trading = (~calendar.closed(ts_ns)).astype(np.float64)
    return [np.sin(hour_angle), np.cos(hour_angle), np.sin(dow_angle), np.cos(dow_angle), trading]


def indicator_features(bars: Bars, calendar: MarketCalendar | str = "fx") -> np.ndarray:
    """[N, 40] float32 indicator features of `bars`, in INDICATOR_FEATURES order; `calendar` (or its
    name: the instrument's `calendar`) gives is_trading_hour."""
    calendar = calendar_named(calendar) if isinstance(calendar, str) else calendar
    if len(bars) == 0:
        return np.empty((0, NUM_INDICATORS), dtype=np.float32)
    ts = np.ascontiguousarray(bars.ts, dtype=np.int64)
    prices = (bars.open, bars.high, bars.low, bars.close, bars.volume)
    o, h, lo, c, v = (np.ascontiguousarray(x, dtype=np.float64) for x in prices)
    log_c = np.log(c)

    def dist(price: np.ndarray) -> np.ndarray:  # log-distance to the close
        return np.log(price) - log_c

    smas = {k: sma(c, k) for k in SMA_WINDOWS}
    line, signal, hist = macd(c)
    stoch_k, stoch_d = stochastic(h, lo, c)
    upper, middle, lower = bollinger(c)
    lowest, highest = rolling_extremes(lo, h, ATR_BARS)
    volume_ma = sma(v, VOLUME_MA_BARS)
    columns = [
        *(dist(smas[k]) for k in SMA_WINDOWS), *(dist(ema(c, k)) for k in EMA_SPANS),
        line / c, signal / c, hist / c,
        rsi(c) / 100.0, stoch_k / 100.0, stoch_d / 100.0,
        dist(upper), dist(middle), dist(lower), (upper - lower) / middle,
        atr(h, lo, c) / c, dist(highest), dist(lowest),
        rolling_zscore(obv(c, v), ZSCORE_BARS), _ratio(volume_ma, sma(v, ZSCORE_BARS)), _ratio(v, volume_ma),
        dist(vwap(h, lo, c, v)),
        dist(o), dist(h), dist(lo), rolling_zscore(c, ZSCORE_BARS), rolling_zscore(v, ZSCORE_BARS),
        c / smas[PRICE_MA_BARS] - 1.0,
        *(log_c - log_c[np.maximum(np.arange(len(c)) - k, 0)] for k in RETURN_BARS),
        *(realized_volatility(log_c, k) for k in REALIZED_VOL_BARS),
        *_time_columns(ts, calendar),
    ]
    assert len(columns) == NUM_INDICATORS
    by_column = np.empty((NUM_INDICATORS, len(bars)), dtype=np.float32)  # contiguous writes, one transpose
    for j, column in enumerate(columns):
        by_column[j] = column
    return np.ascontiguousarray(by_column.T)
