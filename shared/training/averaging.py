"""An exponential moving average of the learner's weights: what a candidate carries when
TRAINING_LEARNER__WEIGHT_AVERAGE_DECAY is set. Candidates a few hundred episodes apart differ on
validation by a tenth of the oracle or more (docs/learning.md); the average is a candidate that
moves less between checkpoints. Self-play keeps the learner's own weights.

The decay at the n-th update is min(decay, (1 + n) / (10 + n)) (as in TensorFlow's
ExponentialMovingAverage with num_updates): early on the average follows the learner closely instead
of dragging its random start along for a thousand steps. Every floating-point tensor of the state
(parameters and BatchNorm's running statistics) is averaged; integer buffers (BatchNorm's batch
counter) are copied."""

from __future__ import annotations

import copy

import torch
from torch import nn


class WeightAverage:
    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"a weight average's decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(model).eval()
        self.model.requires_grad_(False)

    def decay_at(self, updates: int) -> float:
        """The decay applied by update number `updates` (0-based)."""
        return min(self.decay, (1 + updates) / (10 + updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards `model`'s state (the learner's, after a step)."""
        weight = 1.0 - self.decay_at(self.updates)
        live = model.state_dict()
        for name, average in self.model.state_dict().items():
            if average.is_floating_point():
                average.lerp_(live[name].to(average.dtype), weight)
            else:
                average.copy_(live[name])
        self.updates += 1

    def reset(self, model: nn.Module) -> None:
        """Start again from `model`'s state (a resume without a saved average)."""
        self.model.load_state_dict(model.state_dict())
        self.updates = 0

    def state_dict(self) -> dict:
        return {"model_state": self.model.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model_state"])
        self.updates = int(state["updates"])
