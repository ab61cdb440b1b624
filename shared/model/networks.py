"""Representation, afterstate (+ heads), dynamics, policy and value networks.

* representation: a causal TCN over the 32 x 9 feature window (9 -> 240
  channels, kernel 3, dilations 1, 2, 4, batch norm, dropout 0.1, residual)
  read at the last bar (receptive field 15 bars), the mean over the window of
  its first layer (all 32 bars), and an MLP over the 6 position features
  (6 -> 16); together projected to the 256-d state.
* afterstate: state + action -> afterstate; heads: distribution over the 3
  market outcomes and the afterstate value.
* dynamics: afterstate + outcome -> next state + reward (pips).
* policy: 2 residual blocks -> action logits; value: 2 residual blocks -> 601
  atoms (see support.py).
* chance encoder (only with network.chance_codes = K > 0, training only): the
  next bar's features -> K code logits; the code is their argmax (a one-hot
  codebook), what the chance head learns to predict and the dynamics reads.
Actions and outcomes enter as one-hot vectors of their own sizes, so the two
index spaces can never be confused.
"""

from __future__ import annotations

import os
import re

import torch
from torch import nn
from torch.nn import functional as F

from shared.config import DEVICE_PATTERN, NetworkConfig
from shared.core.feature_spec import MarketOutcome


def select_device(preference: str | None = None) -> torch.device:
    """cuda > mps > cpu, unless MICRO_DEVICE (or `preference`) names one; a named device
    that does not exist here is a ValueError saying so (a settings error, not a crash later)."""
    wanted = preference or os.environ.get("MICRO_DEVICE")
    if wanted:
        if re.match(DEVICE_PATTERN, wanted) is None:
            raise ValueError(f"device {wanted!r} is not one of cpu, cuda, cuda:N, mps")
        if wanted.startswith("cuda"):
            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            index = int(wanted.split(":")[1]) if ":" in wanted else 0
            if index >= count:
                raise ValueError(f"device {wanted!r} was asked for, but this machine has "
                                 f"{count} CUDA device{'s' if count != 1 else ''}")
        if wanted == "mps" and not (getattr(torch.backends, "mps", None) is not None
                                    and torch.backends.mps.is_available()):
            raise ValueError("device 'mps' was asked for, but MPS is not available here")
        return torch.device(wanted)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


