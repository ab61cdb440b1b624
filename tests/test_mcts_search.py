"""mcts_rs against its plain-Python reference, and its behaviour on bad input."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mcts_rs.reference import ReferenceSearch

from mcts_rs import BatchedSearch, run_search
from shared.config import SearchConfig

DIM, ACTIONS, OUTCOMES = 8, 4, 3


def puct(simulations: int = 50, **settings) -> SearchConfig:
    """pUCT (what the reference implements), the other settings SearchConfig's own."""
    return SearchConfig(simulations=simulations, root_selection="puct", **settings)


def make_search(batch: int, config, **kwargs) -> BatchedSearch:
    return BatchedSearch(batch, config, num_actions=ACTIONS, num_outcomes=OUTCOMES, embedding_dim=DIM, **kwargs)


def reference_search(config: SearchConfig, **kwargs) -> ReferenceSearch:
    return ReferenceSearch(config, num_actions=ACTIONS, num_outcomes=OUTCOMES, **kwargs)


class RowwiseNetwork:
    """A seeded test network whose every output row depends only on its input
    row, through IEEE-exact operations (+, *, /), so a batched call and a
    one-row call give bit-identical results."""

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.w_as = rng.normal(size=DIM)
        self.e_a = rng.normal(size=(ACTIONS, DIM))
        self.w_dyn = rng.normal(size=DIM)
        self.e_c = rng.normal(size=(OUTCOMES, DIM))
        self.calls = {"afterstate": 0, "dynamics": 0}

    @staticmethod
    def _squash(x: np.ndarray) -> np.ndarray:
        return (x / (1.0 + np.abs(x))).astype(np.float32)

    def afterstate(self, emb: np.ndarray, actions: np.ndarray):
        self.calls["afterstate"] += 1
        after = self._squash(emb.astype(np.float64) * self.w_as + self.e_a[actions])
        return after, after[:, :OUTCOMES] * np.float32(3.0), after[:, OUTCOMES] * np.float32(2.0)

    def dynamics(self, after: np.ndarray, outcomes: np.ndarray):
        self.calls["dynamics"] += 1
        nxt = self._squash(after.astype(np.float64) * self.w_dyn + self.e_c[outcomes])
        return nxt, nxt[:, :ACTIONS] * np.float32(3.0), nxt[:, ACTIONS] * np.float32(2.0), nxt[:, ACTIONS + 1]


def make_roots(batch: int, seed: int, legal: np.ndarray | None = None):
    rng = np.random.default_rng(seed)
    emb = rng.uniform(-1, 1, size=(batch, DIM)).astype(np.float32)
    priors = rng.dirichlet(np.ones(ACTIONS), size=batch).astype(np.float32)
    values = rng.normal(size=batch).astype(np.float32)
    if legal is None:
        legal = rng.random((batch, ACTIONS)) < 0.7
        legal[np.arange(batch), rng.integers(0, ACTIONS, size=batch)] = True
    return emb, priors, values, legal


def rust_search(net, emb, priors, values, legal, sims, **settings):
    search = make_search(len(emb), puct(sims, **settings))
    search.reset(emb, priors, values, legal, np.arange(len(emb), dtype=np.uint64))
    run_search(search, net.afterstate, net.dynamics)
    return search


@settings(max_examples=60, deadline=None)
@given(
    batch=st.integers(1, 6),
    sims=st.integers(1, 40),
    seed=st.integers(0, 2**32 - 1),
    discount=st.sampled_from([1.0, 0.997, 0.9]),
)
def test_rust_and_reference_give_identical_visit_counts(batch, sims, seed, discount):
    net = RowwiseNetwork(seed)
    emb, priors, values, legal = make_roots(batch, seed)
    search = rust_search(net, emb, priors, values, legal, sims, discount=discount)
    counts = search.root_visit_counts()
    root_values = search.root_values()
    reference = reference_search(puct(sims, discount=discount))
    for b in range(batch):
        root, ref_counts = reference.run(emb[b], priors[b], float(values[b]), legal[b], net.afterstate, net.dynamics)
        assert counts[b].tolist() == ref_counts, f"root {b}"
        assert root_values[b] == pytest.approx(root.mean(), rel=1e-6, abs=1e-6)


