"""Leaderboard tables from the store: one CSV per dataset, one row per attack x defense x profile."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from bench import registry
from bench.store.db import Store


def leaderboard_frame(store: Store, dataset: str) -> pd.DataFrame:
    """The latest finished run of each (attack, defense, profile) on `dataset`, with its metric means."""
    runs = store.runs(status="done", dataset=dataset)
    latest: dict[tuple[str, str, str], dict] = {}
    for run in runs:  # ordered by creation: later runs replace earlier ones
        latest[(run["attack"], run["defense"], run["profile"])] = run
    rows = []
    for (attack, defense, profile), run in sorted(latest.items()):
        record = json.loads(run["record_json"] or "{}")
        metrics = store.set_metrics(run["run_id"])
        row = {"attack": attack, "defense": defense, "profile": profile, "seed": run["seed"],
               "n_train": record.get("n_train_loaded"), "n_test": record.get("n_test_loaded")}
        for name in sorted(metrics):
            row[name] = metrics[name]["value"]
        row["run_id"] = run["run_id"]
        row["dataset_note"] = record.get("dataset_note") or ""
        rows.append(row)
    return pd.DataFrame(rows)


def metric_direction(name: str) -> str:
    """'higher' or 'lower' (is better), from the metric's registry entry."""
    try:
        return "higher" if registry.metrics.get(name).meta["higher_is_better"] else "lower"
    except Exception:
        return "?"


def refresh_leaderboard(store: Store, results: Path, dataset: str, out_dir: Path | None = None) -> Path:
    """Write <out_dir or results/leaderboards>/<dataset>.csv and return its path."""
    out = (out_dir or results / "leaderboards")
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{dataset}.csv"
    frame = leaderboard_frame(store, dataset)
    tmp = path.with_suffix(".csv.tmp")
    frame.to_csv(tmp, index=False, float_format="%.6g")
    tmp.replace(path)
    return path


def refresh_all(results: Path, out_dir: Path | None = None) -> list[Path]:
    """Regenerate the CSV of every dataset that has finished runs (`bench leaderboard`)."""
    db = results / "bench.sqlite"
    if not db.is_file():
        from bench.errors import BenchError

        raise BenchError(f"no results store at {db}; run `bench run` first or pass --results DIR")
    with Store(db) as store:
        datasets = sorted({r["dataset"] for r in store.runs(status="done")})
        return [refresh_leaderboard(store, results, d, out_dir) for d in datasets]
