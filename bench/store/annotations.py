"""Human annotations: one answer per annotator about one reconstruction (recognisable or not), and two-alternative
forced choices between two reconstructions of one original; answering again updates, never duplicates."""

from __future__ import annotations

import sqlite3
import time
from typing import Any, Iterable, Sequence

from bench.store.connection import StoreConnection


class AnnotationTables(StoreConnection):
    """The annotations and pair_annotations tables."""

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
