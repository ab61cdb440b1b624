"""Replay: a ring buffer of whole episodes, and the unroll targets.

Capacity is counted in episodes (default 2,000 episodes of 359 steps, about
718k positions and 60 MB); when full, the oldest episode is overwritten.
Sampling is uniform over every stored (episode, step) position. For a sampled
position t and unroll u = 0..K:

* value target z_{t+u} = sum_{i<n} gamma^i r_{t+u+i} + gamma^n v_{t+u+n}
  (n = td_steps, v = the search's root value; the sum stops at the episode's
  end, after which the value is 0: the position is closed there);
* reward target r_{t+u-1} and chance target o_{t+u-1} (the market outcome that
  really followed the action) for u >= 1;
* afterstate value target z_{t+u-1} (the return of the action actually taken);
* policy target: the visit distribution at t+u;
* the next bar's features after each action (for u >= 1, the bar after the
  decision bar of step t+u-1): what a learned chance code is encoded from.
Unroll steps past the episode's end are masked out of every loss.

Each stored episode keeps its id and the weights version (learner step) that
played it. Ingestion is idempotent by id: an episode delivered twice (a
distributed collector may report a task failed that in fact ran) is stored
once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shared.config import ReplayConfig
from shared.core.feature_spec import WINDOW_BARS
from shared.training.selfplay import EpisodeBatch


@dataclass
class TrainingBatch:
    temporal: np.ndarray       # [B, window, 9] float32 at the sampled position
    static: np.ndarray         # [B, 6] float32
    actions: np.ndarray        # [B, K] int64 actions taken (random past the end)
    outcomes: np.ndarray       # [B, K] int64 outcomes that followed them
    rewards: np.ndarray        # [B, K] float32
    values: np.ndarray         # [B, K+1] float32 n-step value targets
    policies: np.ndarray       # [B, K+1, A] float32
    mask: np.ndarray           # [B, K+1] float32, 1 where the unroll step is inside the episode
    next_bars: np.ndarray      # [B, K, 9] float32 features of the bar each action's market moved to


def n_step_values(rewards: np.ndarray, root_values: np.ndarray, td_steps: int, discount: float) -> np.ndarray:
    """[E, T] value targets; no bootstrap past the episode's last step."""
    e, t = rewards.shape
    z = np.zeros((e, t), np.float64)
    for i in range(min(td_steps, t)):
        z[:, : t - i] += discount**i * rewards[:, i:]
    if td_steps < t:
        z[:, : t - td_steps] += discount**td_steps * root_values[:, td_steps:]
    return z.astype(np.float32)


class ReplayBuffer:
    def __init__(self, features: np.ndarray, steps_per_episode: int, num_actions: int, config: ReplayConfig,
                 window_bars: int = WINDOW_BARS) -> None:
        self.features = features  # [N, 9] the feature store's temporal features
        self.config = config
        c, t = config.capacity_episodes, steps_per_episode
        self.steps = t
        self.bar_index = np.zeros((c, t), np.int64)
        self.static = np.zeros((c, t, 6), np.float32)
        self.action = np.zeros((c, t), np.int64)
        self.reward = np.zeros((c, t), np.float32)
        self.policy = np.zeros((c, t, num_actions), np.float32)
        self.value = np.zeros((c, t), np.float32)
        self.outcome = np.zeros((c, t), np.int8)
        self.episode_id = np.full(c, -1, np.int64)
        self.version = np.zeros(c, np.int64)
        self._slot_of: dict[int, int] = {}  # episode id -> slot, for the episodes stored now
        self.size = 0
        self.cursor = 0
        self.added = 0
        self._window = np.arange(-window_bars + 1, 1)

    def __len__(self) -> int:
        return self.size

    @property
    def positions(self) -> int:
        return self.size * self.steps

    def add(self, batch: EpisodeBatch) -> int:
        """Store the batch's episodes not stored already; returns how many were new."""
        z = n_step_values(batch.reward, batch.root_value, self.config.td_steps, self.config.discount)
        ids = batch.episode_id if batch.episode_id is not None else np.full(batch.episodes, -1, np.int64)
        added = 0
        for e in range(batch.episodes):
            episode_id = int(ids[e])
            if episode_id >= 0 and episode_id in self._slot_of:
                continue
            i = self.cursor
            self._slot_of.pop(int(self.episode_id[i]), None)  # the episode overwritten here
            if episode_id >= 0:
                self._slot_of[episode_id] = i
            self.episode_id[i] = episode_id
            self.version[i] = batch.weights_version
            self.bar_index[i] = batch.bar_index[e]
            self.static[i] = batch.static[e]
            self.action[i] = batch.action[e]
            self.reward[i] = batch.reward[e]
            self.policy[i] = batch.policy[e]
            self.value[i] = z[e]
            self.outcome[i] = batch.outcome[e]
            self.cursor = (self.cursor + 1) % self.config.capacity_episodes
            self.size = min(self.size + 1, self.config.capacity_episodes)
            self.added += 1
            added += 1
        return added

    def sample(self, batch_size: int, rng: np.random.Generator) -> TrainingBatch:
        if self.size == 0:
            raise ValueError("the replay buffer is empty")
        k = self.config.unroll_steps
        a = self.policy.shape[2]
        episode = rng.integers(0, self.size, size=batch_size)
        start = rng.integers(0, self.steps, size=batch_size)
        offsets = start[:, None] + np.arange(k + 1)           # [B, K+1]
        inside = offsets < self.steps
        clipped = np.minimum(offsets, self.steps - 1)
        ep = episode[:, None]
        bars = self.bar_index[episode, start]
        # the bar after each unrolled decision (the store's last row past the end: masked out anyway)
        next_bars = np.minimum(self.bar_index[ep, clipped[:, :k]] + 1, len(self.features) - 1)
        actions = np.where(inside[:, :k], self.action[ep, clipped[:, :k]], rng.integers(0, a, size=(batch_size, k)))
        outcomes = np.where(inside[:, :k], self.outcome[ep, clipped[:, :k]], 1)
        return TrainingBatch(
            temporal=self.features[bars[:, None] + self._window],
            static=self.static[episode, start],
            actions=actions.astype(np.int64),
            outcomes=outcomes.astype(np.int64),
            rewards=np.where(inside[:, :k], self.reward[ep, clipped[:, :k]], 0.0).astype(np.float32),
            values=np.where(inside, self.value[ep, clipped], 0.0).astype(np.float32),
            policies=np.where(inside[..., None], self.policy[ep, clipped], 1.0 / a).astype(np.float32),
            mask=inside.astype(np.float32),
            next_bars=self.features[next_bars].astype(np.float32),
        )
