"""Batched stochastic MuZero search: the tree in Rust, the networks in Python.

Protocol, once per search over B roots::

    search = BatchedSearch(B, config, num_actions=A, num_outcomes=C, embedding_dim=D)
    search.reset(root_embeddings, root_priors, root_values, legal_mask, seeds)
    while True:
        n_after, n_state = search.select()     # (0, 0): every root ran its config.simulations
        if n_after:   # decision leaves: run the afterstate network on exactly these rows
            search.expand_afterstates(*afterstate_fn(search.afterstate_inputs[:n_after],
                                                     search.afterstate_actions[:n_after]))
        if n_state:   # chance leaves: run dynamics + prediction on exactly these rows
            search.expand_states(*dynamics_fn(search.state_inputs[:n_state],
                                              search.state_outcomes[:n_state]))
        if not (n_after or n_state):
            break
    search.root_visit_counts(); search.visit_policy(t); search.choose_actions(t)
    # with config.root_selection == "gumbel": search.gumbel_actions(); search.improved_policy()

`config` is a `shared.config.SearchConfig` (any object with its fields): the
search reads every field by attribute under the same name (`simulations`,
`discount`, `pb_c_init`, `pb_c_base`, `dirichlet_alpha`, `dirichlet_fraction`,
`sample_outcomes`, `root_selection`, `max_considered_actions`, `gumbel_scale`,
`gumbel_value_scale`, `gumbel_maxvisit_init`) and has no defaults of its own;
a missing or mistyped field is a `ValueError` naming it.

Each step, every root that is not waiting descends one simulation to its next
leaf; Rust then requests the leaves of the more numerous kind and lets the
others wait a step (both kinds when that is needed to make progress). Roots are
independent, so waiting changes nothing in a root's search, and each network
call gets as many rows as possible. `run_search` is that loop. `mcts_rs.reference` is a plain-Python
implementation of the same algorithm, kept as the test oracle.
"""

from mcts_rs._mcts_rs import CHANCE, DECISION, BatchedSearch
from mcts_rs.driver import AfterstateFn, DynamicsFn, run_search

__all__ = ["BatchedSearch", "DECISION", "CHANCE", "AfterstateFn", "DynamicsFn", "run_search"]
