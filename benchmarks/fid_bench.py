"""Throughput of the distribution metrics' feature passes on the CPU: Inception (FID/KID) and dlib face descriptors.

    python benchmarks/fid_bench.py                  # 16 images of 64×64, 3 repeats, 1 and 2 threads
    python benchmarks/fid_bench.py --n 32 --repeats 5 --threads 1,2 --compare-torch-fidelity

Inception: the embedder's full pass (uint8 quantisation, torch-fidelity's resize 64 -> 299, pool3 features). When
the real pt-inception weights are not in the cache, a random-weight network of the same architecture runs instead
(the output says so): the speed is the same, the features are meaningless. dlib: detection on the image resized to
256 px, 5-point alignment, 150-px chip, ResNet descriptor; dlib's own code is single-threaded whatever torch's
thread count is (the figures at 2 threads show that). Also times FID's aggregation at 2048-d (the exact
nuclear-norm form used here; `--compare-torch-fidelity` adds torch-fidelity's eigenvalue form, tens of seconds).
Images/s are n / seconds of one pass; min and median over the repeats, after one warm-up pass.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from bench.plugins import MetricUnavailable
from bench.threads import apply_threads

SHARED_LFW = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces" / "lfw_pairs"


def _timings(fn: Callable[[], Any], repeats: int) -> list[float]:
    fn()  # warm-up: thread pools, first-call allocations
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _rates(n: int, secs: list[float]) -> dict[str, float]:
    """Images/s from the fastest pass and from the median pass."""
    return {"best_img_s": n / min(secs), "median_img_s": n / statistics.median(secs), "min_s": min(secs),
            "median_s": statistics.median(secs)}


def face_images(n: int, size: int) -> tuple[torch.Tensor, str]:
    """n face images at size×size: LFW photos when ../shared/data is present, else the synthetic demo faces."""
    from bench.images import read_image, resize

    if SHARED_LFW.is_dir():
        files = sorted(SHARED_LFW.glob("*/*.jpg"))[:n]
        if len(files) == n:
            return resize(torch.stack([read_image(f) for f in files]), size), "LFW photos"
    from bench import registry

    ds = registry.datasets.get("synthetic-faces").obj()
    return ds.load(ds.item_ids()[:n], size).images, "synthetic demo faces"


def inception_embedder() -> tuple[Any, str]:
    """The real embedder when its weights are cached, else the same architecture with random weights."""
    from bench.embedders import inception

    try:
        return inception.load("cpu"), "real pt-inception weights"
    except MetricUnavailable:
        net = inception.build_network(inception.random_state_dict(seed=0))
        return inception.InceptionEmbedder(net, "random"), "RANDOM weights (pt-inception not in the cache; same " \
                                                            "architecture and cost, meaningless features)"


def measure(n: int, size: int, repeats: int, threads: list[int], compare: bool) -> dict[str, Any]:
    images, source = face_images(n, size)
    out: dict[str, Any] = {"n": n, "size": size, "repeats": repeats, "images": source, "inception": {}, "dlib": {}}
    emb, weights_note = inception_embedder()
    out["inception_weights"] = weights_note
    try:
        from bench.embedders import dlib_face

        face = dlib_face.load()
    except MetricUnavailable as exc:
        face, out["dlib_unavailable"] = None, exc.fix
    for t in threads:
        apply_threads(t)
        with torch.no_grad():
            out["inception"][t] = _rates(n, _timings(lambda: emb.embed(images), repeats))
        if face is not None:
            out["dlib"][t] = _rates(n, _timings(lambda: face.embed(images), repeats))
    if face is not None:
        chips, misses = face.chips(images)
        out["dlib_misses"] = int(misses.sum())
        out["dlib_descriptor_only"] = _rates(
            n, _timings(lambda: face.recognition.compute_face_descriptor(chips), repeats))
    out["aggregate"] = aggregate_times(compare)
    return out


def aggregate_times(compare: bool) -> dict[str, float]:
    """Seconds of FID's aggregation at 2048-d for 200 and 3000 images (and torch-fidelity's form for 200)."""
    from bench.metrics.distribution import frechet_distance, frechet_from_statistics, gaussian_statistics

    rng = np.random.default_rng(0)
    res = {}
    for n in (200, 3000):
        a = rng.standard_normal((n, 2048)).astype(np.float32)
        b = (a + 0.5 * rng.standard_normal((n, 2048))).astype(np.float32)
        t0 = time.perf_counter()
        ours = frechet_distance(a, b)
        res[f"ours_n{n}_s"] = time.perf_counter() - t0
        if compare and n == 200:
            t0 = time.perf_counter()
            theirs = frechet_from_statistics(*gaussian_statistics(a), *gaussian_statistics(b))
            res[f"eigvals_n{n}_s"] = time.perf_counter() - t0
            res[f"rel_diff_n{n}"] = abs(ours - theirs) / abs(theirs)
    return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16, help="images per pass")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", default="1,2", help="torch thread counts to time, comma-separated")
    parser.add_argument("--compare-torch-fidelity", action="store_true",
                        help="also time torch-fidelity's eigenvalue form of FID's aggregation (slow)")
    args = parser.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    r = measure(args.n, args.size, args.repeats, threads, args.compare_torch_fidelity)
    print(f"{r['n']} {r['images']} at {r['size']}x{r['size']}, {r['repeats']} timed passes after a warm-up "
          f"(images/s: best / median)")
    print(f"Inception pool3 pass ({r['inception_weights']}), resized to 299 inside:")
    for t, v in r["inception"].items():
        print(f"  {t} thread(s): {v['best_img_s']:7.1f} / {v['median_img_s']:7.1f} img/s   "
              f"({v['min_s']:.2f} / {v['median_s']:.2f} s per pass)")
    if "dlib_unavailable" in r:
        print(f"dlib face descriptors: unavailable ({r['dlib_unavailable']})")
    else:
        print(f"dlib face descriptors (detect at 256 px, align, 150-px chip, ResNet; dlib is single-threaded; "
              f"detector missed {r['dlib_misses']}/{r['n']}):")
        for t, v in r["dlib"].items():
            print(f"  {t} torch thread(s): {v['best_img_s']:7.1f} / {v['median_img_s']:7.1f} img/s")
        v = r["dlib_descriptor_only"]
        print(f"  descriptor only : {v['best_img_s']:7.1f} / {v['median_img_s']:7.1f} img/s")
    a = r["aggregate"]
    print(f"FID aggregation at 2048-d (BLAS threads from the environment): n=200 {a['ours_n200_s']:.2f} s, "
          f"n=3000 {a['ours_n3000_s']:.2f} s")
    if "eigvals_n200_s" in a:
        print(f"  torch-fidelity's eigenvalue form, n=200: {a['eigvals_n200_s']:.1f} s "
              f"(relative difference {a['rel_diff_n200']:.1e})")


if __name__ == "__main__":
    main()
