"""Categorical values: 601 atoms spanning [-300, 300] pips after MuZero's
invertible scaling h(x) = sign(x) (sqrt(|x| + 1) - 1) + eps x.

Targets are clipped to the range, scaled by h and projected onto the two
nearest atoms (two-hot); a distribution's value is h^-1 of its mean atom. The
scaling spends the atoms where values are common (near 0) while still
covering a 300-pip swing."""

from __future__ import annotations

import torch

EPS = 0.001


def scale(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * (torch.sqrt(torch.abs(x) + 1) - 1) + EPS * x


def unscale(y: torch.Tensor) -> torch.Tensor:
    # closed-form inverse of scale (MuZero appendix)
    return torch.sign(y) * (((torch.sqrt(1 + 4 * EPS * (torch.abs(y) + 1 + EPS)) - 1) / (2 * EPS)) ** 2 - 1)


class ValueSupport:
    def __init__(self, atoms: int = 601, max_pips: float = 300.0) -> None:
        if atoms < 3 or atoms % 2 == 0:
            raise ValueError("the value support needs an odd number of atoms >= 3")
        self.atoms = atoms
        self.max_pips = max_pips
        top = float(scale(torch.tensor(max_pips)))
        self.support = torch.linspace(-top, top, atoms)  # [atoms] in scaled units
        self.step = 2 * top / (atoms - 1)
        self.top = top

    def to(self, device: torch.device) -> "ValueSupport":
        self.support = self.support.to(device)
        return self

    def value(self, logits: torch.Tensor) -> torch.Tensor:
        """[..., atoms] logits -> [...] value in pips."""
        probs = torch.softmax(logits, dim=-1)
        return unscale((probs * self.support).sum(-1))

    def two_hot(self, pips: torch.Tensor) -> torch.Tensor:
        """[...] pips -> [..., atoms] target distribution."""
        y = scale(pips.clamp(-self.max_pips, self.max_pips))
        position = ((y + self.top) / self.step).clamp(0, self.atoms - 1)
        low = position.floor().long().clamp(max=self.atoms - 2)
        upper_weight = position - low
        target = torch.zeros(*pips.shape, self.atoms, device=pips.device)
        target.scatter_(-1, low.unsqueeze(-1), (1 - upper_weight).unsqueeze(-1))
        target.scatter_add_(-1, (low + 1).unsqueeze(-1), upper_weight.unsqueeze(-1))
        return target
