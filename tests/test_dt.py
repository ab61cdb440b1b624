"""The Strategist (shared/model/dt*.py): the notes' settings, returns-to-go, windows that stay inside one
episode, causality of the model, learning, the legal mask of `act`."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from shared.core.feature_spec import INDICATOR_FEATURES
from shared.model.dt import DecisionTransformer, DTConfig
from shared.model.dt_data import Trajectories, fit_state_scaling, returns_to_go, windows
from tests.helpers import one_torch_thread  # noqa: F401 - the fixture, used by pytestmark

SMALL = DTConfig(state_inputs=5, hidden=32, layers=2, heads=2, context_steps=8)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def small_model(seed: int = 0, **overrides) -> DecisionTransformer:
    torch.manual_seed(seed)
    return DecisionTransformer(replace(SMALL, **overrides))


def batch(b: int, k: int, seed: int = 0, *, states: int = 5, actions: int = 4):
    """(returns_to_go [B, K, 1], states [B, K, S], actions [B, K]) of random values."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, k, 1, generator=g), torch.randn(b, k, states, generator=g),
            torch.randint(0, actions, (b, k), generator=g))


def trajectories(lengths, states: int = 3, seed: int = 0) -> Trajectories:
    """Episodes of the given lengths; state column 0 is the episode's number, column 1 the step's."""
    rng = np.random.default_rng(seed)
    episodes = []
    for e, n in enumerate(lengths):
        s = rng.normal(size=(n, states)).astype(np.float32)
        s[:, 0], s[:, 1] = e, np.arange(n)
        episodes.append((s, rng.integers(0, 4, n), rng.normal(size=n)))
    return Trajectories.from_episodes(episodes)


def test_defaults_are_the_product_notes_settings_but_context_and_batch_sized_for_a_cpu():
    c = DTConfig()
    assert (c.context_steps, c.hidden, c.layers, c.heads, c.dropout) == (30, 256, 6, 8, 0.1)  # the notes': 90
    assert (c.learning_rate, c.batch_size, c.max_epochs, c.discount, c.reward_scale, c.return_scale) == (
        1e-4, 64, 200, 0.99, 1.0, 1000.0)  # the notes' batch: 128
    assert (c.state_inputs, c.num_actions) == (len(INDICATOR_FEATURES) + 1, 4)


@pytest.mark.parametrize("overrides, message", [
    ({"hidden": 30, "heads": 4}, "multiple of heads"),
    ({"layers": 0}, "layers must be positive"),
    ({"context_steps": 0}, "context_steps must be positive"),
    ({"num_actions": 1}, "num_actions"),
    ({"dropout": 1.0}, "dropout"),
    ({"discount": 1.5}, "discount"),
    ({"discount": float("nan")}, "discount"),
    ({"return_scale": 0.0}, "return_scale must be positive"),
    ({"learning_rate": -1e-4}, "learning_rate must be positive"),
])
def test_config_rejects_bad_values(overrides, message):
    with pytest.raises(ValueError, match=message):
        DTConfig(**overrides)


def test_returns_to_go_by_hand():
    rewards = np.array([1.0, -2.0, 0.5, 3.0])
    expected = [1 - 2 * 0.9 + 0.5 * 0.81 + 3 * 0.729, -2 + 0.5 * 0.9 + 3 * 0.81, 0.5 + 3 * 0.9, 3.0]
    got = returns_to_go(rewards, 0.9)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    np.testing.assert_allclose(returns_to_go(rewards, 1.0), [2.5, 1.5, 3.5, 3.0])
    np.testing.assert_allclose(returns_to_go(rewards, 0.0), rewards)
    assert returns_to_go(np.zeros(0), 0.99).shape == (0,)


def test_windows_stay_in_one_episode_and_pad_on_the_left():
    tr = trajectories([3, 6, 1, 5])  # episodes start at rows 0, 3, 9, 10
    k = 4
    ends = np.arange(len(tr.states))
    w = windows(tr, ends, k, 0.9, 10.0)
    assert w.returns_to_go.shape == (15, k, 1) and w.states.shape == (15, k, 3) and w.actions.shape == (15, k)
    for i, end in enumerate(ends):
        episode = int(tr.episode_of(np.array([end]))[0])
        step = int(end - tr.episode_start[episode])
        n = min(k, step + 1)
        assert w.mask[i].tolist() == [False] * (k - n) + [True] * n  # real steps last, contiguous
        assert (w.states[i, :k - n] == 0).all() and (w.actions[i, :k - n] == 0).all()
        assert (w.returns_to_go[i, :k - n] == 0).all() and (w.timesteps[i, :k - n] == -1).all()
        assert (w.states[i, k - n:, 0] == episode).all()  # no step of another episode
        np.testing.assert_array_equal(w.states[i, k - n:, 1], np.arange(step - n + 1, step + 1))
        np.testing.assert_array_equal(w.timesteps[i, k - n:], np.arange(step - n + 1, step + 1))
        rows = np.arange(end - n + 1, end + 1)
        np.testing.assert_array_equal(w.actions[i, k - n:], tr.actions[rows])
        stop = int(tr.episode_end(episode))
        expected = returns_to_go(tr.rewards[int(tr.episode_start[episode]):stop], 0.9)[step - n + 1:step + 1] / 10.0
        np.testing.assert_allclose(w.returns_to_go[i, k - n:, 0], expected, rtol=1e-6)


