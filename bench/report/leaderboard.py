"""Leaderboard tables from the store: one CSV per dataset, one row per configuration (everything but the seed).

Runs with different configuration ids (split sizes, auxiliary data, data root, extractor, defense or attack
parameters, profile) are separate rows and never overwrite each other; the finished seeds of one configuration are
counted, and each metric is the mean (and sample standard deviation) over them. A metric that is not 'ok' shows its
status and detail (`unavailable: bench weights pull lpips-alex`) instead of disappearing; a caveat recorded with an ok
value (FID's "biased: computed on 200 < 2048 images; prefer kid") goes to a `<metric>_note` column, present when
some row has one. `profile_note` holds the profile's caveat (bench/profiles.py): a cpu-profile row says that it
under-states what the paper profile reaches.
"""

from __future__ import annotations

import json
import math
import os
import secrets
from pathlib import Path
from typing import Any

import pandas as pd

from bench.errors import BenchError
from bench.metric_value import NOT_COMPUTED, mean_std, over_seeds
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
    if run.get("config_id"):
        return str(run["config_id"])
    from bench.spec import config_id

    return config_id(spec)


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


def _status_text(entry: dict[str, Any]) -> str:
    return f"{entry['status']}: {entry['detail']}" if entry.get("detail") else str(entry["status"])


def _metric_cells(entries: list[dict[str, Any] | None]) -> tuple[Any, Any]:
    """(mean cell, std cell) of one metric over the seeds of a row; `None` marks a seed without the metric."""
    stats = over_seeds(entries)
    if not stats.k:
        texts = sorted({_status_text(e) for e in stats.present}) or [NOT_COMPUTED]
        text = "; ".join(texts)
        if len(stats.present) < stats.n:
            text += f" ({len(stats.present)}/{stats.n} seeds)"
        return text, ""
    std: Any = "" if math.isnan(stats.std) else stats.std
    if stats.k < stats.n:  # some seeds lack it or have another status: say so rather than hide it
        others = sorted({_status_text(e) for e in stats.not_ok})
        note = f"{stats.k}/{stats.n} seeds" + (f"; others {'; '.join(others)}" if others else "")
        std = f"{std:.6g} ({note})" if std != "" else note
    return stats.mean, std


def _note_cell(entries: list[dict[str, Any] | None]) -> str:
    """The caveats recorded with a metric's ok values over the seeds of a row (e.g. FID's small-sample bias)."""
    notes: list[str] = []
    for e in entries:
        if e is not None and e.get("status", "ok") == "ok" and e.get("detail") and str(e["detail"]) not in notes:
            notes.append(str(e["detail"]))
    return "; ".join(notes)


def _profile_caveat(name: Any) -> str:
    """The caveat of profile `name` (bench.profiles, e.g. the cpu profile under-states the paper's), or ''."""
    from bench.profiles import PROFILES

    prof = PROFILES.get(str(name))
    return prof.caveat if prof is not None else ""


def leaderboard_frame(store: Store, dataset: str) -> pd.DataFrame:
    """One row per configuration with finished runs on `dataset`: its seeds counted, metric means and stds."""
    # Runs imported from a submission bundle form rows of their own, marked with their source (empty: computed here).
    groups: dict[tuple[str, str], list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for run in store.runs(status="done", dataset=dataset):
        spec = _spec(run)
        groups.setdefault((_config_id(run, spec), run.get("source") or ""), []).append((run, spec))

    rows = []
    metric_names: set[str] = set()
    noted: set[str] = set()  # metrics with a note on an ok value in some row: they get a `<metric>_note` column
    utility_names: set[str] = set()
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
        per_seed = [store.set_metrics(m[0]["run_id"]) for m in members]
        names = sorted(set().union(*per_seed))
        metric_names.update(names)
        for name in names:
            row[name], row[f"{name}_std"] = _metric_cells([s.get(name) for s in per_seed])
            row[f"{name}_note"] = _note_cell([s.get(name) for s in per_seed])
            if row[f"{name}_note"]:
                noted.add(name)
        utilities = [store.utility(m[0]["run_id"]) for m in members]
        for name in sorted(set().union(*utilities)):
            utility_names.add(name)
            vals = [u[name]["value"] for u in utilities if name in u and u[name]["value"] is not None]
            row[f"utility:{name}"] = mean_std(vals)[0] if vals else ""
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
        row["profile_note"] = _profile_caveat(row["profile"])
        row["dataset_note"] = "; ".join(notes)
        rows.append(row)

    metric_cols = [c for n in sorted(metric_names)
                   for c in (n, f"{n}_std", *([f"{n}_note"] if n in noted else []))]
    columns = FIRST_COLUMNS + metric_cols + [f"utility:{n}" for n in sorted(utility_names)] + LAST_COLUMNS
    frame = pd.DataFrame(rows, columns=columns)
    if len(frame):
        frame = frame.sort_values(["attack", "defense", "aux_dataset", "profile", "extractor", "n_train", "n_test",
                                   "source", "config_id"], kind="stable", key=_sort_key).reset_index(drop=True)
    return frame


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
    _write_csv_atomically(leaderboard_frame(store, dataset), path)
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
