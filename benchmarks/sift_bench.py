"""SIFT benchmark: extraction speed, and vectorised dense-map + compression vs a per-keypoint Python loop."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch

from bench.extractors.sift import SiftExtractor
from bench.images import IMAGE_SUFFIXES, read_image
from bench.plugins import ImageSet
from bench.sift_maps import keypoint_priority, sift_maps
from bench.sift_set import SiftSet

FACES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "faces" / "utkface"


def load_images(n: int, size: int) -> tuple[ImageSet, str]:
    """`n` real UTKFace images at size×size, or random-texture images (with a note) when the folder is absent."""
    files = sorted(p for p in FACES.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[:n] if FACES.is_dir() else []
    if len(files) >= n:
        images = torch.stack([read_image(f, size) for f in files])
        return ImageSet([f.name for f in files], images), f"{n} UTKFace images"
    gen = torch.Generator().manual_seed(0)
    noise = torch.rand(n, 3, size // 8, size // 8, generator=gen)
    images = torch.nn.functional.interpolate(noise, size=(size, size), mode="bicubic", align_corners=False)
    images = images.clamp(0, 1)
    return ImageSet([f"texture{i}" for i in range(n)], images), f"{n} synthetic random-texture images ({FACES} absent)"


def extraction_rate(images: ImageSet) -> float:
    """SIFT extraction throughput in images per second."""
    start = time.perf_counter()
    SiftExtractor().extract(images, progress=False)
    return len(images) / (time.perf_counter() - start)


def loop_maps(sift: SiftSet, indices: list[int], map_size: int, seed: int = 0) -> torch.Tensor:
    """The straightforward way: per keypoint fill a first-wins dense map, then pick one cell per 2×2 block."""
    grid, size = 2 * map_size, sift.image_size
    out = torch.zeros((len(indices), 128, map_size, map_size), dtype=torch.float32)
    for b, idx in enumerate(indices):
        kp, desc = sift.keypoints_of(idx), sift.descriptors_of(idx)
        prio = keypoint_priority(seed, np.full(len(kp), idx), np.arange(len(kp))).tolist()
        dense = np.zeros((128, grid, grid), np.float32)
        owner: dict[tuple[int, int], int] = {}
        for k in range(len(kp)):
            r = min(max(math.ceil(float(kp[k, 1]) * grid / size) - 1, 0), grid - 1)
            c = min(max(math.ceil(float(kp[k, 0]) * grid / size) - 1, 0), grid - 1)
            if (r, c) not in owner:
                owner[(r, c)] = k
                dense[:, r, c] = desc[k].astype(np.float64) / 127.5 - 1.0
        best: dict[tuple[int, int], tuple[int, int, int, int]] = {}
        for (r, c), k in owner.items():
            cand = (prio[k], k, r, c)
            block = (r // 2, c // 2)
            if block not in best or cand < best[block]:
                best[block] = cand
        target = out[b].numpy()
        for (br, bc), (_, _, r, c) in best.items():
            target[:, br, bc] = dense[:, r, c]
    return out


def map_times(sift: SiftSet, map_size: int, batch: int = 25, seed: int = 0) -> dict[str, float]:
    """Milliseconds per image of sift_maps (in batches) and of the loop, after checking they agree."""
    n = len(sift)
    start = time.perf_counter()
    for lo in range(0, n, batch):
        fast = sift_maps(sift, list(range(lo, min(n, lo + batch))), map_size, seed=seed)
    t_fast = time.perf_counter() - start
    start = time.perf_counter()
    for lo in range(0, n, batch):
        slow = loop_maps(sift, list(range(lo, min(n, lo + batch))), map_size, seed=seed)
    t_loop = time.perf_counter() - start
    if not torch.equal(fast, slow):
        raise AssertionError("sift_maps and the loop disagree on the last batch")
    start = time.perf_counter()
    for lo in range(0, n, batch):
        torch.zeros((min(n, lo + batch) - lo, 128, map_size, map_size))
    t_zeros = time.perf_counter() - start
    return {
        "maps_ms_per_image": 1e3 * t_fast / n,
        "loop_ms_per_image": 1e3 * t_loop / n,
        "zeros_ms_per_image": 1e3 * t_zeros / n,
        "speedup": t_loop / t_fast,
    }


def measure(n_images: int = 200) -> dict[str, float]:
    """All figures: extraction images/s at 128 and 256, and map building per image at extraction 256, map 128."""
    results: dict[str, float] = {}
    imgs128, _ = load_images(n_images, 128)
    results["extract_per_s_128"] = extraction_rate(imgs128)
    imgs256, _ = load_images(n_images, 256)
    feats = SiftExtractor().extract(imgs256, progress=False)
    results["extract_per_s_256"] = extraction_rate(imgs256)
    results["keypoints_per_image_256"] = float(feats.counts().mean())
    results.update(map_times(feats, 128))
    return results


def main() -> None:
    """Print the SIFT figures."""
    torch.set_num_threads(max(1, torch.get_num_threads()))
    n = 200
    _, source = load_images(1, 128)
    print(f"images: {source.replace('1 ', f'{n} ', 1)}")
    r = measure(n)
    print(f"SIFT extraction 128x128: {r['extract_per_s_128']:.1f} images/s")
    print(f"SIFT extraction 256x256: {r['extract_per_s_256']:.1f} images/s "
          f"({r['keypoints_per_image_256']:.0f} keypoints/image)")
    print(f"dense map + compression (256 -> 128x128x128): sift_maps {r['maps_ms_per_image']:.2f} ms/image, "
          f"python loop {r['loop_ms_per_image']:.2f} ms/image, speed-up {r['speedup']:.1f}x")
    print(f"  (of which allocating the zero 128x128x128 output alone: {r['zeros_ms_per_image']:.2f} ms/image)")


if __name__ == "__main__":
    main()
