"""Training throughput of the learned attacks: steps per second of every training stage at the cpu profile, with the
shared trainer's speed-ups off ("before") and on ("after"), at 1 and 2 threads.

    python benchmarks/training_throughput.py [--attacks cfgan,sli,...] [--threads 1,2] [--modes before,after]
                                             [--steps 8] [--repeats 3] [--n-train 48] [--json FILE] [--quiet]

Every measurement is a fresh fit of the attack at the cpu profile (its network sizes and batch size; the step
counts of its stages set on the instance to warm-up + `--steps`; CFGAN's and INV's batch-norm re-estimation cut to
one batch and sli-l's descriptor classifier to 10 steps, since neither is a stage's step) on real inputs: `--n-train` images of the synthetic demo faces at the cpu
profile's sizes with their OpenCV SIFT features, or, for the attacks that decode a face descriptor (face-cnn,
feature-decoder, feature-gan), seeded random 128-d vectors standing in for dlib's (which needs the `faces` extra;
a step's cost does not depend on the values). Each step of a stage is timed (wall clock, and this process's CPU
time, all threads); the first `--warmup` steps of each stage are left out (default: one epoch of the data and two
more, so the per-record caches of the speed-ups are full: these are steady-state figures; a real run builds each
record's input once, during its first epoch). Repeats, thread counts, attacks and modes are interleaved
(repeat → threads → attack → mode) in one process, so "before" and "after" see the same machine load; the table
shows, per stage, the min and median over repeats of each repeat's steps per second (the mean over its timed
steps), after/before of the medians, the number of repeats and the median 1-minute load average while they ran
(the machine load; the header gives the thread settings: torch threads, OMP_NUM_THREADS, OMP_WAIT_POLICY, cores). `--modes before` alone times the plain trainer
(`BENCH_TRAINING_SPEEDUPS=0` does the same for `bench run`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import bench.training as training
from bench import registry
from bench.errors import BenchError
from bench.features.embeddings import EmbeddingSet
from bench.images import resize
from bench.plugins import FitContext
from bench.profiles import PROFILES as RUN_PROFILES
from bench.threads import apply_threads, thread_record

LEARNED = ("cfgan", "sli", "sli-b", "sli-r", "sli-l", "ivr", "inv", "face-cnn", "feature-decoder", "feature-gan")
VECTOR = ("face-cnn", "feature-decoder", "feature-gan")
MODES = {"before": False, "after": True}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--attacks", default=",".join(LEARNED), help="comma-separated learned attacks [all]")
    ap.add_argument("--threads", default="1,2", help="torch thread counts, comma-separated [1,2]")
    ap.add_argument("--modes", default="before,after", help="before (speed-ups off), after (on) [both]")
    ap.add_argument("--steps", type=int, default=8, help="timed steps per stage and repeat [8]")
    ap.add_argument("--warmup", type=int, default=None,
                    help="untimed steps first in each stage [one epoch of the data + 2]")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats [3]")
    ap.add_argument("--n-train", type=int, default=48, help="training records [48]")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="also write every measurement here")
    ap.add_argument("--quiet", action="store_true", help="no progress lines")
    return ap.parse_args(argv)


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except (OSError, AttributeError):
        return "n/a"


# ------------------------------------------------------------------------------------------------------ data
def sift_data(n: int) -> dict[str, Any]:
    """The synthetic demo faces at the cpu profile: SIFT at the extraction size, images at the attack's size."""
    prof = RUN_PROFILES["cpu"]
    ds = registry.datasets.get("synthetic-faces").obj()
    ids = ds.item_ids()[:n]
    imgs = ds.load(ids, prof.extract_size)
    feats = registry.extractors.get("sift").obj().extract(imgs, progress=False)
    return {"features": feats, "images": resize(imgs.images, prof.image_size), "ids": list(ids)}


