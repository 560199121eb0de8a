"""A run's results: per-sample and set-level metric values with their status, predicted attributes and the
defense's utility figures."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from bench.metric_value import METRIC_STATUSES
from bench.store.connection import StoreConnection
from bench.store.values import matches, real


class ResultTables(StoreConnection):
    """The sample_metrics, set_metrics, attributes and utility tables."""

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
            v = real(value)
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
            if ids is not None and not matches(i, r["sample_id"], ids):
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
        return self._sample_rows(
            "SELECT sample_index, sample_id, metric, value, status, version FROM sample_metrics WHERE run_id = ?"
            " ORDER BY sample_index, metric", run_id, ids)

    def _sample_rows(self, sql: str, run_id: str, ids: Sequence[str] | None) -> list[dict[str, Any]]:
        """The rows `sql` selects for `run_id` (one `?`) as dicts; with `ids`, only those of sample `ids[i]` at
        index i (`matches`)."""
        out = [dict(r) for r in self._query(sql, (run_id,))]
        if ids is not None:
            out = [r for r in out if matches(int(r["sample_index"]), r["sample_id"], ids)]
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
        v = None if value is None else real(value)
        if v is None and status == "ok":
            status = "undefined"
        lo, hi = (None, None) if value_range is None else (real(value_range[0]), real(value_range[1]))
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
        """Per-sample attribute rows (sample_index, sample_id, attribute, value), by index then attribute; `ids` as
        in `sample_metrics`."""
        return self._sample_rows(
            "SELECT sample_index, sample_id, attribute, value FROM attributes WHERE run_id = ?"
            " ORDER BY sample_index, attribute", run_id, ids)

    def set_utility(self, run_id: str, name: str, value: float | None, detail: str | None = None) -> None:
        """One utility figure of the run's defense (shown beside leakage)."""
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO utility (run_id, name, value, detail) VALUES (?, ?, ?, ?)",
                       (run_id, name, None if value is None else real(value), detail))

    def utility(self, run_id: str) -> dict[str, dict[str, Any]]:
        rows = self._query("SELECT name, value, detail FROM utility WHERE run_id = ? ORDER BY name", (run_id,))
        return {r["name"]: {"value": r["value"], "detail": r["detail"]} for r in rows}

    def sample_ids(self, run_id: str) -> dict[int, str]:
        """{sample index: sample id} of a run, from its per-sample metric rows and predicted attributes."""
        rows = self._query("SELECT DISTINCT sample_index, sample_id FROM sample_metrics WHERE run_id = ? UNION "
                           "SELECT DISTINCT sample_index, sample_id FROM attributes WHERE run_id = ?",
                           (run_id, run_id))
        return {int(r["sample_index"]): str(r["sample_id"]) for r in rows}
