"""Stage cache: each stage's output in a folder named by a key of exactly its inputs, verified before reuse.

`get_or_create` holds a lock per key: the first writer builds the entry into a temporary folder, records every
file's size and sha256 in manifest.json and renames the folder into place; a concurrent writer of the same key
waits and then reuses it. An interrupted stage leaves nothing that could be mistaken for a result, and its
temporary folder is swept by the next writer of that key.

`load_or_create` also reads the entry: an entry that verifies against its manifest but cannot be read (a file
replaced by an HTML page and the manifest rewritten to match, a format this code cannot parse) is corrupt; it is
named in a warning, removed and rebuilt once, never a traceback.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any, Callable, TypeVar

from bench.locks import file_lock
from bench.hashing import canonical_json, digest, file_sha256  # noqa: F401  (file_sha256 re-exported)
from bench.run.spec import SPEC_VERSION

MANIFEST = "manifest.json"
T = TypeVar("T")


class CorruptCacheEntry(UserWarning):
    """A stage-cache entry that verified against its manifest but could not be read; it is rebuilt."""


class StageCache:
    """Folders <root>/<stage>/<key>/ holding a stage's files plus a manifest of their hashes and inputs."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def key(self, inputs: dict[str, Any]) -> str:
        """The key of `inputs`; the spec version is part of every key, so a format change never reuses old files."""
        return digest({"spec_version": SPEC_VERSION, "inputs": inputs}, length=20)

    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def lookup(self, stage: str, key: str) -> Path | None:
        """The folder of a complete, verified entry; a corrupt or partial entry is removed and None returned."""
        folder = self.path(stage, key)
        manifest = folder / MANIFEST
        if not manifest.is_file():
            if folder.exists():
                shutil.rmtree(folder, ignore_errors=True)
            return None
        try:
            info = json.loads(manifest.read_text())
            ok = all(
                (folder / name).is_file()
                and (folder / name).stat().st_size == meta["size"]
                and file_sha256(folder / name) == meta["sha256"]
                for name, meta in info["files"].items()
            )
        except (OSError, ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            shutil.rmtree(folder, ignore_errors=True)
            return None
        return folder

    def get_or_create(self, stage: str, key: str, inputs: dict[str, Any],
                      build: Callable[[Path], None]) -> tuple[Path, bool]:
        """(folder, hit): the verified entry for `key`, built by `build(tmp_folder)` when absent.

        Holds the key's lock throughout, so two processes never build one entry at once: the second waits and
        reuses the first one's result (first writer wins).
        """
        final = self.path(stage, key)
        with file_lock(final.with_name(f"{key}.lock")):
            hit = self.lookup(stage, key)
            if hit is not None:
                return hit, True
            for stale in final.parent.glob(f"{key}.tmp-*"):  # left by a killed writer (we hold the lock)
                shutil.rmtree(stale, ignore_errors=True)
            tmp = final.with_name(f"{key}.tmp-{os.getpid()}")
            tmp.mkdir(parents=True)
            try:
                build(tmp)
                files = {
                    p.relative_to(tmp).as_posix(): {"size": p.stat().st_size, "sha256": file_sha256(p)}
                    for p in sorted(tmp.rglob("*"))
                    if p.is_file()
                }
                (tmp / MANIFEST).write_text(json.dumps(
                    {"inputs": json.loads(canonical_json(inputs)), "files": files}, indent=1, sort_keys=True))
                if final.exists():
                    shutil.rmtree(final)
                os.replace(tmp, final)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            return final, False

    def load_or_create(self, stage: str, key: str, inputs: dict[str, Any], build: Callable[[Path], None],
                       load: Callable[[Path], T]) -> tuple[T, bool]:
        """(load(folder), hit): like `get_or_create`, then read with `load`; an unreadable cached entry is rebuilt.

        A reused entry whose files `load` cannot read is corrupt: a CorruptCacheEntry warning names it and the
        error, the entry is removed (unless another process replaced it meanwhile) and built again. A freshly
        built entry that cannot be read is a bug in the stage and raises.
        """
        folder, hit = self.get_or_create(stage, key, inputs, build)
        try:
            return load(folder), hit
        except Exception as exc:
            if not hit:
                raise
            error = (str(exc).strip().splitlines() or [""])[0][:200]
            why = f"{type(exc).__name__}: {error}" if error else type(exc).__name__
        try:
            seen = (folder / MANIFEST).read_bytes()
        except OSError:
            seen = None
        warnings.warn(f"stage-cache entry {folder} is corrupt (its files match their manifest but cannot be read: "
                      f"{why}); removing and rebuilding it", CorruptCacheEntry, stacklevel=2)
        with file_lock(folder.with_name(f"{key}.lock")):
            try:
                same = (folder / MANIFEST).read_bytes() == seen
            except OSError:
                same = False
            if same:  # not already rebuilt by another process
                shutil.rmtree(folder, ignore_errors=True)
        folder, hit = self.get_or_create(stage, key, inputs, build)
        return load(folder), hit
