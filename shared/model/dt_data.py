"""Training windows for the Strategist (shared/model/dt.py, a Decision Transformer): pure numpy.

Episodes are stored concatenated (`Trajectories`): row i is one step, (state s_i, action a_i taken at
s_i, reward r_i that action earned), and `episode_start` marks where each episode begins. Each step
also has its return-to-go R_i = sum_{k >= i} discount^(k - i) r_k, summed to the end of its own episode
only (`returns_to_go`): the return still to come from step i on, the quantity the model is conditioned on.

A window ending at step t (`windows`) is the K = context_steps steps t - K + 1 .. t of t's episode, as
three aligned sequences (R, s, a); where the episode began later than t - K + 1 the window holds fewer
steps and is left-padded (zeros, mask False), so the newest step is always the last slot. A window
never holds steps of two episodes.

Causality: the model reads per step the tokens R_t, s_t, a_t in that order and predicts a_t from the
state token s_t under a causal mask, so the prediction of a_t sees R_<=t, s_<=t and a_<t: its own
action token and everything after step t are excluded (tests/test_dt.py checks both). R_t itself is a
sum of future rewards: that is the design (the model is told the return to aim for); at a decision
the caller passes a target return instead, divided by the same return_scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

__all__ = ["DTWindows", "Trajectories", "fit_state_scaling", "returns_to_go", "windows"]


def returns_to_go(rewards: np.ndarray, discount: float) -> np.ndarray:
    """[N] float64 R_t = sum_{k >= t} discount^(k - t) r_k of one episode's rewards [N]."""
    rewards = np.asarray(rewards, dtype=np.float64)
    if rewards.ndim != 1:
        raise ValueError(f"rewards must be 1-d, got shape {rewards.shape}")
    out = np.empty_like(rewards)
    running = 0.0
    for i, r in zip(range(len(rewards) - 1, -1, -1), reversed(rewards.tolist())):  # Python floats: ~0.1 s per 1M steps
        running = r + discount * running
        out[i] = running
    return out


@dataclass(frozen=True)
class Trajectories:
    """E episodes of T steps in all, concatenated in time order; episode e is rows
    episode_start[e] .. episode_start[e + 1] - 1 (the last runs to T - 1)."""

    states: np.ndarray         # [T, S] float32, s_t
    actions: np.ndarray        # [T] int64, a_t: the action taken at s_t
    rewards: np.ndarray        # [T] float32, r_t: what a_t earned
    episode_start: np.ndarray  # [E] int64, ascending, the first is 0

    def __post_init__(self) -> None:
        t = len(self.states)
        if self.states.ndim != 2 or self.actions.shape != (t,) or self.rewards.shape != (t,):
            raise ValueError(f"trajectory shapes disagree: states {self.states.shape}, actions {self.actions.shape}, "
                             f"rewards {self.rewards.shape}")
        start = self.episode_start
        if start.ndim != 1 or not len(start) or start[0] != 0 or np.any(np.diff(start) < 1) or start[-1] >= t:
            raise ValueError(f"episode_start must ascend strictly from 0 and lie below T = {t}; got {start}")

    @classmethod
    def from_episodes(cls, episodes) -> Trajectories:
        """From an iterable of (states [N, S], actions [N], rewards [N]), one per episode (N >= 1)."""
        episodes = list(episodes)
        lengths = [len(a) for _, a, _ in episodes]
        return cls(np.concatenate([np.asarray(s, dtype=np.float32) for s, _, _ in episodes]),
                   np.concatenate([np.asarray(a, dtype=np.int64) for _, a, _ in episodes]),
                   np.concatenate([np.asarray(r, dtype=np.float32) for _, _, r in episodes]),
                   np.cumsum([0, *lengths[:-1]]).astype(np.int64))

    def episode_of(self, steps: np.ndarray) -> np.ndarray:
        """[B] int64: the episode each step index [B] belongs to."""
        return np.searchsorted(self.episode_start, steps, side="right") - 1

    def episode_end(self, episodes: np.ndarray) -> np.ndarray:
        """[B] int64: one past the last step of each episode [B]."""
        ends = np.append(self.episode_start[1:], len(self.states))
        return ends[episodes]


class DTWindows(NamedTuple):
    """B windows of K = context_steps steps, each ending at its `ends` step, left-padded."""

    returns_to_go: np.ndarray  # [B, K, 1] float32, R_t / return_scale; 0 where padded
    states: np.ndarray         # [B, K, S] float32; 0 where padded
    actions: np.ndarray        # [B, K] int64; 0 where padded
    mask: np.ndarray           # [B, K] bool, True at real steps (the last slot always)
    timesteps: np.ndarray      # [B, K] int64, each step's index within its episode; -1 where padded


def windows(trajectories: Trajectories, ends: np.ndarray, context_steps: int, discount: float,
            return_scale: float) -> DTWindows:
    """The windows of the up to `context_steps` steps of the same episode ending at each step in `ends` [B].
    Return-to-go is computed over each touched episode to its own end (the time taken grows with those
    episodes' lengths, not with K)."""
    tr = trajectories
    ends = np.asarray(ends, dtype=np.int64)
    n = len(tr.states)
    if ends.ndim != 1 or (len(ends) and (ends.min() < 0 or ends.max() >= n)):
        raise ValueError(f"ends must be 1-d step indices in [0, {n})")
    if context_steps < 1 or not return_scale > 0:
        raise ValueError("context_steps and return_scale must be positive")
    episodes = tr.episode_of(ends)
    first = tr.episode_start[episodes]                                 # [B]
    rows = ends[:, None] + np.arange(1 - context_steps, 1)             # [B, K], the last column is `ends`
    mask = rows >= first[:, None]                                      # same episode: never before its start
    rows = np.where(mask, rows, 0)
    rtg = np.zeros(n, dtype=np.float64)
    for e in np.unique(episodes):
        start, stop = int(tr.episode_start[e]), int(tr.episode_end(e))
        rtg[start:stop] = returns_to_go(tr.rewards[start:stop], discount)
    return DTWindows(np.where(mask, rtg[rows] / return_scale, 0.0).astype(np.float32)[..., None],
                     np.where(mask[..., None], tr.states[rows], 0.0).astype(np.float32),
                     np.where(mask, tr.actions[rows], 0).astype(np.int64),
                     mask,
                     np.where(mask, rows - first[:, None], -1).astype(np.int64))


def fit_state_scaling(states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """([S] mean, [S] std) float32 of training states [T, S], std 1 where a column is constant: for
    DecisionTransformer.set_scaling. Fit it on the training episodes only."""
    part = np.asarray(states, dtype=np.float64)
    std = part.std(axis=0)
    return part.mean(axis=0).astype(np.float32), np.where(std > 0, std, 1.0).astype(np.float32)
