"""sha256 content digests of image files, cached per file by (path, size, mtime_ns) in $BENCH_HOME/digests.sqlite.

A dataset is known by the bytes of its files, not by where they lie: a copy of a folder (`cp -r`, new modification
times) gets the same digests, and a renamed copy or a symlink of a private image is recognised as that image. Reading
every byte of a large folder is slow, so a file's digest is cached under its resolved path, size and mtime_ns; a file
whose size or modification time changed is read again. The cache is only an accelerator: when it cannot be opened
or written (read-only home, locked too long) digests are computed from the files, with the same result.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from bench.hashing import file_sha256

CACHE_NAME = "digests.sqlite"

_SCHEMA = """CREATE TABLE IF NOT EXISTS digests (
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL)"""


@dataclass
class FolderDigests:
    """Digests of the readable files of a listing (id -> sha256 hex) and the files left out, with the reason."""

    digests: dict[str, str] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    computed: int = 0  # files read in full (cache misses)


def cache_path() -> Path:
    """Where the digest cache lives: $BENCH_HOME/digests.sqlite (BENCH_HOME defaults to ~/.cache/bench)."""
    from bench.weights import bench_home

    return bench_home() / CACHE_NAME


def _stat_reason(path: Path, exc: OSError) -> str:
    """Why a listed file cannot be used, in a few words (the caller names the file)."""
    if path.is_symlink() and not path.exists():
        return f"dangling symlink (target {os.readlink(path)!r} does not exist)"
    if isinstance(exc, PermissionError):
        return "permission denied"
    return exc.strerror or type(exc).__name__


def _open_cache() -> sqlite3.Connection | None:
    try:
        path = cache_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, timeout=30.0, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(_SCHEMA)
        return db
    except (OSError, sqlite3.Error) as exc:
        warnings.warn(f"file digest cache unavailable ({exc}); digests are computed from the files", stacklevel=3)
        return None


def folder_digests(root: Path, ids: Sequence[str]) -> FolderDigests:
    """sha256 of each file `root/id` (symlinks followed); files that cannot be read (a dangling symlink, no
    permission) are left out and listed in `skipped` with the reason instead of failing the whole folder."""
    out = FolderDigests()
    stats: dict[str, tuple[str, int, int]] = {}
    base = os.path.realpath(root)  # once: resolving every file's path would cost more than the digest lookup
    for item in ids:
        path = os.path.join(base, item)
        try:
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):  # a symlink: keyed by its target, so links and target share one entry
                st, path = os.stat(path), os.path.realpath(path)
        except OSError as exc:
            out.skipped.append((item, _stat_reason(root / item, exc)))
            continue
        stats[item] = (path, st.st_size, st.st_mtime_ns)
    db = _open_cache()
    known: dict[str, tuple[int, int, str]] = {}
    if db is not None:
        try:
            paths = sorted({s[0] for s in stats.values()})
            for start in range(0, len(paths), 500):
                chunk = paths[start:start + 500]
                rows = db.execute(f"SELECT path, size, mtime_ns, sha256 FROM digests WHERE path IN "
                                  f"({','.join('?' * len(chunk))})", chunk).fetchall()
                known.update({r[0]: (r[1], r[2], r[3]) for r in rows})
        except sqlite3.Error:
            known = {}
    fresh: list[tuple[str, int, int, str]] = []
    for item, (real, size, mtime_ns) in stats.items():
        hit = known.get(real)
        if hit is not None and hit[0] == size and hit[1] == mtime_ns:
            out.digests[item] = hit[2]
            continue
        try:
            sha = file_sha256(Path(real))
        except OSError as exc:
            out.skipped.append((item, _stat_reason(root / item, exc)))
            continue
        out.digests[item] = sha
        out.computed += 1
        fresh.append((real, size, mtime_ns, sha))
        known[real] = (size, mtime_ns, sha)
    if db is not None:
        try:
            if fresh:
                db.execute("BEGIN IMMEDIATE")
                db.executemany("INSERT OR REPLACE INTO digests VALUES (?, ?, ?, ?)", fresh)
                db.execute("COMMIT")
        except sqlite3.Error as exc:
            warnings.warn(f"file digest cache not updated ({exc})", stacklevel=2)
        finally:
            db.close()
    out.skipped.sort()
    return out
