"""Re-keying runs recorded under the old folder fingerprint (path, size, mtime_ns) to the content fingerprint.

Before store schema 5, a folder dataset was identified by its resolved root and a digest of every file's (relative
path, size, mtime_ns), and the configuration id hashed the folder path. A finished run keeps its results when its
data folder is still where it was and unchanged since the run (its old fingerprint recomputes to the recorded one):
its configuration id is recomputed from the spec with the content fingerprint in place of the old one (and no path),
so it pools with new runs (and copies) of the same data. Its run id and stored spec stay: the spec hashes to the run
id and names the run's folder, and its splits were drawn by name, not by content. A run whose folder is gone or
changed keeps its old configuration id.
"""

from __future__ import annotations

import copy
import hashlib
import os
from pathlib import Path
from typing import Any

from bench import registry
from bench.errors import BenchError


def legacy_content(root: Path) -> tuple[int, str] | None:
    """(files, digest) of the pre-schema-5 folder fingerprint, or None when a listed file cannot be read."""
    from bench.datasets.folders import list_images

    h = hashlib.sha256()
    ids = list_images(root)
    for item in ids:
        try:
            st = os.stat(root / item)
        except OSError:
            return None
        h.update(f"{item}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return len(ids), h.hexdigest()


def _content_fingerprint(name: str | None, old: Any, memo: dict[str, Any]) -> dict[str, Any] | None:
    """The content fingerprint of the folder an old fingerprint describes, when that folder is unchanged (memoised
    in `memo`: a store holds many runs on one folder)."""
    key = repr((name, old))
    if key not in memo:
        memo[key] = _content_fingerprint_of(name, old)
    return memo[key]


def _content_fingerprint_of(name: str | None, old: Any) -> dict[str, Any] | None:
    if not name or not isinstance(old, dict) or "root" not in old or "content" not in old or not old.get("root"):
        return None
    root = Path(old["root"])
    try:
        cls = registry.datasets.get(name).obj
    except BenchError:
        return None
    if old.get("name") != cls.name or str(old.get("version")) != str(cls.version) or not root.is_dir():
        return None
    if legacy_content(root) != (old.get("files"), old["content"]):
        return None
    try:
        return cls(root=root).fingerprint()
    except BenchError:
        return None


def rekeyed_spec(spec: dict[str, Any], memo: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """`spec` with content fingerprints in place of the old ones, or None when it cannot (or need not) be re-keyed.

    `memo` (one dict for a whole store) avoids listing one folder again for every run made on it."""
    memo = {} if memo is None else memo
    prints = spec.get("dataset_fingerprint")
    if not isinstance(prints, dict) or not any(isinstance(v, dict) and "root" in v and "content" in v
                                               for v in prints.values()):
        return None
    new = copy.deepcopy(spec)
    names = {"private": spec.get("dataset"), "aux": spec.get("aux_dataset") or spec.get("dataset")}
    for role, old in prints.items():
        if isinstance(old, dict) and "root" in old and "content" in old:
            fresh = _content_fingerprint(names.get(role), old, memo)
            if fresh is None:
                return None
            new["dataset_fingerprint"][role] = fresh
    return new
