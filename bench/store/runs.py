"""The runs table: a run started, finished or failed here, or imported finished from a submission bundle."""

from __future__ import annotations

import json
import time
from typing import Any, Mapping, Sequence

from bench.store.connection import StoreConnection
from bench.store.values import real


class RunTable(StoreConnection):
    """Runs: their spec, status, record and where their rows came from."""

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
                [(run_id, int(i), str(sid), m, real(v), str(st), str(ver)) for i, sid, m, v, st, ver in sample_rows])
            for r in set_rows:
                lo, hi = (None, None) if r.get("lo") is None and r.get("hi") is None else (r.get("lo"), r.get("hi"))
                hib = r.get("higher_is_better")
                db.execute(
                    "INSERT INTO set_metrics (run_id, metric, value, n, convention, status, detail, version,"
                    " higher_is_better, lo, hi) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (run_id, r["metric"], None if r.get("value") is None else real(r["value"]), int(r["n"]),
                     r["convention"], r["status"], r.get("detail"),
                     None if r.get("version") is None else str(r["version"]),
                     None if hib is None else int(bool(hib)),
                     None if lo is None else real(lo), None if hi is None else real(hi)))
            db.executemany(
                "INSERT INTO attributes (run_id, sample_index, sample_id, attribute, value) VALUES (?, ?, ?, ?, ?)",
                [(run_id, int(i), str(sid), a, None if v is None else str(v)) for i, sid, a, v in attributes])
            db.executemany("INSERT INTO utility (run_id, name, value) VALUES (?, ?, ?)",
                           [(run_id, k, None if v is None else real(v)) for k, v in utility.items()])
        return True
