"""The search played as a policy over the environment's sessions (shared/env/rollout.py plays it)."""

from __future__ import annotations

import numpy as np

from shared.env.rollout import Policy
from shared.env.trading import Observation
from shared.search import NetworkSearch


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
