"""The bar the agent is measured against: threshold rules on a drift signal,
played through the same environment and costs as the agent.

* oracle: the synthetic generator's own expected drift over the next
  `edge_lookback_bars` (`shared.data.synthetic.generate_market`): what a
  trader who knew the planted edge would expect. Real data has none.
* momentum: what a quant writes in ten lines, from past prices only:
  z = (c_t - c_{t-k}) / (sigma_60 * sqrt(k)), signal = sigma_60 * tanh(z),
  sigma_60 the std of the last 60 one-bar changes in pips.

Either signal drives the same rule with hysteresis: flat -> long when the
signal is above `enter`, short when below -`enter`; long -> flat when it falls
below `exit` (short -> flat above -`exit`); `exit` < `enter` holds a position
through noise, which matters more than the signal here. The two thresholds
are tuned on the train split only (a grid over quantiles of |signal|), then
the rule is played on any split. Random and always-flat are in
`shared.validation.evaluation`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from shared.config import EnvConfig
from shared.env import TradingEnv
from shared.env.actions import ActionSpace
from shared.env.trading import Observation
from shared.features.store import FeatureSet
from shared.validation.evaluation import Evaluation, Policy, evaluate

ENTER_QUANTILES = (0.6, 0.75, 0.85, 0.92, 0.96, 0.985)
EXIT_RATIOS = (-0.25, 0.0, 0.25, 0.5, 1.0)  # exit = ratio x enter; 1.0 = no hysteresis


def momentum_signal(close: np.ndarray, pip: float | np.ndarray, lookback: int = 15, vol_bars: int = 60) -> np.ndarray:
    """[N] pips, from closes up to each bar only (0 where the lookback is not full); `pip` one size or
    each bar's."""
    pip = np.broadcast_to(np.asarray(pip, np.float64), close.shape)
    change = np.diff(close, prepend=close[0]) / pip
    csum, csq = np.cumsum(np.concatenate([[0.0], change])), np.cumsum(np.concatenate([[0.0], change**2]))
    n, t = len(close), np.arange(len(close))
    lo = np.maximum(t + 1 - vol_bars, 0)
    count = t + 1 - lo
    mean = (csum[t + 1] - csum[lo]) / count
    vol = np.sqrt(np.maximum((csq[t + 1] - csq[lo]) / count - mean**2, 1e-12))
    move = np.zeros(n)
    move[lookback:] = (close[lookback:] - close[:-lookback]) / pip[lookback:]
    signal = vol * np.tanh(move / (vol * np.sqrt(lookback)))
    signal[: max(lookback, vol_bars)] = 0.0
    return signal


def threshold_policy(signal: np.ndarray, space: ActionSpace, enter: float, exit: float) -> Policy:
    """The hysteresis rule on `signal` [bars], in any action space: the legal action whose
    target is nearest the wanted position (-1, 0 or +1)."""
    def choose(obs: Observation) -> np.ndarray:
        s = signal[obs.bar_index]
        held = np.sign(obs.position).astype(np.int64)
        want = np.where(held > 0, (s >= exit).astype(np.int64),
                        np.where(held < 0, -(s <= -exit).astype(np.int64),
                                 (s > enter).astype(np.int64) - (s < -enter).astype(np.int64)))
        index = space.position_index(obs.position)
        targets = space.target[:, index].T.astype(np.float64)        # [E, A]
        distance = np.where(obs.legal, np.abs(targets - want[:, None]), np.inf)
        return distance.argmin(axis=1)

    return choose


@dataclass(frozen=True)
class TunedRule:
    name: str
    enter: float
    exit: float
    train_pips: float


def common_pips(features: FeatureSet, starts: np.ndarray, evaluation: Evaluation) -> float:
    """The P&L of `starts` played, in the feature set's common unit (its pips for one instrument;
    weighed by pip_weights for several, shared.features.portfolio)."""
    if not features.pip_weights:
        return evaluation.total_pips
    weights = np.asarray(features.pip_weights)[features.instrument_of(starts)]
    return float((evaluation.episode_pnl_pips * weights).sum())


def weight_by_bar(features: FeatureSet) -> np.ndarray | float:
    """What one pip of each bar's instrument weighs in the common unit (1.0: one instrument)."""
    if not features.pip_weights:
        return 1.0
    return np.asarray(features.pip_weights)[features.instrument_of(np.arange(len(features.bars)))]


def tune(env: TradingEnv, signal: np.ndarray, train_starts: np.ndarray, name: str) -> TunedRule:
    """The (enter, exit) pair that earns most on the train sessions given."""
    magnitude = np.abs(signal[signal != 0])
    best: TunedRule | None = None
    for q in ENTER_QUANTILES:
        enter = float(np.quantile(magnitude, q))
        for ratio in EXIT_RATIOS:
            played = evaluate(env, threshold_policy(signal, env.space, enter, ratio * enter), train_starts)
            pips = common_pips(env.fs, train_starts, played)
            if best is None or pips > best.train_pips:
                best = TunedRule(name, enter, ratio * enter, pips)
    assert best is not None
    return best


def play(env: TradingEnv, signal: np.ndarray, rule: TunedRule, starts: np.ndarray) -> Evaluation:
    return evaluate(env, threshold_policy(signal, env.space, rule.enter, rule.exit), starts)


@dataclass(frozen=True)
class Reference:
    """What the baselines earn on some sessions: the bar a candidate's P&L is a fraction of."""

    momentum_pips: float
    oracle_pips: float | None  # None: the market has no known drift (real data)

    def fractions(self, pips: float) -> dict[str, float | None]:
        def share(of: float | None) -> float | None:
            return round(pips / of, 4) if of is not None and of > 0 else None
        return {"oracle_pips": self.oracle_pips, "momentum_pips": self.momentum_pips,
                "fraction_of_oracle": share(self.oracle_pips), "fraction_of_momentum": share(self.momentum_pips)}


def disjoint_train_sessions(features) -> np.ndarray:
    """Train sessions that do not overlap (train sessions start every train_stride_bars): each train
    bar once, what the rules are tuned on."""
    sessions = features.session_config
    return features.require_sessions("train")[:: max(1, sessions.length_bars // sessions.train_stride_bars)]


def reference_on(features, starts: np.ndarray, config: EnvConfig = EnvConfig()) -> Reference:
    """Tune both rules on the train split (each train bar once) and play them on `starts`, in
    episodes of the feature store's session length."""
    env = TradingEnv(features, replace(config, episode_bars=features.session_config.length_bars))
    train = disjoint_train_sessions(features)
    # the signals in the common unit, so one threshold means as much on every instrument
    momentum = momentum_signal(env.mid, env.pip_by_bar) * weight_by_bar(features)
    momentum_pips = common_pips(features, starts, play(env, momentum, tune(env, momentum, train, "momentum"), starts))
    oracle_pips = None
    if features.expected_drift is not None:
        drift = features.expected_drift * weight_by_bar(features)
        oracle_pips = common_pips(features, starts, play(env, drift, tune(env, drift, train, "oracle"), starts))
    return Reference(momentum_pips=float(momentum_pips), oracle_pips=None if oracle_pips is None else float(oracle_pips))
