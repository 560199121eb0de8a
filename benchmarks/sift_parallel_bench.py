"""Parallel SIFT extraction: one worker against two on the same images, interleaved, with min and median speed-up.

    python benchmarks/sift_parallel_bench.py [--n 400] [--size 128] [--repeats 5]

Uses 400 UTKFace images from ../shared/data/faces/utkface; when that folder is absent it says so and uses the
embedded synthetic-faces set instead. The target is >= 1.8x with two workers on two free cores. Prints figures
only; nothing here is a timed unit test.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from bench import registry
from bench.extractors.sift import SiftExtractor
from bench.plugins import ImageSet
from bench.threads import apply_threads, available_cores, thread_record

FACES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "faces" / "utkface"


def load_images(n: int, size: int) -> tuple[ImageSet, str]:
    """`n` UTKFace images at size×size, or synthetic faces (with a message) when the folder is absent."""
    if FACES.is_dir():
        ds = registry.datasets.get("utkface").obj(root=FACES)
        what = f"{n} UTKFace images"
    else:
        print(f"UTKFace not found at {FACES}; using the embedded synthetic-faces set instead")
        ds = registry.datasets.get("synthetic-faces").obj()
        what = f"{n} synthetic faces"
    images = ds.load(ds.item_ids()[:n], size)
    return images, f"{len(images)} of {what} at {size}px"


CPU_USE: dict[int, list[float]] = {}


def timed(extractor: SiftExtractor, images: ImageSet, workers: int) -> tuple[float, object]:
    """Seconds for one extraction with `workers` threads (the thread policy set to match); the process's CPU
    seconds per wall second go to CPU_USE (about `workers` when the cores were free for us)."""
    apply_threads(workers)
    start, cpu = time.perf_counter(), time.process_time()
    feats = extractor.extract(images, progress=False)
    wall = time.perf_counter() - start
    CPU_USE.setdefault(workers, []).append((time.process_time() - cpu) / wall)
    return wall, feats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    images, what = load_images(args.n, args.size)
    extractor = SiftExtractor()
    print(f"{what}; cores available: {available_cores()}")
    timed(extractor, images, 1)  # warm-up (OpenCV initialisation, page cache)
    one, many, speedups = [], [], []
    reference = None
    for r in range(args.repeats):
        order = (1, args.workers) if r % 2 == 0 else (args.workers, 1)  # interleaved, alternating first
        times = {}
        for w in order:
            times[w], feats = timed(extractor, images, w)
            if reference is None:
                reference = feats
            elif not (np.array_equal(reference.keypoints, feats.keypoints)
                      and np.array_equal(reference.descriptors, feats.descriptors)
                      and np.array_equal(reference.offsets, feats.offsets)):
                raise SystemExit(f"features differ with {w} worker(s): parallel extraction is not exact")
        one.append(times[1])
        many.append(times[args.workers])
        speedups.append(times[1] / times[args.workers])
        print(f"repeat {r + 1}: 1 worker {times[1]:.3f} s, {args.workers} workers {times[args.workers]:.3f} s, "
              f"speed-up {speedups[-1]:.2f}x")
    apply_threads(args.workers)
    print(f"thread settings with {args.workers} workers: {thread_record()}")
    print(f"1 worker: median {statistics.median(one):.3f} s ({len(images) / statistics.median(one):.0f} img/s); "
          f"{args.workers} workers: median {statistics.median(many):.3f} s "
          f"({len(images) / statistics.median(many):.0f} img/s)")
    print(f"CPU seconds per wall second (median): 1 worker {statistics.median(CPU_USE[1]):.2f}, "
          f"{args.workers} workers {statistics.median(CPU_USE[args.workers]):.2f} (below {args.workers} means "
          "other processes held the cores)")
    print(f"speed-up with {args.workers} workers: min {min(speedups):.2f}x, median {statistics.median(speedups):.2f}x "
          f"(target >= 1.8x on 2 free cores); features identical: yes")


if __name__ == "__main__":
    main()