def random_position_rules(rng: np.random.Generator, positions: int) -> np.ndarray:
    """[A, P] next-position table, -1 where illegal; action 0 always holds."""
    table = rng.integers(0, positions, size=(ACTIONS, positions))
    table[rng.random((ACTIONS, positions)) < 0.4] = -1
    table[0] = np.arange(positions)
    return table.astype(np.int64)


@settings(max_examples=40, deadline=None)
@given(batch=st.integers(1, 5), sims=st.integers(1, 60), seed=st.integers(0, 2**32 - 1),
       positions=st.integers(1, 5))
def test_rust_and_reference_agree_with_position_rules(batch, sims, seed, positions):
    """With position rules both mask every decision node by its position and
    renormalise its prior over the legal actions: identical visit counts."""
    rng = np.random.default_rng(seed)
    rules = random_position_rules(rng, positions)
    root_positions = rng.integers(0, positions, size=batch).astype(np.int64)
    net = RowwiseNetwork(seed)
    emb, priors, values, _ = make_roots(batch, seed)
    legal = (rules[:, root_positions] >= 0).T.copy()
    search = make_search(batch, puct(sims), position_transitions=rules)
    search.reset(emb, priors, values, legal, np.arange(batch, dtype=np.uint64), root_positions=root_positions)
    run_search(search, net.afterstate, net.dynamics)
    reference = reference_search(puct(sims), position_transitions=rules)
    for b in range(batch):
        _, ref_counts = reference.run(emb[b], priors[b], float(values[b]), legal[b], net.afterstate, net.dynamics,
                                      root_position=int(root_positions[b]))
        assert search.root_visit_counts()[b].tolist() == ref_counts, f"root {b}"


def _actions_on_paths(node: dict, position: int, rules: np.ndarray, seen: list[tuple[int, int]]) -> None:
    for edge in node.get("children", []):
        if node["kind"] == "decision":
            seen.append((edge["action"], position))
            _actions_on_paths(edge["child"], int(rules[edge["action"], position]), rules, seen)
        else:
            _actions_on_paths(edge["child"], position, rules, seen)


def test_position_rules_mask_actions_deep_in_the_tree():
    """The trading table (HOLD, BUY, SELL, CLOSE over short / flat / long):
    no path ever buys while long or closes while flat, although the network
    favours exactly those actions everywhere."""
    from shared.env.actions import HOLD_BUY_SELL_CLOSE

    rules = HOLD_BUY_SELL_CLOSE.transitions()
    net = RowwiseNetwork(8)
    emb, priors, values, _ = make_roots(3, seed=8)
    root_positions = np.array([0, 1, 2], dtype=np.int64)
    legal = (rules[:, root_positions] >= 0).T.copy()

    def eager_to_break_rules(after, outcomes):
        nxt, logits, value, reward = net.dynamics(after, outcomes)
        logits = logits.copy()
        logits[:, 1] += 5.0  # BUY
        logits[:, 3] += 5.0  # CLOSE
        return nxt, logits, value, reward

    search = make_search(3, puct(200), position_transitions=rules)
    search.reset(emb, priors, values, legal, np.arange(3, dtype=np.uint64), root_positions=root_positions)
    run_search(search, net.afterstate, eager_to_break_rules)
    seen: list[tuple[int, int]] = []
    for b in range(3):
        _actions_on_paths(json.loads(search.tree_json(b, max_depth=60)), int(root_positions[b]), rules, seen)
    assert len(seen) > 150
    assert all(rules[action, position] >= 0 for action, position in seen)
    assert {position for _, position in seen} == {0, 1, 2}
    assert sum(action in (1, 3) for action, _ in seen) > 50, "the favoured actions are taken where legal"


