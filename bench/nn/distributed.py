"""Data-parallel training over several processes (torchrun): the one place where ranks split a batch and average
gradients, and where only rank 0 writes.

Under `torchrun --nproc-per-node N ...` each process gets RANK, LOCAL_RANK and WORLD_SIZE in its environment;
without them everything here is a no-op for a single process (rank 0 of 1). A trainer that uses it takes the same
global batch on every rank, keeps its own `shard`, and calls `average_gradients` between `backward()` and the
optimiser step: the averaged gradient is then the gradient of the mean loss over the global batch, so N processes
follow the trajectory of one process with that batch (up to float summation order), as tests/test_distributed.py
checks with the gloo backend on CPU.

Not yet wired into the learned attacks: CFGAN's batch norm and its relativistic GAN loss (each sample's logit is
compared with the mean logit of the batch) couple the samples of a batch, so its sharded step equals the global one
only with synchronised batch statistics and an all-gathered logit mean (docs/speed.md lists what is left).
"""

from __future__ import annotations

import os
from typing import Iterable

import numpy as np
import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, world size) of this process: from torch.distributed when initialised, else torchrun's environment."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    """True on rank 0 (and in a single process): the only rank that writes checkpoints, caches and results."""
    return world()[0] == 0


def init(backend: str | None = None, init_method: str | None = None) -> bool:
    """Join the process group when WORLD_SIZE > 1 (gloo on CPU, nccl with CUDA unless `backend` says otherwise).

    Returns True when this process is one of several. Idempotent.
    """
    rank, size = world()
    if size <= 1:
        return False
    if not dist.is_initialized():
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        dist.init_process_group(backend, init_method=init_method or "env://", rank=rank, world_size=size)
    return True


def shard(indices: np.ndarray) -> np.ndarray:
    """This rank's contiguous share of a global batch; the batch must divide evenly among the ranks."""
    rank, size = world()
    if size == 1:
        return indices
    if len(indices) % size:
        raise ValueError(f"a global batch of {len(indices)} does not divide among {size} processes")
    per = len(indices) // size
    return indices[rank * per:(rank + 1) * per]


def average_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """Replace each gradient by its mean over the ranks (one all-reduce over a flat buffer); no-op alone."""
    rank, size = world()
    if size == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= size
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset:offset + n].view_as(g))
        offset += n


def mean_over_ranks(value: float) -> float:
    """The mean of a scalar (e.g. a shard's loss) over the ranks: the global batch's loss for logging."""
    rank, size = world()
    if size == 1:
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item()) / size


def barrier() -> None:
    """Wait for every rank (no-op alone): e.g. after rank 0 wrote a checkpoint the others then read."""
    if world()[1] > 1 and dist.is_initialized():
        dist.barrier()


__all__ = ["average_gradients", "barrier", "init", "is_main", "mean_over_ranks", "shard", "world"]