def vector_data(n: int, images: torch.Tensor, seed: int) -> dict[str, Any]:
    """Seeded random 128-d vectors (dlib's width) for the same images."""
    g = torch.Generator().manual_seed(seed)
    return {"features": EmbeddingSet(torch.randn(n, 128, generator=g).numpy()), "images": images,
            "ids": [f"vec-{i}" for i in range(n)]}


# ------------------------------------------------------------------------------------------------- timing
class StepClock:
    """Wraps bench.training.run_steps (what LearnedAttack.run_stage calls) to time every step of every stage."""

    def __init__(self) -> None:
        self.times: dict[str, list[tuple[float, float]]] = {}
        self._orig = training.run_steps

    def __enter__(self) -> "StepClock":
        orig = self._orig

        def timed_run_steps(who: str, steps: int, batches: Any, step: Any, **kw: Any) -> None:
            rec = self.times.setdefault(kw.get("stage") or "train", [])

            def timed(idx: np.ndarray) -> float:
                w0, c0 = time.perf_counter(), time.process_time()
                value = step(idx)
                rec.append((time.perf_counter() - w0, time.process_time() - c0))
                return value

            orig(who, steps, batches, timed, **kw)

        training.run_steps = timed_run_steps  # type: ignore[assignment]
        return self

    def __exit__(self, *exc: Any) -> None:
        training.run_steps = self._orig  # type: ignore[assignment]


def stage_keys(attack: Any) -> list[str]:
    """The hyper-parameters that set the step count of each training stage (`epochs` for the vector attacks)."""
    if "epochs" in attack.hp:
        return ["epochs"]
    return [k for k in attack.hp if k == "steps" or k.endswith("_steps")]