def test_position_rules_are_checked():
    rules = np.array([[0, 1], [1, -1], [-1, 0], [-1, -1]], dtype=np.int64)  # 4 actions, 2 positions
    emb, priors, values, _ = make_roots(1, seed=1)
    seeds = np.zeros(1, dtype=np.uint64)
    with pytest.raises(ValueError, match="one row per action"):
        make_search(1, puct(), position_transitions=rules[:3])
    with pytest.raises(ValueError, match="position index"):
        make_search(1, puct(), position_transitions=np.where(rules == 1, 7, rules))
    with pytest.raises(ValueError, match="allow no action from position 1"):
        make_search(1, puct(), position_transitions=np.array([[0, -1], [1, -1], [-1, -1], [-1, -1]]))
    search = make_search(1, puct(), position_transitions=rules)
    flat_legal = np.array([[True, True, False, False]])
    with pytest.raises(ValueError, match="needs root_positions"):
        search.reset(emb, priors, values, flat_legal, seeds)
    with pytest.raises(ValueError, match="allows action 2, which position 0 forbids"):
        search.reset(emb, priors, values, np.array([[True, True, True, False]]), seeds, root_positions=np.array([0]))
    with pytest.raises(ValueError, match="not a position index"):
        search.reset(emb, priors, values, flat_legal, seeds, root_positions=np.array([2]))
    search.reset(emb, priors, values, flat_legal, seeds, root_positions=np.array([0]))
    with pytest.raises(ValueError, match="no position_transitions"):
        make_search(1, puct()).reset(emb, priors, values, flat_legal, seeds, root_positions=np.array([0]))


def test_root_result_is_independent_of_batch_position_and_neighbours():
    net = RowwiseNetwork(7)
    emb, priors, values, legal = make_roots(8, seed=3)
    together = rust_search(net, emb, priors, values, legal, 30)
    order = np.array([5, 2, 7, 0, 1, 6, 3, 4])
    shuffled = rust_search(net, emb[order], priors[order], values[order], legal[order], 30)
    for b in range(8):
        alone = rust_search(net, emb[b : b + 1], priors[b : b + 1], values[b : b + 1], legal[b : b + 1], 30)
        assert alone.root_visit_counts()[0].tolist() == together.root_visit_counts()[b].tolist()
        assert alone.root_values()[0] == together.root_values()[b]
        pos = int(np.flatnonzero(order == b)[0])
        assert shuffled.root_visit_counts()[pos].tolist() == together.root_visit_counts()[b].tolist()


@pytest.mark.parametrize("root_selection", ["puct", "gumbel"])
@pytest.mark.parametrize("sample_outcomes", [False, True])
def test_a_batched_search_equals_one_search_per_root_with_noise_and_sampling(root_selection, sample_outcomes):
    """Many instruments searched in one call: each root's result is the one it gets alone (the bug
    class of a batched traversal leaking values, noise or random draws from one root into another)."""
    net = RowwiseNetwork(11)
    emb, priors, values, legal = make_roots(6, seed=5)
    seeds = np.array([91, 7, 2**40 + 3, 0, 55, 12], dtype=np.uint64)
    config = SearchConfig(simulations=24, root_selection=root_selection, sample_outcomes=sample_outcomes)

    def search(rows: np.ndarray) -> BatchedSearch:
        tree = make_search(len(rows), config)
        tree.reset(emb[rows], priors[rows], values[rows], legal[rows], seeds[rows], add_noise=True)
        run_search(tree, net.afterstate, net.dynamics)
        return tree

    together = search(np.arange(6))
    for b in range(6):
        alone = search(np.array([b]))
        assert alone.root_visit_counts()[0].tolist() == together.root_visit_counts()[b].tolist()
        assert alone.root_values()[0] == together.root_values()[b]
        assert alone.tree_json(0, max_depth=8) == together.tree_json(b, max_depth=8)
        if root_selection == "gumbel":
            assert alone.gumbel_actions()[0] == together.gumbel_actions()[b]
            np.testing.assert_array_equal(alone.improved_policy()[0], together.improved_policy()[b])


def test_each_network_called_once_per_step_on_only_its_own_leaves():
    net = RowwiseNetwork(1)
    emb, priors, values, legal = make_roots(16, seed=1)
    search = make_search(16, puct(50))
    search.reset(emb, priors, values, legal, np.arange(16, dtype=np.uint64))
    steps, rows = 0, 0
    while True:
        n_after, n_state = search.select()
        if not (n_after or n_state):
            break
        steps += 1
        rows += n_after + n_state
        assert set(search.afterstate_roots[:n_after]).isdisjoint(search.state_roots[:n_state])
        if n_after:
            # each afterstate leaf hangs off an existing node with an action in range
            assert np.all((search.afterstate_actions[:n_after] >= 0) & (search.afterstate_actions[:n_after] < ACTIONS))
            search.expand_afterstates(*net.afterstate(search.afterstate_inputs[:n_after], search.afterstate_actions[:n_after]))
        if n_state:
            assert np.all((search.state_outcomes[:n_state] >= 0) & (search.state_outcomes[:n_state] < OUTCOMES))
            search.expand_states(*net.dynamics(search.state_inputs[:n_state], search.state_outcomes[:n_state]))
    assert rows == 16 * 50, "one leaf per root per simulation"
    assert net.calls["afterstate"] + net.calls["dynamics"] < 2 * 50, "leaves of a kind are batched"
    assert search.root_visit_counts().sum(axis=1).tolist() == [50] * 16


