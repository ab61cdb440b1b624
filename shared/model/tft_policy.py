"""The Oracle's forecast as a policy: a target position in {-1, 0, +1} from quantile forecasts and a cost.

The rule, at decision bar t, with the forecast of the cumulative log return R_H = ln(c[t + H] / c[t])
over the next H bars (decoder step H, as tft.py forecasts it) and the round-trip cost C >= 0 in
log-return units (`spread_cost`):

* long  (+1) when the lower quantile of R_H exceeds C: even a pessimistic outcome pays the spread;
* short (-1) when the upper quantile of R_H is below -C;
* otherwise no signal: flat (0), or the current position when `no_signal` is "hold".

Both inequalities are strict: a forecast whose lower quantile only equals the cost does not trade.
Both can hold only for crossed quantiles (lower > upper), which tft.py's head rules out; such a
forecast gives no signal. The functions are pure (numpy in, numpy out), so the validation service
can play the rule like any policy: call it once per decision bar with that bar's forecast.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from shared.config.challengers import ForecastPolicyConfig
from shared.core.calendar import MarketCalendar
from shared.model.tft_data import window_inputs

__all__ = ["ForecastPolicyConfig", "forecast_at", "spread_cost", "target_position"]

LONG, FLAT, SHORT = 1, 0, -1


def spread_cost(spread, mid):
    """The round trip's cost in log-return units: buy at the ask, sell at the bid, ln(ask / bid),
    with ask and bid = mid +- spread / 2 (prices, same units; about spread / mid)."""
    spread = np.asarray(spread, dtype=np.float64)
    mid = np.asarray(mid, dtype=np.float64)
    if np.any(spread < 0) or np.any(spread >= 2 * mid):
        raise ValueError("spread must lie in [0, 2 * mid)")
    return np.log((mid + spread / 2) / (mid - spread / 2))


def _quantile_index(quantiles, q: float) -> int:
    matches = [i for i, x in enumerate(quantiles) if abs(float(x) - q) < 1e-9]
    if not matches:
        raise ValueError(f"the forecast has quantiles {tuple(quantiles)}, not {q}")
    return matches[0]


def target_position(forecast, quantiles, cost, *, current=FLAT, config: ForecastPolicyConfig = ForecastPolicyConfig()):
    """forecast [..., D, Q] (quantiles of ln(c[t + k] / c[t]) per step k = 1 .. D, e.g. TFTOutput.quantiles
    as numpy), `quantiles` its Q levels, cost (scalar or [...]) -> target position [...] int64 in
    {-1, 0, +1} by the module's rule; `current` [...] is kept on no signal when no_signal is "hold"."""
    forecast = np.asarray(forecast, dtype=np.float64)
    if forecast.ndim < 2 or forecast.shape[-1] != len(quantiles):
        raise ValueError(f"forecast must be [..., D, {len(quantiles)}]; got {forecast.shape}")
    if config.horizon_bars > forecast.shape[-2]:
        raise ValueError(f"horizon {config.horizon_bars} bars is beyond the forecast's {forecast.shape[-2]} steps")
    cost = np.asarray(cost, dtype=np.float64)
    if np.any(cost < 0):
        raise ValueError("cost must be non-negative")
    at_horizon = forecast[..., config.horizon_bars - 1, :]  # [..., Q]
    lower = at_horizon[..., _quantile_index(quantiles, config.lower_quantile)]
    upper = at_horizon[..., _quantile_index(quantiles, config.upper_quantile)]
    long, short = lower > cost, upper < -cost
    otherwise = np.asarray(current, dtype=np.int64) if config.no_signal == "hold" else np.int64(FLAT)
    position = np.where(long & ~short, LONG, np.where(short & ~long, SHORT, otherwise))
    return position.astype(np.int64)


def forecast_at(model: torch.nn.Module, features: np.ndarray, ts: np.ndarray, origins: np.ndarray, *, bar_minutes: int,
                calendar: MarketCalendar | str, batch: int = 512,
                on_batch: Callable[[int, int], None] | None = None) -> np.ndarray:
    """[B, D, Q] float32: the forecaster's quantiles at each origin bar [B] from the feature rows <= it
    (tft_data.window_inputs), in eval mode without gradients, `batch` windows a call; `on_batch(done,
    total)` after each (progress, deadlines)."""
    c = model.config
    out = np.empty((len(origins), c.decoder_bars, len(c.quantiles)), np.float32)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for i in range(0, len(origins), batch):
                observed, known = window_inputs(features, ts, origins[i : i + batch], encoder_bars=c.encoder_bars,
                                                decoder_bars=c.decoder_bars, bar_minutes=bar_minutes, calendar=calendar)
                quantiles = model(torch.from_numpy(observed).to(device), torch.from_numpy(known).to(device)).quantiles
                out[i : i + batch] = quantiles.cpu().numpy()
                if on_batch is not None:
                    on_batch(min(i + batch, len(origins)), len(origins))
    finally:
        model.train(was_training)
    return out
