"""A finished run's files: run.json (the record), metrics.csv (per sample) and grid.png."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch

from bench import __version__
from bench.features import FeatureSet
from bench.images import read_image, resize
from bench.run.comparison_grid import comparison_grid
from bench.run.command import request_command
from bench.run.evaluate import Evaluation, recon_path
from bench.run.plan import Plan, RunRequest
from bench.plugins import Victim
from bench.run.stages import TrainedAttack

__all__ = ["run_record", "write_run_files", "package_versions", "git_revision", "release_coverage"]

_PACKAGES = ("torch", "torchvision", "numpy", "opencv-python-headless", "kornia", "scipy", "pandas", "pillow",
             "scikit-image", "click", "tqdm", "lpips", "torch-fidelity", "dlib-bin", "dask", "distributed")


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


def release_coverage(released: FeatureSet, ids: Sequence[str]) -> dict[str, Any]:
    """Which private images each released record covers: per sample (one each) or per batch (the ids listed)."""
    out: dict[str, Any] = {"granularity": released.granularity, "records": len(released)}
    if released.granularity != "sample":
        out["covers"] = [[ids[i] for i in c] for c in released.covers()]
    return out


def _releases(p: Plan, ev: Evaluation, released: FeatureSet | None,
              private_ids: Sequence[str] | None) -> dict[str, Any] | None:
    """release_coverage, plus how each record's reconstructions were paired with its originals (when they were)."""
    if released is None or private_ids is None:
        return None
    out = release_coverage(released, private_ids)
    meta = released.meta if isinstance(released.meta, dict) else {}
    if isinstance(meta.get("defense"), dict):  # what a client-side defense reports of its release (e.g. DP-SGD's ε)
        out["defense"] = meta["defense"]
    if ev.assignment:
        out["matching"] = {"similarity": type(p.attack).matching, "assignment": ev.assignment,
                           "rule": "per record, an optimal assignment of its reconstructions to the originals it "
                                   "covers; assignment[r][j] is the position, in the attack's output order, of the "
                                   "reconstruction scored against the record's j-th covered image"}
    return out


def run_record(p: Plan, req: RunRequest, timings: dict[str, float], trained: TrainedAttack, ev: Evaluation,
               utility: dict[str, float], threads: dict[str, Any], skipped_files: Sequence[tuple[str, str]],
               n_train: int, n_test: int, cache: dict[str, Any], victim: Victim | None = None,
               private_ids: Sequence[str] | None = None, released: FeatureSet | None = None,
               victim_report: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything needed to interpret and reproduce the run's numbers."""
    tm = threat_model(p)
    if victim is not None:
        tm["attacker_knows"] = tm["attacker_knows"] + ["the victim model and its weights (white-box)"]
        tm["victim"] = {"granted": True, "state": dict(victim.state),
                        "parameters": int(sum(t.numel() for t in victim.model.parameters()))}
    report = {k: v for k, v in (victim_report or {}).items() if v}
    if report:  # a white-box victim: its training (when trained) and its accuracy on the private (test) images
        tm["victim"] = {**tm.get("victim", {"granted": False}), **report}
    return {
        "run_id": p.spec.run_id,
        "config_id": p.spec.config_id,
        "spec": p.spec.to_dict(),
        "dataset_note": p.dataset.note or None,
        "resolutions": {"extract": p.spec.extract_size, "reconstruct_and_score": p.spec.image_size,
                        "native": p.resolution.native_size if p.resolution else None,
                        "rule": p.resolution.rule if p.resolution else None},
        "profile": p.profile.to_dict(),
        "threat_model": tm,
        "releases": _releases(p, ev, released, private_ids),
        "n_train_loaded": n_train,
        "n_test_loaded": n_test,
        "skipped_files": {"count": len(skipped_files), "files": [{"file": f, "reason": r} for f, r in skipped_files]},
        "metric_conventions": {n: m.convention for n, m in p.metrics.items()},
        "scoring": "reconstructions are quantised to 8 bits (exactly the saved PNGs) and compared with the "
                   "originals resized (bilinear, antialiased) to the scoring resolution",
        "set_metrics": {k: v.row() for k, v in ev.set_values.items()},
        "utility": utility,
        "notes": ([p.profile.caveat_at(p.spec.image_size)] if p.profile.caveat else []) + list(trained.notes),
        "attack_description": {"paper": type(p.attack).paper, "consumes": type(p.attack).consumes.describe(),
                               "outputs": type(p.attack).outputs},
        "training": {"from_cache": trained.cache_hit, **trained.provenance},
        "versions": package_versions(),
        "plugin_versions": {"attack": p.attack.version, "defense": p.defense.version,
                            "extractor": p.extractor.version,
                            "metrics": {n: m.version for n, m in p.metrics.items()}},
        "git_revision": git_revision(),
        "device": str(p.attack.device),
        "threads": threads,
        "timings_s": timings,
        "cache": cache,
        "command": request_command(req),  # rebuilt from the request: it reproduces the run
    }


def _metrics_table(ev: Evaluation) -> pd.DataFrame:
    """One row per private sample, one column per per-sample metric (and per predicted attribute)."""
    rows = [{"sample_index": i, "sample_id": s, "metric": m, "value": v} for i, s, m, v, _, _ in ev.sample_rows]
    rows += [{"sample_index": i, "sample_id": s, "metric": f"predicted:{a}", "value": v}
             for i, s, a, v in ev.attributes]
    table = pd.DataFrame(rows, columns=["sample_index", "sample_id", "metric", "value"])
    if table.empty:
        return pd.DataFrame(columns=["sample_index", "sample_id"])
    table = table.pivot(index=["sample_index", "sample_id"], columns="metric", values="value").reset_index()
    table.columns.name = None
    return table


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_run_files(run_dir: Path, record: dict[str, Any], p: Plan, ids: Sequence[str], released: FeatureSet,
                    ev: Evaluation, grid_rows: int = 8) -> None:
    """run.json, metrics.csv (one row per sample, one column per metric) and grid.png."""
    _write_atomic(run_dir / "run.json", json.dumps(record, indent=2, sort_keys=True, default=str))
    tmp = run_dir / f"metrics.csv.tmp-{os.getpid()}"
    _metrics_table(ev).to_csv(tmp, index=False)
    os.replace(tmp, run_dir / "metrics.csv")
    if type(p.attack).outputs != "images":
        return
    n = min(grid_rows, len(ids))
    first = list(ids[:n])
    victim = p.dataset.load(first, p.spec.extract_size).images
    recon = torch.stack([read_image(recon_path(run_dir, i, s)) for i, s in enumerate(first)])
    title = f"{p.spec.attack} vs {p.spec.defense} on {p.spec.dataset}"
    if p.dataset.note:
        title += f" ({p.dataset.note})"
    record_of = {i: r for r, c in enumerate(released.covers()) for i in c}  # the record each image is released in
    comparison_grid(resize(victim, p.spec.image_size), recon, released.subset([record_of[i] for i in range(n)]),
                    run_dir / "grid.png", title=title, n=n)
