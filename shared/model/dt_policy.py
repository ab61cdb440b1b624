"""The Strategist deciding (issue 26): each row's episode so far and the Decision Transformer's
greedy legal action at its newest step, one way for validation and live.

A row's episode is its decisions on consecutive bars. At its step t the model reads the last
n <= K = context_steps steps: the state s_k (the indicators-v1 row of step k's bar and the
position before step k's decision as a share of the largest, `strategist_state`), the return
still wanted R_k and the actions a_<t; a_t's slot is a placeholder the model never reads (dt.py:
a_t is predicted from s_t's token under a causal mask). R_0 is the candidate's
`target_return_pips` (set in training from the experts' episode returns) x reward_scale, and
R_{k+1} = (R_k - r_k) / discount with r_k the step's pips after costs x reward_scale: the
recursion of the discounted return-to-go the model was trained on (dt_data.returns_to_go), fed
divided by return_scale.

Since the steps are consecutive bars, the states are the indicator rows of the last K bars beside
the positions: `StrategistContext` keeps per row only what bars cannot rebuild (R, the actions,
the positions, which steps are real), `packed` as one [B, 4K] row, so that a live decision's
inputs are the indicator window and that row (journaled, shown on its page); `decide` reads them.
"""

from __future__ import annotations

import numpy as np
import torch

from shared.config.challengers import DTConfig

__all__ = ["StrategistContext", "decide", "strategist_state", "target_return_pips"]

PACKED_FIELDS = ("return_to_go", "action", "position", "real")  # each K wide, in this order


def target_return_pips(candidate_payload: dict) -> float:
    """The return a dt candidate is conditioned on at an episode's start (its trainer sets it)."""
    return float(candidate_payload["strategist"]["target_return_pips"])


def strategist_state(indicator_rows: np.ndarray, position: np.ndarray, max_units: int) -> np.ndarray:
    """[..., F + 1] float32: indicators-v1 rows [..., F] and the positions [...] before the decision as
    a share of the space's largest (-1 .. 1)."""
    share = np.asarray(position, np.float32) / max(1, max_units)
    return np.concatenate([np.asarray(indicator_rows, np.float32), share[..., None]], axis=-1)


class StrategistContext:
    """B rows' episodes, their last K steps (module docstring)."""

    def __init__(self, rows: int, config: DTConfig, target_return_pips: float, max_units: int) -> None:
        k = config.context_steps
        self.config = config
        self.target_return_pips = float(target_return_pips)
        self.max_units = max_units
        self.returns_to_go = np.zeros((rows, k), np.float32)  # R / return_scale
        self.actions = np.zeros((rows, k), np.int64)
        self.positions = np.zeros((rows, k), np.float32)       # units before the step's decision
        self.real = np.zeros((rows, k), bool)
        self.wanted = np.zeros(rows, np.float64)               # R of the newest step, reward units
        self.earned_before = np.zeros(rows, np.float64)        # the episode's pips at the last step
        self.steps = np.zeros(rows, np.int64)                  # steps in each row's episode

    def advance(self, earned_pips: np.ndarray, position: np.ndarray) -> None:
        """A new step for every row: the pips [B] its episode earned so far, its position [B] now."""
        c = self.config
        earned = np.asarray(earned_pips, np.float64)
        going = self.steps > 0
        step_reward = (earned - self.earned_before) * c.reward_scale
        self.wanted = np.where(going, (self.wanted - step_reward) / max(c.discount, 1e-9),
                               self.target_return_pips * c.reward_scale)
        self.earned_before = earned.copy()
        self.steps += 1
        for array in (self.returns_to_go, self.actions, self.positions, self.real):
            array[:, :-1] = array[:, 1:]
        self.returns_to_go[:, -1] = self.wanted / c.return_scale
        self.actions[:, -1] = 0  # a_t's slot: not read by its own prediction
        self.positions[:, -1] = position
        self.real[:, -1] = True

    def chose(self, actions: np.ndarray) -> None:
        """The actions [B] taken at the newest step: read by the next steps' predictions."""
        self.actions[:, -1] = actions

    def packed(self) -> np.ndarray:
        """[B, 4K] float32: R / return_scale, actions, positions, real (1/0), each K wide."""
        return np.concatenate([self.returns_to_go, self.actions, self.positions, self.real], axis=1).astype(np.float32)

    def restart(self, rows: np.ndarray | None = None) -> None:
        """A new episode for `rows` (all when None): nothing in their windows."""
        rows = slice(None) if rows is None else rows
        for array in (self.returns_to_go, self.actions, self.positions, self.real, self.wanted, self.earned_before,
                      self.steps):
            array[rows] = 0


@torch.no_grad()
def decide(model: torch.nn.Module, indicator_window: np.ndarray, packed: np.ndarray, legal: np.ndarray,
           max_units: int) -> tuple[np.ndarray, np.ndarray]:
    """(actions [B], their probabilities [B, A]) at the newest step: `indicator_window` [B, K, F] the
    indicator rows of each row's last K bars (the newest last), `packed` [B, 4K] its context."""
    k = model.config.context_steps
    returns_to_go, actions, positions, real = (packed[:, i * k : (i + 1) * k] for i in range(len(PACKED_FIELDS)))
    real = real > 0.5
    used = int(real.any(axis=0).sum())  # the steps any row has: a fresh episode reads 1, not K
    states = strategist_state(indicator_window[:, -used:], positions[:, -used:], max_units)
    tensors = (torch.from_numpy(np.ascontiguousarray(returns_to_go[:, -used:, None], np.float32)),
               torch.from_numpy(np.ascontiguousarray(states)),
               torch.from_numpy(np.ascontiguousarray(actions[:, -used:]).astype(np.int64)),
               torch.from_numpy(np.ascontiguousarray(real[:, -used:])))
    logits = model(*tensors)[:, -1]
    logits = logits.masked_fill(~torch.from_numpy(np.asarray(legal, bool)), float("-inf"))
    return logits.argmax(dim=-1).numpy().astype(np.int64), torch.softmax(logits, dim=-1).numpy()
