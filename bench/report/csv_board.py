"""A leaderboard `Board` read back from a CSV leaderboard (bench/report/leaderboard.py's layout), so that committed
tables can be rendered again (Markdown, LaTeX, HTML) without the results store that made them.

The CSV keeps each metric's mean, sample std, seed shares and the status text of missing values, and the caveats of
ok values (`<metric>_note`); it does not keep directions, conventions or per-metric sample counts. The Board read
back renders the same CSV again (bench/report/csv_table.py). Directions and
conventions are taken from the metric registry of this version of bench, and the notes say so; sample counts are
left out rather than guessed.
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path
from typing import Any

import pandas as pd

from bench.errors import BenchError
from bench.report.tables import Board, metric_infos

_SEEDS = re.compile(r"(\d+)/(\d+) seeds")
IDENTITY = ("attack", "defense", "aux_dataset", "profile", "extractor", "n_train", "n_test", "seeds", "source",
            "config_id", "run_ids", "profile_note", "dataset_note")
REGISTRY_NOTE = ("directions and conventions are those of the metrics registered in this version of bench (the CSV "
                 "does not record them; each run's run.json pins the convention it used)")


def _registered(name: str) -> tuple[bool | None, str]:
    """(higher is better, convention) of metric `name` in the registry, (None, '') when it is not registered."""
    try:
        from bench import registry

        entry = registry.metrics.get(name)
    except Exception:
        return None, ""
    hib = entry.meta.get("higher_is_better")
    return (None if hib is None else bool(hib)), str(getattr(entry.obj, "convention", "") or "")


def _float(text: str) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _per_seed(found: list[dict], present: int, seeds: int) -> list[dict | None]:
    """One entry per seed as the store would hold them: `present` seeds with an entry (the distinct ones the CSV
    names, the first repeated for seeds that shared a status), None for the others, so that the CSV rendering of
    the Board (bench/report/csv_table.py) writes the same cells again."""
    out: list[dict | None] = list(found[:present]) + [found[0]] * max(0, present - len(found))
    return out + [None] * max(0, seeds - len(out))


def _entries(mean: str, std: str, note: str, seeds: int, hib: bool | None, conv: str) -> tuple[list, dict]:
    """Per-seed store-like entries of one metric in one row (None: a seed without it; for the notes and the CSV
    again) and its Board cells (mean, std, k, status)."""
    value = _float(mean)
    if value is None:  # no ok value: the cell holds the status text, e.g. "unavailable: bench weights pull x"
        text = mean.strip()
        if not text:
            return [], {"": math.nan, "_std": math.nan, "_k": 0, "_status": "not computed"}
        share = _SEEDS.search(text)
        text = _SEEDS.sub("", text).strip().rstrip("()").strip()
        entries = []
        for part in text.split("; "):
            status, _, detail = part.partition(": ")
            entries.append({"status": status.strip() or "not computed", "detail": detail.strip(),
                            "higher_is_better": hib, "convention": conv})
        status = "/".join(sorted({e["status"] for e in entries}))
        present, n = (int(share.group(1)), int(share.group(2))) if share else (seeds, seeds)
        return _per_seed(entries, present, n), {"": math.nan, "_std": math.nan, "_k": 0, "_status": status}
    share = _SEEDS.search(std or "")
    k = int(share.group(1)) if share else seeds
    n = int(share.group(2)) if share else seeds
    std_value = _float((std or "").split(" ")[0]) if std else None
    ok = {"status": "ok", "value": value, "detail": note, "higher_is_better": hib, "convention": conv}
    others = std.split("others ", 1)[1].rstrip(")").split("; ") if share and "others " in std else []
    entries = [ok] * k + [{"status": s.partition(": ")[0].strip(), "detail": s.partition(": ")[2].strip()}
                          for s in others]
    return entries + [None] * max(0, n - len(entries)), {
        "": value, "_std": math.nan if std_value is None else std_value, "_k": k,
        "_status": f"{k}/{n} seeds" if share else ""}


def board_from_csv(path: Path, dataset: str | None = None) -> Board:
    """The Board of a CSV leaderboard file; `dataset` names it in the tables [the file's stem]."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise BenchError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not rows:
        raise BenchError(f"{path} has no rows")
    columns = list(rows[0])
    missing = [c for c in ("attack", "defense", "seeds", "config_id", "run_ids") if c not in columns]
    if missing:
        raise BenchError(f"{path} is not a bench leaderboard CSV: it lacks {', '.join(missing)}")
    metrics = [c for c in columns if f"{c}_std" in columns and not c.startswith("utility:")]
    utilities = [c[len("utility:"):] for c in columns if c.startswith("utility:")]
    registered = {m: _registered(m) for m in metrics}
    out = []
    for r in rows:
        seeds = int(r["seeds"])
        row: dict[str, Any] = {c: r.get(c, "") for c in IDENTITY}
        row["seeds"] = seeds
        for c in ("n_train", "n_test"):
            if row[c] not in ("", None):
                row[c] = int(row[c])
        row["config"] = str(r["config_id"])[:8]
        entries = {}
        for m in metrics:
            hib, conv = registered[m]
            found, cells = _entries(r.get(m, ""), r.get(f"{m}_std", ""), r.get(f"{m}_note", ""), seeds, hib, conv)
            if found:
                entries[m] = found
            for suffix, v in cells.items():
                row[f"{m}{suffix}"] = v
        for u in utilities:
            v = _float(r.get(f"utility:{u}", ""))
            row[f"utility:{u}"] = math.nan if v is None else v
            row[f"utility:{u}_std"] = math.nan
        row["entries"] = entries
        row["grids"] = ()
        out.append(row)
    frame = pd.DataFrame(out)
    for m in metrics:
        frame[f"{m}_k"] = frame[f"{m}_k"].astype(int)
    return Board(dataset or path.stem, frame, metric_infos(frame, metrics), utilities, origin_note=REGISTRY_NOTE)
