"""The CSV leaderboard as one more renderer of the Board (bench/report/tables.py): the same rows, the same
aggregation over seeds (the Board's mean, sample std and ok-seed count of each metric) and the same metrics in the
same order as the Markdown, LaTeX and HTML tables, laid out as the machine-readable file `bench run` refreshes.

Columns: the identity columns (`attack` … `seeds`), per metric `m` (the mean over the seeds with an ok value; when
none has one, the statuses with their details, e.g. `unavailable: bench weights pull alexnet`, and how many seeds
have an entry), `m_std` (the sample std, empty under two values; `k/n seeds; others …` when some seeds lack an ok
value) and `m_note` (the caveats recorded with ok values, present when a row of the board has one), then
`utility:u` per utility figure (the mean over seeds) and the provenance columns (`source` … `dataset_note`).
bench/report/csv_board.py reads this layout back into a Board.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import pandas as pd

from bench.metric_value import NOT_COMPUTED, OK
from bench.report.leaderboard import FIRST_COLUMNS, LAST_COLUMNS
from bench.report.tables import Board


def _status_text(entry: Mapping[str, Any]) -> str:
    return f"{entry['status']}: {entry['detail']}" if entry.get("detail") else str(entry["status"])


def metric_cells(entries: Sequence[Mapping[str, Any] | None], mean: float, std: float, k: int) -> tuple[Any, Any]:
    """(mean cell, std cell) of one metric in one row, from the Board's aggregate (`mean`, `std`, `k` ok seeds) and
    the row's per-seed entries (None: a seed without the metric), which say why values are missing."""
    present = [e for e in entries if e is not None]
    n = len(entries)
    if not k:
        texts = sorted({_status_text(e) for e in present}) or [NOT_COMPUTED]
        text = "; ".join(texts)
        if len(present) < n:
            text += f" ({len(present)}/{n} seeds)"
        return text, ""
    cell: Any = "" if math.isnan(std) else std
    if k < n:  # some seeds lack it or have another status: say so rather than hide it
        others = sorted({_status_text(e) for e in present if e.get("status", OK) != OK})
        note = f"{k}/{n} seeds" + (f"; others {'; '.join(others)}" if others else "")
        cell = f"{cell:.6g} ({note})" if cell != "" else note
    return mean, cell


def note_cell(entries: Sequence[Mapping[str, Any] | None]) -> str:
    """The caveats recorded with a metric's ok values over the seeds of a row (e.g. FID's small-sample bias)."""
    notes: list[str] = []
    for e in entries:
        if e is not None and e.get("status", OK) == OK and e.get("detail") and str(e["detail"]) not in notes:
            notes.append(str(e["detail"]))
    return "; ".join(notes)


def csv_frame(board: Board) -> pd.DataFrame:
    """The CSV leaderboard of `board`: one row per board row, in its order; the board's metrics in its order."""
    frame = board.frame
    rows: list[dict[str, Any]] = []
    noted: set[str] = set()
    for _, r in frame.iterrows():
        row = {c: r[c] for c in FIRST_COLUMNS + LAST_COLUMNS if c in frame}
        recorded = r.get("entries") or {}
        for m in board.metrics:
            entries = recorded.get(m)
            if entries is None:  # no seed of this row recorded the metric: empty cells
                continue
            row[m], row[f"{m}_std"] = metric_cells(entries, float(r[m]), float(r[f"{m}_std"]), int(r[f"{m}_k"]))
            row[f"{m}_note"] = note_cell(entries)
            if row[f"{m}_note"]:
                noted.add(m)
        for u in board.utilities:
            value = r.get(f"utility:{u}")
            row[f"utility:{u}"] = "" if value is None or pd.isna(value) else value
        rows.append(row)
    metric_cols = [c for m in board.metrics for c in (m, f"{m}_std", *([f"{m}_note"] if m in noted else []))]
    columns = FIRST_COLUMNS + metric_cols + [f"utility:{u}" for u in board.utilities] + LAST_COLUMNS
    return pd.DataFrame(rows, columns=columns)


__all__ = ["csv_frame", "metric_cells", "note_cell"]
