"""Stage cache: each stage's output in a folder named by a key of exactly its inputs, verified before reuse.

`get_or_create` holds a lock per key: the first writer builds the entry into a temporary folder, records every
file's size and sha256 in manifest.json and renames the folder into place; a concurrent writer of the same key
waits and then reuses it. An interrupted stage leaves nothing that could be mistaken for a result, and its
temporary folder is swept by the next writer of that key.

Several ranks of one data-parallel run (torchrun, bench.nn.distributed): rank 0 alone builds and writes entries;
the other ranks wait for it (a broadcast of its outcome) and read what it wrote. A stage that every rank must
compute (`every_rank=True`: training, whose steps all ranks share) is built on every rank, and only rank 0's files
are kept; whether it is a cache hit is rank 0's decision, so the ranks never disagree about it.

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

from bench.errors import BenchError
from bench.locks import file_lock
from bench.nn import distributed
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

    def lookup(self, stage: str, key: str, repair: bool = True) -> Path | None:
        """The folder of a complete, verified entry; a corrupt or partial entry is removed (unless `repair` is
        False: a rank other than 0 only reads) and None returned."""
        folder = self.path(stage, key)
        manifest = folder / MANIFEST
        if not manifest.is_file():
            if folder.exists() and repair:
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
            if repair:
                shutil.rmtree(folder, ignore_errors=True)
            return None
        return folder

    def get_or_create(self, stage: str, key: str, inputs: dict[str, Any],
                      build: Callable[[Path], None], every_rank: bool = False) -> tuple[Path, bool]:
        """(folder, hit): the verified entry for `key`, built by `build(tmp_folder)` when absent.

        Holds the key's lock throughout, so two processes never build one entry at once: the second waits and
        reuses the first one's result (first writer wins). Under several ranks see the module docstring.
        """
        if distributed.active():
            return self._ranked(stage, key, inputs, build, every_rank)
        return self._get_or_create(stage, key, inputs, build)

    def _ranked(self, stage: str, key: str, inputs: dict[str, Any], build: Callable[[Path], None],
                every_rank: bool) -> tuple[Path, bool]:
        """get_or_create for one rank of several: rank 0 writes, the others wait and read."""
        rank = distributed.world()[0]
        if not every_rank:
            outcome: Any = None
            if rank == 0:
                try:
                    outcome = self._get_or_create(stage, key, inputs, build)
                except BaseException as exc:
                    distributed.broadcast(("failed", f"{type(exc).__name__}: {exc}"))
                    raise
                distributed.broadcast(("ok", outcome[1]))
                return outcome
            status, detail = distributed.broadcast(None)
            return self._read_rank0(stage, key, status, detail)
        if rank == 0:  # rank 0 decides hit or miss and builds under the key's lock; all ranks train together
            with file_lock(self.path(stage, key).with_name(f"{key}.lock")):
                found = self.lookup(stage, key)
                distributed.broadcast(found is not None)
                if found is not None:
                    return found, True
                try:
                    folder = self._build(stage, key, inputs, build)
                except BaseException as exc:
                    distributed.broadcast(("failed", f"{type(exc).__name__}: {exc}"))
                    raise
                distributed.broadcast(("ok", False))
                return folder, False
        if distributed.broadcast(None):
            return self._read_rank0(stage, key, "ok", True)
        import tempfile

        with tempfile.TemporaryDirectory(prefix=f"bench-rank{rank}-") as scratch:
            build(Path(scratch))  # this rank's share of the work; its files are not kept
        status, detail = distributed.broadcast(None)
        return self._read_rank0(stage, key, status, detail)

    def _read_rank0(self, stage: str, key: str, status: str, detail: Any) -> tuple[Path, bool]:
        if status != "ok":
            raise BenchError(f"rank {distributed.world()[0]}: stopped, because rank 0 failed in stage {stage!r} "
                             f"({detail})")
        folder = self.lookup(stage, key, repair=False)
        if folder is None:
            raise BenchError(f"rank {distributed.world()[0]}: stage {stage!r} entry {key} that rank 0 wrote is "
                             f"not readable here (is {self.root} on a file system every rank shares?)")
        return folder, bool(detail)

    def _get_or_create(self, stage: str, key: str, inputs: dict[str, Any],
                       build: Callable[[Path], None]) -> tuple[Path, bool]:
        with file_lock(self.path(stage, key).with_name(f"{key}.lock")):
            hit = self.lookup(stage, key)
            if hit is not None:
                return hit, True
            return self._build(stage, key, inputs, build), False

    def _build(self, stage: str, key: str, inputs: dict[str, Any], build: Callable[[Path], None]) -> Path:
        """Build the entry into a temporary folder and rename it into place (the caller holds the key's lock)."""
        final = self.path(stage, key)
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
        return final

    def load_or_create(self, stage: str, key: str, inputs: dict[str, Any], build: Callable[[Path], None],
                       load: Callable[[Path], T], every_rank: bool = False) -> tuple[T, bool]:
        """(load(folder), hit): like `get_or_create`, then read with `load`; an unreadable cached entry is rebuilt.

        A reused entry whose files `load` cannot read is corrupt: a CorruptCacheEntry warning names it and the
        error, the entry is removed (unless another process replaced it meanwhile) and built again. A freshly
        built entry that cannot be read is a bug in the stage and raises.
        """
        folder, hit = self.get_or_create(stage, key, inputs, build, every_rank)
        try:
            return load(folder), hit
        except Exception as exc:
            if not hit or distributed.active():  # ranks would disagree about a rebuild: fail instead
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
