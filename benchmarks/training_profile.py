"""Where a learned attack's training step goes, by operator: torch.profiler's self CPU time of a few steady-state
steps of each stage (the cpu profile's fit of benchmarks/training_throughput.py), as shares of the step.

    python benchmarks/training_profile.py [--attack cfgan] [--threads 1] [--warmup 3] [--steps 3] [--n-train 16]
                                          [--top 18] [--plain]

The first `--warmup` steps of each stage run unprofiled; each of the next `--steps` runs under its own
`torch.profiler.profile()`. The profiler's overhead (and a loaded machine) inflate the absolute times, so the
shares are what to read. `--plain` profiles the trainer without its speed-ups (BENCH_TRAINING_SPEEDUPS=0).
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch

import bench.training as training
from bench.threads import apply_threads


def _throughput_module() -> Any:
    spec = importlib.util.spec_from_file_location("training_throughput", Path(__file__).with_name(
        "training_throughput.py"))
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def profile_fit(attack: str, n_train: int, warmup: int, steps: int, speedups: bool = True
                ) -> dict[str, dict[str, float]]:
    """{stage: {operator: self CPU ms summed over the profiled steps}} of one cpu-profile fit."""
    tp = _throughput_module()
    acc: dict[str, dict[str, float]] = collections.defaultdict(lambda: collections.defaultdict(float))
    orig = training.run_steps

    def run_steps(who: str, n: int, batches: Any, step: Any, **kw: Any) -> None:
        stage, count = kw.get("stage") or "train", [0]

        def profiled(idx: np.ndarray) -> float:
            count[0] += 1
            if count[0] <= warmup:
                return step(idx)
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                value = step(idx)
            for ev in prof.key_averages():
                acc[stage][ev.key] += ev.self_cpu_time_total / 1e3
            return value

        orig(who, n, batches, profiled, **kw)

    training.run_steps = run_steps  # type: ignore[assignment]
    try:
        data = tp.vector_data(n_train, tp.sift_data(n_train)["images"], 0) if attack in tp.VECTOR \
            else tp.sift_data(n_train)
        tp.one_fit(attack, data, steps, warmup, 0, speedups)
    finally:
        training.run_steps = orig  # type: ignore[assignment]
    return {k: dict(v) for k, v in acc.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--attack", default="cfgan")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--n-train", type=int, default=16)
    ap.add_argument("--top", type=int, default=18, help="operators listed per stage [18]")
    ap.add_argument("--plain", action="store_true", help="the trainer without its speed-ups")
    args = ap.parse_args(argv)
    apply_threads(args.threads)
    res = profile_fit(args.attack, args.n_train, args.warmup, args.steps, not args.plain)
    for stage, ops in res.items():
        total = sum(ops.values())
        print(f"## {args.attack} {stage}: {total / args.steps:.0f} ms self CPU per profiled step "
              f"({args.steps} steps, {args.threads} thread(s))")
        for key, ms in sorted(ops.items(), key=lambda kv: -kv[1])[:args.top]:
            print(f"  {key:45s} {ms / args.steps:9.1f} ms {100 * ms / total:6.1f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