def _walk(node: dict, parent_kind: str | None, seen: list[str]) -> None:
    if parent_kind is not None:
        assert node["kind"] != parent_kind, "decision and chance levels alternate"
    seen.append(node["kind"])
    for edge in node.get("children", []):
        assert ("action" in edge) == (node["kind"] == "decision")
        assert ("outcome" in edge) == (node["kind"] == "chance")
        _walk(edge["child"], node["kind"], seen)


def test_tree_export_alternates_levels_and_respects_depth():
    net = RowwiseNetwork(2)
    emb, priors, values, legal = make_roots(2, seed=2)
    search = rust_search(net, emb, priors, values, legal, 40)
    tree = json.loads(search.tree_json(1, max_depth=10))
    seen: list[str] = []
    _walk(tree, None, seen)
    assert tree["kind"] == "decision" and tree["visits"] == 41
    assert "chance" in seen and seen.count("decision") > 1
    assert "children" not in json.loads(search.tree_json(1, max_depth=0))


def test_illegal_actions_are_never_selected():
    net = RowwiseNetwork(4)
    legal = np.array([[True, False, False, True], [False, False, True, False]])
    emb, priors, values, _ = make_roots(2, seed=4)
    priors[:] = np.array([0.01, 0.9, 0.08, 0.01], dtype=np.float32)  # most mass on an illegal action
    search = rust_search(net, emb, priors, values, legal, 50, dirichlet_fraction=0.5)
    counts = search.root_visit_counts()
    assert counts[0, 1] == counts[0, 2] == 0 and counts[0].sum() == 50
    assert counts[1].tolist() == [0, 0, 50, 0]
    assert search.choose_actions(1.0)[1] == 2
    policy = search.visit_policy(1.0)
    assert policy[0, 1] == policy[0, 2] == 0.0


def test_visit_policy_and_chosen_action():
    net = RowwiseNetwork(5)
    emb, priors, values, legal = make_roots(3, seed=5, legal=np.ones((3, ACTIONS), dtype=bool))
    search = rust_search(net, emb, priors, values, legal, 30)
    counts = search.root_visit_counts().astype(np.float64)
    np.testing.assert_allclose(search.visit_policy(1.0), counts / counts.sum(axis=1, keepdims=True), rtol=1e-6)
    sharp = counts**2 / (counts**2).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(search.visit_policy(0.5), sharp, rtol=1e-5)
    greedy = search.choose_actions(0.0)
    assert greedy.tolist() == counts.argmax(axis=1).tolist()


def test_noise_and_sampled_outcomes_are_reproducible_for_a_seed():
    net = RowwiseNetwork(6)
    emb, priors, values, legal = make_roots(4, seed=6)

    def run(seed: int):
        search = make_search(4, puct(40, sample_outcomes=True))
        search.reset(emb, priors, values, legal, np.full(4, seed, dtype=np.uint64), add_noise=True)
        run_search(search, net.afterstate, net.dynamics)
        return search.root_visit_counts(), search.choose_actions(1.0)

    first, again, other = run(11), run(11), run(12)
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert not np.array_equal(first[0], other[0])


# --- bad input: always ValueError with a message, never a crash -------------------------


@pytest.fixture
def search_and_roots():
    emb, priors, values, legal = make_roots(2, seed=9)
    return make_search(2, puct(5)), (emb, priors, values, legal, np.arange(2, dtype=np.uint64))


