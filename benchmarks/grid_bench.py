"""Wall time of one grid with the local executor against Dask with two one-thread workers.

    python benchmarks/grid_bench.py                       # mean-image + cfgan × none × 2 seeds, cpu profile,
                                                          # --n-train 300 --n-test 50 on synthetic-faces (minutes)
    python benchmarks/grid_bench.py --n-train 64 --n-test 16 --profile smoke   # a quick look

Each configuration starts from an empty results folder (no shared stage cache), so both compute everything. The
local executor runs one run after another with the thread policy's default (the cores of this process) unless
--local-threads is given; Dask runs them on a LocalCluster of --workers processes with one thread each. Prints
figures only.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.run.grid import run_grid
from bench.run.grid_spec import GridSpec
from bench.threads import available_cores, thread_record


def one(grid: GridSpec, executor: str, workers: int | None) -> float:
    start = time.perf_counter()
    report = run_grid(grid, executor=executor, workers=workers, progress=False)
    wall = time.perf_counter() - start
    per_run = ", ".join(f"{r.attack}/{r.seed} {r.seconds:.1f}s" for r in report.runs if r.seconds is not None)
    print(f"{executor:>5}: {wall:7.1f} s wall  ({report.summary()}; per run: {per_run})")
    if report.failed:
        for r in report.runs:
            if r.error:
                print(f"       {r.run_id} failed: {r.error}")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--attacks", default="mean-image,cfgan")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--n-train", type=int, default=300)
    ap.add_argument("--n-test", type=int, default=50)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--local-threads", type=int, default=None,
                    help="threads of the local executor's runs [the cores of this process]")
    args = ap.parse_args()

    fields = {"attacks": args.attacks.split(","), "defenses": ["none"],
              "seeds": [int(s) for s in args.seeds.split(",")], "profile": args.profile,
              "n_train": args.n_train, "n_test": args.n_test}
    print(f"grid: {args.attacks} × none × seeds {args.seeds} on synthetic-faces, profile {args.profile}, "
          f"--n-train {args.n_train} --n-test {args.n_test}; cores available: {available_cores()}")
    print(f"local executor threads per run: {args.local_threads or f'{available_cores()} (all cores)'}; "
          f"dask: {args.workers} worker processes × 1 thread")
    with tempfile.TemporaryDirectory(prefix="grid-bench-") as tmp:
        local = one(GridSpec(results=Path(tmp) / "local", threads=args.local_threads, **fields), "local", None)
        print(f"       thread settings after the local grid: {thread_record()}")
        dask = one(GridSpec(results=Path(tmp) / "dask", **fields), "dask", args.workers)
    print(f"local / dask wall-time ratio: {local / dask:.2f}x")


if __name__ == "__main__":
    main()
