"""A forecaster candidate (family tft) played as a policy: its quantile forecast at each decision bar
turned into a position by the documented rule (shared/model/tft_policy.py), so validation, its
Monte Carlo and the gate judge it on the same sessions as the MuZero agent and the baselines.

Forecasts are computed once for every decision bar of the sessions, in large batches, from the
indicator rows at or before that bar (indicators-v1 over the whole bar series is causal); the
policy then reads them by bar like the threshold rules read their signal. The round trip's cost
the forecast must clear is the environment's spread, in log-return units at that bar's price."""

from __future__ import annotations

from typing import Callable

import numpy as np

from shared.core.bar_sizes import check_granularity
from shared.core.instruments import get_instrument
from shared.env import TradingEnv
from shared.env.rollout import Policy
from shared.env.trading import Observation
from shared.features.indicators import indicator_features
from shared.features.store import FeatureSet
from shared.model.tft_data import single_instrument, window_targets
from shared.model.tft_policy import forecast_at, spread_cost, target_position
from shared.volume.candidates import Candidate


def decision_bars(starts: np.ndarray, steps: int) -> np.ndarray:
    """[B] every bar a session starting at `starts` decides at, once."""
    return np.unique((np.asarray(starts)[:, None] + np.arange(steps)).ravel())


def calibration(forecasts: np.ndarray, close: np.ndarray, origins: np.ndarray, quantiles) -> dict[str, float]:
    """{quantile: the share of realised returns below its forecast} over the origins whose whole
    forecast lies inside the data (about the quantile itself when calibrated): the forecaster's
    calibration on the sessions it is judged on."""
    steps = forecasts.shape[1]
    whole = origins + steps < len(close)
    if not whole.any():
        return {}
    realised = window_targets(close, origins[whole], decoder_bars=steps)[..., None]  # [B, D, 1]
    below = (realised < forecasts[whole]).mean(axis=(0, 1))
    return {str(q): round(float(b), 4) for q, b in zip(quantiles, below)}


def forecast_policy(candidate: Candidate, features: FeatureSet, env: TradingEnv, starts: np.ndarray,
                    on_batch: Callable[[int, int], None] | None = None) -> tuple[Policy, dict[str, float]]:
    """The candidate's forecast rule on `env`'s sessions starting at `starts`, and its calibration there;
    `on_batch(done, total)` while the forecasts are computed."""
    instrument = get_instrument(single_instrument(features))
    bars = features.bars
    config = candidate.config
    indicators = indicator_features(bars, instrument.calendar)
    origins = decision_bars(starts, env.steps_per_episode)
    forecasts = forecast_at(candidate.model, indicators, bars.ts, origins,
                            bar_minutes=check_granularity(features.granularity), calendar=instrument.calendar,
                            on_batch=on_batch)
    row_of = np.full(len(bars), -1, np.int64)
    row_of[origins] = np.arange(len(origins))
    spread_pips = instrument.spread_pips if env.config.spread_pips is None else env.config.spread_pips
    spread = instrument.price_distance(spread_pips, bars.close[origins])
    cost = spread_cost(spread, bars.close[origins])  # [B] the round trip in log-return units

    def choose(obs: Observation) -> np.ndarray:
        rows = row_of[obs.bar_index]
        held = np.sign(obs.position).astype(np.int64)
        want = target_position(forecasts[rows], config.tft.quantiles, cost[rows], current=held,
                               config=config.forecast_policy)
        return env.space.toward(obs.position, obs.legal, want)

    return choose, calibration(forecasts, bars.close, origins, config.tft.quantiles)