def one_fit(name: str, data: dict[str, Any], steps: int, warmup: int | None, seed: int, speedups: bool
            ) -> dict[str, dict[str, float]]:
    """A fresh cpu-profile fit with `warmup + steps` steps per stage; per stage: timed steps, steps/s wall and CPU."""
    cls = registry.attacks.get(name).obj
    attack = cls("cpu", RUN_PROFILES["cpu"].image_size, device="cpu", seed=seed)
    n = len(data["features"])
    batch = min(int(attack.hp["batch_size"]), n)
    per_epoch = max(n // batch, 1)
    w = per_epoch + 2 if warmup is None else warmup
    hp = dict(attack.hp)
    for key in stage_keys(attack):
        hp[key] = math.ceil((w + steps) / per_epoch) if key == "epochs" else w + steps
    if "bn_batches" in hp:
        hp["bn_batches"] = 1  # batch-norm re-estimation is not a training step
    attack.hp = hp
    if hasattr(attack, "chp"):  # sli-l's descriptor classifier: trained before the stages, not timed
        attack.chp = {**attack.chp, "steps": 10}
    ctx = FitContext(defense=registry.defenses.get("none").obj(), seed=seed, device=torch.device("cpu"),
                     progress=False, ids=list(data["ids"]))
    with training.speedups(speedups), StepClock() as clock:
        attack.fit(data["features"], data["images"], ctx)
    out = {}
    for stage, rec in clock.times.items():
        timed = rec[w:]
        if not timed:
            continue
        wall, cpu = sum(t[0] for t in timed), sum(t[1] for t in timed)
        out[stage] = {"steps": len(timed), "wall_steps_per_s": len(timed) / wall,
                      "cpu_steps_per_s": len(timed) / cpu if cpu > 0 else float("nan")}
    return out


# -------------------------------------------------------------------------------------------------- report
def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (attack, stage, threads): min and median steps/s of each mode, after/before of the medians."""
    groups: dict[tuple[str, str, int], dict[str, list[dict[str, Any]]]] = {}
    for r in rows:
        groups.setdefault((r["attack"], r["stage"], r["threads"]), {}).setdefault(r["mode"], []).append(r)
    table = []
    for (attack, stage, threads), modes in groups.items():
        entry: dict[str, Any] = {"attack": attack, "stage": stage, "threads": threads}
        for mode, rs in modes.items():
            for clock in ("wall", "cpu"):
                vals = [r[f"{clock}_steps_per_s"] for r in rs]
                entry[f"{mode}_{clock}_min"] = min(vals)
                entry[f"{mode}_{clock}_median"] = statistics.median(vals)
        loads = [_load1(r.get("load_average", "")) for rs in modes.values() for r in rs]
        loads = [x for x in loads if x is not None]
        entry["load_median"] = statistics.median(loads) if loads else float("nan")
        entry["repeats"] = min(len(rs) for rs in modes.values())
        for clock in ("wall", "cpu"):
            if f"before_{clock}_median" in entry and f"after_{clock}_median" in entry:
                entry[f"speedup_{clock}"] = entry[f"after_{clock}_median"] / entry[f"before_{clock}_median"]
        table.append(entry)
    return table


def _load1(text: str) -> float | None:
    """The 1-minute figure of a `load_average()` string (None when it was not available)."""
    try:
        return float(text.split()[0])
    except (IndexError, ValueError):
        return None


def print_table(table: list[dict[str, Any]], modes: list[str]) -> None:
    head = ["attack", "stage", "threads"]
    for mode in modes:
        head += [f"{mode} cpu min/med", f"{mode} wall min/med"]
    if len(modes) == 2:
        head += ["after/before cpu", "after/before wall"]
    head += ["repeats", "load (1-min, median)"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for e in table:
        cells = [e["attack"], e["stage"], str(e["threads"])]
        for mode in modes:
            for clock in ("cpu", "wall"):
                cells.append(f"{e[f'{mode}_{clock}_min']:.2f} / {e[f'{mode}_{clock}_median']:.2f}")
        if len(modes) == 2:
            cells += [f"{e.get('speedup_cpu', float('nan')):.2f}x", f"{e.get('speedup_wall', float('nan')):.2f}x"]
        cells += [str(e["repeats"]), f"{e['load_median']:.1f}"]
        print("| " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    attacks = [a.strip() for a in args.attacks.split(",") if a.strip()]
    threads = [int(t) for t in args.threads.split(",") if t.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [a for a in attacks if a not in LEARNED] + [m for m in modes if m not in MODES]
    if bad:
        sys.exit(f"error: unknown attack or mode {', '.join(bad)} (attacks: {', '.join(LEARNED)}; modes: before, "
                 "after)")
    runnable = []
    for name in attacks:
        try:
            registry.attacks.get(name).obj("cpu", RUN_PROFILES["cpu"].image_size).preflight()
            runnable.append(name)
        except BenchError as e:
            print(f"skipped {name}: {str(e).splitlines()[0]}")
    apply_threads(threads[0])
    rec = thread_record()
    print(f"# training throughput, cpu profile, steps per second; threads {threads} (torch set per measurement; "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}; cores available "
          f"{rec.get('cores_available')}); torch {torch.__version__}; load average at start {load_average()}")
    sift = sift_data(args.n_train)
    vec = vector_data(args.n_train, sift["images"], args.seed)
    rows: list[dict[str, Any]] = []
    for rep in range(args.repeats):
        for t in threads:
            apply_threads(t)
            for name in runnable:
                data = vec if name in VECTOR else sift
                for mode in modes:
                    res = one_fit(name, data, args.steps, args.warmup, args.seed + rep, MODES[mode])
                    for stage, r in res.items():
                        rows.append({"attack": name, "stage": stage, "threads": t, "mode": mode, "repeat": rep,
                                     "load_average": load_average(), **r})
                        if not args.quiet:
                            print(f"  repeat {rep} threads {t} {name} {stage} {mode}: "
                                  f"{r['cpu_steps_per_s']:.2f} steps/s CPU, {r['wall_steps_per_s']:.2f} wall "
                                  f"(load {load_average()})", flush=True)
    print(f"# load average at end {load_average()}; {args.repeats} repeats of {args.steps} timed steps per stage; "
          f"n_train {args.n_train}")
    table = summarise(rows)
    print_table(table, modes)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "table": table, "threads": rec, "argv": sys.argv[1:]},
                                        indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
