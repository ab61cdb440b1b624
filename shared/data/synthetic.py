"""A seeded synthetic market that looks like GBPJPY M1 (the embedded default), or any instrument of
the table on its own calendar: the FX week (Sunday 17:00 to Friday 17:00 New York, so 22:00 UTC
in winter and 21:00 in US summer) or crypto's 24/7 (no weekend, no weekend jump).

Per minute t of the market's week, in pips:

    sigma_t  = base_volatility * activity(hour_t) * regime_t
    eps_t    ~ Student-t(tail_dof), scaled to unit variance        (fat tails)
    drift_t  = edge_strength * sigma_t * tanh(M_{t-1})              (the planted edge)
    M_{t-1}  = (eps_{t-1} + ... + eps_{t-k}) / sqrt(k),  k = edge_lookback_bars
    move_t   = drift_t + sigma_t * eps_t + band_pull_t

* activity(hour) is an intraday cycle: quiet Asian hours, peaks at the London
  open and the London/New York overlap (mean 1 over the day).
* regime_t is a Markov chain over calm / normal / volatile multipliers with a
  mean stay of `regime_mean_bars`.
* band_pull_t gently pulls the price back inside [price_floor, price_ceiling]
  (GBPJPY's 140-200) so years of data stay in range.
* The planted edge: past shocks push the next moves the same way. With
  edge_strength = 0 the moves are unpredictable (martingale up to the band
  pull); with s > 0, the expected move of the next bar is s * sigma_t *
  tanh(M), so recent momentum predicts the next ~k bars. 0.3 gives roughly one
  spread (4 pips) of expected drift over k bars after a strong one-sigma run.
  The features see it through momentum and price changes.
* Bars go missing at random (`missing_bar_probability`) and in outages of
  15-45 minutes (`outages_per_week`), so gap handling has real work.
"""

from __future__ import annotations

import numba
import numpy as np
import pandas as pd

from shared.config import SyntheticMarketConfig
from shared.core.bar_sizes import check_granularity
from shared.core.calendar import bar_in_closed_market, calendar_named
from shared.core.instruments import get_instrument
from shared.data.bars import NS_PER_MINUTE, TRADING_WEEK_MINUTES, WEEK_MINUTES, Bars


def intraday_activity(hour_utc: np.ndarray) -> np.ndarray:
    """Volatility multiplier by hour of day (UTC), mean about 1 over a day."""
    raw = 0.45 + 0.55 * np.exp(-(((hour_utc - 8.0) / 2.0) ** 2)) + 0.9 * np.exp(-(((hour_utc - 14.0) / 2.5) ** 2))
    return raw / 0.7


@numba.njit(cache=True)
def _price_path(sigma, eps, drift_signal, edge, week_start, weekend_jump, start, floor, ceiling, pip):
    n = len(sigma)
    close = np.empty(n)
    open_ = np.empty(n)
    band = 0.1 * (ceiling - floor)
    price = start
    for t in range(n):
        if week_start[t]:
            price += weekend_jump[t] * pip
        open_[t] = price
        pull = 0.0
        if price < floor + band:
            pull = 0.002 * (floor + band - price) / pip
        elif price > ceiling - band:
            pull = -0.002 * (price - (ceiling - band)) / pip
        move = edge * sigma[t] * drift_signal[t] + sigma[t] * eps[t] + pull
        price = price + move * pip
        # Hard reflection keeps even extreme tails inside the band.
        if price < floor:
            price = 2 * floor - price
        elif price > ceiling:
            price = 2 * ceiling - price
        close[t] = price
    return open_, close


def synthetic_market_for(instrument: str, **settings) -> SyntheticMarketConfig:
    """The default market (GBPJPY-like) carried to another instrument of the table: prices around its
    typical price in the same band, volatility and weekend jump in the same ratio to its spread, so
    the planted edge is as worth trading after costs. GBPJPY gets exactly the defaults."""
    inst = get_instrument(instrument)
    base = SyntheticMarketConfig()
    reference = get_instrument(base.instrument)
    price_scale = (inst.typical_price or reference.typical_price) / reference.typical_price
    # its spread in its pips (a bps instrument's at its typical price) against the reference's
    typical = inst.typical_price or reference.typical_price
    pip_scale = inst.price_distance(inst.spread_pips, typical) / inst.pip_size / reference.spread_pips
    scaled = {
        "instrument": inst.name,
        "start_price": base.start_price * price_scale,
        "price_floor": base.price_floor * price_scale,
        "price_ceiling": base.price_ceiling * price_scale,
        "base_volatility_pips": base.base_volatility_pips * pip_scale,
        "weekend_jump_pips": base.weekend_jump_pips * pip_scale,
    }
    return SyntheticMarketConfig(**{**scaled, **settings})


def generate_bars(config: SyntheticMarketConfig, *, max_bars: int | None = None) -> Bars:
    """Generate the market described by `config` (deterministic for a seed)."""
    return generate_market(config, max_bars=max_bars)[0]


