"""The results store (SQLite): runs, per-sample and set-level metric values with their status, annotations."""

from bench.store.db import SCHEMA_VERSION, Store  # noqa: F401
