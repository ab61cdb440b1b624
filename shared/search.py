"""Search with the torch networks: one representation call for all roots,
then mcts_rs with batched afterstate and dynamics calls, all under
torch.inference_mode. Training, validation and live all search through this."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from mcts_rs import BatchedSearch, run_search
from shared.model import MuZeroNetworks, ValueSupport


@dataclass(frozen=True)
class SearchConfig:
    num_simulations: int = 5
    discount: float = 0.997
    dirichlet_alpha: float = 1.0
    dirichlet_fraction: float = 0.5
    pb_c_init: float = 1.25
    pb_c_base: float = 19652.0
    sample_outcomes: bool = False

    def __post_init__(self) -> None:
        if self.num_simulations < 1:
            raise ValueError("num_simulations must be at least 1")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SearchOutput:
    visit_counts: np.ndarray   # [B, A] int32
    root_values: np.ndarray    # [B] float32, pips
    prior: np.ndarray          # [B, A] float32 network policy at the root, legal-masked
    network_value: np.ndarray  # [B] float32, the value network's estimate at the root
    search: BatchedSearch      # for visit policies, chosen actions and tree export


class NetworkSearch:
    """Searches batches of roots with one set of networks (a tree arena per
    batch size, allocated on first use and reused)."""

    def __init__(self, model: MuZeroNetworks, batch_size: int, config: SearchConfig = SearchConfig(),
                 device: torch.device | None = None) -> None:
        self.model = model
        self.config = config
        self.device = device or next(model.parameters()).device
        self.support = ValueSupport(model.config.value_atoms, model.config.value_max_pips).to(self.device)
        self._trees: dict[int, BatchedSearch] = {}
        self.tree = self._tree(batch_size)

    def _tree(self, batch_size: int) -> BatchedSearch:
        if batch_size not in self._trees:
            self._trees[batch_size] = self._new_tree(batch_size)
        return self._trees[batch_size]

    def _new_tree(self, batch_size: int) -> BatchedSearch:
        model, config = self.model, self.config
        return BatchedSearch(
            batch_size,
            num_actions=model.config.num_actions,
            num_outcomes=model.config.num_outcomes,
            embedding_dim=model.config.hidden,
            max_simulations=config.num_simulations,
            discount=config.discount,
            pb_c_init=config.pb_c_init,
            pb_c_base=config.pb_c_base,
            dirichlet_alpha=config.dirichlet_alpha,
            dirichlet_fraction=config.dirichlet_fraction,
            sample_outcomes=config.sample_outcomes,
        )

    def _numpy(self, tensor: torch.Tensor) -> np.ndarray:
        return np.ascontiguousarray(tensor.detach().to("cpu", torch.float32).numpy())

    def _afterstate(self, embeddings: np.ndarray, actions: np.ndarray):
        state = torch.from_numpy(embeddings).to(self.device)
        after, chance_logits, value_logits = self.model.afterstate(state, torch.from_numpy(actions).to(self.device))
        return self._numpy(after), self._numpy(chance_logits), self._numpy(self.support.value(value_logits))

    def _dynamics(self, afterstates: np.ndarray, outcomes: np.ndarray):
        after = torch.from_numpy(afterstates).to(self.device)
        state, reward = self.model.dynamics(after, torch.from_numpy(outcomes).to(self.device))
        policy_logits, value_logits = self.model.predict(state)
        return (self._numpy(state), self._numpy(policy_logits), self._numpy(self.support.value(value_logits)),
                self._numpy(reward))

    def roots(self, temporal: np.ndarray, static: np.ndarray, legal: np.ndarray):
        """Representation and prediction at the roots: (state, masked prior, value)."""
        state = self.model.represent(torch.from_numpy(temporal).to(self.device), torch.from_numpy(static).to(self.device))
        policy_logits, value_logits = self.model.predict(state)
        logits = policy_logits.masked_fill(~torch.from_numpy(legal).to(self.device), float("-inf"))
        return state, torch.softmax(logits, dim=-1), self.support.value(value_logits)

    @torch.inference_mode()
    def run(self, temporal: np.ndarray, static: np.ndarray, legal: np.ndarray, seeds: np.ndarray, *,
            add_noise: bool) -> SearchOutput:
        """temporal [B, 32, 9], static [B, 6], legal [B, A], seeds [B] uint64."""
        was_training = self.model.training
        self.model.eval()
        try:
            state, prior, value = self.roots(temporal, static, legal)
            prior_np, value_np = self._numpy(prior), self._numpy(value)
            tree = self._tree(len(legal))
            tree.reset(self._numpy(state), prior_np, value_np, np.ascontiguousarray(legal, dtype=bool),
                       np.ascontiguousarray(seeds, dtype=np.uint64), add_noise=add_noise)
            run_search(tree, self._afterstate, self._dynamics)
        finally:
            self.model.train(was_training)
        return SearchOutput(tree.root_visit_counts(), tree.root_values(), prior_np, value_np, tree)

    @torch.inference_mode()
    def raw_policy_actions(self, temporal: np.ndarray, static: np.ndarray, legal: np.ndarray) -> np.ndarray:
        """The network's own choice without search (argmax of the masked prior)."""
        was_training = self.model.training
        self.model.eval()
        try:
            _, prior, _ = self.roots(temporal, static, legal)
        finally:
            self.model.train(was_training)
        return prior.argmax(dim=-1).cpu().numpy()
