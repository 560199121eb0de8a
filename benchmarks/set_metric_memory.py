"""Peak memory of scoring a streaming set metric on a large private split (1,000 vs 10,000 images).

The runner holds one evaluation batch of images at a time and a set metric keeps only its per-batch embeddings,
so scoring 10,000 images must not need 10× the memory of 1,000. Each measurement is a fresh process (peak RSS
from getrusage) that adds a set metric to a finished run: features and reconstructions come from the run
folder, so the figure is the evaluation's own footprint. Extraction's footprint is printed too (first pass).

    python benchmarks/set_metric_memory.py [--sizes 1000,10000] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHILD = r'''
import json, resource, sys, time
import numpy as np
from pathlib import Path
from bench.plugins import EvalBatch, Metric, register_metric
from bench.run.plan import RunRequest
from bench.run.runner import execute


class ColourFrechet(Metric):
    """Benchmark set metric: Frechet distance between 48-bin colour histograms of the two sets (streams)."""

    name = "bench-colour-frechet"
    higher_is_better = False
    level = "set"
    value_range = (0.0, float("inf"))
    convention = "Frechet distance of 48-bin RGB histograms (benchmark only)"

    def embed(self, recon, ref, batch: EvalBatch):
        def hist(x):
            q = (x.clamp(0, 1) * 15.999).long()
            return np.stack([np.concatenate([np.bincount(q[i, c].flatten().numpy(), minlength=16)
                                             for c in range(3)]) for i in range(len(x))]).astype(np.float64)
        return {"recon": hist(recon), "ref": hist(ref)}

    def aggregate(self, parts):
        from scipy import linalg
        a, b = parts["recon"], parts["ref"]
        mu, nu = a.mean(0), b.mean(0)
        s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
        covmean = linalg.sqrtm(s1 @ s2).real
        return float(((mu - nu) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


register_metric(ColourFrechet)
root, results, n, metrics, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4].split(","), int(sys.argv[5])
t0 = time.perf_counter()
res = execute(RunRequest(attack="mean-image", dataset="folder", data_root=Path(root), profile="smoke",
                         n_train=200, n_test=n, results=Path(results), metrics=tuple(metrics), progress=False,
                         threads=threads))
print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "wall_s": time.perf_counter() - t0,
                  "value": res.set_metrics[metrics[-1]]["value"]}))
'''


def make_folder(root: Path, n: int, size: int = 64) -> None:
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        path = root / f"{i:05d}.png"
        if not path.exists():
            base = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(base).resize((size, size), Image.BILINEAR).save(path)


def child(root: Path, results: Path, n: int, metrics: str, threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(root), str(results), str(n), metrics, str(threads)],
                          capture_output=True, text=True, env=env, timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "images"
        t0 = time.perf_counter()
        make_folder(root, max(sizes) + 200)
        print(f"made {max(sizes) + 200} 64x64 PNGs in {time.perf_counter() - t0:.1f} s; threads={args.threads} "
              f"(torch and OpenCV through --threads, OMP_NUM_THREADS={args.threads})")
        for n in sizes:
            results = Path(tmp) / f"results-{n}"
            first = child(root, results, n, "mse", args.threads)
            second = child(root, results, n, "mse,bench-colour-frechet", args.threads)
            print(f"n_test={n:>6}: first pass (extract + train + reconstruct + mse) peak RSS "
                  f"{first['peak_rss_mb']:.0f} MB in {first['wall_s']:.1f} s; adding the streaming set metric: "
                  f"peak RSS {second['peak_rss_mb']:.0f} MB in {second['wall_s']:.1f} s "
                  f"(value {second['value']:.4g})")


if __name__ == "__main__":
    main()
