"""The results store: SQLite (WAL, one writer at a time) with runs, per-sample and set-level metric values with their
status, predicted attributes, utility figures and annotations.

Every write is one short `BEGIN IMMEDIATE` transaction under a busy timeout, so several processes can share one
results folder. Problems a user can fix (a store written by a newer bench, a file that is not a database, a folder
that cannot be written, a lock held too long) become one-line `BenchError`s, never a raw sqlite traceback.
"""

from __future__ import annotations

import json
import os
import math
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from bench.errors import BenchError
from bench.metric_value import METRIC_STATUSES

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
_MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_sql(_V1), _v1_to_v2, _sql(_V3), _sql(_V4_SOURCE),
                                                           _v4_to_v5]
assert len(_MIGRATIONS) == SCHEMA_VERSION


class Store:
    """Access to one results database; every write happens in a short transaction.

    `timeout` is how many seconds a write waits for another process's transaction before giving up with a
    BenchError that says the store is locked.
    """

    def __init__(self, path: Path, timeout: float | None = None) -> None:
        self.path = Path(path)
        # How long a write waits for another process's transaction (BENCH_STORE_TIMEOUT overrides the 60 s default).
        self.timeout = float(timeout if timeout is not None else os.environ.get("BENCH_STORE_TIMEOUT", 60.0))
        self._db: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise BenchError(f"cannot create the results store {self.path}: a parent of it is a file, not a "
                             f"folder; use another --results folder") from None
        except PermissionError:
            raise self._not_writable() from None
        if self.path.is_dir():
            raise BenchError(f"the results store {self.path} is a folder, not a file; move it away or use another "
                             f"--results folder")
        try:
            with self._errors():
                self._db = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
                self._db.row_factory = sqlite3.Row
                self._open_schema()
        except BaseException:
            self.close()
            raise

    def _open_schema(self) -> None:
        """Switch to WAL and bring the schema up to date, retrying while another process holds the file.

        When several processes open one new store at once, SQLite can answer SQLITE_BUSY at once (without calling its
        busy handler) to the journal-mode switch or to the first write, so the wait up to `timeout` is done here."""
        deadline = time.monotonic() + self.timeout
        delay = 0.005
        while True:
            try:
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA foreign_keys=ON")
                with self._errors_raw():
                    self._migrate()
                return
            except sqlite3.OperationalError as exc:
                text = str(exc).lower()
                if ("locked" not in text and "busy" not in text) or time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(2 * delay, 0.25)

    @contextmanager
    def _errors_raw(self) -> Iterator[None]:
        """Let a busy error of the migration reach `_open_schema`'s retry instead of becoming a BenchError."""
        self._raw_busy = True
        try:
            yield
        finally:
            self._raw_busy = False

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------------------------------------------- errors
    def _not_writable(self) -> BenchError:
        return BenchError(f"the results store {self.path} is not writable (read-only folder or file, or a parent "
                          f"that is not a folder); use another --results folder")

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn the sqlite errors a user can fix into one-line BenchErrors; programming errors pass unchanged."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            text = str(exc).lower()
            if "locked" in text or "busy" in text:
                if getattr(self, "_raw_busy", False):
                    raise
                raise BenchError(f"the results store {self.path} is locked by another process for more than "
                                 f"{self.timeout:g} s; wait for it to finish or use another --results folder") from None
            if "unable to open" in text or "readonly" in text or "read-only" in text:
                raise self._not_writable() from None
            if "disk is full" in text:
                raise BenchError(f"the disk holding the results store {self.path} is full") from None
            if "disk i/o" in text:
                raise BenchError(f"the results store {self.path} could not be read or written (disk I/O error); "
                                 f"check the disk or use another --results folder") from None
            raise
        except sqlite3.DatabaseError as exc:
            if type(exc) is not sqlite3.DatabaseError:  # IntegrityError, ProgrammingError...: a bug, not the user's
                raise
            raise BenchError(f"{self.path} is not a valid results store (file is not a database / corrupt: {exc}): "
                             f"move it away or use another --results folder") from None

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """A read outside any transaction (WAL readers never wait for the writer)."""
        with self._errors():
            return self._conn.execute(sql, args).fetchall()

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise BenchError(f"the results store {self.path} is closed")
        return self._db

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE: waits up to `timeout` for other writers, then a BenchError)."""
        db = self._conn
        with self._errors():
            db.execute("BEGIN IMMEDIATE")
        try:
            with self._errors():
                yield db
        except BaseException:
            if db.in_transaction:
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            raise
        with self._errors():
            try:
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    try:
                        db.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                raise

    def _migrate(self) -> None:
        with self.transaction() as db:
            has_version = db.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='schema_version'").fetchone()
            if not has_version:
                other = [r[0] for r in db.execute(
                    "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'")]
                if other:
                    raise BenchError(f"{self.path} is not a valid results store (a database without a bench schema,"
                                     f" tables: {', '.join(sorted(other)[:5])}): move it away or use another "
                                     f"--results folder")
                db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            row = db.execute("SELECT version FROM schema_version").fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise BenchError(f"{self.path} was written by a newer bench (schema {version} > {SCHEMA_VERSION}); "
                                 f"upgrade leakbench or use another --results folder")
            for step in _MIGRATIONS[version:]:
                step(db)
            if row is None:
                db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
            elif version != SCHEMA_VERSION:
                db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))

    def schema_version(self) -> int:
        return int(self._query("SELECT version FROM schema_version")[0][0])

    # ------------------------------------------------------------------------------------------------ runs
    def start_run(self, run_id: str, spec: dict[str, Any], config_id: str | None = None) -> None:
        """Insert the run, or mark an existing one as running again (resume); its rows are kept (and an imported
        run's source is cleared: from now on its rows are replaced by values computed here).

        A run that is already done stays done (a second process that finds everything complete re-finishes it).
        """
        if config_id is None:
            from bench.spec import config_id as spec_config_id

            config_id = spec_config_id(spec)
        now = time.time()
        with self.transaction() as db:
            exists = db.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if exists:
                # A run computed here replaces the rows of one imported before: it is no longer the bundle's.
                db.execute("UPDATE runs SET config_id = ?, updated = ?, source = NULL WHERE run_id = ?",
                           (config_id, now, run_id))
                if exists[0] != "done":
                    db.execute("UPDATE runs SET status = 'running', error = NULL WHERE run_id = ?", (run_id,))
            else:
                db.execute(
                    "INSERT INTO runs (run_id, spec_json, dataset, attack, defense, profile, seed, status, created,"
                    " updated, config_id) VALUES (?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, ?)",
                    (run_id, json.dumps(spec, sort_keys=True), spec["dataset"], spec["attack"], spec["defense"],
                     spec["profile"], spec["seed"], now, now, config_id),
                )

    def finish_run(self, run_id: str, record: dict[str, Any]) -> None:
        """Mark the run done with its record (idempotent: finishing again replaces the record, keeps `finished`)."""
        now = time.time()
        with self.transaction() as db:
            db.execute(
                "UPDATE runs SET status = 'done', updated = ?, finished = COALESCE(finished, ?), record_json = ?,"
                " error = NULL WHERE run_id = ?",
                (now, now, json.dumps(record, sort_keys=True, default=str), run_id),
            )

    def fail_run(self, run_id: str, error: str) -> None:
        """Mark the run failed, unless it is done (another process finished it: its results stand)."""
        with self.transaction() as db:
            db.execute("UPDATE runs SET status = 'failed', updated = ?, error = ?"
                       " WHERE run_id = ? AND status != 'done'",
                       (time.time(), error, run_id))

    def run(self, run_id: str) -> dict[str, Any] | None:
        rows = self._query("SELECT * FROM runs WHERE run_id = ?", (run_id,))
        return dict(rows[0]) if rows else None

    def runs(self, status: str | None = None, dataset: str | None = None,
             config_id: str | None = None) -> list[dict[str, Any]]:
        sql, args = "SELECT * FROM runs WHERE 1=1", []
        if status:
            sql, args = sql + " AND status = ?", args + [status]
        if dataset:
            sql, args = sql + " AND dataset = ?", args + [dataset]
        if config_id:
            sql, args = sql + " AND config_id = ?", args + [config_id]
        return [dict(r) for r in self._query(sql + " ORDER BY created, run_id", args)]

    def import_run(self, run_id: str, spec: dict[str, Any], config_id: str, record: dict[str, Any], source: str,
                   sample_rows: Sequence[tuple], set_rows: Sequence[Mapping[str, Any]],
                   attributes: Sequence[tuple[int, str, str, Any]] = (),
                   utility: Mapping[str, float | None] = {}) -> bool:
        """Add a finished run computed elsewhere (a verified submission bundle) in one transaction, marked with
        `source`. Returns False, changing nothing, when the run id is already in the store (imported before, or
        computed here: the same spec gives the same id), so importing a bundle twice never duplicates a row."""
        now = time.time()
        with self.transaction() as db:
            if db.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone():
                return False
            db.execute(
                "INSERT INTO runs (run_id, spec_json, dataset, attack, defense, profile, seed, status, created,"
                " updated, finished, record_json, config_id, source)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, 'done', ?, ?, ?, ?, ?, ?)",
                (run_id, json.dumps(spec, sort_keys=True), spec["dataset"], spec["attack"], spec["defense"],
                 spec["profile"], spec["seed"], now, now, now, json.dumps(record, sort_keys=True, default=str),
                 config_id, source))
            db.executemany(
                "INSERT INTO sample_metrics (run_id, sample_index, sample_id, metric, value, status, version)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(run_id, int(i), str(sid), m, _real(v), str(st), str(ver)) for i, sid, m, v, st, ver in sample_rows])
            for r in set_rows:
                lo, hi = (None, None) if r.get("lo") is None and r.get("hi") is None else (r.get("lo"), r.get("hi"))
                hib = r.get("higher_is_better")
                db.execute(
                    "INSERT INTO set_metrics (run_id, metric, value, n, convention, status, detail, version,"
                    " higher_is_better, lo, hi) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (run_id, r["metric"], None if r.get("value") is None else _real(r["value"]), int(r["n"]),
                     r["convention"], r["status"], r.get("detail"),
                     None if r.get("version") is None else str(r["version"]),
                     None if hib is None else int(bool(hib)),
                     None if lo is None else _real(lo), None if hi is None else _real(hi)))
            db.executemany(
                "INSERT INTO attributes (run_id, sample_index, sample_id, attribute, value) VALUES (?, ?, ?, ?, ?)",
                [(run_id, int(i), str(sid), a, None if v is None else str(v)) for i, sid, a, v in attributes])
            db.executemany("INSERT INTO utility (run_id, name, value) VALUES (?, ?, ?)",
                           [(run_id, k, None if v is None else _real(v)) for k, v in utility.items()])
        return True

    # ------------------------------------------------------------------------------------------- metrics
    def add_sample_metrics(self, run_id: str, rows: Sequence[tuple]) -> None:
        """Per-sample rows in one transaction; re-adding a row replaces it.

        A row is `(index, sample_id, metric, value)` (status 'ok', or 'undefined' when the value is NaN/None;
        version '1') or `(index, sample_id, metric, value, status, version)`.
        """
        out = []
        for row in rows:
            if len(row) == 4:
                i, sid, metric, value = row
                status, version = None, "1"
            elif len(row) == 6:
                i, sid, metric, value, status, version = row
            else:
                raise ValueError(f"a sample-metric row has 4 or 6 fields, got {len(row)}: {row!r}")
            v = _real(value)
            if status is None:
                status = "ok" if v is not None else "undefined"
            out.append((run_id, int(i), str(sid), metric, v, str(status), str(version)))
        with self.transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO sample_metrics"
                " (run_id, sample_index, sample_id, metric, value, status, version)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                out,
            )

    def sample_indices_done(self, run_id: str, metrics: Mapping[str, str] | Sequence[str],
                            ids: Sequence[str] | None = None) -> set[int]:
        """Indices of the samples that have a row for every metric in `metrics`.

        With a mapping name -> version, a row counts only if it was written by that version of the metric. With
        `ids`, a row counts only if it belongs to sample `ids[index]` (not to a larger or different earlier split).
        """
        versions = dict(metrics) if isinstance(metrics, Mapping) else None
        names = sorted(set(versions if versions is not None else metrics))
        if not names:
            return set()
        marks = ",".join("?" * len(names))
        rows = self._query(
            f"SELECT sample_index, sample_id, metric, version FROM sample_metrics WHERE run_id = ?"
            f" AND metric IN ({marks})",
            (run_id, *names),
        )
        have: dict[int, set[str]] = {}
        for r in rows:
            i = int(r["sample_index"])
            if ids is not None and not _matches(i, r["sample_id"], ids):
                continue
            if versions is not None and str(r["version"]) != str(versions[r["metric"]]):
                continue
            have.setdefault(i, set()).add(r["metric"])
        return {i for i, got in have.items() if len(got) == len(names)}

    def sample_metrics(self, run_id: str, ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Per-sample rows (sample_index, sample_id, metric, value, status, version), by index then metric.

        With `ids`, only the rows of sample `ids[i]` at index i < len(ids): rows left by a larger earlier split, or
        by a different sample at the same index, never feed a mean.
        """
        rows = self._query(
            "SELECT sample_index, sample_id, metric, value, status, version FROM sample_metrics WHERE run_id = ?"
            " ORDER BY sample_index, metric",
            (run_id,),
        )
        out = [dict(r) for r in rows]
        if ids is not None:
            out = [r for r in out if _matches(int(r["sample_index"]), r["sample_id"], ids)]
        return out

    def set_set_metric(self, run_id: str, metric: str, value: float | None, n: int, convention: str,
                       status: str = "ok", detail: str | None = None, version: str | None = "1",
                       higher_is_better: bool | None = None,
                       value_range: tuple[float, float] | None = None) -> None:
        """A set-level value with its status (ok, unavailable, undefined, not-applicable, failed), the detail that
        explains a non-ok status (the fix command, the error, the reason), the metric's version, direction and range.
        A NaN/None value with status 'ok' is stored as 'undefined'."""
        if status not in METRIC_STATUSES:
            raise ValueError(f"metric status {status!r} is not one of {', '.join(METRIC_STATUSES)}")
        v = None if value is None else _real(value)
        if v is None and status == "ok":
            status = "undefined"
        lo, hi = (None, None) if value_range is None else (_real(value_range[0]), _real(value_range[1]))
        hib = None if higher_is_better is None else int(bool(higher_is_better))
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO set_metrics (run_id, metric, value, n, convention, status, detail, version,"
                " higher_is_better, lo, hi) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, metric, v, int(n), convention, status, detail, None if version is None else str(version),
                 hib, lo, hi),
            )

    def set_metrics(self, run_id: str) -> dict[str, dict[str, Any]]:
        """metric -> {metric, value (None when NaN), n, convention, status, detail, version, higher_is_better
        (bool or None), lo, hi}."""
        rows = self._query(
            "SELECT metric, value, n, convention, status, detail, version, higher_is_better, lo, hi FROM set_metrics"
            " WHERE run_id = ? ORDER BY metric",
            (run_id,),
        )
        out = {}
        for r in rows:
            d = dict(r)
            if d["higher_is_better"] is not None:
                d["higher_is_better"] = bool(d["higher_is_better"])
            out[d["metric"]] = d
        return out

    # ---------------------------------------------------------------------------------- attributes, utility
    def add_attributes(self, run_id: str, rows: Sequence[tuple[int, str, str, Any]]) -> None:
        """Predicted attributes of an attribute-inference attack: (sample_index, sample_id, attribute, value)."""
        out = [(run_id, int(i), str(sid), attr, None if v is None else str(v)) for i, sid, attr, v in rows]
        with self.transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO attributes (run_id, sample_index, sample_id, attribute, value)"
                " VALUES (?, ?, ?, ?, ?)",
                out,
            )

    def attributes(self, run_id: str, ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
        rows = self._query(
            "SELECT sample_index, sample_id, attribute, value FROM attributes WHERE run_id = ?"
            " ORDER BY sample_index, attribute",
            (run_id,),
        )
        out = [dict(r) for r in rows]
        if ids is not None:
            out = [r for r in out if _matches(int(r["sample_index"]), r["sample_id"], ids)]
        return out

    def set_utility(self, run_id: str, name: str, value: float | None, detail: str | None = None) -> None:
        """One utility figure of the run's defense (shown beside leakage)."""
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO utility (run_id, name, value, detail) VALUES (?, ?, ?, ?)",
                       (run_id, name, None if value is None else _real(value), detail))

    def utility(self, run_id: str) -> dict[str, dict[str, Any]]:
        rows = self._query("SELECT name, value, detail FROM utility WHERE run_id = ? ORDER BY name", (run_id,))
        return {r["name"]: {"value": r["value"], "detail": r["detail"]} for r in rows}

    # ------------------------------------------------------------------------------------------ annotations
    def set_annotation(self, run_id: str | None, sample_index: int, sample_id: str, kind: str, label: float,
                       annotator: str, source: str | None = None, original: str | None = None,
                       item: str | None = None, when: float | None = None) -> None:
        """One annotator's answer about one reconstruction (kind 'recognisable': label 1 yes, 0 no).

        Keyed by (run id or source, sample index, kind, annotator): answering again updates the answer and its
        `updated` time, never adds a second row. Imported sets that belong to no run give `source` instead of a run
        id, with the reconstruction's and the original's names (`item`, `original`) inside that source.
        """
        with self.transaction() as db:
            _put_annotation(db, run_id, sample_index, sample_id, kind, label, annotator, source, original, item, when)

    def annotations(self, kind: str | None = None, run_ids: Sequence[str] | None = None,
                    annotator: str | None = None) -> list[dict[str, Any]]:
        """Annotation rows (run_id or source, sample_index, sample_id, kind, label, annotator, created, updated,
        original, item), optionally only of `kind`, of the runs `run_ids` and of one annotator."""
        sql, args = ("SELECT run_id, source, sample_index, sample_id, kind, label, annotator, created,"
                     " COALESCE(updated, created) AS updated, original, item FROM annotations WHERE 1=1", [])
        if kind is not None:
            sql, args = sql + " AND kind = ?", args + [kind]
        if annotator is not None:
            sql, args = sql + " AND annotator = ?", args + [annotator]
        if run_ids is not None:
            ids = list(run_ids)
            sql, args = sql + f" AND run_id IN ({','.join('?' * len(ids))})", args + ids
        sql += " ORDER BY IFNULL(run_id, ''), IFNULL(source, ''), sample_index, kind, annotator"
        return [dict(r) for r in self._query(sql, args)]

    def set_pair_annotation(self, a: tuple[str, int], b: tuple[str, int], sample_id: str, closer: str,
                            annotator: str, source: str | None = None, when: float | None = None) -> None:
        """A two-alternative forced choice: which of reconstructions a = (run id, index) and b (of the same original
        `sample_id`) is closer to the original (`closer` is 'a' or 'b'). The pair is stored in a canonical order
        (a < b), so showing it the other way round updates the same row."""
        with self.transaction() as db:
            _put_pair_annotation(db, a, b, sample_id, closer, annotator, source, when)

    def import_annotations(self, rows: Iterable[tuple[str, dict[str, Any]]]) -> dict[str, int]:
        """Upsert ("recognisable", set_annotation's keywords) and ("pair", set_pair_annotation's) rows in one
        transaction, consuming `rows` as it goes (a file is never held whole); an exception raised while producing
        them rolls every row back. Returns the count of each kind."""
        counts = {"recognisable": 0, "pair": 0}
        with self.transaction() as db:
            for kind, kw in rows:
                if kind == "pair":
                    _put_pair_annotation(db, **kw)
                else:
                    _put_annotation(db, **kw)
                counts["pair" if kind == "pair" else "recognisable"] += 1
        return counts

    def sample_ids(self, run_id: str) -> dict[int, str]:
        """{sample index: sample id} of a run, from its per-sample metric rows and predicted attributes."""
        rows = self._query("SELECT DISTINCT sample_index, sample_id FROM sample_metrics WHERE run_id = ? UNION "
                           "SELECT DISTINCT sample_index, sample_id FROM attributes WHERE run_id = ?",
                           (run_id, run_id))
        return {int(r["sample_index"]): str(r["sample_id"]) for r in rows}

    def pair_annotations(self, run_ids: Sequence[str] | None = None,
                         annotator: str | None = None) -> list[dict[str, Any]]:
        """Pair rows (run_a, index_a, run_b, index_b, source, sample_id, choice, annotator, created, updated), with
        both runs among `run_ids` when given."""
        sql, args = ("SELECT run_a, index_a, run_b, index_b, source, sample_id, choice, annotator, created, updated"
                     " FROM pair_annotations WHERE 1=1", [])
        if annotator is not None:
            sql, args = sql + " AND annotator = ?", args + [annotator]
        if run_ids is not None:
            ids = list(run_ids)
            marks = ",".join("?" * len(ids))
            sql, args = sql + f" AND run_a IN ({marks}) AND run_b IN ({marks})", args + ids + ids
        sql += " ORDER BY run_a, index_a, run_b, index_b, annotator"
        return [dict(r) for r in self._query(sql, args)]


