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
`shared.env.rollout`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from shared.config import EnvConfig
from shared.env import TradingEnv
from shared.env.actions import ActionSpace
from shared.env.rollout import Evaluation, Policy, evaluate
from shared.env.trading import Observation
from shared.features.store import FeatureSet

ENTER_QUANTILES = (0.30, 0.40, 0.50, 0.60, 0.70, 0.80, 0.85, 0.90, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995)
EXIT_RATIOS = (-3.0, -2.0, -1.5, -1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0)  # exit = ratio x enter
REFINE_GAIN = 0.02      # refine while a round gains at least this share of the best train P&L
MAX_REFINE_ROUNDS = 8


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
        return space.toward(obs.position, obs.legal, want)

    return choose


@dataclass(frozen=True)
class TunedRule:
    name: str
    enter: float
    exit: float
    train_pips: float
    enter_quantile: float = 0.0
    exit_ratio: float = 0.0
    evaluations: int = 0               # rules played on train while tuning
    last_refinement_gain: float = 0.0  # what the last refinement round added, as a share of train_pips


def common_session_pips(features: FeatureSet, starts: np.ndarray, evaluation: Evaluation) -> np.ndarray:
    """[S] the P&L of each session in `starts` played, in the feature set's common unit (its pips for
    one instrument; weighed by pip_weights for several, shared.features.portfolio)."""
    if not features.pip_weights:
        return np.asarray(evaluation.episode_pnl_pips, np.float64)
    weights = np.asarray(features.pip_weights)[features.instrument_of(starts)]
    return evaluation.episode_pnl_pips * weights


def common_pips(features: FeatureSet, starts: np.ndarray, evaluation: Evaluation) -> float:
    return float(common_session_pips(features, starts, evaluation).sum())


def weight_by_bar(features: FeatureSet) -> np.ndarray | float:
    """What one pip of each bar's instrument weighs in the common unit (1.0: one instrument)."""
    if not features.pip_weights:
        return 1.0
    return np.asarray(features.pip_weights)[features.instrument_of(np.arange(len(features.bars)))]


def tune(env: TradingEnv, signal: np.ndarray, train_starts: np.ndarray, name: str) -> TunedRule:
    """The (enter, exit) pair that earns most on the train sessions given: the grid, then
    refinement rounds until one gains under REFINE_GAIN (module docstring)."""
    magnitude = np.abs(signal[signal != 0])
    if len(magnitude) == 0:  # nothing to follow: the rule never enters
        return TunedRule(name, float("inf"), float("inf"), 0.0)
    scores: dict[tuple[float, float], float] = {}

    def score(q: float, ratio: float) -> float:
        key = (round(q, 6), round(ratio, 6))
        if key not in scores:
            enter = float(np.quantile(magnitude, key[0]))
            # every train session in one lockstep batch: a rule is cheap, Python's per-step overhead is not
            played = evaluate(env, threshold_policy(signal, env.space, enter, key[1] * enter), train_starts,
                              batch=len(train_starts))
            scores[key] = common_pips(env.fs, train_starts, played)
        return scores[key]

    qs, rs = list(ENTER_QUANTILES), list(EXIT_RATIOS)
    best = max(((q, r) for q in qs for r in rs), key=lambda point: score(*point))
    # the local spacing of the grid around the best point: half of it is the first refinement step
    dq = min([abs(q - best[0]) for q in qs if q != best[0]]) / 2
    dr = min([abs(r - best[1]) for r in rs if r != best[1]]) / 2
    gain = 0.0
    for _ in range(MAX_REFINE_ROUNDS):
        before = score(*best)
        neighbours = [(min(max(best[0] + i * dq, 0.0), 0.999), best[1] + j * dr)
                      for i in (-1, 0, 1) for j in (-1, 0, 1) if (i, j) != (0, 0)]
        best = max([best, *neighbours], key=lambda point: score(*point))
        gain = (score(*best) - before) / abs(before) if before else float(score(*best) > before)
        if gain < REFINE_GAIN:
            break
        dq, dr = dq / 2, dr / 2
    enter = float(np.quantile(magnitude, round(best[0], 6)))
    return TunedRule(name, enter, round(best[1], 6) * enter, score(*best), best[0], best[1], len(scores), gain)


def play(env: TradingEnv, signal: np.ndarray, rule: TunedRule, starts: np.ndarray) -> Evaluation:
    return evaluate(env, threshold_policy(signal, env.space, rule.enter, rule.exit), starts)


@dataclass(frozen=True)
class Reference:
    """What the baselines earn on some sessions: the bar a candidate's P&L is a fraction of."""

    momentum_pips: float
    oracle_pips: float | None  # None: the market has no known drift (real data)
    # each session's P&L (common unit), in session order: the arena's paired tests against the models
    momentum_sessions: tuple[float, ...] = ()
    oracle_sessions: tuple[float, ...] = ()

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
    momentum_sessions = common_session_pips(features, starts,
                                            play(env, momentum, tune(env, momentum, train, "momentum"), starts))
    oracle_sessions = None
    if features.expected_drift is not None:
        drift = features.expected_drift * weight_by_bar(features)
        oracle_sessions = common_session_pips(features, starts, play(env, drift, tune(env, drift, train, "oracle"), starts))
    return Reference(momentum_pips=float(momentum_sessions.sum()),
                     oracle_pips=None if oracle_sessions is None else float(oracle_sessions.sum()),
                     momentum_sessions=tuple(float(x) for x in momentum_sessions),
                     oracle_sessions=() if oracle_sessions is None else tuple(float(x) for x in oracle_sessions))


def reference_for_store(db_path, instruments: tuple[str, ...], granularity: str, max_sessions: int = 0) -> Reference:
    """`reference_on` the store's validation sessions (the first `max_sessions`; 0: all), from the
    store alone: what the validation service runs in a process of its own."""
    from shared.features.portfolio import load_market

    features = load_market(db_path, instruments, granularity)
    starts = features.require_sessions("validation")
    return reference_on(features, starts[:max_sessions] if max_sessions else starts)
