"""LPIPS throughput of the project's metric against the `lpips` package on the CPU, on identical random backbones.

Both sides get the same random backbone (`lpips.LPIPS(pnet_rand=True)`, no download) and the package's shipped
v0.1 linear layers; the project's network is built from that state directly (the weights cache is not involved).
Timings are interleaved (ours, theirs, ours, ...) so that machine noise hits both alike; each figure is one call
on a batch of image pairs, repeated; we report the best time of each side, the ratio of the best times, and the
median of the per-repeat ratios. Values are checked to agree within 1e-5 before timing.

Run: python benchmarks/lpips_bench.py [--nets alex,squeeze] [--sizes 64,256] [--threads 1,2] [--batch 16]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import time
import warnings

import torch

from bench.metrics.lpips import VARIANTS, LPIPSMetric
from bench.nn.lpips_net import LPIPSNet

METRIC_OF = {"alex": "lpips", "vgg": "lpips-vgg", "squeeze": "lpips-squeeze"}


def build(net: str) -> tuple[LPIPSMetric, torch.nn.Module]:
    """(project metric, package model) sharing one random backbone and the shipped linear layers."""
    import lpips

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ref = lpips.LPIPS(net=net, pnet_rand=True, version="0.1", verbose=False).eval()
    state = ref.state_dict()
    backbone = {re.sub(r"^net\.slice\d+\.", "features.", k): v for k, v in state.items() if k.startswith("net.")}
    linear = {k: v for k, v in state.items() if k.startswith("lin")}
    metric_cls = type("Bench", (LPIPSMetric,), {"name": METRIC_OF[net], "variant": VARIANTS[METRIC_OF[net]]})
    metric = metric_cls()
    metric.net = LPIPSNet(net, backbone, linear)
    return metric, ref


def measure(net: str, size: int, threads: int, batch: int = 16, repeats: int = 5) -> dict:
    """Interleaved timings of one batch of `batch` pairs at size×size with `threads` torch threads."""
    torch.set_num_threads(threads)
    metric, ref = build(net)
    g = torch.Generator().manual_seed(1)
    a = torch.rand(batch, 3, size, size, generator=g)
    b = (a + 0.1 * torch.randn(a.shape, generator=g)).clamp(0, 1)

    def ours() -> torch.Tensor:
        return metric.per_sample(b, a)

    def theirs() -> torch.Tensor:
        with torch.no_grad():
            return ref(b, a, normalize=True).flatten()

    diff = (ours() - theirs().double()).abs().max().item()  # also the warm-up of both
    assert diff < 1e-5, f"values differ by {diff}"
    t_ours, t_theirs = [], []
    for r in range(repeats):
        order = (("ours", ours), ("theirs", theirs)) if r % 2 == 0 else (("theirs", theirs), ("ours", ours))
        for who, fn in order:
            t0 = time.perf_counter()
            fn()
            (t_ours if who == "ours" else t_theirs).append(time.perf_counter() - t0)
    ratios = [t / o for o, t in zip(t_ours, t_theirs)]
    return {"net": net, "size": size, "threads": threads, "batch": batch, "repeats": repeats, "max_abs_diff": diff,
            "ours_img_s": batch / min(t_ours), "theirs_img_s": batch / min(t_theirs),
            "ratio_min": min(t_theirs) / min(t_ours), "ratio_median": statistics.median(ratios)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", default="alex,squeeze", help="backbones (alex, vgg, squeeze)")
    ap.add_argument("--sizes", default="64,256")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    print(f"LPIPS throughput, CPU, batch {args.batch} pairs, {args.repeats} interleaved repeats "
          f"(torch {torch.__version__}); images/s = image pairs scored per second, best repeat")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the start "
          f"(other work on the machine makes the 2-thread figures unreliable)")
    print(f"{'net':<8}{'size':>6}{'thr':>4}{'ours img/s':>12}{'lpips img/s':>13}{'ratio(min)':>12}"
          f"{'ratio(median)':>15}{'max|diff|':>11}")
    for net in args.nets.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            for threads in (int(t) for t in args.threads.split(",")):
                r = measure(net, size, threads, args.batch, args.repeats)
                print(f"{r['net']:<8}{r['size']:>6}{r['threads']:>4}{r['ours_img_s']:>12.1f}"
                      f"{r['theirs_img_s']:>13.1f}{r['ratio_min']:>11.2f}x{r['ratio_median']:>14.2f}x"
                      f"{r['max_abs_diff']:>11.1e}", flush=True)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
