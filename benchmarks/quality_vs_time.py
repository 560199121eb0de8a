"""Quality against training time: SSIM and PSNR on the private split after about 1, 2, 5, 10 and 20 minutes of training.

For each attack (default `cfgan` and `sli`, cpu profile, no defense) and each budget of B minutes, the attack is
trained from scratch with its cpu-profile hyper-parameters except for the number of steps of each training stage,
which is scaled so that training takes about B minutes; the stages keep the profile's step ratio (cfgan 400:240,
sli 200:600) and their schedules (cosine decay over the stage's steps). The seconds per step of each stage are
measured first on the same data and threads (the mean of a fit of `--calibration-steps` steps per stage).
Every row records the steps it ran and the training wall time it really took (fixed costs such as
CFGAN's batch-norm re-estimation included), and the figure plots against that measured time. This is not a
run of the runner: no run id, store or cache is involved, and the attacks' declared parameters, profiles and run
specs are untouched (the step counts are set on the attack instance, `attack.hp`, never in `PROFILES`).

Scoring follows the runner: reconstructions quantised to 8 bits, originals resized (bilinear, antialiased) from the
extraction size to the scoring size, the `ssim` and `psnr` metrics of the registry, mean over the private split.
The mean auxiliary image (the `mean-image` floor) is scored too and drawn as a dashed line.

    python benchmarks/quality_vs_time.py --data-root ../shared/data/faces/utkface            # the study
    python benchmarks/quality_vs_time.py --data-root ../shared/data/faces/utkface \
        --minutes 0.1 --n-train 64 --n-test 16 --out /tmp/qvt                                # a quick check

Outputs `<out>/quality-vs-time-<dataset>.csv` and `.png` (default out: leaderboards/studies/). Attacks may be studied in
separate processes side by side (`--attacks sli --tag sli`, one thread each) and merged afterwards:

    python benchmarks/quality_vs_time.py --from-csv OUT/quality-vs-time-utkface-cfgan.csv \
        OUT/quality-vs-time-utkface-sli.csv --out leaderboards/studies

`--minutes profile` trains the cpu profile's own step counts (comparisons at equal steps, e.g. with `--set`).
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench import registry
from bench.images import resize
from bench.plugins import FitContext, attacker_training_features, seeded_rng
from bench.run.evaluate import quantise
from bench.run.plan import RunRequest, plan
from bench.threads import apply_threads, thread_record

ROOT = Path(__file__).resolve().parents[1]
STAGES = {"cfgan": ("coarse", "fine"), "sli": ("lbp", "image"), "inv": ("coarse", "refine")}
COLUMNS = ["attack", "budget_min", "steps", "train_s", "train_min", "ssim", "psnr", "n_train", "n_test", "profile",
           "seed", "torch_threads", "opencv_threads", "cpu_count", "load_avg_start", "load_avg_end", "sec_per_step", "hp_overrides"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-root", type=Path, help="UTKFace folder (e.g. ../shared/data/faces/utkface); required "
                                                   "unless --from-csv")
    ap.add_argument("--dataset", default="utkface")
    ap.add_argument("--attacks", default="cfgan,sli", help="comma-separated: " + ", ".join(STAGES))
    ap.add_argument("--minutes", default="1,2,5,10,20",
                    help="training budgets in minutes (comma-separated); `profile` trains the cpu profile's own "
                         "step counts (no calibration), for comparisons at equal steps")
    ap.add_argument("--threads", type=int, default=2, help="torch and OpenCV threads (default 2: a 2-core laptop)")
    ap.add_argument("--n-train", type=int, default=None, help="auxiliary split size [cpu profile: 1500]")
    ap.add_argument("--n-test", type=int, default=None, help="private split size [cpu profile: 200]")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--calibration-steps", type=int, default=20, help="steps per stage of the timing fit")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="ablation: override a cpu-profile hyper-parameter on the attack instances (JSON value, e.g. "
                         "sift_loss=false or lambda_adv=0); repeatable; recorded in the CSV")
    ap.add_argument("--tag", default="", help="suffix of the output names (quality-vs-time-<dataset>-<tag>.*)")
    ap.add_argument("--out", type=Path, default=ROOT / "leaderboards" / "studies",
                    help="folder for the CSV and the PNG [leaderboards/studies]")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--from-csv", type=Path, nargs="+", default=None, metavar="CSV",
                    help="no training: merge the rows of these CSVs of earlier studies (e.g. one per attack, run side "
                         "by side) into one CSV and figure; they must share the split, seed and thread counts")
    return ap.parse_args(argv)


def load_data(args: argparse.Namespace) -> dict[str, Any]:
    """The runner's split of the cpu profile: auxiliary and private ids, SIFT at the extraction size, no defense."""
    req = RunRequest(attack="cfgan", defense="none", dataset=args.dataset, data_root=args.data_root, profile="cpu",
                     seed=args.seed, n_train=args.n_train, n_test=args.n_test, results=Path("unused"),
                     progress=False, metrics=("ssim", "psnr"))
    p = plan(req)
    size, image_size = p.spec.extract_size, p.spec.image_size
    aux = p.aux_dataset.load(p.train_ids, size)
    private = p.dataset.load(p.test_ids, size)
    aux_f = attacker_training_features(p.defense, p.extractor.extract(aux, progress=not args.quiet), args.seed)
    priv_f = p.defense.protect(p.extractor.extract(private, progress=not args.quiet),
                               seeded_rng(args.seed, "victim-keys"))
    return {"aux_f": aux_f, "priv_f": priv_f, "aux_images": resize(aux.images, image_size),
            "private_images": resize(private.images, image_size), "image_size": image_size,
            "defense": p.defense, "aux_ids": list(aux.ids), "n_train": len(aux.ids), "n_test": len(private.ids)}


