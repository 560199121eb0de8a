"""Speed and agreement of the batched torch `ssim` metric (float32 path) against scikit-image's per-image loop.

Run: python benchmarks/ssim_bench.py [N] [SIZE] [--threads 1,2] [--repeats 5] [--synthetic] [--cpu-time]
                                    [--kernel auto|torch|numba]

Default: 1,000 pairs of 64×64 RGB images, real faces from ../shared/data/faces/utkface when present (each face
against a blurred and noised copy of itself), else smooth synthetic images. For every torch thread count asked
for, the torch metric and the skimage loop run interleaved (torch, skimage, torch, skimage, ...) `repeats` times;
the figures are the min and median of the per-round speed-ups, so that load from other processes hits both
sides alike. scikit-image (scipy.ndimage) is single-threaded whatever the torch setting. With --cpu-time both
sides are timed by this process's CPU time instead of the wall clock (on a machine other jobs load, wall time counts
the time the scheduler kept the process waiting; with 1 torch thread the two clocks agree on a quiet machine).
--kernel picks the float32 implementation (bench.metrics.ssim.ssim_kernel): auto (what the metric uses here: the
numba kernel when the `fast` extra is installed, else torch), torch, or numba (an error when numba is missing).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from skimage.metrics import structural_similarity

from bench.metrics.ssim import SSIM, ssim_kernel

REPO = Path(__file__).resolve().parents[1]
FACES = Path(os.environ.get("BENCH_SHARED_DATA", REPO.parent / "shared" / "data")) / "faces" / "utkface"


def _synthetic(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Deterministic smooth random images N×H×W×3 in [0, 1]."""
    rng = np.random.default_rng(seed)
    a = gaussian_filter(rng.random((n, size, size, 3)), sigma=(0, 2, 2, 0))
    return (a - a.min()) / (a.max() - a.min())


def _faces(n: int, size: int) -> np.ndarray | None:
    """The first n UTKFace crops resized to size×size (bilinear), N×H×W×3 in [0, 1]; None when absent."""
    files = sorted(FACES.glob("*.jpg")) if FACES.is_dir() else []
    if len(files) < n:
        return None
    from PIL import Image

    out = np.empty((n, size, size, 3), dtype=np.float64)
    for i, f in enumerate(files[:n]):
        with Image.open(f) as im:
            out[i] = np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR), dtype=np.float64) / 255.0
    return out


