"""Trading statistics of a trade list, and a Monte Carlo bootstrap of it.

Definitions (trades are closed trades in pips after costs, in time order):
* expectancy = mean pips per trade; win rate = share of trades > 0;
  profit factor = gross wins / gross losses (None when nothing was lost);
* max drawdown = the largest fall of the cumulative P&L from a running peak
  (the curve starts at 0);
* SQN (Van Tharp) = sqrt(N) * mean / std (sample std), reported raw and with N
  capped at 100 (`sqn_100`), which is comparable across trade counts;
* Sharpe on daily P&L: mean / std of the P&L per trading day x sqrt(trading days a year: 252 on
  the FX and exchange calendars, 365 for crypto).
  Daily, because 1-minute returns are autocorrelated and inflate it;
* quality score: the product notes' trading-weighted score, here exactly
    2.0 x expectancy if positive, else 0.3 x expectancy
  + 1.5 x AMDDP1 per trade, (total pips - 0.01 x max drawdown) / trades
  + 10 if trades >= 30, 2 if 1..29 trades
  + 3 x SQN_100 clipped to [0, 5]   (up to +15)
  + 3 if at least three different actions were used.
  (The notes' TD-error term has no counterpart here and is left out.)

Monte Carlo (Bandy): trades are drawn with replacement, 1,000 runs by default,
one seeded generator per run so the result is the same for a seed whatever
the thread count.
* In pips: each run draws as many trades as there were -> distributions of
  the final P&L and the max drawdown (percentiles 5..95).
* Position sizing: a trade's return on equity at fraction f is
  f x pips x pip_size / price (f = notional / equity). Over a horizon of
  `horizon_years` at the observed trade frequency, safe-f is the largest f
  whose 95th-percentile max drawdown stays within `drawdown_tolerance`
  (bisection; drawdown grows with f), and CAR25 is the 25th percentile of the
  compound annual return at safe-f.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numba
import numpy as np

PERCENTILES = (5, 25, 50, 75, 95)


@dataclass
class TradeStats:
    trades: int
    total_pips: float
    expectancy_pips: float
    win_rate: float
    profit_factor: float | None
    max_drawdown_pips: float
    sqn: float | None
    sqn_100: float | None
    sharpe_daily: float | None
    trade_ratio: float
    action_share: list[float]
    quality: float

    def to_dict(self) -> dict:
        return asdict(self)


def max_drawdown(pnl: np.ndarray) -> float:
    equity = np.concatenate([[0.0], np.cumsum(pnl)])
    return float((np.maximum.accumulate(equity) - equity).max())


def sqn(trades: np.ndarray, cap: int | None = None) -> float | None:
    if len(trades) < 2 or np.std(trades, ddof=1) == 0:
        return None
    n = len(trades) if cap is None else min(len(trades), cap)
    return float(math.sqrt(n) * np.mean(trades) / np.std(trades, ddof=1))


def sharpe_daily(daily_pnl: np.ndarray, days_per_year: int = 252) -> float | None:
    if len(daily_pnl) < 2 or np.std(daily_pnl, ddof=1) == 0:
        return None
    return float(np.mean(daily_pnl) / np.std(daily_pnl, ddof=1) * math.sqrt(days_per_year))


def quality_score(expectancy: float, total: float, drawdown: float, trades: int, sqn_100: float | None,
                  actions_used: int) -> float:
    """The product notes' score, with its bonuses for trading at all (trade count, actions
    used) paid only to a policy that makes money: a losing policy that trades a lot (random)
    must rank below one that stands aside (flat, 0)."""
    score = 2.0 * expectancy if expectancy > 0 else 0.3 * expectancy
    if trades:
        score += 1.5 * (total - 0.01 * drawdown) / trades
    if expectancy > 0:
        score += 10.0 if trades >= 30 else (2.0 if trades > 0 else 0.0)
        score += 3.0 * min(max(sqn_100 or 0.0, 0.0), 5.0)
        score += 3.0 if actions_used >= 3 else 0.0
    return float(score)


def trade_stats(trades: np.ndarray, daily_pnl: np.ndarray, action_counts: np.ndarray,
                position_changes: int, days_per_year: int = 252) -> TradeStats:
    """`position_changes`: decisions that changed the position (orders); the trade ratio is
    their share of all decisions, in any action space (action 0 is not always HOLD)."""
    trades = np.asarray(trades, dtype=np.float64)
    counts = np.asarray(action_counts, dtype=np.float64)
    share = (counts / counts.sum()).tolist() if counts.sum() else [0.0] * len(counts)
    wins, losses = trades[trades > 0].sum(), -trades[trades < 0].sum()
    expectancy = float(trades.mean()) if len(trades) else 0.0
    drawdown = max_drawdown(trades) if len(trades) else 0.0
    sqn_100 = sqn(trades, cap=100)
    return TradeStats(
        trades=len(trades),
        total_pips=float(trades.sum()),
        expectancy_pips=expectancy,
        win_rate=float((trades > 0).mean()) if len(trades) else 0.0,
        profit_factor=float(wins / losses) if losses > 0 else None,
        max_drawdown_pips=drawdown,
        sqn=sqn(trades),
        sqn_100=sqn_100,
        sharpe_daily=sharpe_daily(np.asarray(daily_pnl, dtype=np.float64), days_per_year),
        trade_ratio=float(position_changes / counts.sum()) if counts.sum() else 0.0,
        action_share=share,
        quality=quality_score(expectancy, float(trades.sum()), drawdown, len(trades), sqn_100,
                              int((counts > 0).sum())),
    )


# --- Monte Carlo ----------------------------------------------------------------------


@numba.njit(cache=True, inline="always")
def _splitmix(state: np.uint64) -> tuple[np.uint64, np.uint64]:
    state = state + np.uint64(0x9E3779B97F4A7C15)
    z = state
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return state, z ^ (z >> np.uint64(31))


@numba.njit(parallel=True, cache=True)
def _bootstrap_pips(trades, runs, draws, seed):
    """Final P&L and max drawdown (pips) of `runs` resamples of `draws` trades."""
    final = np.empty(runs)
    drawdown = np.empty(runs)
    n = np.uint64(len(trades))
    for run in numba.prange(runs):
        state = np.uint64(seed) * np.uint64(0x100000001B3) + np.uint64(run)
        equity = 0.0
        peak = 0.0
        worst = 0.0
        for _ in range(draws):
            state, r = _splitmix(state)
            equity += trades[r % n]
            peak = max(peak, equity)
            worst = max(worst, peak - equity)
        final[run] = equity
        drawdown[run] = worst
    return final, drawdown


@numba.njit(parallel=True, cache=True)
def _bootstrap_equity(returns, runs, draws, seed, fraction):
    """Final equity multiple and max drawdown fraction at position fraction f."""
    final = np.empty(runs)
    drawdown = np.empty(runs)
    n = np.uint64(len(returns))
    for run in numba.prange(runs):
        state = np.uint64(seed) * np.uint64(0x100000001B3) + np.uint64(run)
        equity = 1.0
        peak = 1.0
        worst = 0.0
        for _ in range(draws):
            state, r = _splitmix(state)
            equity *= max(1.0 + fraction * returns[r % n], 0.0)
            peak = max(peak, equity)
            worst = max(worst, 1.0 - equity / peak)
        final[run] = equity
        drawdown[run] = worst
    return final, drawdown


@dataclass
class MonteCarlo:
    runs: int
    seed: int
    final_pips: dict[str, float]          # percentile -> pips
    max_drawdown_pips: dict[str, float]
    safe_f: float
    car25: float                           # compound annual return, 25th percentile, at safe-f
    horizon_trades: int
    drawdown_tolerance: float
    final_pips_runs: np.ndarray            # [runs] for plotting fans

    def to_dict(self) -> dict:
        out = asdict(self)
        out.pop("final_pips_runs")
        return out


def monte_carlo(trades: np.ndarray, *, runs: int = 1000, seed: int = 0, pip_size: float = 0.01,
                price: float = 170.0, trades_per_year: float = 250.0, horizon_years: float = 2.0,
                drawdown_tolerance: float = 0.20, max_fraction: float = 50.0) -> MonteCarlo:
    trades = np.ascontiguousarray(trades, dtype=np.float64)
    if len(trades) == 0:
        raise ValueError("Monte Carlo needs at least one trade")
    if runs < 1:
        raise ValueError("runs must be at least 1")
    final, drawdown = _bootstrap_pips(trades, runs, len(trades), seed)
    pct = lambda x: {str(p): float(np.percentile(x, p)) for p in PERCENTILES}  # noqa: E731

    returns = trades * pip_size / price
    horizon = max(1, int(round(trades_per_year * horizon_years)))

    def dd95(f: float) -> float:
        return float(np.percentile(_bootstrap_equity(returns, runs, horizon, seed, f)[1], 95))

    lo, hi = 0.0, max_fraction
    if dd95(hi) <= drawdown_tolerance:
        safe = hi
    else:
        for _ in range(30):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if dd95(mid) <= drawdown_tolerance else (lo, mid)
        safe = lo
    equity, _ = _bootstrap_equity(returns, runs, horizon, seed, safe)
    car = np.power(np.maximum(equity, 1e-12), 1.0 / horizon_years) - 1.0
    return MonteCarlo(runs=runs, seed=seed, final_pips=pct(final), max_drawdown_pips=pct(drawdown), safe_f=safe,
                      car25=float(np.percentile(car, 25)), horizon_trades=horizon,
                      drawdown_tolerance=drawdown_tolerance, final_pips_runs=final)


def deflated_sharpe(returns: np.ndarray, trials: int) -> float | None:
    """Probability that the true Sharpe ratio of `returns` (per-period, here per session) is
    above what the best of `trials` skill-less strategies would show (Bailey and Lopez de
    Prado 2014). SR0 = sqrt(V) * ((1 - g) z(1 - 1/N) + g z(1 - 1/(N e))), g the
    Euler-Mascheroni constant, V = 1 / (T - 1) the variance of a skill-less Sharpe estimate;
    DSR = Phi((SR - SR0) sqrt(T - 1) / sqrt(1 - skew SR + (kurt - 1) / 4 SR^2)), kurt raw
    (normal = 3). With one trial it is the probabilistic Sharpe ratio against 0."""
    from statistics import NormalDist

    r = np.asarray(returns, dtype=np.float64)
    t = len(r)
    if t < 3 or np.std(r, ddof=1) == 0:
        return None
    sr = float(np.mean(r) / np.std(r, ddof=1))
    centred = r - r.mean()
    m2 = float(np.mean(centred**2))
    skew = float(np.mean(centred**3) / m2**1.5)
    kurt = float(np.mean(centred**4) / m2**2)  # raw kurtosis: 3 for a normal
    z = NormalDist().inv_cdf
    n = max(1, int(trials))
    if n == 1:
        sr0 = 0.0
    else:
        gamma = 0.5772156649015329
        sr0 = math.sqrt(1.0 / (t - 1)) * ((1 - gamma) * z(1 - 1 / n) + gamma * z(1 - 1 / (n * math.e)))
    denominator = 1 - skew * sr + (kurt - 1) / 4 * sr**2
    if denominator <= 0:
        return None
    return float(NormalDist().cdf((sr - sr0) * math.sqrt(t - 1) / math.sqrt(denominator)))


def paired_sign_flip_p(a: np.ndarray, b: np.ndarray, *, rounds: int = 20_000, seed: int = 0) -> float:
    """One-sided p-value that `a` beats `b` on paired sessions: a sign-flip permutation test
    of the mean difference (exact under the null that each difference is symmetric about 0)."""
    diff = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    if len(diff) == 0 or np.all(diff == 0):
        return 1.0
    observed = diff.mean()
    signs = np.random.default_rng(seed).choice([-1.0, 1.0], size=(rounds, len(diff)))
    null = (signs * diff).mean(axis=1)
    return float((np.sum(null >= observed) + 1) / (rounds + 1))


def probability_of_backtest_overfitting(session_pnl: np.ndarray, blocks: int = 8) -> float | None:
    """PBO by combinatorially symmetric cross-validation (Bailey, Borwein, Lopez de Prado and Zhu
    2017) over `session_pnl` [candidates, sessions] (the same sessions, in time order, for every
    candidate). The sessions are cut into `blocks` (even) consecutive blocks; for each of the
    C(blocks, blocks/2) ways to take half of them as in-sample, the candidate with the best mean
    session P&L in-sample is ranked out-of-sample among all (average ranks for ties, 1 = worst);
    with w = rank / (N + 1), PBO is the share of splits where logit(w) <= 0, i.e. where the
    in-sample choice is at or below the out-of-sample median. None with under two candidates or
    fewer sessions than blocks."""
    from itertools import combinations

    pnl = np.asarray(session_pnl, dtype=np.float64)
    if pnl.ndim != 2 or blocks < 2 or blocks % 2:
        raise ValueError("session_pnl is [candidates, sessions] and blocks an even number >= 2")
    candidates, sessions = pnl.shape
    if candidates < 2 or sessions < blocks:
        return None
    parts = np.array_split(np.arange(sessions), blocks)
    overfit = total = 0
    for chosen in combinations(range(blocks), blocks // 2):
        inside = np.concatenate([parts[b] for b in chosen])
        outside = np.concatenate([parts[b] for b in range(blocks) if b not in chosen])
        best = int(np.argmax(pnl[:, inside].mean(axis=1)))
        out_of_sample = pnl[:, outside].mean(axis=1)
        below, equal = np.sum(out_of_sample < out_of_sample[best]), np.sum(out_of_sample == out_of_sample[best])
        rank = below + (equal + 1) / 2  # 1 = the worst; ties share their average rank
        w = rank / (candidates + 1)
        overfit += int(np.log(w / (1 - w)) <= 0)
        total += 1
    return overfit / total
