"""The feature contract: names, windows, version. Change any definition in
`micro.py` or `position.py` and bump FEATURE_SPEC_VERSION: checkpoints carry
it and loaders refuse a mismatch."""

from __future__ import annotations

from enum import IntEnum

FEATURE_SPEC_VERSION = "micro-v1"

# Per-bar market features; the network sees the last WINDOW_BARS of them.
TEMPORAL_FEATURES: tuple[str, ...] = (
    "position_in_range_60",
    "min_max_scaled_momentum_60",
    "min_max_scaled_rolling_range",
    "min_max_scaled_momentum_5",
    "price_change_pips",
    "dow_cos",
    "dow_sin",
    "hour_cos",
    "hour_sin",
)
# The agent's own position, one vector per decision.
POSITION_FEATURES: tuple[str, ...] = (
    "position_side",
    "position_pips",
    "bars_since_entry",
    "pips_from_peak",
    "max_drawdown_pips",
    "accumulated_dd",
)

WINDOW_BARS = 32              # the default window of bars the network sees (network.window_bars)
RANGE_BARS = 60               # lookback of the 60-bar range and momentum
SHORT_MOMENTUM_BARS = 5
NORMALIZATION_BARS = 1440     # causal min-max scaling lookback (one trading day of M1 bars)
PRICE_CHANGE_SCALE_PIPS = 10.0
POSITION_SCALE_PIPS = 100.0   # tanh(x / 100) for position features
OUTCOME_STD_BARS = 20         # price changes in the outcome threshold's rolling std
OUTCOME_THRESHOLD_STD = 0.33
TRADING_WEEK_HOURS = 120.0

# First bar at which every lookback above is full.
WARMUP_BARS = NORMALIZATION_BARS + RANGE_BARS

# The second spec: the product notes' indicators (shared/features/indicators.py documents each
# column's formula and normalisation; its windows are set there): what the challenger families
# (tft, dt) and the Guardian read, and what their checkpoints carry (MuZero's carry
# FEATURE_SPEC_VERSION above). Change a definition in indicators.py and bump INDICATORS_SPEC_VERSION.
INDICATORS_SPEC_VERSION = "indicators-v1"
INDICATOR_FEATURES: tuple[str, ...] = (
    # trend: moving averages as log-distances to the close, MACD as a fraction of the close
    "sma_10", "sma_20", "sma_50", "ema_12", "ema_26", "macd", "macd_signal", "macd_hist",
    # momentum, in [0, 1]
    "rsi_14", "stoch_k", "stoch_d",
    # volatility: bands as log-distances to the close, widths relative to the price
    "bb_upper", "bb_middle", "bb_lower", "bb_width", "atr_14", "atr_period_high", "atr_period_low",
    # volume: causal z-score, ratios of volumes, VWAP as a log-distance to the close
    "obv", "volume_ma", "volume_ma_ratio", "vwap",
    # the bar itself
    "open", "high", "low", "close", "volume", "price_ma_ratio",
    # log returns and realised volatility
    "return_1", "return_3", "return_12", "return_60",
    "realized_vol_12", "realized_vol_48", "realized_vol_240",
    # time (UTC) and the market calendar
    "hour_sin", "hour_cos", "dow_sin", "dow_cos", "is_trading_hour",
)
# The longest lookback (240-bar realised volatility and z-scores): bar 240 is the first whose 240
# one-bar returns all exist. From there every windowed column is exact from its own lookback and
# the recursive ones (EMA, MACD, RSI, ATR) weigh the series start by less than 1e-7.
INDICATOR_WARMUP_BARS = 240
# the forecaster's known-future inputs: computable from a bar's open time alone (UTC; shared/model/tft_data.py)
KNOWN_FEATURES: tuple[str, ...] = ("hour_sin", "hour_cos", "dow_sin", "dow_cos")

# Per-bar market feature names of each spec version.
FEATURE_SPECS: dict[str, tuple[str, ...]] = {
    FEATURE_SPEC_VERSION: TEMPORAL_FEATURES,
    INDICATORS_SPEC_VERSION: INDICATOR_FEATURES,
}


class MarketOutcome(IntEnum):
    """The chance outcome of one bar: its close-to-close move against 0.33 sigma."""

    DOWN = 0
    NEUTRAL = 1
    UP = 2
