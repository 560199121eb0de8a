"""The results store (SQLite): runs, per-sample and set-level metric values with their status, annotations."""

from bench.store.db import Store  # noqa: F401
from bench.store.schema import SCHEMA_VERSION  # noqa: F401
