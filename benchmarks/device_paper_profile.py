"""Device check: CFGAN's paper profile trained for a few hundred steps on one accelerator; prints time per step.

    python benchmarks/device_paper_profile.py [--device cuda] [--steps 300] [--warmup 20] [--profile paper]
                                              [--no-perceptual] [--n 64] [--nproc N] [--batch B]

Trains the coarse stage for `warmup` steps (cuDNN autotuning, allocator growth), then, with fresh networks and the
same settings, for `steps` steps, and prints seconds per step (the stage's steps only: no data loading, feature
extraction or evaluation) with the device name, the torch version and peak memory. The data are random SIFT
keypoints and smooth random images at the profile's sizes: a step's speed does not depend on what the images show.

The paper profile's perceptual loss needs ImageNet VGG19 weights (`bench weights pull vgg19`); without them the
script stops with that fix, or runs with --no-perceptual (printed in the result, since a step then does less
work). `--profile smoke` with `--device cpu` checks the script itself on a machine without an accelerator.

`--nproc N` re-starts the script under torchrun as N data-parallel processes (one GPU each with `--device cuda`,
nccl; gloo on CPU) through the shared trainer's sharded steps (bench/nn/distributed.py): each process steps on
1/N of every global batch (`--batch`, default the profile's 8; it must divide by N). Rank 0 prints the time per
step (the slowest rank's), which then includes the all-reduces of gradients, batch-norm statistics and logit means.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from bench.attacks.sift_inversion.cfgan import CFGAN
from bench.features.sift import SiftSet, random_siftset
from bench.plugins import FitContext


def synthetic_data(n: int, image_size: int, seed: int = 0) -> tuple[SiftSet, torch.Tensor]:
    """n random SIFT records (40-200 keypoints each, extracted at image_size) and n smooth random RGB images."""
    feats = random_siftset(n, image_size, np.random.default_rng(seed), counts=(40, 200), scales=(1.5, 12))
    low = torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
    images = F.interpolate(low, size=(image_size, image_size), mode="bilinear", align_corners=False).clamp(0, 1)
    return feats, images


ARGS_ENV = "BENCH_DEVICE_CHECK_ARGS"  # this script's arguments, for its ranks under torchrun
CFGAN_SIZE = {"smoke": 32, "cpu": 64, "paper": 256}  # each profile's image size (a CFGAN asks for its own)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_coarse_steps(profile: str, device: torch.device, steps: int, n: int, perceptual: bool | None,
                      seed: int = 0, batch: int | None = None) -> dict[str, Any]:
    """Seconds per coarse-stage step of one fit with `steps` coarse steps (fine stage: 1 step, not timed); under
    several processes the slowest rank's, and `batch` is the global batch."""
    from bench.nn import distributed

    feats, images = synthetic_data(n, CFGAN_SIZE[profile], seed)
    attack = CFGAN(profile, CFGAN_SIZE[profile], device, seed=seed)
    overrides: dict[str, Any] = {"coarse_steps": steps, "fine_steps": 1, "bn_batches": min(1, attack.hp["bn_batches"])}
    if batch:
        overrides["batch_size"] = int(batch)
    if perceptual is not None:
        overrides["perceptual"] = perceptual
    attack.hp = dict(attack.hp, **overrides)
    attack.preflight()
    ctx = FitContext(defense=None, seed=seed, device=device, progress=False)  # type: ignore[arg-type]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    _sync(device)
    attack.fit(feats, images, ctx)
    _sync(device)
    seconds = attack.stage_seconds["coarse"]
    if distributed.active():  # the slowest rank's time
        import torch.distributed as dist

        t = torch.tensor([seconds], dtype=torch.float64, device=distributed._comm_device())
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        seconds = float(t.item())
    return {"profile": profile, "steps": steps, "batch_size": attack.hp["batch_size"],
            "processes": distributed.world()[1], "image_size": attack.image_size, "perceptual": attack.hp["perceptual"],
            "s_per_step": seconds / max(steps, 1),
            "final_loss": attack.history["coarse"][-1] if attack.history["coarse"] else None,
            "peak_memory_gib": (torch.cuda.max_memory_allocated(device) / 2**30) if device.type == "cuda" else None}


def main() -> None:
    """Warm up, then time `steps` coarse steps and print the result (and one JSON line)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--profile", default="paper", choices=sorted(CFGAN_SIZE))
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--n", type=int, default=64, help="training images (random); at least the batch size")
    p.add_argument("--no-perceptual", action="store_true", help="switch the perceptual (VGG19) loss off")
    p.add_argument("--nproc", type=int, default=1, help="data-parallel processes (torchrun; one GPU each)")
    p.add_argument("--batch", type=int, default=None, help="global batch [the profile's]; divisible by --nproc")
    # Under torchrun the arguments come through the environment: torchrun's own parser would take `--n` or
    # `--nproc` for abbreviations of its options.
    ranked = os.environ.get("WORLD_SIZE") and ARGS_ENV in os.environ
    args = p.parse_args(json.loads(os.environ[ARGS_ENV]) if ranked else None)
    if args.nproc > 1 and not os.environ.get("WORLD_SIZE"):  # re-start this script as nproc ranks
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.nproc}",
               __file__]
        env = {**os.environ, ARGS_ENV: json.dumps(sys.argv[1:]),
               "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        sys.exit(subprocess.call(cmd, env=env))
    from bench.nn import distributed

    distributed.init("nccl" if args.device.startswith("cuda") else "gloo")
    device = torch.device(args.device)
    if device.type == "cuda" and distributed.world()[1] > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    main_rank = distributed.is_main()
    perceptual = False if args.no_perceptual else None
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    if main_rank:
        print(f"device {name}, torch {torch.__version__}, profile {args.profile}, threads {torch.get_num_threads()}, "
              f"processes {distributed.world()[1]}")
    if args.warmup > 0:
        w = time_coarse_steps(args.profile, device, args.warmup, args.n, perceptual, batch=args.batch)
        if main_rank:
            print(f"warm-up: {args.warmup} steps, {w['s_per_step']:.4f} s/step")
    t0 = time.perf_counter()
    r = time_coarse_steps(args.profile, device, args.steps, args.n, perceptual, batch=args.batch)
    r.update({"device": name, "torch": torch.__version__, "wall_s": time.perf_counter() - t0})
    if main_rank:
        print(f"{args.steps} coarse steps: {r['s_per_step']:.4f} s/step ({1 / r['s_per_step']:.2f} steps/s), global "
              f"batch {r['batch_size']} on {r['processes']} process(es), {r['image_size']}x{r['image_size']}, "
              f"perceptual {r['perceptual']}"
              + (f", peak memory {r['peak_memory_gib']:.1f} GiB (rank 0)" if r["peak_memory_gib"] is not None else ""))
        print(json.dumps(r))
    if distributed.active():
        import torch.distributed as dist

        dist.destroy_process_group()


if __name__ == "__main__":
    main()
