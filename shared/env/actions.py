"""Action spaces are data: which target position each action leads to from
each current position, and whether it is legal there. Search and networks
only see `num_actions`; adding the sized space below touched neither."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shared.config import ACTION_SPACE_SIZES

ILLEGAL = np.iinfo(np.int8).min


@dataclass(frozen=True)
class ActionSpace:
    name: str
    actions: tuple[str, ...]
    positions: tuple[int, ...]          # net units, e.g. (-1, 0, 1)
    target: np.ndarray                  # [A, P] int8: position after the action, ILLEGAL if not allowed

    @property
    def num_actions(self) -> int:
        return len(self.actions)

    @property
    def max_units(self) -> int:
        return max(abs(p) for p in self.positions)

    def position_index(self, position: np.ndarray) -> np.ndarray:
        """Index into `positions` of each net position; raises on one the space does not hold."""
        positions = np.asarray(self.positions)
        index = np.searchsorted(positions, position)
        known = (index < len(positions)) & (positions[np.minimum(index, len(positions) - 1)] == position)
        if not np.all(known):
            bad = np.asarray(position)[~known].ravel()[0]
            raise ValueError(f"position {bad} is not one of the {self.name} space's {self.positions}")
        return index

    def toward(self, position: np.ndarray, legal: np.ndarray, want: np.ndarray) -> np.ndarray:
        """[E] the legal action whose target position is nearest the wanted one (-1, 0 or +1 per root):
        how a rule that names a position (a baseline, a forecaster) acts in any action space."""
        targets = self.target[:, self.position_index(position)].T.astype(np.float64)  # [E, A]
        distance = np.where(legal, np.abs(targets - np.asarray(want)[:, None]), np.inf)
        return distance.argmin(axis=1)

    def legal_mask(self, position: np.ndarray) -> np.ndarray:
        """[E, A] bool for positions [E]."""
        return (self.target[:, self.position_index(position)] != ILLEGAL).T

    def transitions(self) -> np.ndarray:
        """[A, P] int64: the index (into `positions`) of the position after
        each action from each position, -1 where the action is illegal: the
        search's `position_transitions`."""
        legal = self.target != ILLEGAL
        return np.where(legal, self.position_index(np.where(legal, self.target, self.positions[0])), -1).astype(np.int64)

    def next_position(self, position: np.ndarray, action: np.ndarray) -> np.ndarray:
        """[E] position after actions [E]; raises on an illegal action."""
        nxt = self.target[action, self.position_index(position)]
        if np.any(nxt == ILLEGAL):
            bad = int(np.flatnonzero(nxt == ILLEGAL)[0])
            raise ValueError(f"illegal action {self.actions[action[bad]]} at position {position[bad]} (episode {bad})")
        return nxt.astype(np.int8)


def _table(actions: tuple[str, ...], positions: tuple[int, ...], rule) -> np.ndarray:
    target = np.full((len(actions), len(positions)), ILLEGAL, dtype=np.int8)
    for a, name in enumerate(actions):
        for p, position in enumerate(positions):
            nxt = rule(name, position)
            if nxt is not None:
                target[a, p] = nxt
    return target


def _hold_buy_sell_close(action: str, position: int) -> int | None:
    if action == "HOLD":
        return position
    if action == "BUY":
        return 1 if position == 0 else None
    if action == "SELL":
        return -1 if position == 0 else None
    return 0 if position != 0 else None  # CLOSE


HOLD, BUY, SELL, CLOSE = 0, 1, 2, 3
HOLD_BUY_SELL_CLOSE = ActionSpace(
    "hold_buy_sell_close",
    ("HOLD", "BUY", "SELL", "CLOSE"),
    (-1, 0, 1),
    _table(("HOLD", "BUY", "SELL", "CLOSE"), (-1, 0, 1), _hold_buy_sell_close),
)

_SIZED = ("NEUTRAL", "LONG_1", "LONG_2", "LONG_3", "SHORT_1", "SHORT_2", "SHORT_3")
# The research notes' sized space: each action sets the target position directly.
SIZED_POSITIONS = ActionSpace(
    "sized_positions",
    _SIZED,
    (-3, -2, -1, 0, 1, 2, 3),
    _table(_SIZED, (-3, -2, -1, 0, 1, 2, 3),
           lambda a, p: 0 if a == "NEUTRAL" else (int(a[-1]) if a.startswith("LONG") else -int(a[-1]))),
)

ACTION_SPACES = {space.name: space for space in (HOLD_BUY_SELL_CLOSE, SIZED_POSITIONS)}
assert {name: space.num_actions for name, space in ACTION_SPACES.items()} == ACTION_SPACE_SIZES, \
    "shared/config/ names the action spaces defined here and their sizes"
