"""Replay targets by hand, and a learner that really fits a fixed batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shared.config import LearnerConfig, NetworkConfig, ReplayConfig
from shared.model import MuZeroNetworks
from shared.training.learner import Learner
from shared.training.replay import ReplayBuffer, n_step_values
from shared.training.selfplay import EpisodeBatch


def test_n_step_values_by_hand():
    rewards = np.array([[1.0, 2.0, 3.0, 4.0]], np.float32)
    roots = np.array([[10.0, 20.0, 30.0, 40.0]], np.float32)
    z = n_step_values(rewards, roots, td_steps=2, discount=0.5)
    # z_t = r_t + 0.5 r_{t+1} + 0.25 v_{t+2}; no bootstrap past the end
    assert z[0].tolist() == pytest.approx([1 + 1 + 0.25 * 30, 2 + 1.5 + 0.25 * 40, 3 + 2, 4])


def _episodes(e: int, t: int) -> EpisodeBatch:
    rng = np.random.default_rng(0)
    policy = rng.dirichlet(np.ones(4), size=(e, t)).astype(np.float32)
    return EpisodeBatch(
        bar_index=np.tile(np.arange(40, 40 + t), (e, 1)), static=rng.normal(size=(e, t, 6)).astype(np.float32),
        legal=np.ones((e, t, 4), bool), action=rng.integers(0, 4, (e, t)), reward=rng.normal(size=(e, t)).astype(np.float32),
        policy=policy, root_value=rng.normal(size=(e, t)).astype(np.float32), outcome=rng.integers(0, 3, (e, t)).astype(np.int8),
        pnl_pips=np.zeros(e), trades_pips=[[] for _ in range(e)], action_counts=np.zeros((e, 4), np.int64),
    )


def test_sampled_targets_line_up_with_the_episode_and_mask_the_end():
    features = np.arange(100 * 9, dtype=np.float32).reshape(100, 9)
    cfg = ReplayConfig(capacity_episodes=3, unroll_steps=5, td_steps=3, discount=0.9)
    buffer = ReplayBuffer(features, steps_per_episode=8, num_actions=4, config=cfg)
    batch = _episodes(2, 8)
    buffer.add(batch)
    z = n_step_values(batch.reward, batch.root_value, 3, 0.9)
    sample = buffer.sample(256, np.random.default_rng(1))
    assert sample.temporal.shape == (256, 32, 9) and sample.actions.shape == (256, 5) and sample.values.shape == (256, 6)
    for i in range(256):
        # find the sampled (episode, step) from the temporal window's last bar and the static features
        last_bar = int(sample.temporal[i, -1, 0] // 9)
        start = last_bar - 40
        episode = next(e for e in range(2) if np.array_equal(batch.static[e, start], sample.static[i]))
        for u in range(6):
            inside = start + u < 8
            assert sample.mask[i, u] == float(inside)
            if inside:
                assert sample.values[i, u] == pytest.approx(z[episode, start + u])
                np.testing.assert_allclose(sample.policies[i, u], batch.policy[episode, start + u])
            if u < 5 and inside:
                assert sample.actions[i, u] == batch.action[episode, start + u]
                assert sample.outcomes[i, u] == batch.outcome[episode, start + u]
                assert sample.rewards[i, u] == pytest.approx(batch.reward[episode, start + u])
    buffer.add(_episodes(2, 8))
    assert len(buffer) == 3 and buffer.added == 4  # the ring overwrote the oldest


def test_learner_fits_a_fixed_batch():
    torch.manual_seed(0)
    model = MuZeroNetworks(NetworkConfig(tcn_channels=16, hidden=32, dropout=0.0))
    learner = Learner(model, LearnerConfig(learning_rate=3e-3))
    features = np.random.default_rng(2).normal(size=(100, 9)).astype(np.float32)
    buffer = ReplayBuffer(features, 8, 4, ReplayConfig(capacity_episodes=4, unroll_steps=3))
    buffer.add(_episodes(4, 8))
    batch = buffer.sample(32, np.random.default_rng(3))
    first = learner.step(batch)
    for _ in range(150):
        last = learner.step(batch)
    assert last["total"] < 0.5 * first["total"]
    for name in ("policy", "value", "reward", "outcome", "afterstate_value"):
        assert last[name] < first[name], name
    assert learner.steps == 151


def test_n_step_values_when_the_episode_is_shorter_than_n():
    rewards = np.array([[1.0, 2.0]], np.float32)
    z = n_step_values(rewards, np.array([[5.0, 5.0]], np.float32), td_steps=10, discount=1.0)
    assert z[0].tolist() == [3.0, 2.0]