# The WHERE clauses below name the unique indexes' own expressions (IFNULL(...)), so that finding the row to update
# is an index lookup: with `run_id IS ?` SQLite scanned the whole table for every answer, and importing n answers
# took time quadratic in n.
def _put_annotation(db: sqlite3.Connection, run_id: str | None, sample_index: int, sample_id: str, kind: str,
                    label: float, annotator: str, source: str | None = None, original: str | None = None,
                    item: str | None = None, when: float | None = None) -> None:
    if (run_id is None) == (source is None):
        raise ValueError("an annotation has a run id or a source, not both and not neither")
    now = time.time() if when is None else float(when)
    cur = db.execute(
        "UPDATE annotations SET label = ?, sample_id = ?, updated = ?, original = COALESCE(?, original),"
        " item = COALESCE(?, item) WHERE IFNULL(run_id, '') = IFNULL(?, '') AND IFNULL(source, '') = IFNULL(?, '')"
        " AND sample_index = ? AND kind = ? AND annotator = ?",
        (float(label), str(sample_id), now, original, item, run_id, source, int(sample_index), kind, annotator))
    if cur.rowcount == 0:
        db.execute(
            "INSERT INTO annotations (run_id, source, sample_index, sample_id, kind, label, annotator,"
            " created, updated, original, item) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (run_id, source, int(sample_index), str(sample_id), kind, float(label), annotator, now, now,
             original, item))


