"""Training windows for the Oracle forecaster (shared/model/tft.py): inputs from bars <= t, targets after.

For a forecast origin t (a decision bar, index into the feature array):

* observed  features[t - E + 1 .. t]            the E = encoder_bars past rows (e.g. indicators-v1)
* known     time features of the D = decoder_bars bars scheduled after t: their open times come from
            ts[t], the bar size and the market calendar (the next D bars' slots on the bar grid, skipping
            any slot wholly in closed market), never from ts[t + 1 ..]: at a decision the next bars'
            times are known from the schedule alone. Columns KNOWN_FEATURES, the same formulas as
            indicators-v1's hour/day sin-cos columns.
* target    ln(c[t + k] / c[t]), k = 1 .. D: the CUMULATIVE log return from the origin's close to each
            step's close. Cumulative rather than per-bar because the policy (tft_policy.py) needs the
            quantiles of the return over H bars, and quantiles of a sum are not sums of quantiles.
            The per-bar returns are its first differences.

Only the target reads bars after t. `window_inputs` takes no prices at all and indexes rows <= t, so an
input cannot see the future by construction (tests/test_tft.py perturbs every row after t to check).
Where the data misses a bar the market was open for (a data gap, not a closure), bar t + k is later
than its scheduled slot: the known input then describes the slot, which is what a live forecast sees.

Scaling (`fit_scaling`) is fitted on bars before a cut only (the training part): per-feature mean and
std for the inputs, and the std of one-bar log returns that sets the target's scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shared.core.calendar import MarketCalendar, bar_in_closed_market, calendar_named
from shared.core.feature_spec import INDICATOR_WARMUP_BARS, KNOWN_FEATURES
from shared.data.bars import NS_PER_MINUTE

__all__ = [
    "KNOWN_FEATURES",
    "TFTScaling",
    "TFTWindows",
    "build_windows",
    "fit_scaling",
    "scheduled_times",
    "single_instrument",
    "time_features",
    "valid_origins",
    "window_inputs",
    "window_targets",
]

_MINUTES_PER_DAY = 24 * 60


def single_instrument(features) -> str:
    """The one instrument of a feature set (shared.features.store.FeatureSet): a forecaster is one per instrument."""
    if len(features.instrument_names) != 1:
        raise ValueError(f"the tft forecaster trades one instrument; this market has "
                         f"{', '.join(features.instrument_names)}: train one model per instrument")
    return features.instrument_names[0]


def time_features(ts_ns: np.ndarray) -> np.ndarray:
    """[N, 4] float32 KNOWN_FEATURES of UTC open times (ns): hour of day with minutes and day of week
    (Monday 0) as sin/cos pairs, as indicators-v1 computes its columns of the same names."""
    minutes = np.asarray(ts_ns, dtype=np.int64) // NS_PER_MINUTE
    hour_angle = 2 * np.pi * (minutes % _MINUTES_PER_DAY) / _MINUTES_PER_DAY
    dow_angle = 2 * np.pi * ((minutes // _MINUTES_PER_DAY + 3) % 7) / 7.0  # 1970-01-01 was a Thursday
    return np.stack([np.sin(hour_angle), np.cos(hour_angle), np.sin(dow_angle), np.cos(dow_angle)], axis=-1).astype(
        np.float32)


def scheduled_times(origin_ts: np.ndarray, steps: int, *, bar_minutes: int, calendar: MarketCalendar | str) -> np.ndarray:
    """[B, steps] int64: open times of the `steps` bars after each origin bar (open time origin_ts [B]):
    the next slots of the bar grid, skipping slots wholly in closed market (bar_in_closed_market)."""
    calendar = calendar_named(calendar) if isinstance(calendar, str) else calendar
    origin_ts = np.asarray(origin_ts, dtype=np.int64)
    bar_ns = bar_minutes * NS_PER_MINUTE
    times = origin_ts[:, None] + np.arange(1, steps + 1, dtype=np.int64) * bar_ns  # [B, steps]
    if calendar.always_open or times.size == 0:
        return times
    closed = bar_in_closed_market(calendar, times.ravel(), bar_minutes).reshape(times.shape)
    for i in np.flatnonzero(closed.any(axis=1)):  # the few origins whose next bars span a closure
        found: list[np.ndarray] = []
        start, count = int(origin_ts[i]), 0
        chunk = max(4 * steps, 1440 // bar_minutes)  # about a day of slots at a time
        while count < steps:
            slots = start + np.arange(1, chunk + 1, dtype=np.int64) * bar_ns
            open_slots = slots[~bar_in_closed_market(calendar, slots, bar_minutes)]
            found.append(open_slots)
            count += len(open_slots)
            start = int(slots[-1])
        times[i] = np.concatenate(found)[:steps]
    return times


def valid_origins(n_bars: int, *, encoder_bars: int, decoder_bars: int, first: int = INDICATOR_WARMUP_BARS) -> np.ndarray:
    """[B] int64 origins t whose encoder window starts at or after bar `first` (the features' warm-up)
    and that have decoder_bars bars after them: first + encoder_bars - 1 <= t < n_bars - decoder_bars."""
    start = max(first, 0) + encoder_bars - 1
    return np.arange(start, max(n_bars - decoder_bars, start), dtype=np.int64)


def _check_origins(origins: np.ndarray, n_bars: int, before: int, after: int) -> np.ndarray:
    origins = np.asarray(origins, dtype=np.int64)
    if origins.ndim != 1:
        raise ValueError(f"origins must be 1-d, got shape {origins.shape}")
    if len(origins) and (origins.min() < before or origins.max() + after >= n_bars):
        raise ValueError(f"origins must lie in [{before}, {n_bars - after}); got {origins.min()}..{origins.max()}")
    return origins


def window_inputs(features: np.ndarray, ts: np.ndarray, origins: np.ndarray, *, encoder_bars: int, decoder_bars: int,
                  bar_minutes: int, calendar: MarketCalendar | str) -> tuple[np.ndarray, np.ndarray]:
    """(observed [B, encoder_bars, F] float32, known [B, decoder_bars, 4] float32) at `origins` [B].
    Reads features[t - encoder_bars + 1 .. t] and ts[t] only: no row after t."""
    if features.ndim != 2 or len(ts) != len(features):
        raise ValueError(f"features must be [N, F] with N = len(ts); got {features.shape} and {len(ts)} times")
    origins = _check_origins(origins, len(features), encoder_bars - 1, 0)
    rows = origins[:, None] + np.arange(1 - encoder_bars, 1)  # [B, E], every row <= its origin
    observed = np.asarray(features, dtype=np.float32)[rows]
    future = scheduled_times(np.asarray(ts)[origins], decoder_bars, bar_minutes=bar_minutes, calendar=calendar)
    return observed, time_features(future)


def window_targets(close: np.ndarray, origins: np.ndarray, *, decoder_bars: int) -> np.ndarray:
    """[B, decoder_bars] float32 cumulative log returns ln(c[t + k] / c[t]), k = 1 .. decoder_bars."""
    origins = _check_origins(origins, len(close), 0, decoder_bars)
    log_close = np.log(np.asarray(close, dtype=np.float64))
    return (log_close[origins[:, None] + np.arange(1, decoder_bars + 1)] - log_close[origins, None]).astype(np.float32)


@dataclass(frozen=True)
class TFTWindows:
    """Training windows at B origins (E = encoder_bars, D = decoder_bars)."""

    observed: np.ndarray  # [B, E, F] float32, features of bars t - E + 1 .. t
    known: np.ndarray     # [B, D, 4] float32, KNOWN_FEATURES of the bars scheduled after t
    target: np.ndarray    # [B, D] float32, ln(c[t + k] / c[t]), k = 1 .. D
    origin: np.ndarray    # [B] int64, the origin bar t of each window

    def __post_init__(self) -> None:
        b, d = self.target.shape
        if self.observed.shape[0] != b or self.known.shape[:2] != (b, d) or self.origin.shape != (b,):
            raise ValueError(f"window shapes disagree: observed {self.observed.shape}, known {self.known.shape}, "
                             f"target {self.target.shape}, origin {self.origin.shape}")


def build_windows(features: np.ndarray, close: np.ndarray, ts: np.ndarray, origins: np.ndarray, *, encoder_bars: int,
                  decoder_bars: int, bar_minutes: int, calendar: MarketCalendar | str) -> TFTWindows:
    """Inputs (window_inputs: rows <= t) and targets (window_targets: the closes t .. t + D) at `origins`."""
    if len(close) != len(features):
        raise ValueError(f"close has {len(close)} rows, features {len(features)}")
    origins = _check_origins(origins, len(features), encoder_bars - 1, decoder_bars)
    observed, known = window_inputs(features, ts, origins, encoder_bars=encoder_bars, decoder_bars=decoder_bars,
                                    bar_minutes=bar_minutes, calendar=calendar)
    return TFTWindows(observed, known, window_targets(close, origins, decoder_bars=decoder_bars), origins)


@dataclass(frozen=True)
class TFTScaling:
    """Fitted on the training bars only; the model keeps it as buffers (TemporalFusionTransformer.set_scaling)."""

    observed_mean: np.ndarray  # [F] float32
    observed_std: np.ndarray   # [F] float32, 1 where a feature is constant
    return_std: float          # std of one-bar log returns: the target at step k is scaled by return_std * sqrt(k)


def fit_scaling(features: np.ndarray, close: np.ndarray, end: int, *, first: int = INDICATOR_WARMUP_BARS) -> TFTScaling:
    """Mean and std of each feature over bars first .. end - 1, and the std of the one-bar log returns there."""
    if not 0 <= first < end - 1 <= len(features) - 1:
        raise ValueError(f"need 0 <= first < end - 1 < N; got first {first}, end {end}, N {len(features)}")
    part = np.asarray(features[first:end], dtype=np.float64)
    std = part.std(axis=0)
    returns = np.diff(np.log(np.asarray(close[first:end], dtype=np.float64)))
    return_std = float(returns.std())
    return TFTScaling(part.mean(axis=0).astype(np.float32), np.where(std > 0, std, 1.0).astype(np.float32),
                      return_std if return_std > 0 else 1.0)
