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


class MarketOutcome(IntEnum):
    """The chance outcome of one bar: its close-to-close move against 0.33 sigma."""

    DOWN = 0
    NEUTRAL = 1
    UP = 2
