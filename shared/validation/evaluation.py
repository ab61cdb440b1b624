"""Play a policy over sessions and collect what it did: the one evaluation
loop behind the learning test, validation and the baselines."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from shared.env import TradingEnv
from shared.env.trading import Observation
from shared.search import NetworkSearch

Policy = Callable[[Observation], np.ndarray]


@dataclass
class Evaluation:
    episode_pnl_pips: np.ndarray   # [S] P&L per session after costs
    trades_pips: np.ndarray        # [trades] closed trades in session order
    action_counts: np.ndarray      # [A]
    position_changes: int = 0      # decisions that changed the position

    @property
    def total_pips(self) -> float:
        return float(self.episode_pnl_pips.sum())

    @property
    def expectancy_pips(self) -> float:
        return float(self.trades_pips.mean()) if len(self.trades_pips) else 0.0


def evaluate(env: TradingEnv, policy: Policy, starts: np.ndarray, *, batch: int = 64,
             on_step: Callable[[int, int], None] | None = None) -> Evaluation:
    """Play every session in `starts` (in groups of `batch`, in lockstep).
    `on_step(done, total)` is called after every lockstep step (progress, deadlines)."""
    pnl, trades, changes = [], [], 0
    counts = np.zeros(env.num_actions, dtype=np.int64)
    groups = list(range(0, len(starts), batch))
    total = len(groups) * env.steps_per_episode
    for g, i in enumerate(groups):
        group = starts[i : i + batch]
        obs = env.reset(group)
        for k in range(env.steps_per_episode):
            step = env.step(policy(obs))
            if on_step is not None:
                on_step(g * env.steps_per_episode + k + 1, total)
            if step.done:
                break
            obs = env.observe()
        for stats in env.stats:
            pnl.append(stats.pnl_pips)
            trades.extend(stats.trades_pips)
            counts += stats.actions
            changes += stats.position_changes
    return Evaluation(np.asarray(pnl), np.asarray(trades), counts, changes)


def flat_policy(obs: Observation) -> np.ndarray:
    return np.zeros(len(obs.legal), dtype=np.int64)  # HOLD, and never in a position


def random_policy(rng: np.random.Generator) -> Policy:
    def choose(obs: Observation) -> np.ndarray:
        return np.where(obs.legal, rng.random(obs.legal.shape), -1.0).argmax(axis=1)
    return choose


def search_policy(search: NetworkSearch, seed: int = 0) -> Policy:
    """Greedy search (no noise, fixed seeds): deterministic for a model."""
    def choose(obs: Observation) -> np.ndarray:
        n = len(obs.legal)
        result = search.run(obs.temporal, obs.static, obs.legal, obs.position, np.full(n, seed, dtype=np.uint64),
                            add_noise=False)
        return result.actions(0.0)
    return choose


def raw_network_policy(search: NetworkSearch) -> Policy:
    def choose(obs: Observation) -> np.ndarray:
        return search.raw_policy_actions(obs.temporal, obs.static, obs.legal)
    return choose
