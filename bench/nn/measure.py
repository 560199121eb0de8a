"""Architecture figures for `bench describe`: parameter counts and FLOPs (counted, not estimated by hand)."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of `module` (all, or only those with requires_grad)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def count_flops(fn: Callable[..., Any], *inputs: Any) -> int:
    """FLOPs of one call fn(*inputs) as counted by torch's FlopCounterMode (a multiply-add counts as 2 FLOPs).

    Only matrix products and convolutions are counted (normalisation, activations and pooling are not), which is
    the usual convention of published figures. Inputs on the 'meta' device count without computing anything.
    """
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        fn(*inputs)
    return int(counter.get_total_flops())


def flops_and_macs(fn: Callable[..., Any], *inputs: Any) -> dict[str, float]:
    """{'gflops': ..., 'gmacs': ...} of one call; papers often call MACs (= FLOPs / 2) 'FLOPs'."""
    flops = count_flops(fn, *inputs)
    return {"gflops": flops / 1e9, "gmacs": flops / 2e9}