def score(recon: torch.Tensor, ref: torch.Tensor) -> dict[str, float]:
    """Mean ssim and psnr (the registry's metrics) of 8-bit reconstructions against the references."""
    out = {}
    for name in ("ssim", "psnr"):
        metric = registry.metrics.get(name).obj()
        values = np.asarray(metric.per_sample(quantise(recon), ref).double().numpy())
        out[name] = float(np.nanmean(values))
    return out


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """--set KEY=VALUE items as a dict (values parsed as JSON, else kept as text)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            sys.exit(f"error: --set {item!r}: expected KEY=VALUE")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def set_steps(attack: Any, steps: dict[str, int], overrides: dict[str, Any] | None = None) -> Any:
    """`attack` with its own copy of its hyper-parameters, `<stage>_steps` (and any `overrides`) replaced; the
    profile itself stays as it is."""
    unknown = sorted(set(overrides or {}) - set(attack.hp))
    if unknown:
        sys.exit(f"error: --set {', '.join(unknown)}: not a hyper-parameter of {attack.name} "
                 f"({', '.join(sorted(attack.hp))})")
    attack.hp = {**attack.hp, **(overrides or {}), **{f"{stage}_steps": int(n) for stage, n in steps.items()}}
    return attack


def fit_with_steps(name: str, steps: dict[str, int], data: dict[str, Any], seed: int, progress: bool,
                   overrides: dict[str, Any] | None = None) -> Any:
    """A fresh attack of the cpu profile trained with `steps` per stage (set on the instance only)."""
    cls = registry.attacks.get(name).obj
    attack = set_steps(cls(profile="cpu", image_size=data["image_size"], device="cpu", seed=seed), steps, overrides)
    ctx = FitContext(defense=data["defense"], seed=seed, device=torch.device("cpu"), progress=progress,
                     ids=list(data["aux_ids"]))
    attack.fit(data["aux_f"], data["aux_images"], ctx)
    return attack


def steps_for(budget_s: float, ratio: dict[str, int], sec_per_step: dict[str, float]) -> dict[str, int]:
    """Steps per stage, in the profile's ratio, whose measured cost adds up to `budget_s` (at least one each)."""
    total = sum(ratio.values())
    per_unit = sum(ratio[s] / total * sec_per_step[s] for s in ratio)  # seconds per step at the profile's mix
    n = budget_s / per_unit
    return {s: max(1, int(round(n * ratio[s] / total))) for s in ratio}


def load_average() -> str:
    try:
        import os

        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except (OSError, AttributeError):
        return ""