def _pairs(n: int, size: int, synthetic: bool = False, seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """(originals, degraded copies, source name): degraded = blurred (sigma 1) plus Gaussian noise 0.05, clipped."""
    a = None if synthetic else _faces(n, size)
    source = f"UTKFace ({FACES})" if a is not None else "synthetic smooth images"
    if a is None:
        a = _synthetic(n, size, seed)
    rng = np.random.default_rng(seed + 1)
    b = np.clip(gaussian_filter(a, sigma=(0, 1, 1, 0)) + 0.05 * rng.standard_normal(a.shape), 0.0, 1.0)
    return a, b, source


def _skimage_loop(a64: np.ndarray, b64: np.ndarray) -> np.ndarray:
    return np.array(
        [
            structural_similarity(
                a64[i], b64[i], gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                data_range=1.0, channel_axis=-1,
            )
            for i in range(len(a64))
        ]
    )


def measure(n: int = 1000, size: int = 64, repeats: int = 5, threads: int | None = None,
            synthetic: bool = False, cpu_time: bool = False, kernel: str = "auto") -> dict:
    """Interleaved timing of torch `ssim` and the skimage loop on n size×size pairs; their values compared."""
    saved = torch.get_num_threads()
    saved_env = os.environ.get("BENCH_SSIM_KERNEL")
    try:
        if kernel != "auto":
            os.environ["BENCH_SSIM_KERNEL"] = kernel
        if kernel not in ("auto", ssim_kernel()):
            raise SystemExit(f"kernel {kernel!r} asked for, but the metric uses {ssim_kernel()!r} (numba missing?)")
        if threads is not None:
            torch.set_num_threads(threads)
        a, b, source = _pairs(n, size, synthetic)
        ta = torch.from_numpy(a).permute(0, 3, 1, 2).float().contiguous()
        tb = torch.from_numpy(b).permute(0, 3, 1, 2).float().contiguous()
        # skimage gets exactly the float32 values torch sees, in float64 (its reference precision).
        a64 = ta.permute(0, 2, 3, 1).double().numpy()
        b64 = tb.permute(0, 2, 3, 1).double().numpy()
        metric = SSIM()
        metric.per_sample(tb[:2], ta[:2])  # warm-up (thread pool, band matrices)
        clock = time.process_time if cpu_time else time.perf_counter
        torch_times, sk_times = [], []
        ours = ref = None
        for _ in range(max(1, repeats)):
            t0 = clock()
            ours = metric.per_sample(tb, ta).numpy()
            torch_times.append(clock() - t0)
            t0 = clock()
            ref = _skimage_loop(b64, a64)
            sk_times.append(clock() - t0)
        speedups = [s / t for s, t in zip(sk_times, torch_times)]
        return {
            "n": n,
            "size": size,
            "source": source,
            "repeats": len(torch_times),
            "clock": "process CPU time" if cpu_time else "wall",
            "kernel": ssim_kernel(),
            "torch_threads": torch.get_num_threads(),
            "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS", "(unset)"),
            "torch_s": min(torch_times),
            "torch_median_s": statistics.median(torch_times),
            "skimage_s": min(sk_times),
            "skimage_median_s": statistics.median(sk_times),
            "speedup": statistics.median(speedups),
            "speedup_min": min(speedups),
            "speedup_median": statistics.median(speedups),
            "max_abs_diff": float(np.abs(ours - ref).max()),
            "mean_ssim": float(ref.mean()),
        }
    finally:
        torch.set_num_threads(saved)
        if saved_env is None:
            os.environ.pop("BENCH_SSIM_KERNEL", None)
        else:
            os.environ["BENCH_SSIM_KERNEL"] = saved_env


def main() -> None:
    """Print the figures of `measure` for each thread count given."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("n", nargs="?", type=int, default=1000)
    p.add_argument("size", nargs="?", type=int, default=64)
    p.add_argument("--threads", default="1,2", help="comma-separated torch thread counts (default 1,2)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--synthetic", action="store_true", help="synthetic images even when faces are present")
    p.add_argument("--cpu-time", action="store_true", help="time by this process's CPU time, not the wall clock")
    p.add_argument("--kernel", choices=("auto", "torch", "numba"), default="auto",
                   help="float32 implementation: auto (what the metric uses here), torch or numba")
    args = p.parse_args()
    print(f"torch {torch.__version__}, cores visible: {os.cpu_count()}, OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', '(unset)')}; scikit-image loop is single-threaded")
    for t in [int(v) for v in args.threads.split(",") if v.strip()]:
        r = measure(args.n, args.size, args.repeats, t, args.synthetic, args.cpu_time, args.kernel)
        print(f"SSIM on {r['n']} pairs of {r['size']}x{r['size']} RGB images, {r['source']}; "
              f"torch threads {r['torch_threads']}; {r['repeats']} interleaved rounds; clock: {r['clock']}; "
              f"float32 kernel: {r['kernel']}")
        print(f"  ours float32  : min {r['torch_s'] * 1e3:8.1f} ms   median {r['torch_median_s'] * 1e3:8.1f} ms")
        print(f"  skimage loop  : min {r['skimage_s'] * 1e3:8.1f} ms   median {r['skimage_median_s'] * 1e3:8.1f} ms")
        print(f"  speed-up      : min {r['speedup_min']:8.1f}x    median {r['speedup_median']:8.1f}x  (target >= 10x)")
        print(f"  max |diff|    : {r['max_abs_diff']:9.2e}  (must be <= 1e-4; mean SSIM {r['mean_ssim']:.4f})")


if __name__ == "__main__":
    main()
