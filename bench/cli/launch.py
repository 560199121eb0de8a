"""`bench run --launcher torchrun --nproc N`: the same command re-started as N data-parallel processes.

torchrun (`python -m torch.distributed.run`) starts N copies of `bench run ...` (the run's request as arguments,
bench/run/command.py) on this machine and sets RANK, LOCAL_RANK and WORLD_SIZE in each; `join` then makes every
copy one rank of the group (bench/nn/distributed.py). Rank 0 prints and writes everything; the other ranks print errors only.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings
from typing import Sequence

from bench.errors import BenchError

LAUNCHERS = ("none", "torchrun")


def torchrun_command(nproc: int, run_args: Sequence[str]) -> list[str]:
    """The torchrun command line that starts `bench run run_args` as `nproc` ranks on this machine."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={int(nproc)}",
            "-m", "bench", "run", *run_args]


def launch(nproc: int, argv: Sequence[str]) -> int:
    """Run torchrun on `bench run argv` (the request's arguments, launcher options left out); its exit status."""
    if int(nproc) < 1:
        raise BenchError(f"--nproc {nproc}: needs at least 1 process")
    if os.environ.get("WORLD_SIZE"):
        raise BenchError("--launcher torchrun inside a torchrun process: drop --launcher (torchrun already started "
                         "the ranks)")
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")  # torchrun's own default; --threads sets each rank's count
    return subprocess.call(torchrun_command(nproc, argv), env=env)


def join(device: str = "cpu") -> int:
    """Under torchrun: join the process group (nccl for a CUDA `device`, else gloo) and silence a rank other than
    0 (warnings and logging below errors); the world size (1 without torchrun)."""
    from bench.nn import distributed

    if not distributed.init("nccl" if device.startswith("cuda") else "gloo"):
        return 1
    if not distributed.is_main():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
    return distributed.world()[1]


def leave() -> None:
    """Leave the process group (nothing without one)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def rank_device(device: str) -> str:
    """`cuda` under several ranks means each rank's own GPU, cuda:LOCAL_RANK; any other device is kept."""
    if device == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device


__all__ = ["LAUNCHERS", "join", "launch", "leave", "rank_device", "torchrun_command"]
