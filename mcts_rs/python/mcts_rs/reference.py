"""Plain-Python stochastic MuZero search: the readable oracle for the Rust tree.

One root at a time, one object per node, one network call per leaf. It
implements exactly the pUCT search of `src/search.rs` and
`src/action_selection.rs`, in float64 with the same order of operations, so
that with noise off and deterministic chance selection both give identical
visit counts for the same config:

* decision node: pUCT  score(a) = Qn(a) + P(a) * sqrt(N) / (1 + N(a)) * (c1 + ln((N + c2 + 1) / c2))
  where Qn is the chance child's mean return min-max normalised over the
  tree's chance nodes (0 when unvisited or when min == max); illegal actions
  are skipped (the root's mask at the root; below it, with position rules,
  what the node's position allows, its prior renormalised over those);
  ties go to the lowest action.
* chance node: argmax P(c) / (N(c) + 1), ties to the lowest outcome.
* backup: G starts at the leaf's value; each decision node (except the root)
  turns it into reward + discount * G on the way up; chance nodes pass it on.
* the root starts with one visit holding its own value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mcts_rs.driver import AfterstateFn, DynamicsFn


@dataclass
class Node:
    is_decision: bool
    embedding: np.ndarray                 # [D] float32
    priors: list[float]                   # [A] action priors or [C] outcome probabilities
    reward: float = 0.0                   # on the edge into a decision node
    visits: int = 0
    value_sum: float = 0.0
    children: dict[int, "Node"] = field(default_factory=dict)
    parent: "Node | None" = None
    position: int = 0                     # position index (0 without position rules)

    def mean(self) -> float:
        return self.value_sum / self.visits


def _softmax(logits: np.ndarray) -> list[float]:
    xs = [float(x) for x in logits]
    top = max(xs)
    exps = [math.exp(x - top) for x in xs]
    total = 0.0
    for e in exps:
        total += e
    return [e / total for e in exps]


class ReferenceSearch:
    """Search for one root, configured like `BatchedSearch`: `config` is a
    `shared.config.SearchConfig` (any object with its fields), of which the
    reference reads what it implements (`simulations`, `discount`,
    `pb_c_init`, `pb_c_base`) and refuses what it does not (Gumbel root
    selection, sampled outcomes)."""

    def __init__(
        self,
        config: Any,
        *,
        num_actions: int,
        num_outcomes: int,
        position_transitions: np.ndarray | None = None,
    ) -> None:
        if config.root_selection != "puct":
            raise ValueError(f"the reference implements pUCT only, got root_selection={config.root_selection!r}")
        if config.sample_outcomes:
            raise ValueError("the reference selects chance outcomes deterministically: sample_outcomes must be False")
        self.num_actions = num_actions
        self.num_outcomes = num_outcomes
        # [A, P] position index after each action from each position, -1 if illegal
        self.transitions = None if position_transitions is None else np.asarray(position_transitions, dtype=np.int64)
        self.simulations = int(config.simulations)
        self.discount = float(config.discount)
        self.pb_c_init = float(config.pb_c_init)
        self.pb_c_base = float(config.pb_c_base)

    def run(
        self,
        root_embedding: np.ndarray,
        root_priors: np.ndarray,
        root_value: float,
        legal_mask: np.ndarray,
        afterstate_fn: AfterstateFn,
        dynamics_fn: DynamicsFn,
        root_position: int = 0,
    ) -> tuple[Node, list[int]]:
        """Runs the config's simulations; returns the root and its visit counts per action."""
        self.legal, self.min_q, self.max_q = [bool(x) for x in legal_mask], math.inf, -math.inf
        root = Node(True, root_embedding, [float(p) for p in root_priors], visits=1, value_sum=float(root_value),
                    position=root_position)
        self._restrict_prior_to_legal(root, is_root=True)

        for _ in range(self.simulations):
            node = root
            while True:
                if node.is_decision:
                    index = self._select_action(node, is_root=node is root)
                else:
                    index = self._select_outcome(node)
                if index not in node.children:
                    break
                node = node.children[index]
            leaf = self._expand(node, index, afterstate_fn, dynamics_fn)
            self._backup(leaf)
        counts = [root.children[a].visits if a in root.children else 0 for a in range(self.num_actions)]
        return root, counts

    def _normalized(self, q: float) -> float:
        if self.max_q > self.min_q:
            return (q - self.min_q) / (self.max_q - self.min_q)
        return 0.0

    def _allowed(self, node: Node, action: int, *, is_root: bool) -> bool:
        if is_root:
            return self.legal[action]
        return self.transitions is None or self.transitions[action, node.position] >= 0

    def _select_action(self, node: Node, *, is_root: bool) -> int:
        n = float(node.visits)
        pb_c = self.pb_c_init + math.log((n + self.pb_c_base + 1.0) / self.pb_c_base)
        best, best_score = -1, -math.inf
        for a in range(self.num_actions):
            if not self._allowed(node, a, is_root=is_root):
                continue
            child = node.children.get(a)
            n_child, q = (0.0, 0.0) if child is None else (float(child.visits), self._normalized(child.mean()))
            score = q + node.priors[a] * math.sqrt(n) / (1.0 + n_child) * pb_c
            if best < 0 or score > best_score:
                best, best_score = a, score
        return best

    def _select_outcome(self, node: Node) -> int:
        best, best_score = 0, -math.inf
        for c in range(self.num_outcomes):
            child = node.children.get(c)
            n = 0.0 if child is None else float(child.visits)
            score = node.priors[c] / (n + 1.0)
            if score > best_score:
                best, best_score = c, score
        return best

    def _expand(self, parent: Node, index: int, afterstate_fn: AfterstateFn, dynamics_fn: DynamicsFn) -> tuple[Node, float]:
        inputs = parent.embedding[None, :]
        if parent.is_decision:
            emb, chance_logits, value = afterstate_fn(inputs, np.array([index], dtype=np.int64))
            position = parent.position if self.transitions is None else int(self.transitions[index, parent.position])
            child = Node(False, emb[0], _softmax(chance_logits[0]), parent=parent, position=position)
        else:
            emb, policy_logits, value, reward = dynamics_fn(inputs, np.array([index], dtype=np.int64))
            child = Node(True, emb[0], _softmax(policy_logits[0]), reward=float(np.float64(reward[0])), parent=parent,
                         position=parent.position)
            if self.transitions is not None:
                self._restrict_prior_to_legal(child, is_root=False)
        parent.children[index] = child
        return child, float(value[0])

    def _restrict_prior_to_legal(self, node: Node, *, is_root: bool) -> None:
        legal = [self._allowed(node, a, is_root=is_root) for a in range(self.num_actions)]
        mass = 0.0
        for p, ok in zip(node.priors, legal):
            if ok:
                mass += p
        count = sum(legal)
        node.priors = [(p / mass if mass > 0.0 else 1.0 / count) if ok else 0.0 for p, ok in zip(node.priors, legal)]

    def _backup(self, leaf_and_value: tuple[Node, float]) -> None:
        node, g = leaf_and_value
        while node is not None:
            node.visits += 1
            node.value_sum += g
            if not node.is_decision:
                q = node.mean()
                self.min_q, self.max_q = min(self.min_q, q), max(self.max_q, q)
            elif node.parent is not None:
                g = node.reward + self.discount * g
            node = node.parent
