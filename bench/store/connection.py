"""Opening one results database: WAL mode, the schema brought up to date, short write transactions under a busy
timeout, and the sqlite errors a user can fix turned into one-line BenchErrors."""

from __future__ import annotations

import os
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence, TypeVar

from bench.errors import BenchError
from bench.store.schema import migrate

_S = TypeVar("_S", bound="StoreConnection")


class StoreConnection:
    """The connection to one results database and its transactions; the tables' methods build on it (db.py).

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
                    with self.transaction() as db:
                        migrate(db, self.path)
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

    def __enter__(self: _S) -> _S:
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
            _rollback(db)
            raise
        with self._errors():
            try:
                db.execute("COMMIT")
            except BaseException:
                _rollback(db)
                raise

    def schema_version(self) -> int:
        """The schema version recorded in the store (SCHEMA_VERSION once it is open)."""
        return int(self._query("SELECT version FROM schema_version")[0][0])


def _rollback(db: sqlite3.Connection) -> None:
    """Undo the open transaction, if any (a failed rollback leaves SQLite to undo it when the connection closes)."""
    if db.in_transaction:
        try:
            db.execute("ROLLBACK")
        except sqlite3.Error:
            pass
