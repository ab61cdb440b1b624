"""Type stubs for the compiled search (see `src/python.rs`)."""

from typing import final

import numpy as np
import numpy.typing as npt

__all__ = ["BatchedSearch", "CHANCE", "DECISION"]

DECISION: int
CHANCE: int

@final
class BatchedSearch:
    def __new__(
        cls,
        batch_size: int,
        *,
        num_actions: int = 4,
        num_outcomes: int = 3,
        embedding_dim: int = 256,
        max_simulations: int = 50,
        discount: float = 0.997,
        pb_c_init: float = 1.25,
        pb_c_base: float = 19652.0,
        dirichlet_alpha: float = 1.0,
        dirichlet_fraction: float = 0.5,
        sample_outcomes: bool = False,
        position_transitions: npt.NDArray[np.int64] | None = None,
        root_selection: str = "puct",
        max_considered_actions: int = 16,
        gumbel_scale: float = 1.0,
        gumbel_value_scale: float = 0.1,
        gumbel_maxvisit_init: float = 50.0,
    ) -> BatchedSearch: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def num_actions(self) -> int: ...
    @property
    def num_outcomes(self) -> int: ...
    @property
    def embedding_dim(self) -> int: ...
    @property
    def max_simulations(self) -> int: ...
    @property
    def simulations(self) -> int: ...
    # Leaf buffers [B] / [B, D]; rows [:n] are valid after select().
    @property
    def afterstate_roots(self) -> npt.NDArray[np.int64]: ...
    @property
    def afterstate_nodes(self) -> npt.NDArray[np.int64]: ...
    @property
    def afterstate_actions(self) -> npt.NDArray[np.int64]: ...
    @property
    def afterstate_inputs(self) -> npt.NDArray[np.float32]: ...
    @property
    def state_roots(self) -> npt.NDArray[np.int64]: ...
    @property
    def state_nodes(self) -> npt.NDArray[np.int64]: ...
    @property
    def state_outcomes(self) -> npt.NDArray[np.int64]: ...
    @property
    def state_inputs(self) -> npt.NDArray[np.float32]: ...
    def reset(
        self,
        root_embeddings: npt.NDArray[np.float32],
        root_priors: npt.NDArray[np.float32],
        root_values: npt.NDArray[np.float32],
        legal_mask: npt.NDArray[np.bool_],
        seeds: npt.NDArray[np.uint64],
        *,
        num_simulations: int | None = None,
        add_noise: bool = False,
        root_positions: npt.NDArray[np.int64] | None = None,
        gumbel: npt.NDArray[np.float32] | None = None,
    ) -> None: ...
    def select(self) -> tuple[int, int]: ...
    def expand_afterstates(
        self,
        embeddings: npt.NDArray[np.float32],
        chance_logits: npt.NDArray[np.float32],
        values: npt.NDArray[np.float32],
    ) -> None: ...
    def expand_states(
        self,
        embeddings: npt.NDArray[np.float32],
        policy_logits: npt.NDArray[np.float32],
        values: npt.NDArray[np.float32],
        rewards: npt.NDArray[np.float32],
    ) -> None: ...
    def root_visit_counts(self) -> npt.NDArray[np.int32]: ...
    def root_values(self) -> npt.NDArray[np.float32]: ...
    def visit_policy(self, temperature: float) -> npt.NDArray[np.float32]: ...
    def choose_actions(self, temperature: float) -> npt.NDArray[np.int64]: ...
    def improved_policy(self) -> npt.NDArray[np.float32]: ...
    def gumbel_actions(self) -> npt.NDArray[np.int64]: ...
    def tree_json(self, root: int, max_depth: int = 4) -> str: ...
