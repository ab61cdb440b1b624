"""Play a policy over sessions and collect what it did: the one evaluation
loop behind the learning test, validation, the baselines and the Strategist's experts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from shared.env import TradingEnv
from shared.env.trading import Observation

Policy = Callable[[Observation], np.ndarray]


@dataclass
class Evaluation:
    episode_pnl_pips: np.ndarray   # [S] P&L per session after costs
    trades_pips: np.ndarray        # [trades] closed trades in session order
    action_counts: np.ndarray      # [A]
    position_changes: int = 0      # decisions that changed the position
    trade_session: np.ndarray | None = None     # [trades] the session (index into starts) each trade closed in
    session_actions: np.ndarray | None = None   # [S, A]
    session_changes: np.ndarray | None = None   # [S]

    def sessions(self, mask: np.ndarray) -> "Evaluation":
        """What was played on the sessions `mask` [S] selects (an instrument's, say)."""
        kept = np.flatnonzero(mask)
        trades = np.isin(self.trade_session, kept)
        renumber = np.cumsum(mask) - 1
        return Evaluation(self.episode_pnl_pips[mask], self.trades_pips[trades],
                          self.session_actions[mask].sum(axis=0), int(self.session_changes[mask].sum()),
                          renumber[self.trade_session[trades]], self.session_actions[mask], self.session_changes[mask])

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
    pnl, trades, owners, actions, changes = [], [], [], [], []
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
            owners.extend([len(pnl)] * len(stats.trades_pips))
            pnl.append(stats.pnl_pips)
            trades.extend(stats.trades_pips)
            actions.append(stats.actions)
            changes.append(stats.position_changes)
    session_actions = np.asarray(actions, np.int64).reshape(len(pnl), env.num_actions)
    session_changes = np.asarray(changes, np.int64)
    return Evaluation(np.asarray(pnl), np.asarray(trades), session_actions.sum(axis=0), int(session_changes.sum()),
                      np.asarray(owners, np.int64), session_actions, session_changes)


def flat_policy(obs: Observation) -> np.ndarray:
    return np.zeros(len(obs.legal), dtype=np.int64)  # HOLD, and never in a position


def random_policy(rng: np.random.Generator) -> Policy:
    def choose(obs: Observation) -> np.ndarray:
        return np.where(obs.legal, rng.random(obs.legal.shape), -1.0).argmax(axis=1)
    return choose
