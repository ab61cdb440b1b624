"""The market and its sessions: the synthetic market's generator settings, how bars are cut into
train, validation and test sessions, and the session defaults of each bar size. Part of the one
configuration (shared/config/__init__.py re-exports every name here)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from shared.core.feature_spec import WARMUP_BARS
from shared.core.instruments import get_instrument


@dataclass(frozen=True)
class SyntheticMarketConfig:
    instrument: str = "GBPJPY"
    start: str = "2024-01-07"            # FX: the first week opens at the first Sunday 17:00 New York on or after this
    weeks: int = 8                       # trading weeks to generate (7,200 M1 bars each before gaps)
    granularity: str = "M1"              # the bar size generated: volatility per bar grows with sqrt(its minutes)
    seed: int = 7
    start_price: float = 170.0
    price_floor: float = 140.0
    price_ceiling: float = 200.0
    base_volatility_pips: float = 2.0    # per-minute std at average activity in the normal regime
    tail_dof: float = 4.0                # Student-t degrees of freedom of the shocks
    regime_multipliers: tuple[float, ...] = (0.6, 1.0, 1.8)
    regime_mean_bars: float = 2_880.0    # mean stay in one volatility regime, in M1 bars (two days) at any bar size
    weekend_jump_pips: float = 15.0      # std of the Sunday open against Friday's close
    missing_bar_probability: float = 0.002
    outages_per_week: float = 0.5
    edge_strength: float = 0.0           # 0 = no predictable component
    edge_lookback_bars: int = 15         # in bars of the bar size generated

    def __post_init__(self) -> None:
        get_instrument(self.instrument)
        checks = [
            (self.weeks >= 1, "weeks must be at least 1"),
            (0 < self.price_floor < self.start_price < self.price_ceiling, "need 0 < price_floor < start_price < price_ceiling"),
            (self.base_volatility_pips > 0, "base_volatility_pips must be positive"),
            (self.tail_dof > 2, "tail_dof must be above 2 (finite variance)"),
            (len(self.regime_multipliers) >= 1 and min(self.regime_multipliers) > 0, "regime_multipliers must be positive"),
            (self.regime_mean_bars >= 1, "regime_mean_bars must be at least 1"),
            (0 <= self.missing_bar_probability < 0.5, "missing_bar_probability must be in [0, 0.5)"),
            (self.outages_per_week >= 0, "outages_per_week must be >= 0"),
            (0 <= self.edge_strength <= 1, "edge_strength must be in [0, 1]"),
            (self.edge_lookback_bars >= 1, "edge_lookback_bars must be at least 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"synthetic market config: {message}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SessionConfig:
    length_bars: int = 360
    max_gap_minutes: int = 10
    min_mean_bar_range_pips: float = 1.0
    warmup_bars: int = WARMUP_BARS
    train_fraction: float = 0.70
    validation_fraction: float = 0.15
    purge_minutes: int = 1440
    train_stride_bars: int = 60
    eval_stride_bars: int = 360
    walk_forward_windows: int = 0   # 0: the plain train / validation split
    walk_forward_window: int = 0    # which window, 0..walk_forward_windows - 1

    def __post_init__(self) -> None:
        if self.length_bars < 2:
            raise ValueError("session length_bars must be at least 2")
        if self.max_gap_minutes < 1:
            raise ValueError("max_gap_minutes must be at least 1")
        if not (0 < self.train_fraction < 1 and 0 < self.validation_fraction < 1
                and self.train_fraction + self.validation_fraction < 1):
            raise ValueError("need 0 < train_fraction, validation_fraction and their sum < 1")
        if self.train_stride_bars < 1 or self.eval_stride_bars < 1:
            raise ValueError("session strides must be at least 1 bar")
        if self.purge_minutes < 0 or self.warmup_bars < 0:
            raise ValueError("purge_minutes and warmup_bars must be >= 0")
        if self.walk_forward_windows < 0:
            raise ValueError("walk_forward_windows must be >= 0 (0: no walk-forward)")
        if self.walk_forward_windows and not 0 <= self.walk_forward_window < self.walk_forward_windows:
            raise ValueError(f"walk_forward_window must be in 0..{self.walk_forward_windows - 1}, "
                             f"got {self.walk_forward_window}")

    def to_dict(self) -> dict:
        return asdict(self)


# Session settings that differ by bar size; SessionConfig's own defaults are M1's. An episode is
# about one trading day from M5 to H1, two days at H4 and four weeks of daily bars; a gap breaks a
# session when it is longer than a few bars (daily bars: longer than a long weekend); train
# sessions overlap, evaluation sessions do not. A value a user sets wins over these.
SESSION_DEFAULTS_BY_BAR_SIZE: dict[str, dict[str, int]] = {
    "M1": {},
    "M2": {"length_bars": 180, "max_gap_minutes": 20, "train_stride_bars": 30, "eval_stride_bars": 180},
    "M4": {"length_bars": 180, "max_gap_minutes": 20, "train_stride_bars": 15, "eval_stride_bars": 180},
    "M5": {"length_bars": 288, "max_gap_minutes": 30, "train_stride_bars": 12, "eval_stride_bars": 288},
    "M10": {"length_bars": 144, "max_gap_minutes": 60, "train_stride_bars": 6, "eval_stride_bars": 144},
    "M15": {"length_bars": 96, "max_gap_minutes": 90, "train_stride_bars": 4, "eval_stride_bars": 96},
    "M30": {"length_bars": 48, "max_gap_minutes": 180, "train_stride_bars": 2, "eval_stride_bars": 48},
    "H1": {"length_bars": 24, "max_gap_minutes": 360, "train_stride_bars": 2, "eval_stride_bars": 24,
           "purge_minutes": 2 * 1440},
    "H2": {"length_bars": 12, "max_gap_minutes": 720, "train_stride_bars": 1, "eval_stride_bars": 12,
           "purge_minutes": 2 * 1440},
    "H3": {"length_bars": 8, "max_gap_minutes": 720, "train_stride_bars": 1, "eval_stride_bars": 8,
           "purge_minutes": 2 * 1440},
    "H4": {"length_bars": 12, "max_gap_minutes": 1440, "train_stride_bars": 1, "eval_stride_bars": 12,
           "purge_minutes": 4 * 1440},
    "H6": {"length_bars": 8, "max_gap_minutes": 1440, "train_stride_bars": 1, "eval_stride_bars": 8,
           "purge_minutes": 4 * 1440},
    "H8": {"length_bars": 6, "max_gap_minutes": 1440, "train_stride_bars": 1, "eval_stride_bars": 6,
           "purge_minutes": 4 * 1440},
    # a week of FX has 10 H12 bars: sessions span weekends, as daily ones do
    "H12": {"length_bars": 10, "max_gap_minutes": 4 * 1440, "train_stride_bars": 1, "eval_stride_bars": 10,
            "purge_minutes": 14 * 1440},
    "D": {"length_bars": 20, "max_gap_minutes": 4 * 1440, "train_stride_bars": 1, "eval_stride_bars": 20,
          "purge_minutes": 14 * 1440},
}


def session_config_for(granularity: str, config: SessionConfig, set_by_user: set[str] = frozenset()) -> SessionConfig:
    """`config` with the bar size's defaults for every field the user did not set."""
    defaults = SESSION_DEFAULTS_BY_BAR_SIZE.get(granularity, {})
    return replace(config, **{name: value for name, value in defaults.items() if name not in set_by_user})