def test_windows_reject_bad_input():
    tr = trajectories([3, 2])
    with pytest.raises(ValueError, match="ends"):
        windows(tr, np.array([5]), 4, 0.9, 1.0)
    with pytest.raises(ValueError, match="episode_start"):
        Trajectories(tr.states, tr.actions, tr.rewards, np.array([0, 3, 3]))


def test_the_model_is_causal():
    k = SMALL.context_steps
    model = small_model().eval()
    r, s, a = batch(2, k)
    base = model(r, s, a)
    for t in range(k):
        later = slice(t + 1, None)
        r2, s2, a2 = r.clone(), s.clone(), a.clone()
        r2[:, later] += 5.0
        s2[:, later] += 5.0
        a2[:, later] = (a2[:, later] + 1) % SMALL.num_actions
        a2[:, t] = (a2[:, t] + 2) % SMALL.num_actions  # its own action too
        changed = model(r2, s2, a2)
        torch.testing.assert_close(changed[:, :t + 1], base[:, :t + 1])
        if t + 1 < k:  # and the inputs do matter: the next step's logits move
            assert not torch.allclose(changed[:, t + 1], base[:, t + 1])
    r2 = r.clone()
    r2[:, 0] += 5.0  # an earlier return-to-go reaches the later steps
    assert not torch.allclose(model(r2, s, a)[:, -1], base[:, -1])


def test_padding_is_ignored_by_the_real_steps():
    k = SMALL.context_steps
    model = small_model().eval()
    r, s, a = batch(3, k)
    mask = torch.ones(3, k, dtype=torch.bool)
    mask[0, :5], mask[1, :1] = False, False
    base = model(r, s, a, mask)
    r2, s2, a2 = r.clone(), s.clone(), a.clone()
    r2[~mask], s2[~mask], a2[~mask] = 7.0, -7.0, 3
    torch.testing.assert_close(model(r2, s2, a2, mask)[mask], base[mask])
    assert torch.isfinite(base).all()
    # fewer steps than the context: the newest step keeps the newest position
    torch.testing.assert_close(model(r[:1, 5:], s[:1, 5:], a[:1, 5:]), base[:1, 5:])


def test_a_tiny_model_overfits_a_tiny_batch():
    model = small_model(dropout=0.0)
    tr = trajectories([8, 5, 8], states=5, seed=1)
    ends = np.array([7, 11, 20, 17])
    w = windows(tr, ends, SMALL.context_steps, 0.99, 10.0)
    mean, std = fit_state_scaling(tr.states)
    model.set_scaling(mean, std)
    r, s, a, mask = (torch.as_tensor(x) for x in w[:4])
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(200):
        loss = model.loss(model(r, s, a, mask), a, mask)
        first = float(loss.detach()) if first is None else first
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if float(loss.detach()) < 0.1 * first:
            break
    model.eval()
    with torch.no_grad():
        logits = model(r, s, a, mask)
    assert float(model.loss(logits, a, mask)) < 0.1 * first
    predicted = logits.argmax(dim=-1)
    assert bool((predicted[mask] == a[mask]).all())


def test_act_picks_the_last_step_and_respects_the_legal_mask():
    k = SMALL.context_steps
    model = small_model().eval()
    r, s, a = batch(4, k)
    logits = model(r, s, a)[:, -1]
    chosen = model.act(r, s, a)
    assert chosen.dtype == torch.int64 and chosen.tolist() == logits.argmax(dim=-1).tolist()
    legal = torch.ones(4, SMALL.num_actions, dtype=torch.bool)
    legal[torch.arange(4), chosen] = False  # forbid each row's favourite
    only = (int(chosen[0]) + 1) % SMALL.num_actions
    legal[0] = torch.arange(SMALL.num_actions) == only  # one legal action
    picked = model.act(r, s, a, legal=legal)
    assert bool(legal[torch.arange(4), picked].all()) and not bool((picked == chosen).any())
    assert int(picked[0]) == only
    with pytest.raises(ValueError, match="legal"):
        model.act(r, s, a, legal=torch.zeros(4, SMALL.num_actions, dtype=torch.bool))


def test_shapes_and_scaling_are_checked():
    model = small_model()
    r, s, a = batch(2, SMALL.context_steps + 1)
    with pytest.raises(ValueError, match="K <= 8"):
        model(r, s, a)
    r, s, a = batch(2, 4, states=6)
    with pytest.raises(ValueError, match="states"):
        model(r, s, a)
    with pytest.raises(ValueError, match="positive std"):
        model.set_scaling(np.zeros(5), np.zeros(5))
    with pytest.raises(ValueError, match="no real step"):
        model.loss(torch.zeros(1, 2, 4), torch.zeros(1, 2, dtype=torch.int64), torch.zeros(1, 2, dtype=torch.bool))
