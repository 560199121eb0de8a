"""A finished run's files: run.json (the record), metrics.csv (per sample), grid.png, and the leaderboard."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch

from bench import __version__
from bench.features import FeatureSet
from bench.report.leaderboard import refresh_leaderboard
from bench.report.plots import comparison_grid
from bench.run.plan import Plan
from bench.store.db import Store

__all__ = ["run_record", "write_run_files", "refresh_leaderboard", "package_versions", "git_revision"]

_PACKAGES = ("torch", "torchvision", "numpy", "opencv-python-headless", "kornia", "scipy", "pandas", "pillow",
             "scikit-image", "click", "tqdm")


def package_versions() -> dict[str, str | None]:
    """Versions of the packages whose behaviour can change a number."""
    out: dict[str, str | None] = {"leakbench": __version__, "python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_revision() -> str | None:
    """The commit of the source tree the package runs from, when it is a git checkout (plus '-dirty')."""
    here = Path(__file__).resolve().parent.parent
    if not (here / ".git").exists():
        return None
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if rev.returncode != 0:
        return None
    return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def threat_model(p: Plan) -> dict[str, Any]:
    s = p.spec
    return {
        "attacker_knows": ["the victim extractor and its parameters", "the defense algorithm and its public parameters"],
        "attacker_does_not_know": ["the defense's secret keys (it simulates the defense with keys of its own)",
                                   "the private images"],
        "auxiliary_split": {"dataset": s.aux_dataset or s.dataset, "n": s.n_train,
                            "role": "the attacker trains only on these images and their features"},
        "private_split": {"dataset": s.dataset, "n": s.n_test,
                          "role": "released features of these images are attacked; the images are used only to score"},
        "released_features": p.released.describe(),
    }


def run_record(p: Plan, run_id: str, timings: dict[str, float], notes: list[str],
               set_metrics: dict[str, dict[str, Any]], skipped_files: Sequence[tuple[str, str]], n_train: int,
               n_test: int, device: str, cache: dict[str, Any]) -> dict[str, Any]:
    """Everything needed to interpret and reproduce the run's numbers."""
    return {
        "run_id": run_id,
        "spec": p.spec.to_dict(),
        "dataset_note": p.dataset.note or None,
        "resolutions": {"extract": p.spec.extract_size, "reconstruct_and_score": p.spec.image_size},
        "profile": p.profile.to_dict(),
        "threat_model": threat_model(p),
        "n_train_loaded": n_train,
        "n_test_loaded": n_test,
        "skipped_files": {"count": len(skipped_files), "files": [{"file": f, "reason": r} for f, r in skipped_files]},
        "metric_conventions": {n: m.convention for n, m in p.metrics.items()},
        "scoring": "reconstructions are quantised to 8 bits (exactly the saved PNGs) and compared with the "
                   "originals resized (bilinear, antialiased) to the scoring resolution",
        "set_metrics": {k: v["value"] for k, v in set_metrics.items()},
        "notes": notes,
        "attack_description": {"paper": type(p.attack).paper, "consumes": type(p.attack).consumes.describe()},
        "versions": package_versions(),
        "git_revision": git_revision(),
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "timings_s": timings,
        "cache": cache,
        "command": " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv)),
    }


def write_run_files(store: Store, run_dir: Path, record: dict[str, Any], test_ids: Sequence[str],
                    victim_images: torch.Tensor, originals: torch.Tensor, recon: torch.Tensor,
                    released: FeatureSet, dataset_note: str) -> None:
    """run.json, metrics.csv (one row per sample, one column per metric) and grid.png."""
    tmp = run_dir / "run.json.tmp"
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True, default=str))
    os.replace(tmp, run_dir / "run.json")

    rows = store.sample_metrics(record["run_id"])
    table = pd.DataFrame(rows)
    if not table.empty:
        table = table.pivot(index=["sample_index", "sample_id"], columns="metric", values="value").reset_index()
        table.columns.name = None
    table.to_csv(run_dir / "metrics.csv", index=False)

    title = f"{record['spec']['attack']} vs {record['spec']['defense']} on {record['spec']['dataset']}"
    if dataset_note:
        title += f" ({dataset_note})"
    comparison_grid(victim_images, originals, recon, released, run_dir / "grid.png", title=title, n=8)
