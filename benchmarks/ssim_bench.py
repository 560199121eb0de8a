"""Speed and agreement of the batched torch `ssim` metric against scikit-image's per-image loop.

Run: python benchmarks/ssim_bench.py [N] [SIZE]   (default 1,000 pairs of 64×64 RGB images)
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from skimage.metrics import structural_similarity

from bench.metrics.ssim import SSIM


def _pairs(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic image-like pairs N×H×W×3 in [0, 1]: smooth random images and noisy blurred copies."""
    rng = np.random.default_rng(seed)
    a = gaussian_filter(rng.random((n, size, size, 3)), sigma=(0, 2, 2, 0))
    a = (a - a.min()) / (a.max() - a.min())
    b = np.clip(gaussian_filter(a, sigma=(0, 1, 1, 0)) + 0.05 * rng.standard_normal(a.shape), 0.0, 1.0)
    return a, b


def _best_of(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def measure(n: int = 1000, size: int = 64) -> dict:
    """Time torch `ssim` (best of 3) and the skimage loop (once) on n size×size pairs; compare their values."""
    a, b = _pairs(n, size)
    ta = torch.from_numpy(a).permute(0, 3, 1, 2).float().contiguous()
    tb = torch.from_numpy(b).permute(0, 3, 1, 2).float().contiguous()
    metric = SSIM()
    metric.per_sample(ta[:2], tb[:2])  # warm-up (thread pool, band matrices)
    ours = metric.per_sample(ta, tb).numpy()
    torch_s = _best_of(lambda: metric.per_sample(ta, tb), 3)
    # skimage gets exactly the float32 values torch saw, in float64 (its reference precision).
    a64 = ta.permute(0, 2, 3, 1).double().numpy()
    b64 = tb.permute(0, 2, 3, 1).double().numpy()
    t0 = time.perf_counter()
    ref = np.array(
        [
            structural_similarity(
                a64[i], b64[i], gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                data_range=1.0, channel_axis=-1,
            )
            for i in range(n)
        ]
    )
    skimage_s = time.perf_counter() - t0
    return {
        "n": n,
        "size": size,
        "torch_threads": torch.get_num_threads(),
        "torch_s": torch_s,
        "skimage_s": skimage_s,
        "speedup": skimage_s / torch_s,
        "max_abs_diff": float(np.abs(ours - ref).max()),
        "mean_ssim": float(ref.mean()),
    }


def main() -> None:
    """Print the figures of `measure` for the sizes given on the command line."""
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    size = int(sys.argv[2]) if len(sys.argv) > 2 else 64
    r = measure(n, size)
    print(f"SSIM on {r['n']} pairs of {r['size']}x{r['size']} RGB images (torch threads: {r['torch_threads']})")
    print(f"  torch batched : {r['torch_s'] * 1e3:9.1f} ms  (best of 3)")
    print(f"  skimage loop  : {r['skimage_s'] * 1e3:9.1f} ms")
    print(f"  speed-up      : {r['speedup']:9.1f}x  (target >= 10x)")
    print(f"  max |diff|    : {r['max_abs_diff']:9.2e}  (must be <= 1e-4; mean SSIM {r['mean_ssim']:.4f})")


if __name__ == "__main__":
    main()
