"""Batch norm whose statistics are those of the global batch when several ranks each train on a shard of it.

`SyncedBatchNorm` replaces a `nn.BatchNorm{1,2,3}d` under data-parallel training (bench.nn.distributed.sharded):
the per-channel mean and (biased) variance are all-reduced, differentiably, over the ranks, so every shard is
normalised exactly as the whole batch would be in one process, and the running statistics are updated from the
global batch like torch's BatchNorm does (unbiased variance, `momentum`, or a cumulative average when momentum is
None). Outside a sharded stage (evaluation, batch-norm recalibration, one process) it is a plain batch norm.
torch's own `nn.SyncBatchNorm` runs on GPUs only; this one runs on any device the process group supports.
"""

from __future__ import annotations

import torch
from torch import nn

from bench.nn import distributed


class SyncedBatchNorm(nn.modules.batchnorm._BatchNorm):
    """A batch norm layer (any input rank ≥ 2, channels on dim 1) synchronised over the ranks while sharding."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """Global-batch statistics inside a sharded stage in training mode; torch's batch norm otherwise."""
        if not (self.training and distributed.sharding()):
            return super().forward(input)
        self._check_input_dim(input)
        dims = [0, *range(2, input.dim())]
        shape = [1, input.shape[1], *([1] * (input.dim() - 2))]
        count = input.numel() // input.shape[1] * distributed.world()[1]
        mean = distributed.all_reduce_sum(input.sum(dims)) / count
        centred = input - mean.view(shape)
        var = distributed.all_reduce_sum((centred * centred).sum(dims)) / count  # biased, as the normalisation uses
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = (1.0 / float(self.num_batches_tracked) if self.momentum is None else float(self.momentum))
                unbiased = var.detach() * (count / max(count - 1, 1))
                self.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)
                self.running_var.mul_(1 - factor).add_(unbiased, alpha=factor)
        return out


def convert(module: nn.Module) -> nn.Module:
    """Every batch norm layer inside `module` replaced by a SyncedBatchNorm holding the same parameters and buffers
    (so optimisers already built keep working); `module` itself when it is one. Idempotent."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, SyncedBatchNorm):
        new = SyncedBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats)
        new.weight, new.bias = module.weight, module.bias
        new.running_mean, new.running_var = module.running_mean, module.running_var
        new.num_batches_tracked = module.num_batches_tracked
        new.train(module.training)
        return new
    for name, child in module.named_children():
        replaced = convert(child)
        if replaced is not child:
            setattr(module, name, replaced)
    return module


__all__ = ["SyncedBatchNorm", "convert"]