@pytest.mark.parametrize(
    "index, bad, message",
    [
        (0, lambda a: a.astype(np.float64), "root_embeddings must be a 2-d numpy array of float32"),
        (0, lambda a: a[:, :4].copy(), "root_embeddings must have shape"),
        (1, lambda a: np.where(np.arange(ACTIONS) == 1, np.nan, a).astype(np.float32), "finite and non-negative"),
        (1, lambda a: np.where(np.arange(ACTIONS) == 1, -0.5, a).astype(np.float32), "finite and non-negative"),
        (2, lambda a: a.reshape(2, 1), "root_values must be a 1-d numpy array"),
        (3, lambda a: np.zeros_like(a), "allows no action"),
        (3, lambda a: a.astype(np.int8), "legal_mask must be a 2-d numpy array of bool"),
        (4, lambda a: a.astype(np.int64), "seeds must be a 1-d numpy array of uint64"),
        (0, lambda a: [[0.0] * DIM] * 2, "root_embeddings must be a 2-d numpy array"),
    ],
)
def test_bad_root_inputs_raise_value_error(search_and_roots, index, bad, message):
    search, inputs = search_and_roots
    inputs = list(inputs)
    inputs[index] = bad(inputs[index])
    with pytest.raises(ValueError, match=message):
        search.reset(*inputs)


def test_bad_construction_raises_value_error():
    with pytest.raises(ValueError, match="discount"):
        make_search(1, puct(discount=1.5))
    with pytest.raises(ValueError, match="batch_size"):
        make_search(0, puct())
    with pytest.raises(ValueError, match="simulations_this_search"):
        search = make_search(1, puct(3))
        emb, priors, values, legal = make_roots(1, 0)
        search.reset(emb, priors, values, legal, np.zeros(1, dtype=np.uint64), simulations_this_search=4)
    with pytest.raises(TypeError):
        BatchedSearch(1, puct(), embedding_dim=DIM)  # the network's shape has no default either


def _settings(**changes) -> SimpleNamespace:
    """SearchConfig's fields on a plain object, some changed or (None) removed."""
    fields = {**dataclasses.asdict(puct(4)), **changes}
    return SimpleNamespace(**{name: value for name, value in fields.items() if value is not None})


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(SearchConfig)])
def test_every_search_config_field_is_read_by_the_binding(name):
    """The binding reads each SearchConfig field itself, under the field's name, with no default:
    an object without any one of them is refused naming it, as is one of the wrong type."""
    make_search(1, _settings())  # every field present: accepted
    with pytest.raises(ValueError, match=f'config has no attribute "{name}"'):
        make_search(1, _settings(**{name: None}))
    with pytest.raises(ValueError, match=rf"config\.{name} must be"):
        make_search(1, _settings(**{name: object()}))


def test_mistyped_settings_are_named_not_coerced():
    for name, value in [("simulations", 5.0), ("simulations", True), ("max_considered_actions", "4"),
                        ("discount", "0.9"), ("gumbel_scale", True), ("sample_outcomes", 1), ("root_selection", 1)]:
        with pytest.raises(ValueError, match=rf"config\.{name} must be"):
            make_search(1, _settings(**{name: value}))
    search = make_search(1, _settings(simulations=np.int64(7), discount=1, pb_c_base=np.float32(100.0)))
    assert search.simulations == 7


def test_protocol_misuse_raises_value_error(search_and_roots):
    search, inputs = search_and_roots
    net = RowwiseNetwork(0)
    with pytest.raises(ValueError, match="before reset"):
        search.select()
    search.reset(*inputs)
    n_after, n_state = search.select()
    assert (n_after, n_state) == (2, 0)
    with pytest.raises(ValueError, match="not all answered"):
        search.select()
    with pytest.raises(ValueError, match="not answered"):
        search.root_visit_counts()
    with pytest.raises(ValueError, match="no state leaves are pending"):
        search.expand_states(*net.dynamics(search.state_inputs[:1], search.state_outcomes[:1]))
    after, logits, values = net.afterstate(search.afterstate_inputs[:2], search.afterstate_actions[:2])
    with pytest.raises(ValueError, match="shape"):
        search.expand_afterstates(after[:1], logits[:1], values[:1])  # one leaf left unanswered
    bad = after.copy()
    bad[1, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        search.expand_afterstates(bad, logits, values)
    search.expand_afterstates(after, logits, values)  # a rejected answer changed nothing: retry works
    with pytest.raises(ValueError, match="already answered"):
        search.expand_afterstates(after, logits, values)


def test_type_stubs_match_the_compiled_module():
    """mypy's stubtest compares `_mcts_rs.pyi` with the built extension."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "mypy.stubtest", "mcts_rs._mcts_rs"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
