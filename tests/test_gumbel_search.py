"""Gumbel MuZero search in mcts_rs against DeepMind mctx's
`gumbel_muzero_policy` (fixture made by tests/data/make_gumbel_reference.py),
and its use as a search setting."""

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from mcts_rs import BatchedSearch, run_search
from shared.config import SearchConfig

REFERENCE = json.loads((Path(__file__).parent / "data" / "gumbel_mctx_reference.json").read_text())


def _one_step_problem(search: BatchedSearch, rewards: np.ndarray):
    """Root action a always backs up rewards[b, a], as mctx's discount 0
    makes it there: the afterstate value is r at the root; the embedding
    carries the root action and whether the afterstate is the root's; the
    state under a root afterstate gets reward r, every deeper one reward 0,
    and every value below the root is 0."""
    b_rows, a = rewards.shape

    def afterstate_fn(embeddings, actions):
        roots = search.afterstate_roots[: len(actions)]
        at_root = search.afterstate_nodes[: len(actions)] == 0
        root_action = np.where(at_root, actions, embeddings[:, 0].astype(np.int64) - 1)
        emb = np.stack([root_action + 1.0, (~at_root).astype(np.float64)], axis=1).astype(np.float32)
        values = np.where(at_root, rewards[roots, root_action], 0.0).astype(np.float32)
        return emb, np.zeros((len(actions), 1), np.float32), values

    def dynamics_fn(embeddings, outcomes):
        roots = search.state_roots[: len(outcomes)]
        root_action = embeddings[:, 0].astype(np.int64) - 1
        n = len(outcomes)
        return (embeddings.copy(), np.zeros((n, a), np.float32), np.zeros(n, np.float32),
                np.where(embeddings[:, 1] == 0, rewards[roots, root_action], 0.0).astype(np.float32))

    return afterstate_fn, dynamics_fn


def _group(cases):
    groups = {}
    for case in cases:
        key = (case["num_actions"], case["num_simulations"], case["max_considered_actions"])
        groups.setdefault(key, []).append(case)
    return groups


@pytest.mark.parametrize("key", sorted(_group(REFERENCE["cases"])))
def test_matches_mctx_gumbel_muzero_policy(key):
    num_actions, num_simulations, considered = key
    cases = _group(REFERENCE["cases"])[key]
    b = len(cases)
    logits = np.array([c["logits"] for c in cases], np.float64)
    legal = np.array([c["legal"] for c in cases], bool)
    masked = np.where(legal, logits, -np.inf)
    priors = np.exp(masked - masked.max(axis=1, keepdims=True))
    priors = (priors / priors.sum(axis=1, keepdims=True)).astype(np.float32)
    rewards = np.array([c["rewards"] for c in cases], np.float32)
    config = SearchConfig(simulations=num_simulations, root_selection="gumbel", max_considered_actions=considered)
    search = BatchedSearch(b, config, num_actions=num_actions, num_outcomes=1, embedding_dim=2)
    search.reset(np.zeros((b, 2), np.float32), priors, np.array([c["root_value"] for c in cases], np.float32), legal,
                 np.arange(b, dtype=np.uint64), gumbel=np.array([c["gumbel"] for c in cases], np.float32))
    run_search(search, *_one_step_problem(search, rewards))

    np.testing.assert_array_equal(search.root_visit_counts(), np.array([c["visit_counts"] for c in cases]))
    np.testing.assert_array_equal(search.gumbel_actions(), np.array([c["action"] for c in cases]))
    np.testing.assert_allclose(search.improved_policy(), np.array([c["action_weights"] for c in cases]), atol=2e-5)


def test_gumbel_noise_is_seeded_and_off_without_noise():
    b, a = 64, 4
    rng = np.random.default_rng(3)
    priors = np.full((b, a), 0.25, np.float32)
    rewards = rng.normal(0, 1, (b, a)).astype(np.float32)
    legal = np.ones((b, a), bool)

    def run(seed: int, add_noise: bool):
        search = BatchedSearch(b, SearchConfig(simulations=4, root_selection="gumbel"), num_actions=a,
                               num_outcomes=1, embedding_dim=2)
        search.reset(np.zeros((b, 2), np.float32), priors, np.zeros(b, np.float32), legal,
                     np.full(b, seed, np.uint64), add_noise=add_noise)
        run_search(search, *_one_step_problem(search, rewards))
        return search.gumbel_actions()

    # without noise, a uniform prior and 4 simulations (every action once): the best reward
    np.testing.assert_array_equal(run(0, False), rewards.argmax(axis=1))
    np.testing.assert_array_equal(run(1, True), run(1, True))
    noisy = run(1, True)
    assert (noisy != rewards.argmax(axis=1)).any()  # Gumbel noise explores
    assert (noisy == rewards.argmax(axis=1)).mean() > 0.5  # ... mostly the best


