"""Search with the torch networks: one representation call for all roots,
then mcts_rs with batched afterstate and dynamics calls, all under
torch.inference_mode. Training, validation and live all search through this.
The tree follows each node's position through the action space's table, so
illegal actions are masked at every decision node, not only at the root.

Two root selection rules (`SearchConfig.root_selection`): "puct" (MuZero:
pUCT with Dirichlet noise; act by visit counts at a temperature; the policy
target is the visit distribution) and "gumbel" (Gumbel MuZero: Sequential
Halving over Gumbel top-k; act with the search's own choice, the Gumbel noise
being the exploration; the policy target is the completed-Q improved policy,
which is informative even at 2-16 simulations)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mcts_rs import BatchedSearch, run_search
from shared.config import SearchConfig
from shared.env.actions import ActionSpace
from shared.env.rollout import Policy
from shared.env.trading import Observation
from shared.model import MuZeroNetworks, ValueSupport
from shared.model.inference import InferencePlan


@dataclass
class SearchOutput:
    visit_counts: np.ndarray   # [B, A] int32
    root_values: np.ndarray    # [B] float32, pips
    prior: np.ndarray          # [B, A] float32 network policy at the root, legal-masked
    network_value: np.ndarray  # [B] float32, the value network's estimate at the root
    search: BatchedSearch      # for visit policies, chosen actions and tree export
    root_selection: str = "puct"

    @property
    def policy_target(self) -> np.ndarray:
        """[B, A] float32: the visit distribution (puct) or the improved policy (gumbel)."""
        if self.root_selection == "gumbel":
            return self.search.improved_policy()
        counts = self.visit_counts.astype(np.float32)
        return counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)

    def actions(self, temperature: float = 0.0) -> np.ndarray:
        """[B] int64 actions to act with: visit counts at `temperature` (puct),
        the search's own choice (gumbel: its root noise is the exploration,
        so the temperature does not apply)."""
        if self.root_selection == "gumbel":
            return self.search.gumbel_actions()
        return self.search.choose_actions(temperature)


class NetworkSearch:
    """Searches batches of roots with one set of networks (a tree arena per
    batch size, allocated on first use and reused).

    The three inference functions (roots, afterstates, states) come from an
    `InferencePlan`: eager PyTorch over a frozen copy of the weights, laid out
    for few ops per call (per-call overhead is most of a search at small
    batches). The copy means whoever changes the weights calls `refresh()`
    (the trainer does, once per iteration)."""

    def __init__(self, model: MuZeroNetworks, batch_size: int, space: ActionSpace,
                 config: SearchConfig = SearchConfig(), device: torch.device | None = None) -> None:
        if space.num_actions != model.config.num_actions:
            raise ValueError(f"the {space.name} space has {space.num_actions} actions, the network {model.config.num_actions}")
        self.model = model
        self.space = space
        self.config = config
        self.device = device or next(model.parameters()).device
        self.support = ValueSupport(model.config.value_atoms, model.config.value_max_pips).to(self.device)
        self._trees: dict[int, BatchedSearch] = {}
        self.tree = self._tree(batch_size)
        self.refresh()

    @torch.inference_mode()
    def refresh(self) -> None:
        """(Re)build the inference functions from the model's current weights."""
        plan = InferencePlan(self.model, self.support.support)
        self._roots, self._after_fn, self._state_fn = plan.roots, plan.afterstates, plan.states

    def _tree(self, batch_size: int) -> BatchedSearch:
        if batch_size not in self._trees:
            self._trees[batch_size] = self._new_tree(batch_size)
        return self._trees[batch_size]

    def _new_tree(self, batch_size: int) -> BatchedSearch:
        # the arena reads every SearchConfig field itself, under the same names
        network = self.model.config
        return BatchedSearch(batch_size, self.config, num_actions=network.num_actions,
                             num_outcomes=network.num_outcomes, embedding_dim=network.hidden,
                             position_transitions=self.space.transitions())

    def _numpy(self, tensor: torch.Tensor) -> np.ndarray:
        return np.ascontiguousarray(tensor.detach().to("cpu", torch.float32).numpy())

    def _afterstate(self, embeddings: np.ndarray, actions: np.ndarray):
        out = self._after_fn(torch.from_numpy(embeddings).to(self.device), torch.from_numpy(actions).to(self.device))
        return tuple(self._numpy(x) for x in out)

    def _dynamics(self, afterstates: np.ndarray, outcomes: np.ndarray):
        out = self._state_fn(torch.from_numpy(afterstates).to(self.device), torch.from_numpy(outcomes).to(self.device))
        return tuple(self._numpy(x) for x in out)

    def roots(self, temporal: np.ndarray, static: np.ndarray, legal: np.ndarray):
        """Representation and prediction at the roots: (state, masked prior, value)."""
        return self._roots(torch.from_numpy(temporal).to(self.device), torch.from_numpy(static).to(self.device),
                           torch.from_numpy(np.ascontiguousarray(legal, dtype=bool)).to(self.device))

    @torch.inference_mode()
    def run(self, temporal: np.ndarray, static: np.ndarray, legal: np.ndarray, positions: np.ndarray,
            seeds: np.ndarray, *, add_noise: bool) -> SearchOutput:
        """temporal [B, 32, 9], static [B, 6], legal [B, A], positions [B] net
        units (as in the action space), seeds [B] uint64."""
        # the inference plan is a frozen eval-mode copy (refresh); the model's own mode does not matter here
        state, prior, value = self.roots(temporal, static, legal)
        prior_np, value_np = self._numpy(prior), self._numpy(value)
        tree = self._tree(len(legal))
        tree.reset(self._numpy(state), prior_np, value_np, np.ascontiguousarray(legal, dtype=bool),
                   np.ascontiguousarray(seeds, dtype=np.uint64), add_noise=add_noise,
                   root_positions=self.space.position_index(np.asarray(positions)).astype(np.int64))
        run_search(tree, self._afterstate, self._dynamics)
        return SearchOutput(tree.root_visit_counts(), tree.root_values(), prior_np, value_np, tree,
                            self.config.root_selection)

    @torch.inference_mode()
    def raw_policy_actions(self, temporal: np.ndarray, static: np.ndarray, legal: np.ndarray) -> np.ndarray:
        """The network's own choice without search (argmax of the masked prior)."""
        _, prior, _ = self.roots(temporal, static, legal)
        return prior.argmax(dim=-1).cpu().numpy()


# --- the search played as a policy over the environment's sessions (shared/env/rollout.py plays it):
# validation, the benchmarks, and the Strategist's MuZero expert


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
