"""The results store: SQLite (WAL, one writer at a time) with runs, per-sample and set-level metric values with their
status, predicted attributes, utility figures and annotations.

Every write is one short `BEGIN IMMEDIATE` transaction under a busy timeout, so several processes can share one
results folder. Problems a user can fix (a store written by a newer bench, a file that is not a database, a folder
that cannot be written, a lock held too long) become one-line `BenchError`s, never a raw sqlite traceback.
"""

from __future__ import annotations

from bench.store.annotations import AnnotationTables
from bench.store.results import ResultTables
from bench.store.runs import RunTable


class Store(RunTable, ResultTables, AnnotationTables):
    """Access to one results database; every write happens in a short transaction.

    One class for callers, assembled from one module per concept: the connection, its transactions and error messages
    (connection.py, schema and migrations in schema.py), runs (runs.py), metric values, attributes and utility
    (results.py), annotations (annotations.py). `timeout` is how many seconds a write waits for another process's
    transaction before giving up with a BenchError that says the store is locked.
    """