def generate_market(config: SyntheticMarketConfig, *, max_bars: int | None = None,
                    horizon_bars: int = 0) -> tuple[Bars, np.ndarray]:
    """The bars and, per bar, the generator's expected drift in pips over the next
    `horizon_bars` minutes (default: edge_lookback_bars) given everything known at the
    bar's close: what an oracle would know. Real data has no such thing."""
    instrument = get_instrument(config.instrument)
    pip = instrument.pip_size
    rng = np.random.default_rng(config.seed)

    calendar = calendar_named(instrument.calendar)
    bar_minutes = check_granularity(config.granularity)
    week_opens = calendar.week_opens(pd.Timestamp(config.start), config.weeks) // NS_PER_MINUTE
    week_minutes = WEEK_MINUTES if calendar.always_open else TRADING_WEEK_MINUTES
    bars_per_week = week_minutes // bar_minutes
    minutes = (week_opens[:, None] + np.arange(bars_per_week, dtype=np.int64) * bar_minutes).ravel()
    if not calendar.around_the_clock:  # an exchange's nights: only its hours have bars
        minutes = minutes[~bar_in_closed_market(calendar, minutes * NS_PER_MINUTE, bar_minutes)]
    week_start = np.zeros(len(minutes), dtype=np.bool_)
    if not calendar.always_open:  # the first bar after the weekend closure jumps
        week = np.searchsorted(week_opens, minutes, side="right") - 1
        week_start[1:] = np.diff(week) != 0
    n = len(minutes)

    hour = ((minutes % 1440) / 60.0).astype(np.float64)
    multipliers = np.asarray(config.regime_multipliers, dtype=np.float64)
    regime = _regimes(rng, n, len(multipliers), max(1.0, config.regime_mean_bars / bar_minutes))
    # a bar of m minutes moves as m independent minutes would (the sqrt is exactly 1 at M1)
    sigma = config.base_volatility_pips * np.sqrt(bar_minutes) * intraday_activity(hour) * multipliers[regime]

    dof = config.tail_dof
    eps = rng.standard_t(dof, size=n) / np.sqrt(dof / (dof - 2.0))
    k = config.edge_lookback_bars
    csum = np.concatenate([[0.0], np.cumsum(eps)])
    past = csum[np.arange(n)] - csum[np.maximum(np.arange(n) - k, 0)]  # eps[t-k..t-1]
    drift_signal = np.tanh(past / np.sqrt(k))

    weekend_jump = rng.normal(0.0, config.weekend_jump_pips, size=n)

    open_, close = _price_path(
        sigma, eps, drift_signal, config.edge_strength, week_start, weekend_jump,
        config.start_price, config.price_floor, config.price_ceiling, pip,
    )
    wick = np.abs(rng.normal(0.0, 0.6, size=(2, n))) * sigma * pip
    high = np.maximum(open_, close) + wick[0]
    low = np.minimum(open_, close) - wick[1]
    decimals = instrument.price_decimals
    open_, high, low, close = (np.round(x, decimals) for x in (open_, high, low, close))
    volume = rng.poisson(30.0 * sigma / config.base_volatility_pips).astype(np.float64) + 1.0

    keep = rng.random(n) >= config.missing_bar_probability
    outages = rng.poisson(config.outages_per_week * config.weeks)
    for start, length in zip(rng.integers(0, n, size=outages), rng.integers(15, 46, size=outages)):
        keep[start : start + max(1, int(length) // bar_minutes)] = False  # 15-45 minutes

    ts = minutes[keep] * NS_PER_MINUTE
    bars = Bars(ts, open_[keep], high[keep], low[keep], close[keep], volume[keep])
    drift = expected_drift_pips(eps, sigma, config.edge_strength, k, horizon_bars or k)[keep]
    if max_bars is not None:
        return bars[:max_bars], drift[:max_bars]
    return bars, drift


def expected_drift_pips(eps: np.ndarray, sigma: np.ndarray, edge: float, lookback: int, horizon: int) -> np.ndarray:
    """[N] sum over h = 1..horizon of edge * sigma[t+h] * tanh(known part of M_{t+h-1}), the
    known part being the shocks up to t that are still in the lookback window at t+h
    (later shocks have mean zero). The band pull is left out: it is rarely active."""
    n = len(eps)
    csum = np.concatenate([[0.0], np.cumsum(eps)])
    t = np.arange(n)
    drift = np.zeros(n)
    for h in range(1, horizon + 1):
        nxt = np.minimum(t + h, n - 1)
        lo = np.maximum(t + h - lookback, 0)
        known = np.where(lo <= t, csum[t + 1] - csum[np.minimum(lo, t + 1)], 0.0)
        drift += np.where(t + h < n, edge * sigma[nxt] * np.tanh(known / np.sqrt(lookback)), 0.0)
    return drift


def _regimes(rng: np.random.Generator, n: int, count: int, mean_bars: float) -> np.ndarray:
    """A Markov chain of regime indices with geometric stays, built run by run."""
    regime = np.empty(n, dtype=np.int64)
    t, current = 0, min(1, count - 1)  # start in the normal regime
    while t < n:
        stay = int(rng.geometric(1.0 / mean_bars))
        regime[t : t + stay] = current
        t += stay
        if count > 1:
            current = int((current + rng.integers(1, count)) % count)
    return regime
