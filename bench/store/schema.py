"""The store's SQL schema: the tables of each schema version and the migrations that bring an older store up to
date when it is opened."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any, Callable

from bench.errors import BenchError

SCHEMA_VERSION = 5


_V1 = """
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
"""

_V2 = """
    ALTER TABLE runs ADD COLUMN config_id TEXT;
    CREATE INDEX runs_config ON runs(config_id);
    CREATE INDEX runs_dataset ON runs(dataset, status);
    ALTER TABLE sample_metrics ADD COLUMN status TEXT NOT NULL DEFAULT 'ok';
    ALTER TABLE sample_metrics ADD COLUMN version TEXT NOT NULL DEFAULT '1';
    UPDATE sample_metrics SET status = 'undefined' WHERE value IS NULL;
    ALTER TABLE set_metrics ADD COLUMN status TEXT NOT NULL DEFAULT 'ok';
    ALTER TABLE set_metrics ADD COLUMN detail TEXT;
    ALTER TABLE set_metrics ADD COLUMN version TEXT;
    ALTER TABLE set_metrics ADD COLUMN higher_is_better INTEGER;
    ALTER TABLE set_metrics ADD COLUMN lo REAL;
    ALTER TABLE set_metrics ADD COLUMN hi REAL;
    UPDATE set_metrics SET status = 'undefined' WHERE value IS NULL;
    UPDATE set_metrics SET version = '1' WHERE version IS NULL;
    CREATE TABLE attributes (
        run_id TEXT NOT NULL REFERENCES runs(run_id),
        sample_index INTEGER NOT NULL,
        sample_id TEXT NOT NULL,
        attribute TEXT NOT NULL,
        value TEXT,
        PRIMARY KEY (run_id, sample_index, attribute)
    );
    CREATE TABLE utility (
        run_id TEXT NOT NULL REFERENCES runs(run_id),
        name TEXT NOT NULL,
        value REAL,
        detail TEXT,
        PRIMARY KEY (run_id, name)
    );
"""


def _sql(script: str) -> Callable[[sqlite3.Connection], None]:
    def step(db: sqlite3.Connection) -> None:
        for statement in script.split(";"):
            if statement.strip():
                db.execute(statement)

    return step


def _v1_to_v2(db: sqlite3.Connection) -> None:
    from bench.spec import config_id

    _sql(_V2)(db)
    for run_id, spec_json in db.execute("SELECT run_id, spec_json FROM runs").fetchall():
        try:
            cid = config_id(json.loads(spec_json))
        except (ValueError, TypeError):
            continue
        db.execute("UPDATE runs SET config_id = ? WHERE run_id = ?", (cid, run_id))


# v3: annotations keyed so that an annotator's answer is updated, never duplicated (run id, or the source of an
# imported set that belongs to no run); pairwise (two-alternative forced choice) answers in a table of their own.
_V3 = """
    CREATE TABLE annotations_v3 (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT,
        source TEXT,
        sample_index INTEGER NOT NULL,
        sample_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        label REAL NOT NULL,
        annotator TEXT NOT NULL,
        created REAL NOT NULL,
        updated REAL,
        original TEXT,
        item TEXT,
        CHECK ((run_id IS NULL) != (source IS NULL))
    );
    INSERT INTO annotations_v3 (run_id, sample_index, sample_id, kind, label, annotator, created, updated)
        SELECT a.run_id, a.sample_index, a.sample_id, a.kind, a.label, a.annotator,
            (SELECT MIN(c.created) FROM annotations c WHERE c.run_id = a.run_id AND c.sample_index = a.sample_index
             AND c.kind = a.kind AND c.annotator = a.annotator), a.created
        FROM annotations a WHERE a.id = (
            SELECT b.id FROM annotations b WHERE b.run_id = a.run_id AND b.sample_index = a.sample_index
            AND b.kind = a.kind AND b.annotator = a.annotator ORDER BY b.created DESC, b.id DESC LIMIT 1);
    DROP TABLE annotations;
    ALTER TABLE annotations_v3 RENAME TO annotations;
    CREATE UNIQUE INDEX annotations_key ON annotations
        (IFNULL(run_id, ''), IFNULL(source, ''), sample_index, kind, annotator);
    CREATE TABLE pair_annotations (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_a TEXT,
        index_a INTEGER NOT NULL,
        run_b TEXT,
        index_b INTEGER NOT NULL,
        source TEXT,
        sample_id TEXT NOT NULL,
        choice TEXT NOT NULL CHECK (choice IN ('a', 'b')),
        annotator TEXT NOT NULL,
        created REAL NOT NULL,
        updated REAL NOT NULL
    );
    CREATE UNIQUE INDEX pair_annotations_key ON pair_annotations
        (IFNULL(source, ''), IFNULL(run_a, ''), index_a, IFNULL(run_b, ''), index_b, annotator);
