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
from bench.attacks.sift_inversion.maps import keypoint_priority, select_keypoints, sift_maps
from bench.features.sift import SiftSet

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


def extraction_rate(images: ImageSet) -> tuple[float, SiftSet]:
    """SIFT extraction throughput in images per second, and the features."""
    start = time.perf_counter()
    feats = SiftExtractor().extract(images, progress=False)
    return len(images) / (time.perf_counter() - start), feats


def loop_maps(sift: SiftSet, indices: list[int], map_size: int, seed: int = 0) -> torch.Tensor:
    """The straightforward way: per keypoint fill a first-wins dense map, then pick one cell per 2×2 block."""
    grid, size = 2 * map_size, sift.image_size
    out = torch.from_numpy(np.zeros((len(indices), 128, map_size, map_size), np.float32))
    for b, idx in enumerate(indices):
        kp, desc = sift.keypoints_of(idx), sift.descriptors_of(idx)
        prio = keypoint_priority(seed, kp[:, :2], np.arange(len(kp))).tolist()
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


def _timed(fn, n_images: int, batch: int) -> tuple[float, torch.Tensor]:
    """Seconds that `fn(batch_indices)` takes over all batches, and its last result."""
    start = time.perf_counter()
    result = torch.empty(0)
    for lo in range(0, n_images, batch):
        result = fn(list(range(lo, min(n_images, lo + batch))))
    return time.perf_counter() - start, result


def map_times(sift: SiftSet, map_size: int, batch: int = 25, seed: int = 0) -> dict[str, float]:
    """Milliseconds per image of sift_maps (fresh output, reused output buffer) and of the loop; checks agreement."""
    n = len(sift)
    t_fast, fast = _timed(lambda ix: sift_maps(sift, ix, map_size, seed=seed), n, batch)
    buf = torch.empty((batch, 128, map_size, map_size))
    t_reuse, reused = _timed(lambda ix: sift_maps(sift, ix, map_size, seed=seed, out=buf[: len(ix)]), n, batch)
    t_cl, cl = _timed(lambda ix: sift_maps(sift, ix, map_size, seed=seed, channels_last=True), n, batch)
    t_loop, slow = _timed(lambda ix: loop_maps(sift, ix, map_size, seed=seed), n, batch)
    if not (torch.equal(fast, slow) and torch.equal(reused, slow) and torch.equal(cl, slow)):
        raise AssertionError("sift_maps and the loop disagree on the last batch")
    t_select, _ = _timed(lambda ix: select_keypoints(sift, ix, map_size, seed=seed), n, batch)
    t_zero, _ = _timed(lambda ix: buf[: len(ix)].zero_(), n, batch)
    return {
        "maps_ms_per_image": 1e3 * t_fast / n,
        "maps_reuse_ms_per_image": 1e3 * t_reuse / n,
        "maps_cl_ms_per_image": 1e3 * t_cl / n,
        "speedup_cl": t_loop / t_cl,
        "loop_ms_per_image": 1e3 * t_loop / n,
        "select_ms_per_image": 1e3 * t_select / n,
        "zero_ms_per_image": 1e3 * t_zero / n,
        "speedup": t_loop / t_fast,
        "speedup_reuse": t_loop / t_reuse,
    }


def measure(n_images: int = 200) -> dict[str, float]:
    """All figures: extraction images/s at 128 and 256, and map building per image at extraction 256, map 128."""
    results: dict[str, float] = {}
    imgs128, _ = load_images(n_images, 128)
    results["extract_per_s_128"], _ = extraction_rate(imgs128)
    imgs256, _ = load_images(n_images, 256)
    results["extract_per_s_256"], feats = extraction_rate(imgs256)
    results["keypoints_per_image_256"] = float(feats.counts().mean())
    results.update(map_times(feats, 128))
    return results


def main() -> None:
    """Print the SIFT figures."""
    n = 200
    _, source = load_images(1, 128)
    print(f"images: {source.replace('1 ', f'{n} ', 1)}")
    r = measure(n)
    print(f"SIFT extraction 128x128: {r['extract_per_s_128']:.1f} images/s")
    print(f"SIFT extraction 256x256: {r['extract_per_s_256']:.1f} images/s "
          f"({r['keypoints_per_image_256']:.0f} keypoints/image)")
    print(f"dense map + compression (256 -> 128x128x128), {n} images in batches of 25:")
    print(f"  sift_maps, new output per call : {r['maps_ms_per_image']:.3f} ms/image")
    print(f"  sift_maps, reused out= buffer  : {r['maps_reuse_ms_per_image']:.3f} ms/image")
    print(f"  sift_maps, channels-last output: {r['maps_cl_ms_per_image']:.3f} ms/image (the layout CFGAN uses)")
    print(f"  per-keypoint python loop       : {r['loop_ms_per_image']:.3f} ms/image")
    print(f"  of which: choosing the kept keypoints {r['select_ms_per_image']:.3f} ms/image, "
          f"zeroing the 8 MB output {r['zero_ms_per_image']:.3f} ms/image")
    print(f"  speed-up: {r['speedup']:.1f}x (new output), {r['speedup_reuse']:.1f}x (reused buffer), "
          f"{r['speedup_cl']:.1f}x (channels-last); target >= 50x")

if __name__ == "__main__":
    main()
