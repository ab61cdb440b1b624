"""Per-feature standardisation kept in a model's buffers (the challenger models': fitted on
training rows only, saved with the weights)."""

from __future__ import annotations

import torch


def set_standardisation(mean_buffer: torch.Tensor, std_buffer: torch.Tensor, mean, std) -> None:
    """Copy [F] `mean` and positive `std` into the model's buffers; a wrong shape or a std <= 0 is refused."""
    mean = torch.as_tensor(mean, dtype=torch.float32)
    std = torch.as_tensor(std, dtype=torch.float32)
    if mean.shape != mean_buffer.shape or std.shape != std_buffer.shape or not bool((std > 0).all()):
        raise ValueError(f"expected [{mean_buffer.shape[0]}] mean and positive std; got {tuple(mean.shape)}, "
                         f"{tuple(std.shape)}")
    with torch.no_grad():
        mean_buffer.copy_(mean)
        std_buffer.copy_(std)
