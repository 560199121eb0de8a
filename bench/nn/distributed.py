"""Data-parallel training over several processes (torchrun): the one place where ranks split a batch and average
gradients, and where only rank 0 writes.

Under `torchrun --nproc-per-node N ...` each process gets RANK, LOCAL_RANK and WORLD_SIZE in its environment;
without them everything here is a no-op for a single process (rank 0 of 1). A trainer that uses it takes the same
global batch on every rank, keeps its own `shard`, and calls `average_gradients` between `backward()` and the
optimiser step: the averaged gradient is then the gradient of the mean loss over the global batch, so N processes
follow the trajectory of one process with that batch (up to float summation order), as tests/test_distributed.py
checks with the gloo backend on CPU.

The shared trainer (bench/training.py) uses it inside `sharded()`, the context of one training stage of a learned
attack that declares `shards_exactly`: its steps see their rank's shard, `optimise` averages the gradients, and two
kinds of cross-sample coupling are made exact: `batch_mean` (the relativistic GAN loss compares each logit with the
batch's mean logit) is the mean over the whole global batch, and batch norm layers converted by
`sync_batch_norm` (bench/nn/sync_batchnorm.py) normalise with the global batch's statistics. A plain batch norm
layer that runs in training mode inside the context is refused (it would normalise with its shard's statistics), and
at the end of the context the trained weights are compared across the ranks (`check_in_sync`).
"""

from __future__ import annotations

import datetime
import os
from contextlib import contextmanager
from typing import Any, Iterable, Iterator

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


# How long a rank waits in one collective (e.g. for rank 0 to extract a large split's features) before it gives up.
DEFAULT_TIMEOUT_S = 3 * 3600


def init(backend: str | None = None, init_method: str | None = None, timeout_s: float | None = None) -> bool:
    """Join the process group when WORLD_SIZE > 1 (gloo on CPU, nccl with CUDA unless `backend` says otherwise).

    Returns True when this process is one of several. Idempotent. A collective waits at most `timeout_s`
    (default: BENCH_DIST_TIMEOUT_S or 3 hours: rank 0 alone computes the stages before training while the others
    wait for its cache entries).
    """
    rank, size = world()
    if size <= 1:
        return False
    if not dist.is_initialized():
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        seconds = float(timeout_s or os.environ.get("BENCH_DIST_TIMEOUT_S") or DEFAULT_TIMEOUT_S)
        if backend == "nccl":  # one GPU per process: LOCAL_RANK's
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend, init_method=init_method or "env://", rank=rank, world_size=size,
                                timeout=datetime.timedelta(seconds=seconds))
    return True


def _comm_device() -> torch.device:
    """Where a small tensor for a collective lives: the current GPU under nccl (which moves GPU tensors only)."""
    if dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def active() -> bool:
    """True when this process is one of several in an initialised process group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


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
    t = torch.tensor([float(value)], dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item()) / size


def barrier() -> None:
    """Wait for every rank (no-op alone): e.g. after rank 0 wrote a checkpoint the others then read."""
    if world()[1] > 1 and dist.is_initialized():
        dist.barrier()


def broadcast(obj: Any) -> Any:
    """Rank 0's `obj` on every rank (picklable; no-op alone): e.g. whether a stage-cache entry exists."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# --------------------------------------------------------------------------------- exact sharded training
class _AllReduceSum(torch.autograd.Function):
    """y = the sum of x over the ranks, on every rank. Each rank's loss depends on y, so x's gradient is the sum of
    the ranks' gradients of y: the backward pass all-reduces too."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        dist.all_reduce(y, op=dist.ReduceOp.SUM)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        g = grad.clone()
        dist.all_reduce(g, op=dist.ReduceOp.SUM)
        return g


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """The sum of `x` over the ranks, differentiable (see _AllReduceSum); `x` itself alone."""
    return _AllReduceSum.apply(x) if active() else x


_SHARDED = False


def sharding() -> bool:
    """True inside `sharded()` with several ranks: each step sees its shard and gradients are averaged."""
    return _SHARDED


def batch_mean(x: torch.Tensor) -> torch.Tensor:
    """The mean of `x` over the batch: inside `sharded()` over the global batch (all ranks' shards, equal sizes),
    differentiable; otherwise `x.mean()`. For a loss that couples the samples of a batch (e.g. RaGAN's mean logit)."""
    if not _SHARDED:
        return x.mean()
    return all_reduce_sum(x.sum()) / (x.numel() * world()[1])


def _refuse_unsynced_batch_norm(module: torch.nn.Module, args: Any) -> None:
    from bench.nn.sync_batchnorm import SyncedBatchNorm

    if (isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and module.training
            and not isinstance(module, SyncedBatchNorm)):
        raise RuntimeError(f"{type(module).__name__} runs in training mode on a shard of the batch: its statistics "
                           "would be the shard's, not the batch's (convert it with bench.nn.distributed."
                           "sync_batch_norm, or train with one process)")


@contextmanager
def sharded() -> Iterator[bool]:
    """The context of a data-parallel training stage; yields whether it is one (several ranks), else a no-op.

    Inside it `sharding()` is true, `batch_mean` is global, and a plain batch norm layer in training mode raises.
    """
    global _SHARDED
    if not active() or _SHARDED:
        yield _SHARDED
        return
    handle = torch.nn.modules.module.register_module_forward_pre_hook(_refuse_unsynced_batch_norm)
    _SHARDED = True
    try:
        yield True
    finally:
        _SHARDED = False
        handle.remove()


def sync_batch_norm(module: torch.nn.Module) -> torch.nn.Module:
    """Replace every batch norm layer of `module` (in place, same parameters and buffers) by one that, inside
    `sharded()`, normalises with the global batch's statistics; returns `module`. No-op alone."""
    if not active():
        return module
    from bench.nn.sync_batchnorm import convert

    return convert(module)


def check_in_sync(modules: Iterable[torch.nn.Module], what: str) -> None:
    """Raise when the floating-point weights and buffers of `modules` differ between the ranks (checked through
    per-tensor float64 sums): a step whose gradients were not averaged lets the ranks drift apart."""
    if not active():
        return
    sums = [t.detach().double().sum() for m in modules for t in m.state_dict().values()
            if torch.is_tensor(t) and t.is_floating_point()]
    if not sums:
        return
    mine = torch.stack(sums)
    dev = mine.device
    theirs = [torch.empty_like(mine) for _ in range(world()[1])]
    dist.all_gather(theirs, mine)
    ref = theirs[0]
    for r, other in enumerate(theirs[1:], start=1):
        if not torch.allclose(other, ref, rtol=1e-9, atol=1e-9):
            worst = int((other - ref).abs().argmax())
            raise RuntimeError(f"{what}: the weights of rank {r} differ from rank 0's after data-parallel training "
                               f"(tensor {worst}: {float(other[worst])} vs {float(ref[worst])}, on {dev}); a step "
                               "updated them without averaging its gradients over the ranks")


__all__ = ["active", "all_reduce_sum", "average_gradients", "barrier", "batch_mean", "broadcast", "check_in_sync",
           "init", "is_main", "mean_over_ranks", "shard", "sharded", "sharding", "sync_batch_norm", "world"]
