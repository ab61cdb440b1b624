"""Causal micro features: one implementation for training, validation and live."""

from shared.core.feature_spec import (
    FEATURE_SPEC_VERSION,
    POSITION_FEATURES,
    TEMPORAL_FEATURES,
    WINDOW_BARS,
    MarketOutcome,
)

__all__ = ["FEATURE_SPEC_VERSION", "TEMPORAL_FEATURES", "POSITION_FEATURES", "WINDOW_BARS", "MarketOutcome"]
