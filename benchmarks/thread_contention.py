"""Thread policy under load: default vs 1 thread vs all cores, with 0, 1 and 3 other CPU-bound processes.

    python benchmarks/thread_contention.py [--loads 0,1,3] [--settings default,1,all] [--repeats 5] [--steps 3]
                                           [--stages train,eval] [--json FILE]

For every load the script starts that many busy processes of its own (each spins on one core; they are killed
before the next load), then, for every thread setting, a fresh worker process (so that OMP_WAIT_POLICY, read when
torch loads OpenMP, takes effect) measures two stages `repeats` times after one warm-up and reports the median:

- train: seconds per step of CFGAN's coarse stage, cpu profile (64×64, batch 8), `steps` steps per repeat, on
  random SIFT keypoints and smooth random images (the speed of a step does not depend on the data);
- eval: milliseconds for the `ssim` metric on 50 pairs of 64×64 images.

Settings: `default` is what `bench run` does without --threads (importing bench sets OMP_WAIT_POLICY=PASSIVE, then
`apply_threads(None)`: available cores minus the cores other processes keep busy); `1` and `all` set that many
threads with the OpenMP wait policy left as torch's own (what runs did before this policy); `all-passive` is all
cores with OMP_WAIT_POLICY=PASSIVE (to tell the two parts of the default apart). The table shows each median and
default / min(1 thread, all cores) for each load (target <= 1.3, and <= 1.0 on a quiet machine). On a machine
that other jobs share, "0 other processes" is not quiet: the script prints the load it measured before each row.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from typing import Any

# A busy process: spins until killed, its time limit passes, or its parent (this script) is gone.
SPIN = ("import os, time\nparent = os.getppid()\nend = time.time() + {limit}\n"
        "while time.time() < end and os.getppid() == parent:\n    for _ in range(100000):\n        pass\n")


def _worker(setting: str, stages: list[str], repeats: int, steps: int) -> dict[str, Any]:
    """Runs inside a fresh process: apply the setting, then time the stages (median of `repeats`)."""
    import bench  # noqa: F401  (for `default`, sets OMP_WAIT_POLICY=PASSIVE before torch loads)
    import torch

    from bench.threads import apply_threads, available_cores, thread_record

    n = None if setting == "default" else (available_cores() if setting.startswith("all") else int(setting))
    apply_threads(n)
    out: dict[str, Any] = {"setting": setting, "threads": thread_record(),
                           "omp_wait_policy_at_torch_load": os.environ.get("OMP_WAIT_POLICY") if setting in
                           ("default", "all-passive") else "(torch's own)"}
    if "eval" in stages:
        from bench.metrics.ssim import SSIM

        g = torch.Generator().manual_seed(0)
        a = torch.rand(50, 3, 64, 64, generator=g)
        b = (a + 0.05 * torch.randn(a.shape, generator=g)).clamp(0, 1)
        metric = SSIM()
        metric.per_sample(b, a)  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            metric.per_sample(b, a)
            times.append(time.perf_counter() - t0)
        out["eval_ms"] = statistics.median(times) * 1e3
        out["eval_all_ms"] = [t * 1e3 for t in times]
    if "train" in stages:
        out["train_s_per_step"], out["train_all_s"] = _train_times(repeats, steps)
    return out


def _train_times(repeats: int, steps: int) -> tuple[float, list[float]]:
    """Median seconds per coarse-stage step of CFGAN (cpu profile) over `repeats` short fits (+ one warm-up)."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from bench.attacks.sift_inversion.cfgan import CFGAN
    from bench.features.sift import random_siftset
    from bench.plugins import FitContext

    n, size = 16, 64
    feats = random_siftset(n, size, np.random.default_rng(0), counts=(40, 120))
    low = torch.rand(n, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    images = F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    per_step = []
    for i in range(repeats + 1):
        attack = CFGAN("cpu", size, "cpu", seed=i)
        # only a few steps: the stage's step time is what is measured (BN re-estimation kept short too)
        attack.hp = dict(attack.hp, coarse_steps=steps, fine_steps=1, bn_batches=1)
        ctx = FitContext(defense=None, seed=i, device=torch.device("cpu"), progress=False)  # type: ignore[arg-type]
        attack.fit(feats, images, ctx)
        if i:  # the first fit is the warm-up
            per_step.append(attack.stage_seconds["coarse"] / steps)
    return statistics.median(per_step), per_step


def _spinners(count: int, limit: float) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", SPIN.format(limit=limit)]) for _ in range(count)]


def _run_worker(setting: str, stages: list[str], repeats: int, steps: int) -> dict[str, Any]:
    env = dict(os.environ)
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY"):
        env.pop(key, None)  # each setting chooses its own; a value inherited from the shell would mask it
    if setting == "all-passive":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    cmd = [sys.executable, __file__, "--worker", setting, "--stages", ",".join(stages), "--repeats", str(repeats),
           "--steps", str(steps)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"worker {setting} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    """Measure every (load, setting) pair and print the contention table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--loads", default="0,1,3", help="numbers of busy processes to start (default 0,1,3)")
    p.add_argument("--settings", default="default,1,all", help="default, 1, all, all-passive or a thread count")
    p.add_argument("--stages", default="train,eval")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--steps", type=int, default=3, help="coarse steps per training repeat")
    p.add_argument("--json", help="also write every measurement to this file")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    stages = [s for s in args.stages.split(",") if s]
    if args.worker:
        if args.worker not in ("default", "all-passive"):
            import torch  # noqa: F401  (loads OpenMP before bench can set OMP_WAIT_POLICY: torch's own policy)
        print(json.dumps(_worker(args.worker, stages, args.repeats, args.steps)))
        return

    from bench.threads import available_cores, other_load

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a killed run still stops its busy processes
    settings = [s for s in args.settings.split(",") if s]
    print(f"cores available {available_cores()}, os.cpu_count {os.cpu_count()}, python {sys.version.split()[0]}; "
          f"medians of {args.repeats}; train = CFGAN cpu coarse step (s), eval = ssim on 50 pairs 64x64 (ms)")
    rows = []
    for load in [int(v) for v in args.loads.split(",") if v.strip()]:
        spin = _spinners(load, limit=3600)
        try:
            time.sleep(1.0)
            measured, source = other_load(0.5)
            results = {s: _run_worker(s, stages, args.repeats, args.steps) for s in settings}
        finally:
            for proc in spin:
                proc.kill()
                proc.wait()
        rows.append({"load": load, "measured_other_load": measured, "source": source, "results": results})
        print(f"\n{load} busy processes started (other load measured: {measured:.2f} cores via {source})")
        for stage, key, unit in (("train", "train_s_per_step", "s/step"), ("eval", "eval_ms", "ms")):
            if stage not in stages:
                continue
            vals = {s: r[key] for s, r in results.items()}
            line = "  ".join(f"{s} {v:8.3f}" for s, v in vals.items())
            chosen = {s: r["threads"]["torch_threads"] for s, r in results.items()}
            ratio = ""
            if {"default", "1", "all"} <= vals.keys():
                ratio = f"  default/best {vals['default'] / min(vals['1'], vals['all']):.2f}"
            print(f"  {stage:<5} ({unit}): {line}{ratio}   threads {chosen}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
