"""The learner: unrolls the networks K steps from sampled positions and
fits policy, value, reward, chance outcome and afterstate value."""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from shared.config import LearnerConfig
from shared.model import MuZeroNetworks, ValueSupport
from shared.training.replay import TrainingBatch


def _scale_gradient(x: torch.Tensor, factor: float) -> torch.Tensor:
    # MuZero halves the gradient flowing back through each unroll step
    return x * factor + x.detach() * (1 - factor)


def _soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return -(target * F.log_softmax(logits, dim=-1)).sum(-1)


class Learner:
    def __init__(self, model: MuZeroNetworks, config: LearnerConfig = LearnerConfig(),
                 device: torch.device | None = None) -> None:
        self.model = model
        self.config = config
        self.device = device or next(model.parameters()).device
        self.support = ValueSupport(model.config.value_atoms, model.config.value_max_pips).to(self.device)
        self.optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
        self.steps = 0

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array)).to(self.device)

    def losses(self, batch: TrainingBatch) -> dict[str, torch.Tensor]:
        m = self.model
        mask = self._tensor(batch.mask)
        values = self._tensor(batch.values)
        policies = self._tensor(batch.policies)
        actions, outcomes = self._tensor(batch.actions), self._tensor(batch.outcomes)
        rewards = self._tensor(batch.rewards)
        state = m.represent(self._tensor(batch.temporal), self._tensor(batch.static))
        policy_logits, value_logits = m.predict(state)
        loss = {
            "policy": _soft_cross_entropy(policy_logits, policies[:, 0]) * mask[:, 0],
            "value": _soft_cross_entropy(value_logits, self.support.two_hot(values[:, 0])) * mask[:, 0],
            "reward": torch.zeros_like(mask[:, 0]),
            "outcome": torch.zeros_like(mask[:, 0]),
            "afterstate_value": torch.zeros_like(mask[:, 0]),
        }
        k = actions.shape[1]
        for u in range(1, k + 1):
            step_mask = mask[:, u - 1]
            after, chance_logits, after_value_logits = m.afterstate(state, actions[:, u - 1])
            loss["outcome"] = loss["outcome"] + F.cross_entropy(chance_logits, outcomes[:, u - 1], reduction="none") * step_mask
            loss["afterstate_value"] = loss["afterstate_value"] + _soft_cross_entropy(
                after_value_logits, self.support.two_hot(values[:, u - 1])) * step_mask
            state, reward = m.dynamics(after, outcomes[:, u - 1])
            loss["reward"] = loss["reward"] + F.smooth_l1_loss(reward, rewards[:, u - 1], reduction="none") * step_mask
            state = _scale_gradient(state, 0.5)
            policy_logits, value_logits = m.predict(state)
            loss["policy"] = loss["policy"] + _soft_cross_entropy(policy_logits, policies[:, u]) * mask[:, u]
            loss["value"] = loss["value"] + _soft_cross_entropy(value_logits, self.support.two_hot(values[:, u])) * mask[:, u]
        return {name: value.mean() for name, value in loss.items()}

    def step(self, batch: TrainingBatch) -> dict[str, float]:
        self.model.train()
        loss = self.losses(batch)
        c = self.config
        total = (c.policy_weight * loss["policy"] + c.value_weight * loss["value"] + c.reward_weight * loss["reward"]
                 + c.outcome_weight * loss["outcome"] + c.afterstate_value_weight * loss["afterstate_value"])
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip)
        self.optimizer.step()
        self.steps += 1
        out = {name: float(value.detach()) for name, value in loss.items()}
        out["total"] = float(total.detach())
        out["grad_norm"] = float(grad_norm)
        return out
