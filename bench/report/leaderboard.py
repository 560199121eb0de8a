"""Leaderboards from the store: the configuration rows of a dataset (everything but the seed), and the CSV file per
dataset that `bench run` refreshes.

Runs with different configuration ids (split sizes, auxiliary data, data root, extractor, defense or attack
parameters, profile) are separate rows and never overwrite each other; the finished seeds of one configuration are
counted. The metrics are aggregated over them once, in the Board (bench/report/tables.py), and the CSV is one more
renderer of that Board (bench/report/csv_table.py: each metric's mean and sample standard deviation, the status and
detail of a value that is not 'ok' instead of a gap, a `<metric>_note` column for caveats of ok values).
`profile_note` holds the profile's caveat (bench/profiles.py) at the image size the row's runs used: a cpu-profile row
says that it under-states what the paper profile reaches.
"""

from __future__ import annotations

import json
import math
import os
import secrets
from pathlib import Path
from typing import Any, Collection

import pandas as pd

from bench.errors import BenchError
from bench.params import label
from bench.store.db import Store

FIRST_COLUMNS = ["attack", "defense", "aux_dataset", "profile", "extractor", "n_train", "n_test", "seeds"]
LAST_COLUMNS = ["source", "config_id", "run_ids", "profile_note", "dataset_note"]


def _spec(run: dict[str, Any]) -> dict[str, Any]:
    try:
        spec = json.loads(run.get("spec_json") or "{}")
    except ValueError:
        spec = {}
    return spec if isinstance(spec, dict) else {}


def _config_id(run: dict[str, Any], spec: dict[str, Any]) -> str:
    """The configuration id computed from the run's spec (the stored one where no spec is kept): runs stored before
    extractors declared `seed_derived` fields then group by today's rule."""
    from bench.spec import config_id

    if spec:
        return config_id(spec)
    return str(run.get("config_id") or "")


def _params(config: Any) -> dict[str, Any]:
    """A plugin's parameters as its label shows them: declared parameters, and hyper-parameters given away from
    their profile default (`overrides`; defaults are left out of labels)."""
    out: dict[str, Any] = {}
    if isinstance(config, dict) and isinstance(config.get("params"), dict):
        out.update(config["params"])
    if isinstance(config, dict) and isinstance(config.get("overrides"), dict):
        out.update(config["overrides"])
    return out


def _extractor_label(extractor: Any) -> str:
    """The victim extractor as a label: its name with the declared parameters its config holds (only values away
    from their defaults are stored, e.g. `fedsgd-lenet-zhu(batch=2)`), so rows that differ by them read apart."""
    if not isinstance(extractor, dict):
        return str(extractor)
    from bench import registry

    name = str(extractor.get("name", ""))
    declared = registry.extractors.get(name).obj.params if name in registry.extractors else {}
    return label(name, {k: v for k, v in extractor.items() if k in declared})


def _profile_caveat(name: Any, image_size: Any = None) -> str:
    """The caveat of profile `name` (bench.profiles, e.g. the cpu profile under-states the paper's) as true of runs
    scored at `image_size` px (the spec's: CIFAR keeps its native 32 px under the cpu profile's 64), or ''."""
    from bench.profiles import PROFILES

    prof = PROFILES.get(str(name))
    if prof is None:
        return ""
    try:
        size = int(image_size) if image_size is not None else None
    except (TypeError, ValueError):
        size = None
    return prof.caveat_at(size)


