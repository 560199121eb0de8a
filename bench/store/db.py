"""The results store: SQLite (WAL, one writer) with runs, per-sample and set-level metrics, and annotations."""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

SCHEMA_VERSION = 1

# Migrations: index i brings the schema from version i to i + 1.
_MIGRATIONS: list[str] = [
    """
    CREATE TABLE runs (
        run_id TEXT PRIMARY KEY,
        spec_json TEXT NOT NULL,
        dataset TEXT NOT NULL,
        attack TEXT NOT NULL,
        defense TEXT NOT NULL,
        profile TEXT NOT NULL,
        seed INTEGER NOT NULL,
        status TEXT NOT NULL,
        created REAL NOT NULL,
        updated REAL NOT NULL,
        finished REAL,
        record_json TEXT,
        error TEXT
    );
    CREATE TABLE sample_metrics (
        run_id TEXT NOT NULL REFERENCES runs(run_id),
        sample_index INTEGER NOT NULL,
        sample_id TEXT NOT NULL,
        metric TEXT NOT NULL,
        value REAL,
        PRIMARY KEY (run_id, sample_index, metric)
    );
    CREATE TABLE set_metrics (
        run_id TEXT NOT NULL REFERENCES runs(run_id),
        metric TEXT NOT NULL,
        value REAL,
        n INTEGER NOT NULL,
        convention TEXT NOT NULL,
        PRIMARY KEY (run_id, metric)
    );
    CREATE TABLE annotations (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL,
        sample_index INTEGER NOT NULL,
        sample_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        label REAL NOT NULL,
        annotator TEXT NOT NULL,
        created REAL NOT NULL
    );
    CREATE INDEX sample_metrics_run ON sample_metrics(run_id, metric);
    """,
]


class Store:
    """Access to one results database; every write happens in a short transaction."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=60, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._migrate()

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _migrate(self) -> None:
        with self.transaction() as db:
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = db.execute("SELECT version FROM schema_version").fetchone()
            version = row[0] if row else 0
            if version > SCHEMA_VERSION:
                raise RuntimeError(f"{self.path} has schema {version}, newer than this bench ({SCHEMA_VERSION})")
            for step in _MIGRATIONS[version:]:
                for statement in step.split(";"):
                    if statement.strip():
                        db.execute(statement)
            if row is None:
                db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
            else:
                db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))

    def schema_version(self) -> int:
        return int(self._db.execute("SELECT version FROM schema_version").fetchone()[0])

    # ------------------------------------------------------------------------------------------------ runs
    def start_run(self, run_id: str, spec: dict[str, Any]) -> None:
        """Insert the run, or mark an existing one as running again (resume); its rows are kept."""
        now = time.time()
        with self.transaction() as db:
            exists = db.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if exists:
                db.execute("UPDATE runs SET status='running', updated=?, error=NULL WHERE run_id=?", (now, run_id))
            else:
                db.execute(
                    "INSERT INTO runs (run_id, spec_json, dataset, attack, defense, profile, seed, status, created,"
                    " updated) VALUES (?, ?, ?, ?, ?, ?, ?, 'running', ?, ?)",
                    (run_id, json.dumps(spec, sort_keys=True), spec["dataset"], spec["attack"], spec["defense"],
                     spec["profile"], spec["seed"], now, now),
                )

    def finish_run(self, run_id: str, record: dict[str, Any]) -> None:
        now = time.time()
        with self.transaction() as db:
            db.execute(
                "UPDATE runs SET status='done', updated=?, finished=?, record_json=? WHERE run_id=?",
                (now, now, json.dumps(record, sort_keys=True, default=str), run_id),
            )

    def fail_run(self, run_id: str, error: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE runs SET status='failed', updated=?, error=? WHERE run_id=?", (time.time(), error, run_id))

    def run(self, run_id: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return dict(row) if row else None

    def runs(self, status: str | None = None, dataset: str | None = None) -> list[dict[str, Any]]:
        sql, args = "SELECT * FROM runs WHERE 1=1", []
        if status:
            sql, args = sql + " AND status = ?", args + [status]
        if dataset:
            sql, args = sql + " AND dataset = ?", args + [dataset]
        return [dict(r) for r in self._db.execute(sql + " ORDER BY created", args)]

    # ------------------------------------------------------------------------------------------- metrics
    def add_sample_metrics(self, run_id: str, rows: Sequence[tuple[int, str, str, float]]) -> None:
        """(sample_index, sample_id, metric, value) rows, in one transaction; re-adding a row replaces it."""
        with self.transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO sample_metrics (run_id, sample_index, sample_id, metric, value)"
                " VALUES (?, ?, ?, ?, ?)",
                [(run_id, int(i), sid, m, _real(v)) for i, sid, m, v in rows],
            )

    def sample_indices_done(self, run_id: str, metrics: Sequence[str]) -> set[int]:
        """Indices of the samples that have a row for every metric in `metrics`."""
        if not metrics:
            return set()
        marks = ",".join("?" * len(metrics))
        rows = self._db.execute(
            f"SELECT sample_index FROM sample_metrics WHERE run_id = ? AND metric IN ({marks})"
            " GROUP BY sample_index HAVING COUNT(DISTINCT metric) = ?",
            (run_id, *metrics, len(metrics)),
        )
        return {int(r[0]) for r in rows}

    def sample_metrics(self, run_id: str) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT sample_index, sample_id, metric, value FROM sample_metrics WHERE run_id = ?"
            " ORDER BY sample_index, metric",
            (run_id,),
        )
        return [dict(r) for r in rows]

    def set_set_metric(self, run_id: str, metric: str, value: float, n: int, convention: str) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO set_metrics (run_id, metric, value, n, convention) VALUES (?, ?, ?, ?, ?)",
                (run_id, metric, _real(value), int(n), convention),
            )

    def set_metrics(self, run_id: str) -> dict[str, dict[str, Any]]:
        rows = self._db.execute("SELECT metric, value, n, convention FROM set_metrics WHERE run_id = ?", (run_id,))
        return {r["metric"]: dict(r) for r in rows}


def _real(value: float) -> float | None:
    """SQLite stores inf as REAL but NaN as NULL; keep inf, map NaN to NULL explicitly."""
    v = float(value)
    return None if v != v else v