def _put_pair_annotation(db: sqlite3.Connection, a: tuple[str, int], b: tuple[str, int], sample_id: str, closer: str,
                         annotator: str, source: str | None = None, when: float | None = None) -> None:
    if closer not in ("a", "b"):
        raise ValueError(f"closer must be 'a' or 'b', got {closer!r}")
    (ra, ia), (rb, ib) = (str(a[0]), int(a[1])), (str(b[0]), int(b[1]))
    if (ra, ia) == (rb, ib):
        raise ValueError("a pair needs two different reconstructions")
    if (rb, ib) < (ra, ia):
        (ra, ia), (rb, ib), closer = (rb, ib), (ra, ia), "b" if closer == "a" else "a"
    now = time.time() if when is None else float(when)
    cur = db.execute(
        "UPDATE pair_annotations SET choice = ?, sample_id = ?, updated = ? WHERE IFNULL(source, '') = IFNULL(?, '')"
        " AND IFNULL(run_a, '') = ? AND index_a = ? AND IFNULL(run_b, '') = ? AND index_b = ? AND annotator = ?",
        (closer, str(sample_id), now, source, ra, ia, rb, ib, annotator))
    if cur.rowcount == 0:
        db.execute(
            "INSERT INTO pair_annotations (run_a, index_a, run_b, index_b, source, sample_id, choice,"
            " annotator, created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (ra, ia, rb, ib, source, str(sample_id), closer, annotator, now, now))


def _matches(index: int, sample_id: str, ids: Sequence[str]) -> bool:
    return 0 <= index < len(ids) and str(ids[index]) == sample_id


def _real(value: Any) -> float | None:
    """SQLite stores inf as REAL but NaN as NULL; keep inf, map NaN (and None) to NULL explicitly."""
    if value is None:
        return None
    v = float(value)
    return None if math.isnan(v) else v
