"""The learner: unrolls the networks K steps from sampled positions and
fits policy, value, reward, chance outcome and afterstate value (and, with
learned chance codes, the encoder's commitment to its code)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from shared.config import LearnerConfig
from shared.model import MuZeroNetworks, ValueSupport
from shared.training.replay import TrainingBatch


def _scale_gradient(x: torch.Tensor, factor: float) -> torch.Tensor:
    # MuZero halves the gradient flowing back through each unroll step
    return x * factor + x.detach() * (1 - factor)


def _soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return -(target * F.log_softmax(logits, dim=-1)).sum(-1)


LOSS_NAMES = ("policy", "value", "reward", "outcome", "afterstate_value", "commitment")
BATCH_FIELDS = ("temporal", "static", "actions", "outcomes", "rewards", "values", "policies", "mask", "next_bars")


class LossModule(nn.Module):
    """The training loss as a module: `forward(temporal, static, actions, outcomes, rewards, values,
    policies, mask)` (TrainingBatch's arrays as tensors, in BATCH_FIELDS order) -> the per-component
    losses, each a mean over the batch. A module so that DistributedDataParallel can wrap it: DDP
    reduces gradients only for work done through the wrapper's forward."""

    def __init__(self, model: MuZeroNetworks, support: ValueSupport) -> None:
        super().__init__()
        self.model = model
        self.support = support

    def forward(self, temporal: torch.Tensor, static: torch.Tensor, actions: torch.Tensor, outcomes: torch.Tensor,
                rewards: torch.Tensor, values: torch.Tensor, policies: torch.Tensor,
                mask: torch.Tensor, next_bars: torch.Tensor) -> dict[str, torch.Tensor]:
        m = self.model
        learned_codes = m.chance_encoder is not None
        state = m.represent(temporal, static)
        policy_logits, value_logits = m.predict(state)
        loss = {
            "policy": _soft_cross_entropy(policy_logits, policies[:, 0]) * mask[:, 0],
            "value": _soft_cross_entropy(value_logits, self.support.two_hot(values[:, 0])) * mask[:, 0],
            "reward": torch.zeros_like(mask[:, 0]),
            "outcome": torch.zeros_like(mask[:, 0]),
            "afterstate_value": torch.zeros_like(mask[:, 0]),
            "commitment": torch.zeros_like(mask[:, 0]),
        }
        k = actions.shape[1]
        for u in range(1, k + 1):
            step_mask = mask[:, u - 1]
            after, chance_logits, after_value_logits = m.afterstate(state, actions[:, u - 1])
            if learned_codes:
                # the chance head learns the encoder's code; the dynamics reads it as a one-hot whose
                # gradient reaches the encoder straight through; the commitment pulls the encoder's
                # softmax towards the code it chose (Stochastic MuZero's VQ-VAE, one-hot codebook)
                code, code_one_hot, code_probs = m.chance_code(next_bars[:, u - 1])
                loss["commitment"] = loss["commitment"] + (
                    (code_one_hot.detach() - code_probs) ** 2).sum(-1) * step_mask
            else:
                code, code_one_hot = outcomes[:, u - 1], F.one_hot(outcomes[:, u - 1], m.config.num_outcomes)
            loss["outcome"] = loss["outcome"] + F.cross_entropy(chance_logits, code, reduction="none") * step_mask
            loss["afterstate_value"] = loss["afterstate_value"] + _soft_cross_entropy(
                after_value_logits, self.support.two_hot(values[:, u - 1])) * step_mask
            state, reward = m.dynamics_one_hot(after, code_one_hot.to(after.dtype))
            loss["reward"] = loss["reward"] + F.smooth_l1_loss(reward, rewards[:, u - 1], reduction="none") * step_mask
            state = _scale_gradient(state, 0.5)
            policy_logits, value_logits = m.predict(state)
            loss["policy"] = loss["policy"] + _soft_cross_entropy(policy_logits, policies[:, u]) * mask[:, u]
            loss["value"] = loss["value"] + _soft_cross_entropy(value_logits, self.support.two_hot(values[:, u])) * mask[:, u]
        return {name: value.mean() for name, value in loss.items()}


def weighted_total(loss: dict[str, torch.Tensor], c: LearnerConfig) -> torch.Tensor:
    return (c.policy_weight * loss["policy"] + c.value_weight * loss["value"] + c.reward_weight * loss["reward"]
            + c.outcome_weight * loss["outcome"] + c.afterstate_value_weight * loss["afterstate_value"]
            + c.commitment_weight * loss["commitment"])


class Learner:
    def __init__(self, model: MuZeroNetworks, config: LearnerConfig = LearnerConfig(),
                 device: torch.device | None = None) -> None:
        self.model = model
        self.config = config
        self.device = device or next(model.parameters()).device
        self.support = ValueSupport(model.config.value_atoms, model.config.value_max_pips).to(self.device)
        self.loss_module = LossModule(model, self.support)
        self.optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
        self.steps = 0

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array)).to(self.device)

    def tensors(self, batch: TrainingBatch) -> tuple[torch.Tensor, ...]:
        """The batch's arrays on the device, in LossModule.forward's order."""
        return tuple(self._tensor(getattr(batch, name)) for name in BATCH_FIELDS)

    def losses(self, batch: TrainingBatch) -> dict[str, torch.Tensor]:
        return self.loss_module(*self.tensors(batch))

    def set_learning_rate(self) -> None:
        """The schedule's rate for the step about to be taken (a restart resumes it from `steps`)."""
        rate = self.config.learning_rate_at(self.steps)
        for group in self.optimizer.param_groups:
            group["lr"] = rate

    def step(self, batch: TrainingBatch) -> dict[str, float]:
        self.model.train()
        loss = self.losses(batch)
        c = self.config
        total = weighted_total(loss, c)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip)
        self.set_learning_rate()
        self.optimizer.step()
        self.steps += 1
        out = {name: float(value.detach()) for name, value in loss.items()}
        out["total"] = float(total.detach())
        out["grad_norm"] = float(grad_norm)
        return out

    def close(self) -> None:
        """Nothing to release in one process (DistributedLearner stops its workers here)."""
