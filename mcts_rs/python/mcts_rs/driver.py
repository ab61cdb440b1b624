"""The one loop that drives a BatchedSearch with two batched network calls."""

from __future__ import annotations

from typing import Callable

import numpy as np

from mcts_rs._mcts_rs import BatchedSearch

# (parent state embeddings [n, D] float32, actions [n] int64)
#   -> (afterstate embeddings [n, D], chance logits [n, C], afterstate values [n]) all float32
AfterstateFn = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]
# (afterstate embeddings [n, D] float32, outcomes [n] int64)
#   -> (state embeddings [n, D], policy logits [n, A], values [n], rewards [n]) all float32
DynamicsFn = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]


def run_search(search: BatchedSearch, afterstate_fn: AfterstateFn, dynamics_fn: DynamicsFn) -> int:
    """Run a search that was just reset to completion; returns the number of steps.

    Each step calls each network at most once, on exactly the leaves the
    search requested; the buffers are the search's own (no copies, no
    per-leaf Python objects).
    """
    after_in, after_act = search.afterstate_inputs, search.afterstate_actions
    state_in, state_out = search.state_inputs, search.state_outcomes
    select, expand_after, expand_state = search.select, search.expand_afterstates, search.expand_states
    steps = 0
    while True:
        n_after, n_state = select()
        if n_after:
            expand_after(*afterstate_fn(after_in[:n_after], after_act[:n_after]))
        if n_state:
            expand_state(*dynamics_fn(state_in[:n_state], state_out[:n_state]))
        if not (n_after or n_state):
            return steps
        steps += 1
