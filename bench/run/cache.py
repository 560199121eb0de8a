"""Stage cache: each stage's output in a folder named by a key of exactly its inputs, verified before reuse.

`get_or_create` holds a lock per key: the first writer builds the entry into a temporary folder, records every
file's size and sha256 in manifest.json and renames the folder into place; a concurrent writer of the same key
waits and then reuses it. An interrupted stage leaves nothing that could be mistaken for a result, and its
temporary folder is swept by the next writer of that key.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

from bench.run.locks import file_lock
from bench.hashing import canonical_json, digest, file_sha256  # noqa: F401  (file_sha256 re-exported)
from bench.run.spec import SPEC_VERSION

MANIFEST = "manifest.json"


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