class CausalConvBlock(nn.Module):
    """Dilated causal conv -> batch norm -> ReLU -> dropout, with a residual,
    evaluated only at the positions asked for. Channels-last: activations
    are [B, positions, channels].

    `forward(x, in_pos, out_pos)`: x [B, len(in_pos), C] holds the input at
    window positions `in_pos`; the result [B, len(out_pos), C'] is what a
    dense causal conv over the whole window (left-padded with zeros) gives at
    `out_pos`. The conv is one Linear over the kernel's taps side by side
    (tap 0 is the oldest bar). The caller asks for exactly what later layers
    read, so the 240 -> 240 layers run at 3 and 1 positions instead of 32.
    """

    def __init__(self, channels_in: int, channels_out: int, kernel: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.kernel = kernel
        self.dilation = dilation
        self.taps = nn.Linear(kernel * channels_in, channels_out)
        self.norm = nn.BatchNorm1d(channels_out)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Linear(channels_in, channels_out) if channels_in != channels_out else nn.Identity()
        self._index_cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def needed_inputs(self, out_pos: list[int]) -> list[int]:
        taps = {p - k * self.dilation for p in out_pos for k in range(self.kernel)}
        return sorted(t for t in taps if t >= 0)

    def _indices(self, in_pos: list[int], out_pos: list[int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        key = (tuple(in_pos), tuple(out_pos), str(device))
        if key not in self._index_cache:
            lookup = {p: i for i, p in enumerate(in_pos)}
            pad = len(in_pos)  # index of the zero row
            taps = [[lookup.get(p - (self.kernel - 1 - k) * self.dilation, pad) for k in range(self.kernel)]
                    for p in out_pos]
            with torch.inference_mode(False):  # cached for training too: must not be inference tensors
                self._index_cache[key] = (
                    torch.tensor(taps, device=device),                        # [P_out, K]
                    torch.tensor([lookup[p] for p in out_pos], device=device),  # [P_out]
                )
        return self._index_cache[key]

    def forward(self, x: torch.Tensor, in_pos: list[int], out_pos: list[int]) -> torch.Tensor:
        batch = x.shape[0]
        tap_index, out_index = self._indices(in_pos, out_pos, x.device)
        padded = torch.cat([x, x.new_zeros(batch, 1, x.shape[2])], dim=1)
        gathered = padded[:, tap_index.reshape(-1), :].reshape(batch, len(out_pos), -1)  # [B, P, K*C]
        y = self.taps(gathered)
        y = self.norm(y.reshape(-1, y.shape[-1])).reshape(y.shape)
        return F.relu(self.skip(x[:, out_index, :]) + self.dropout(F.relu(y)))


class ResidualBlock(nn.Module):
    def __init__(self, width: int, dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, width)
        self.fc2 = nn.Linear(width, width)
        self.norm1 = nn.LayerNorm(width)
        self.norm2 = nn.LayerNorm(width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc1(F.relu(self.norm1(x)))
        y = self.fc2(self.dropout(F.relu(self.norm2(y))))
        return x + y


def _tower(width: int, blocks: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(*[ResidualBlock(width, dropout) for _ in range(blocks)])


class Representation(nn.Module):
    """TCN over the window read at its last bar, plus the window's mean of the
    first layer (so all 32 bars count), plus the position MLP -> state."""

    def __init__(self, c: NetworkConfig) -> None:
        super().__init__()
        channels = [c.temporal_features] + [c.tcn_channels] * len(c.tcn_dilations)
        self.blocks = nn.ModuleList([
            CausalConvBlock(channels[i], channels[i + 1], c.tcn_kernel, d, c.dropout)
            for i, d in enumerate(c.tcn_dilations)
        ])
        # positions each block must produce: the last bar at the top, and what it reads below
        out_positions = [[c.window_bars - 1]]
        for block in reversed(self.blocks[1:]):
            out_positions.insert(0, block.needed_inputs(out_positions[0]))
        out_positions[0] = list(range(c.window_bars))  # the first layer runs over the whole window
        self.out_positions = out_positions
        self.static = nn.Sequential(nn.Linear(c.static_features, c.static_hidden), nn.ReLU())
        self.project = nn.Linear(2 * c.tcn_channels + c.static_hidden, c.hidden)
        self.norm = nn.LayerNorm(c.hidden)

    def forward(self, temporal: torch.Tensor, static: torch.Tensor) -> torch.Tensor:
        x = temporal  # [B, T, F], channels last
        positions = list(range(x.shape[1]))
        first = None
        for block, out_pos in zip(self.blocks, self.out_positions):
            x = block(x, positions, out_pos)
            positions = out_pos
            if first is None:
                first = x
        return self.norm(self.project(torch.cat([x[:, -1, :], first.mean(dim=1), self.static(static)], dim=1)))


class Transition(nn.Module):
    """state + one-hot choice -> next latent (used for afterstates and dynamics)."""

    def __init__(self, hidden: int, choices: int, blocks: int, dropout: float) -> None:
        super().__init__()
        self.choices = choices
        self.inp = nn.Linear(hidden + choices, hidden)
        self.tower = _tower(hidden, blocks, dropout)
        self.norm = nn.LayerNorm(hidden)

    def forward(self, state: torch.Tensor, choice: torch.Tensor) -> torch.Tensor:
        return self.forward_one_hot(state, F.one_hot(choice, self.choices).to(state.dtype))

    def forward_one_hot(self, state: torch.Tensor, one_hot: torch.Tensor) -> torch.Tensor:
        return self.norm(self.tower(self.inp(torch.cat([state, one_hot], dim=1))))


class MuZeroNetworks(nn.Module):
    def __init__(self, config: NetworkConfig = NetworkConfig()) -> None:
        super().__init__()
        c = config
        self.config = c
        self.representation = Representation(c)
        self.afterstate_net = Transition(c.hidden, c.num_actions, c.afterstate_blocks, c.dropout)
        self.chance_head = nn.Linear(c.hidden, c.num_outcomes)
        self.afterstate_value_head = nn.Linear(c.hidden, c.value_atoms)
        self.dynamics_net = Transition(c.hidden, c.num_outcomes, c.dynamics_blocks, c.dropout)
        self.reward_head = nn.Linear(c.hidden, 1)
        self.policy_net = nn.Sequential(_tower(c.hidden, c.policy_blocks, c.dropout), nn.Linear(c.hidden, c.num_actions))
        self.value_net = nn.Sequential(_tower(c.hidden, c.value_blocks, c.dropout), nn.Linear(c.hidden, c.value_atoms))
        # created last, and only for learned codes: the market-outcome networks keep their initialisation
        self.chance_encoder = nn.Sequential(
            nn.Linear(c.temporal_features, c.hidden), nn.ReLU(), nn.Linear(c.hidden, c.hidden), nn.ReLU(),
            nn.Linear(c.hidden, c.chance_codes)) if c.chance_codes else None

    def represent(self, temporal: torch.Tensor, static: torch.Tensor) -> torch.Tensor:
        return self.representation(temporal, static)

    def predict(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """state -> (policy logits [B, A], value logits [B, atoms])."""
        return self.policy_net(state), self.value_net(state)

    def afterstate(self, state: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> (afterstate [B, H], chance logits [B, C], afterstate value logits [B, atoms])."""
        after = self.afterstate_net(state, action)
        return after, self.chance_head(after), self.afterstate_value_head(after)

    def dynamics(self, afterstate: torch.Tensor, outcome: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (next state [B, H], reward [B] in pips)."""
        return self.dynamics_one_hot(afterstate, F.one_hot(outcome, self.config.num_outcomes).to(afterstate.dtype))

    def dynamics_one_hot(self, afterstate: torch.Tensor, outcome: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """dynamics with the outcome as a [B, C] vector: the learner's straight-through code."""
        state = self.dynamics_net.forward_one_hot(afterstate, outcome)
        return state, self.reward_head(state).squeeze(-1)

    def chance_code(self, next_bar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The learned chance outcome of a step from the features of the bar the market moved to
        ([B, F]; only the newest bar: what the market did is all a chance outcome stands for, the
        position's change is the afterstate's) -> (the code's index [B], its one-hot [B, K] carrying
        the encoder's gradient straight through, and the encoder's softmax [B, K])."""
        probs = F.softmax(self.chance_encoder(next_bar), dim=-1)
        index = probs.argmax(dim=-1)
        one_hot = F.one_hot(index, self.config.chance_codes).to(probs.dtype)
        return index, one_hot + probs - probs.detach(), probs


def outcome_names(config: NetworkConfig) -> list[str]:
    """What each chance outcome index stands for: the market's move, or a learned code (no name)."""
    if config.chance_codes:
        return [f"code_{i}" for i in range(config.chance_codes)]
    return [outcome.name.lower() for outcome in MarketOutcome]


def parameter_counts(model: MuZeroNetworks) -> dict[str, int]:
    parts = {
        "representation": model.representation,
        "afterstate": nn.ModuleList([model.afterstate_net, model.chance_head, model.afterstate_value_head]),
        "dynamics": nn.ModuleList([model.dynamics_net, model.reward_head]),
        "policy": model.policy_net,
        "value": model.value_net,
    }
    counts = {name: sum(p.numel() for p in module.parameters()) for name, module in parts.items()}
    counts["total"] = sum(p.numel() for p in model.parameters())
    return counts