def study(args: argparse.Namespace) -> list[dict[str, Any]]:
    apply_threads(args.threads)
    threads = thread_record()
    print(f"threads: torch {threads['torch_threads']}, OpenCV {threads['opencv_threads']} "
          f"(cores available {threads.get('cores_available')}); load average {load_average()}", flush=True)
    overrides = parse_overrides(args.overrides)
    data = load_data(args)
    rows: list[dict[str, Any]] = []
    floor = score(data["aux_images"].mean(0, keepdim=True).expand_as(data["private_images"]).contiguous(),
                  data["private_images"])
    base = {"n_train": data["n_train"], "n_test": data["n_test"], "profile": "cpu", "seed": args.seed,
            "torch_threads": threads["torch_threads"], "opencv_threads": threads["opencv_threads"],
            "cpu_count": threads.get("cores_available"), "hp_overrides": json.dumps(overrides, sort_keys=True)}
    rows.append({**base, "attack": "mean-image", "budget_min": 0, "steps": "", "train_s": 0.0, "train_min": 0.0,
                 **floor, "load_avg_start": load_average(), "load_avg_end": load_average(), "sec_per_step": ""})
    budgets = [m.strip() for m in args.minutes.split(",") if m.strip()]
    for name in [a.strip() for a in args.attacks.split(",") if a.strip()]:
        if name not in STAGES:
            sys.exit(f"error: --attacks: {name!r} is not one of {', '.join(STAGES)}")
        profile_hp = registry.attacks.get(name).obj("cpu", data["image_size"]).hp
        ratio = {s: int(profile_hp[f"{s}_steps"]) for s in STAGES[name]}
        sec_per_step: dict[str, float] = {}
        if any(b != "profile" for b in budgets):
            k = args.calibration_steps
            calib = fit_with_steps(name, {s: k for s in ratio}, data, args.seed, False, overrides)
            # The mean over k steps (the first steps' warm-up included, so budgets err on the short side; the rows
            # record the time really taken). A difference of two fits cancels warm-up but is noise on a loaded
            # machine.
            sec_per_step = {s: calib.stage_seconds[s] / k for s in ratio}
            print(f"{name}: seconds per step {sec_per_step} (calibration: a {k}-step fit per stage)", flush=True)
        for budget in budgets:
            if budget == "profile":
                steps, minutes = dict(ratio), budget
            else:
                minutes = float(budget)
                steps = steps_for(minutes * 60.0, ratio, sec_per_step)
            load0 = load_average()
            t0 = time.perf_counter()
            attack = fit_with_steps(name, steps, data, args.seed, not args.quiet, overrides)
            train_s = time.perf_counter() - t0
            values = score(attack.reconstruct(data["priv_f"], progress=False), data["private_images"])
            row = {**base, "attack": name, "budget_min": minutes,
                   "steps": "+".join(f"{s}:{n}" for s, n in steps.items()), "train_s": round(train_s, 1),
                   "train_min": round(train_s / 60.0, 3), **values, "load_avg_start": load0,
                   "load_avg_end": load_average(),
                   "sec_per_step": "+".join(f"{s}:{v:.3f}" for s, v in sec_per_step.items())}
            rows.append(row)
            print(f"{name} {minutes} min: {row['steps']} steps in {train_s:.0f} s: SSIM {values['ssim']:.4f}, "
                  f"PSNR {values['psnr']:.2f} dB", flush=True)
    return rows


def write_outputs(rows: list[dict[str, Any]], args: argparse.Namespace) -> tuple[Path, Path]:
    """The CSV (one row per attack and budget, plus the mean-image floor) and a two-panel figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / (f"quality-vs-time-{args.dataset}" + (f"-{args.tag}" if args.tag else ""))
    with open(stem.with_suffix(".csv"), "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items() if k in COLUMNS})
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    floor = next(r for r in rows if r["attack"] == "mean-image")
    for ax, metric, unit in ((axes[0], "ssim", ""), (axes[1], "psnr", " (dB)")):
        for name, over in dict.fromkeys((r["attack"], r["hp_overrides"]) for r in rows if r["attack"] != "mean-image"):
            pts = sorted((float(r["train_min"]), float(r[metric])) for r in rows
                         if r["attack"] == name and r["hp_overrides"] == over)
            label = name if over == "{}" else f"{name} {over}"
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
        ax.axhline(float(floor[metric]), color="grey", linestyle="--", label="mean-image floor")
        ax.set_xscale("log")
        ax.set_xlabel("measured training time (minutes)")
        ax.set_ylabel(metric.upper() + unit)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    r0 = rows[0]
    fig.suptitle(f"{args.dataset}, cpu profile (64 px), {r0['n_train']} aux / {r0['n_test']} private images, seed "
                 f"{r0['seed']}; torch {r0['torch_threads']} threads, OpenCV {r0['opencv_threads']}; "
                 f"{platform.machine()}",
                 fontsize=8)
    fig.tight_layout()
    fig.savefig(stem.with_suffix(".png"), dpi=120)
    plt.close(fig)
    return stem.with_suffix(".csv"), stem.with_suffix(".png")


def merge(paths: list[Path]) -> list[dict[str, Any]]:
    """The rows of several study CSVs, one mean-image floor row; refuses CSVs of different splits or threads."""
    rows: list[dict[str, Any]] = []
    for path in paths:
        with open(path, newline="") as fh:
            rows.extend(csv.DictReader(fh))
    if not rows:
        sys.exit("error: --from-csv: no rows")
    for key in ("n_train", "n_test", "seed", "profile", "torch_threads", "opencv_threads"):
        values = sorted({r[key] for r in rows})
        if len(values) > 1:
            sys.exit(f"error: --from-csv: the CSVs differ in {key} ({', '.join(values)}); they cannot share a figure")
    floors = [r for r in rows if r["attack"] == "mean-image"]
    if len({(r["ssim"], r["psnr"]) for r in floors}) > 1:
        sys.exit("error: --from-csv: the mean-image floors differ: not the same private split")
    return floors[:1] + [r for r in rows if r["attack"] != "mean-image"]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if not args.from_csv and args.data_root is None:
        sys.exit("error: --data-root is required (or --from-csv to merge earlier studies)")
    rows = merge(args.from_csv) if args.from_csv else study(args)
    csv_path, png_path = write_outputs(rows, args)
    print(f"wrote {csv_path} and {png_path}")


if __name__ == "__main__":
    main()