def test_gumbel_only_outputs_are_refused_under_puct_and_bad_settings_are_named():
    search = BatchedSearch(1, SearchConfig(simulations=2, root_selection="puct"), num_actions=3, num_outcomes=1,
                           embedding_dim=2)
    search.reset(np.zeros((1, 2), np.float32), np.full((1, 3), 1 / 3, np.float32), np.zeros(1, np.float32),
                 np.ones((1, 3), bool), np.zeros(1, np.uint64))
    run_search(search, *_one_step_problem(search, np.zeros((1, 3), np.float32)))
    with pytest.raises(ValueError, match="root_selection='gumbel'"):
        search.improved_policy()
    # SearchConfig refuses these itself; the binding names them too, for any config object
    def settings(**changes):
        return SimpleNamespace(**{**dataclasses.asdict(SearchConfig()), **changes})

    with pytest.raises(ValueError, match="root_selection"):
        BatchedSearch(1, settings(root_selection="ucb"), num_actions=3, num_outcomes=1, embedding_dim=2)
    with pytest.raises(ValueError, match="max_considered_actions"):
        BatchedSearch(1, settings(max_considered_actions=0), num_actions=3, num_outcomes=1, embedding_dim=2)


def test_every_search_setting_reaches_the_rust_search_under_one_name(monkeypatch):
    """NetworkSearch hands mcts_rs its SearchConfig itself, and the binding reads every field of it under
    the field's own name (tests/test_mcts_search.py: any one missing is refused), the two Gumbel
    transform constants included: none falls back to a Rust default."""
    import shared.search
    from shared.config import NetworkConfig, SearchConfig
    from shared.env import HOLD_BUY_SELL_CLOSE
    from shared.model import MuZeroNetworks

    handed = []
    real = shared.search.BatchedSearch

    def recording(batch_size, config, **kwargs):
        handed.append(config)
        return real(batch_size, config, **kwargs)

    monkeypatch.setattr(shared.search, "BatchedSearch", recording)
    config = SearchConfig(simulations=7, dirichlet_alpha=0.3, dirichlet_fraction=0.25, pb_c_init=1.5,
                          pb_c_base=1000.0, sample_outcomes=True, max_considered_actions=3, gumbel_scale=0.5,
                          gumbel_value_scale=0.4, gumbel_maxvisit_init=20.0)
    model = MuZeroNetworks(NetworkConfig(tcn_channels=16, hidden=32)).eval()
    search = shared.search.NetworkSearch(model, 2, HOLD_BUY_SELL_CLOSE, config)
    assert handed == [config] and handed[0] is config
    assert search.tree.simulations == config.simulations
    read = []

    class Recording:
        def __getattr__(self, name):
            read.append(name)
            return getattr(config, name)

    BatchedSearch(2, Recording(), num_actions=4, num_outcomes=3, embedding_dim=2)
    assert sorted(read) == sorted(field.name for field in dataclasses.fields(SearchConfig))


def test_the_gumbel_value_scale_sharpens_the_improved_policy():
    """gumbel_value_scale (c_scale) weighs the completed Q against the prior: larger, greedier."""
    b, a = 8, 4
    rewards = np.tile(np.array([[0.0, 0.2, 0.4, 1.0]], np.float32), (b, 1))

    def improved(value_scale: float) -> np.ndarray:
        config = SearchConfig(simulations=8, root_selection="gumbel", gumbel_value_scale=value_scale)
        search = BatchedSearch(b, config, num_actions=a, num_outcomes=1, embedding_dim=2)
        search.reset(np.zeros((b, 2), np.float32), np.full((b, a), 0.25, np.float32), np.zeros(b, np.float32),
                     np.ones((b, a), bool), np.arange(b, dtype=np.uint64))
        run_search(search, *_one_step_problem(search, rewards))
        return search.improved_policy()

    assert (improved(1.0)[:, 3] > improved(0.01)[:, 3] + 0.1).all()