def config_frame(store: Store, dataset: str, run_ids: Collection[str] | None = None) -> pd.DataFrame:
    """One row per configuration with finished runs on `dataset`: its identity and provenance columns (FIRST_COLUMNS,
    LAST_COLUMNS), sorted; `run_ids` lists its runs in seed order. The Board (bench/report/tables.py) adds the
    metrics, aggregated over these runs once for every format. The argument `run_ids`, when given, keeps only those runs."""
    # Runs imported from a submission bundle form rows of their own, marked with their source (empty: computed here).
    groups: dict[tuple[str, str], list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for run in store.runs(status="done", dataset=dataset):
        if run_ids is not None and run["run_id"] not in run_ids:  # e.g. only the runs a grid file plans
            continue
        spec = _spec(run)
        groups.setdefault((_config_id(run, spec), run.get("source") or ""), []).append((run, spec))

    rows = []
    for (cid, source), members in groups.items():
        members.sort(key=lambda m: (m[0]["seed"], m[0]["run_id"]))
        run0, spec = members[0]
        extractor = spec.get("extractor") or {}
        row: dict[str, Any] = {
            "attack": label(str(spec.get("attack", run0["attack"])), _params(spec.get("attack_config"))),
            "defense": label(str(spec.get("defense", run0["defense"])), _params(spec.get("defense_params"))),
            "aux_dataset": spec.get("aux_dataset") or spec.get("dataset", run0["dataset"]),
            "profile": spec.get("profile", run0["profile"]),
            "extractor": _extractor_label(extractor),
            "n_train": spec.get("n_train"),
            "n_test": spec.get("n_test"),
            "seeds": len({m[0]["seed"] for m in members}),
        }
        notes = []
        for run, _ in members:
            try:
                note = json.loads(run.get("record_json") or "{}").get("dataset_note") or ""
            except (ValueError, AttributeError):
                note = ""
            if note and note not in notes:
                notes.append(str(note))
        row["source"] = source
        row["config_id"] = cid
        row["run_ids"] = " ".join(m[0]["run_id"] for m in members)
        row["profile_note"] = _profile_caveat(row["profile"], spec.get("image_size"))
        row["dataset_note"] = "; ".join(notes)
        rows.append(row)

    frame = pd.DataFrame(rows, columns=FIRST_COLUMNS + LAST_COLUMNS)
    if len(frame):
        frame = frame.sort_values(["attack", "defense", "aux_dataset", "profile", "extractor", "n_train", "n_test",
                                   "source", "config_id"], kind="stable", key=_sort_key).reset_index(drop=True)
    return frame


def leaderboard_frame(store: Store, dataset: str) -> pd.DataFrame:
    """The CSV leaderboard of `dataset` as a frame: the CSV rendering of its Board (bench/report/csv_table.py)."""
    from bench.report.csv_table import csv_frame
    from bench.report.tables import load_board

    return csv_frame(load_board(store, dataset))


def _sort_key(column: pd.Series) -> pd.Series:
    if column.name in ("n_train", "n_test"):
        return pd.to_numeric(column, errors="coerce")
    return column.astype(str)


def metric_direction(name: str, higher_is_better: bool | None = None) -> str:
    """'higher' or 'lower' (is better): from the stored direction when given, else the metric's registry entry."""
    if higher_is_better is not None:
        return "higher" if higher_is_better else "lower"
    try:
        from bench import registry

        return "higher" if registry.metrics.get(name).meta["higher_is_better"] else "lower"
    except Exception:
        return "?"


def _cell(value: Any) -> Any:
    if isinstance(value, float) and not isinstance(value, bool):
        return "" if math.isnan(value) else f"{value:.6g}"
    return value


def _write_csv_atomically(frame: pd.DataFrame, path: Path) -> None:
    """Write to a uniquely named temporary file beside `path`, then rename: concurrent writers never clash."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        frame.astype(object).apply(lambda col: col.map(_cell)).to_csv(tmp, index=False)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def ensure_out_dir(out: Path) -> Path:
    """Create the leaderboard folder `out`, or a one-line BenchError saying why it cannot be written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise BenchError(f"cannot write leaderboards to {out}: it or a parent of it is a file, not a folder") from None
    except PermissionError:
        raise BenchError(f"cannot write leaderboards to {out}: the folder is not writable") from None
    return out


def refresh_leaderboard(store: Store, results: Path, dataset: str, out_dir: Path | None = None) -> Path:
    """Write <out_dir or results/leaderboards>/<dataset>.csv and return its path."""
    out = ensure_out_dir(Path(out_dir) if out_dir is not None else Path(results) / "leaderboards")
    path = out / f"{dataset}.csv"
    _write_csv_atomically(leaderboard_frame(store, dataset), path)  # the CSV rendering of the dataset's Board
    return path


def refresh_all(results: Path, out_dir: Path | None = None) -> list[Path]:
    """Regenerate the CSV of every dataset that has finished runs (`bench leaderboard`)."""
    results = Path(results)
    if results.exists() and not results.is_dir():
        raise BenchError(f"--results {results} is a file, not a folder")
    db = results / "bench.sqlite"
    if not db.is_file():
        raise BenchError(f"no results store at {db}; run `bench run` first or pass --results DIR")
    with Store(db) as store:
        datasets = sorted({r["dataset"] for r in store.runs(status="done")})
        return [refresh_leaderboard(store, results, d, out_dir) for d in datasets]
