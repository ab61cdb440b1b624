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
                # what a learned chance code is encoded from: the bar after the step's decision bar
                np.testing.assert_array_equal(sample.next_bars[i, u], features[40 + start + u + 1])
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
    assert first["commitment"] == last["commitment"] == 0.0  # the market's outcomes: no encoder
    assert learner.steps == 151


def _train_on_moves(codes: int):
    """A learner with `codes` learned chance codes on rewards set by the next bar's move (+5 up, -5
    down), which nothing at the decision shows. -> (first and last losses, model, buffer, episodes,
    which bars moved up)."""
    torch.manual_seed(0)
    rng = np.random.default_rng(4)
    features = rng.normal(size=(400, 9)).astype(np.float32)
    steps = 8
    up = features[:, 4] > 0  # price_change_pips of the bar the market moved to
    batch = _episodes(16, steps)
    batch.bar_index = rng.integers(40, 380, size=(16, 1)) + np.arange(steps)
    batch.reward = np.where(up[batch.bar_index + 1], 5.0, -5.0).astype(np.float32)
    network = NetworkConfig(tcn_channels=16, hidden=32, dropout=0.0, chance_codes=codes)
    assert network.num_outcomes == codes
    model = MuZeroNetworks(network)
    learner = Learner(model, LearnerConfig(learning_rate=3e-3))
    buffer = ReplayBuffer(features, steps, 4, ReplayConfig(capacity_episodes=16, unroll_steps=3))
    buffer.add(batch)
    sample_rng = np.random.default_rng(5)
    first = learner.step(buffer.sample(64, sample_rng))
    for _ in range(300):
        last = learner.step(buffer.sample(64, sample_rng))
    return first, last, model, buffer, batch, features, up


def test_learned_chance_codes_carry_what_the_market_did():
    """Only a chance code encoded from the bar the market moved to lets the dynamics predict these
    rewards. With learned codes the reward loss falls far below the floor a code-less prediction has,
    the chance head learns how often each code comes, and the codes split the bars by their move."""
    first, last, model, buffer, batch, features, up = _train_on_moves(4)
    # without the code a reward of +-5 at even odds costs smooth-L1 4.5 a step, over 3 steps about 10
    assert first["reward"] > 5.0 and last["reward"] < 1.0, (first["reward"], last["reward"])
    assert last["commitment"] > 0.0
    sample_rng = np.random.default_rng(6)
    model.eval()
    with torch.no_grad():
        moved_to = np.unique(batch.bar_index + 1)  # the bars the episodes' market moved to
        codes = model.chance_code(torch.from_numpy(features[moved_to]))[0].numpy()
        # each code stands for up moves or for down moves (else the reward could not be told apart)
        assert len(np.unique(codes)) >= 2
        for code in np.unique(codes):
            moves = up[moved_to[codes == code]]
            assert max(moves.mean(), 1 - moves.mean()) >= 0.95, (code, moves.mean())
        sample = buffer.sample(256, sample_rng)
        state = model.represent(torch.from_numpy(sample.temporal), torch.from_numpy(sample.static))
        _, chance_logits, _ = model.afterstate(state, torch.from_numpy(sample.actions[:, 0]))
        encoded, _, _ = model.chance_code(torch.from_numpy(sample.next_bars[:, 0]))
    # what the chance head can know at the decision: how often each code comes (not which one comes
    # now), so its distribution is the codes' frequencies, not one code
    frequencies = np.bincount(encoded.numpy(), minlength=4) / len(encoded)
    predicted = torch.softmax(chance_logits, -1).mean(0).numpy()
    np.testing.assert_allclose(predicted, frequencies, atol=0.15)


def test_one_chance_code_is_a_deterministic_model():
    """chance_codes = 1, the ablation of chance nodes: every step has the same code, so nothing of the
    market's move reaches the dynamics and the encoder has nothing to commit to."""
    assert NetworkConfig().num_outcomes == 3 and NetworkConfig(chance_codes=1).num_outcomes == 1
    with pytest.raises(ValueError, match="chance_codes"):
        NetworkConfig(chance_codes=-2)
    torch.manual_seed(0)
    model = MuZeroNetworks(NetworkConfig(tcn_channels=16, hidden=32, dropout=0.0, chance_codes=1))
    index, one_hot, probs = model.chance_code(torch.randn(50, 9))
    assert index.tolist() == [0] * 50 and torch.all(one_hot == 1) and torch.all(probs == 1)
    after = torch.randn(50, 32)
    # the dynamics of every step is the same function of the afterstate alone
    torch.testing.assert_close(model.dynamics_one_hot(after, one_hot)[0], model.dynamics(after, index)[0])


def test_n_step_values_when_the_episode_is_shorter_than_n():
    rewards = np.array([[1.0, 2.0]], np.float32)
    z = n_step_values(rewards, np.array([[5.0, 5.0]], np.float32), td_steps=10, discount=1.0)
    assert z[0].tolist() == [3.0, 2.0]


def test_the_learning_rate_schedule_decays_along_a_half_cosine_and_holds():
    constant = LearnerConfig(learning_rate=2e-3)
    assert constant.learning_rate_at(0) == constant.learning_rate_at(10**6) == 2e-3
    c = LearnerConfig(learning_rate=2e-3, learning_rate_final=2e-4, learning_rate_decay_steps=100)
    assert c.learning_rate_at(0) == pytest.approx(2e-3)
    assert c.learning_rate_at(50) == pytest.approx(1.1e-3)  # halfway: the mean of the two
    assert c.learning_rate_at(100) == c.learning_rate_at(5000) == pytest.approx(2e-4)
    rates = [c.learning_rate_at(s) for s in range(101)]
    assert all(a >= b for a, b in zip(rates, rates[1:]))
    with pytest.raises(ValueError, match="learning_rate_final"):
        LearnerConfig(learning_rate=1e-3, learning_rate_final=2e-3)

    # the optimiser takes each step at the schedule's rate, and a restored step count resumes it
    torch.manual_seed(0)
    features = np.random.default_rng(2).normal(size=(100, 9)).astype(np.float32)
    buffer = ReplayBuffer(features, 8, 4, ReplayConfig(capacity_episodes=4, unroll_steps=2))
    buffer.add(_episodes(4, 8))
    batch = buffer.sample(8, np.random.default_rng(3))
    learner = Learner(MuZeroNetworks(NetworkConfig(tcn_channels=8, hidden=16, value_atoms=21, dropout=0.0)), c)
    for step in range(3):
        learner.step(batch)
        assert learner.optimizer.param_groups[0]["lr"] == pytest.approx(c.learning_rate_at(step))
    learner.steps = 75  # as a resume restores it
    learner.step(batch)
    assert learner.optimizer.param_groups[0]["lr"] == pytest.approx(c.learning_rate_at(75))
