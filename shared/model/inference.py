"""The networks as the search calls them: plain eager PyTorch over a frozen copy
of the weights, laid out for the call rather than for training.

A search makes tens of small network calls per decision (batch 1 in live), so
what costs is the per-op overhead of eager PyTorch, not arithmetic. This
plan does the same computation as the modules with fewer ops and no module
calls: each Linear's weight is stored transposed for one `addmm`; a
transition's one-hot input becomes a row of a per-choice bias table (the
one-hot columns of the input layer plus its bias), so the concatenation and
the one-hot disappear; the chance and afterstate-value heads are one matrix;
dropout is gone (inference). The representation runs once per decision and
stays a module: a frozen copy in eval mode with each batch norm folded into
the convolution before it, whatever mode the training model is in. Measured by `bench.live` and `bench.selfplay`: as fast as
the TorchScript copies it replaces (TorchScript is deprecated in torch 2.13),
where `torch.compile` gained nothing at these sizes (guards and graph breaks
cost what fusion saves) and an exported program run in Python was 3x slower.

The copy is taken at construction: whoever changes the weights builds a new
plan (`NetworkSearch.refresh`, once per training iteration). A test checks
every output against the modules.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F

from shared.model.networks import MuZeroNetworks, ResidualBlock, Transition
from shared.model.support import unscale

__all__ = ["InferencePlan"]


def _linear(layer: nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight transposed [in, out], bias [out]), detached copies for addmm."""
    return layer.weight.detach().t().contiguous().clone(), layer.bias.detach().clone()


def _norm(layer: nn.LayerNorm) -> tuple[torch.Tensor, torch.Tensor]:
    return layer.weight.detach().clone(), layer.bias.detach().clone()


class _Tower:
    """Residual blocks: x + fc2(relu(ln2(fc1(relu(ln1(x))))))."""

    def __init__(self, blocks: list[ResidualBlock]) -> None:
        self.blocks = [(_norm(b.norm1), _linear(b.fc1), _norm(b.norm2), _linear(b.fc2)) for b in blocks]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        width = (x.shape[-1],)
        for (g1, b1), (w1, c1), (g2, b2), (w2, c2) in self.blocks:
            y = torch.addmm(c1, F.layer_norm(x, width, g1, b1).relu_(), w1)
            x = torch.addmm(c2, F.layer_norm(y, width, g2, b2).relu_(), w2).add_(x)
        return x


class _Transition:
    """state + choice -> next latent, the choice's one-hot folded into a bias table."""

    def __init__(self, net: Transition) -> None:
        weight, bias = net.inp.weight.detach(), net.inp.bias.detach()
        hidden = weight.shape[0]
        self.weight = weight[:, :hidden].t().contiguous().clone()          # [H, H]
        self.choice_bias = (weight[:, hidden:].t() + bias).contiguous()  # [choices, H]
        self.tower = _Tower(list(net.tower))
        self.norm = _norm(net.norm)

    def __call__(self, state: torch.Tensor, choice: torch.Tensor) -> torch.Tensor:
        x = self.tower(torch.addmm(self.choice_bias[choice], state, self.weight))
        return F.layer_norm(x, (x.shape[-1],), *self.norm)


def _folded_representation(model: MuZeroNetworks) -> nn.Module:
    """A frozen eval-mode copy of the representation with each conv block's batch norm
    folded into its taps (y = W x + b, then (y - mean) / sqrt(var + eps) * gamma + beta)."""
    representation = copy.deepcopy(model.representation).eval().requires_grad_(False)
    for block in representation.blocks:
        norm = block.norm
        scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
        block.taps.weight.mul_(scale[:, None])
        block.taps.bias.copy_((block.taps.bias - norm.running_mean) * scale + norm.bias)
        block.norm = nn.Identity()
    return representation


class InferencePlan:
    """roots(temporal, static, legal) -> (state, masked prior, value pips);
    afterstates(state, action) -> (afterstate, chance logits, afterstate value pips);
    states(afterstate, outcome) -> (state, policy logits, value pips, reward pips)."""

    def __init__(self, model: MuZeroNetworks, support: torch.Tensor) -> None:
        self.representation = _folded_representation(model)
        self.support = support
        self.outcomes = model.config.num_outcomes
        self.afterstate_net = _Transition(model.afterstate_net)
        weight = torch.cat([model.chance_head.weight, model.afterstate_value_head.weight]).detach()
        bias = torch.cat([model.chance_head.bias, model.afterstate_value_head.bias]).detach()
        self.afterstate_heads = (weight.t().contiguous(), bias.clone())
        self.dynamics_net = _Transition(model.dynamics_net)
        self.reward_head = _linear(model.reward_head)
        self.policy_tower, self.policy_head = _Tower(list(model.policy_net[0])), _linear(model.policy_net[1])
        self.value_tower, self.value_head = _Tower(list(model.value_net[0])), _linear(model.value_net[1])

    def _pips(self, value_logits: torch.Tensor) -> torch.Tensor:
        return unscale(torch.softmax(value_logits, dim=-1) @ self.support)

    def _predict(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        policy = torch.addmm(self.policy_head[1], self.policy_tower(state), self.policy_head[0])
        value = torch.addmm(self.value_head[1], self.value_tower(state), self.value_head[0])
        return policy, value

    def roots(self, temporal: torch.Tensor, static: torch.Tensor, legal: torch.Tensor):
        state = self.representation(temporal, static)
        policy_logits, value_logits = self._predict(state)
        prior = torch.softmax(policy_logits.masked_fill(~legal, float("-inf")), dim=-1)
        return state, prior, self._pips(value_logits)

    def afterstates(self, state: torch.Tensor, action: torch.Tensor):
        after = self.afterstate_net(state, action)
        heads = torch.addmm(self.afterstate_heads[1], after, self.afterstate_heads[0])
        return after, heads[:, : self.outcomes], self._pips(heads[:, self.outcomes :])

    def states(self, afterstate: torch.Tensor, outcome: torch.Tensor):
        state = self.dynamics_net(afterstate, outcome)
        reward = torch.addmm(self.reward_head[1], state, self.reward_head[0]).squeeze(-1)
        policy_logits, value_logits = self._predict(state)
        return state, policy_logits, self._pips(value_logits), reward
