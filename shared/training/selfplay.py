"""Self-play: E episodes in lockstep, one batched search per step."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shared.config import ExplorationConfig
from shared.env import TradingEnv
from shared.search import NetworkSearch


@dataclass
class EpisodeBatch:
    """E finished episodes of T steps each."""

    bar_index: np.ndarray    # [E, T] int64, the decision bar of each step
    static: np.ndarray       # [E, T, 6] float32 position features seen at the step
    legal: np.ndarray        # [E, T, A] bool
    action: np.ndarray       # [E, T] int64
    reward: np.ndarray       # [E, T] float32
    policy: np.ndarray       # [E, T, A] float32 the search's policy target
    root_value: np.ndarray   # [E, T] float32 search value
    outcome: np.ndarray      # [E, T] int8 market outcome after the action
    pnl_pips: np.ndarray     # [E] float64 episode P&L after costs
    trades_pips: list[list[float]]  # closed trades per episode
    action_counts: np.ndarray  # [E, A] int64
    position_changes: np.ndarray | None = None  # [E] int64, decisions that changed the position
    episode_id: np.ndarray | None = None  # [E] int64, unique per episode played (replay ingests each once)
    weights_version: int = 0  # the learner step of the weights that played every episode here

    @property
    def episodes(self) -> int:
        return len(self.bar_index)

    @classmethod
    def concat(cls, batches: list["EpisodeBatch"]) -> "EpisodeBatch":
        """Several batches as one (the iteration's report over every batch it ingested)."""
        if len(batches) == 1:
            return batches[0]
        arrays = {name: np.concatenate([getattr(b, name) for b in batches])
                  for name in ("bar_index", "static", "legal", "action", "reward", "policy", "root_value",
                               "outcome", "pnl_pips", "action_counts", "position_changes", "episode_id")}
        return cls(**arrays, trades_pips=[t for b in batches for t in b.trades_pips],
                   weights_version=min(b.weights_version for b in batches))


def play_episodes(
    env: TradingEnv,
    search: NetworkSearch,
    starts: np.ndarray,
    rng: np.random.Generator,
    *,
    exploration: ExplorationConfig,
    episode: int = 0,
    first_episode_id: int | None = None,
) -> EpisodeBatch:
    """Play one episode from each session start in `starts`, all in lockstep. `episode` (episodes
    learned from so far) sets the exploration temperature; the episodes are numbered from
    `first_episode_id` (default `episode`)."""
    e, t_steps, a = len(starts), env.steps_per_episode, env.num_actions
    out = EpisodeBatch(
        bar_index=np.zeros((e, t_steps), np.int64),
        static=np.zeros((e, t_steps, 6), np.float32),
        legal=np.zeros((e, t_steps, a), bool),
        action=np.zeros((e, t_steps), np.int64),
        reward=np.zeros((e, t_steps), np.float32),
        policy=np.zeros((e, t_steps, a), np.float32),
        root_value=np.zeros((e, t_steps), np.float32),
        outcome=np.zeros((e, t_steps), np.int8),
        pnl_pips=np.zeros(e),
        trades_pips=[],
        action_counts=np.zeros((e, a), np.int64),
    )
    temperature = exploration.temperature(episode)
    obs = env.reset(starts)
    for k in range(t_steps):
        seeds = rng.integers(0, 2**63, size=e, dtype=np.uint64)
        result = search.run(obs.temporal, obs.static, obs.legal, obs.position, seeds, add_noise=exploration.add_noise)
        actions = result.actions(temperature)
        if exploration.epsilon > 0:
            explore = rng.random(e) < exploration.epsilon
            if explore.any():
                # a uniformly random legal action: argmax of random scores over the legal ones
                scores = np.where(obs.legal, rng.random((e, a)), -1.0)
                actions = np.where(explore, scores.argmax(axis=1), actions)
        out.bar_index[:, k] = obs.bar_index
        out.static[:, k] = obs.static
        out.legal[:, k] = obs.legal
        out.action[:, k] = actions
        out.policy[:, k] = result.policy_target
        out.root_value[:, k] = result.root_values
        step = env.step(actions)
        out.reward[:, k] = step.reward
        out.outcome[:, k] = step.outcome
        if not step.done:
            obs = env.observe()
    out.pnl_pips = np.array([s.pnl_pips for s in env.stats])
    out.trades_pips = [list(s.trades_pips) for s in env.stats]
    out.action_counts = np.stack([s.actions for s in env.stats])
    out.position_changes = np.array([s.position_changes for s in env.stats], np.int64)
    out.episode_id = (episode if first_episode_id is None else first_episode_id) + np.arange(e, dtype=np.int64)
    return out