"""

# v4: where a run's rows came from. NULL for runs computed here; for runs added by `bench leaderboard import`, the
# submission they came from ("<distribution>==<version> bundle <sha256 prefix>"), shown in the leaderboard.
_V4_SOURCE = """
    ALTER TABLE runs ADD COLUMN source TEXT;
    CREATE INDEX runs_source ON runs(source)
"""


def _v4_to_v5(db: sqlite3.Connection) -> None:
    """v5: folder datasets are known by content (bench.datasets.rekey); a run whose data folders are present and
    unchanged since it ran gets the configuration id its data has now, so it pools with new runs (and copies) of the
    same data. Its run id, spec (which hashes to the run id) and rows stay; the record notes the re-keying."""
    if db.execute("SELECT 1 FROM runs LIMIT 1").fetchone() is None:
        return  # a new store: nothing to re-key, and no slow imports while this transaction holds the write lock
    from bench.datasets.rekey import rekeyed_spec
    from bench.spec import config_id

    memo: dict[str, Any] = {}
    for run_id, spec_json, old_cid, record_json in db.execute(
            "SELECT run_id, spec_json, config_id, record_json FROM runs").fetchall():
        try:
            spec = json.loads(spec_json)
            new = rekeyed_spec(spec, memo) if isinstance(spec, dict) else None
            record = json.loads(record_json) if record_json else None
        except ValueError:
            continue
        if new is None:
            continue
        cid = config_id(new)
        if isinstance(record, dict):
            record["config_id"] = cid
            record["rekeyed"] = {"store_schema": 5, "old_config_id": old_cid,
                                 "dataset_fingerprint": new["dataset_fingerprint"],
                                 "note": "data folders unchanged since the run (same paths, sizes and modification "
                                         "times): configuration id recomputed from their content"}
            record_json = json.dumps(record, sort_keys=True)
        db.execute("UPDATE runs SET config_id = ?, record_json = ? WHERE run_id = ?", (cid, record_json, run_id))


# Migrations: index i brings the schema from version i to i + 1 (inside the transaction that opens the store).
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_sql(_V1), _v1_to_v2, _sql(_V3), _sql(_V4_SOURCE),
                                                           _v4_to_v5]
assert len(MIGRATIONS) == SCHEMA_VERSION


def migrate(db: sqlite3.Connection, path: Path) -> None:
    """Bring the store at `path` (open in `db`, inside a write transaction) to SCHEMA_VERSION; refuse a database
    without a bench schema and one written by a newer bench."""
    has_version = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type='table' AND name='schema_version'").fetchone()
    if not has_version:
        other = [r[0] for r in db.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'")]
        if other:
            raise BenchError(f"{path} is not a valid results store (a database without a bench schema,"
                             f" tables: {', '.join(sorted(other)[:5])}): move it away or use another "
                             f"--results folder")
        db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    row = db.execute("SELECT version FROM schema_version").fetchone()
    version = int(row[0]) if row else 0
    if version > SCHEMA_VERSION:
        raise BenchError(f"{path} was written by a newer bench (schema {version} > {SCHEMA_VERSION}); "
                         f"upgrade leakbench or use another --results folder")
    for step in MIGRATIONS[version:]:
        step(db)
    if row is None:
        db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
    elif version != SCHEMA_VERSION:
        db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
