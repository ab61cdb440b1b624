"""Batch norm over every rank's rows (TRAINING_LEARNERS=k): while each rank computes the loss of
its shard, every BatchNorm normalises with the mean and variance of all ranks' rows together, the
sums all-reduced with gradients flowing through, so k ranks train the model one learner trains on
the whole batch. What torch's SyncBatchNorm does, which it runs on GPUs only."""

from __future__ import annotations

from contextlib import contextmanager
from functools import partial
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


class _AllReduceSum(torch.autograd.Function):
    """The sum over ranks, differentiable: the gradient of each rank's input is the sum over ranks of
    the gradients of the output (every rank's loss depends on every rank's input through it)."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        out = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out)
        return out


def _sum_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    return _AllReduceSum.apply(tensor)


def _global_batch_norm(bn: _BatchNorm, x: torch.Tensor) -> torch.Tensor:
    """bn(x) in training as if x were every rank's input concatenated: the statistics are all-reduced
    (accumulated in float64, as torch's CPU batch norm does). In eval mode, bn's own forward."""
    if not bn.training:
        return type(bn).forward(bn, x)
    dims = [0, *range(2, x.dim())]
    shape = [1, -1] + [1] * (x.dim() - 2)
    count = torch.tensor([x.numel() / x.shape[1]], dtype=torch.float64, device=x.device)
    sums = _sum_over_ranks(torch.cat([x.double().sum(dims), count]))
    n = sums[-1].detach()
    mean = (sums[:-1] / n).to(x.dtype)
    centred = x - mean.view(shape)
    var = (_sum_over_ranks((centred.double() ** 2).sum(dims)) / n).to(x.dtype)
    y = centred * torch.rsqrt(var + bn.eps).view(shape)
    if bn.affine:
        y = y * bn.weight.view(shape) + bn.bias.view(shape)
    if bn.track_running_stats and bn.running_mean is not None and bn.running_var is not None:
        with torch.no_grad():
            assert bn.num_batches_tracked is not None
            bn.num_batches_tracked.add_(1)
            momentum = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
            bn.running_mean.mul_(1 - momentum).add_(mean.detach(), alpha=momentum)
            unbiased = var.detach() * (n / (n - 1)).to(x.dtype)
            bn.running_var.mul_(1 - momentum).add_(unbiased, alpha=momentum)
    return y


@contextmanager
def batch_norm_across_ranks(model: nn.Module) -> Iterator[None]:
    """Every BatchNorm of `model` normalises with all ranks' statistics inside the block (an instance
    `forward` shadowing the class's); outside it, e.g. rank 0's self-play on the same model, as before."""
    patched = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    for m in patched:
        m.forward = partial(_global_batch_norm, m)  # type: ignore[method-assign]
    try:
        yield
    finally:
        for m in patched:
            del m.forward
