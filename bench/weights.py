"""The manifest and cache of pretrained files: what each is, where it lives, and proof that it is the right file.

Files live in $BENCH_HOME/weights/<filename> (BENCH_HOME defaults to ~/.cache/bench). A file is used only after
its sha256 matches the manifest; the digest is remembered in a sidecar `<file>.sha256` (size, mtime, digest) so a
500 MB file is hashed once, and hashed again whenever its size or mtime changes. Files are loaded with
torch.load(weights_only=True), so a tampered pickle cannot run code.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import pickle
import re
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch
from tqdm import tqdm

from bench.errors import BenchError, UnknownNameError, WeightsMissingError

_CHUNK = 1 << 20
_HEX = re.compile(r"^[0-9a-f]+$")


@dataclass(frozen=True)
class WeightFile:
    """One pretrained file: name, file name, URL, expected digest, size in bytes, licence and what uses it.

    `sha256` is the full hex digest. Where no trustworthy full digest is published, set `sha256=None` and give
    `sha256_prefix` instead: torchvision's convention, whose file names carry the first 8 hex digits of the
    file's sha256 (e.g. "vgg19-dcbb9e9d.pth"); the file is then accepted when its digest starts with the prefix.
    With both set, the prefix must be the start of the full digest (checked here). `size` (None if unknown)
    rejects a wrong-sized file before hashing it.
    """

    name: str
    filename: str
    url: str
    sha256: str | None
    size: int | None
    licence: str
    used_by: str
    sha256_prefix: str | None = None

    def __post_init__(self) -> None:
        if not self.name or not self.filename or "/" in self.filename or "\\" in self.filename:
            raise ValueError(f"weight file {self.name!r}: needs a name and a plain file name, got {self.filename!r}")
        if self.sha256 is None and self.sha256_prefix is None:
            raise ValueError(f"weight file {self.name!r}: give sha256 or sha256_prefix")
        if self.sha256 is not None and (len(self.sha256) != 64 or not _HEX.match(self.sha256)):
            raise ValueError(f"weight file {self.name!r}: sha256 must be 64 lower-case hex digits")
        if self.sha256_prefix is not None:
            if len(self.sha256_prefix) < 8 or not _HEX.match(self.sha256_prefix):
                raise ValueError(f"weight file {self.name!r}: sha256_prefix must be at least 8 lower-case hex digits")
            if self.sha256 is not None and not self.sha256.startswith(self.sha256_prefix):
                raise ValueError(f"weight file {self.name!r}: sha256 does not start with sha256_prefix")

    @property
    def expected_digest(self) -> str:
        """The full digest, or the prefix when only the prefix is known."""
        return self.sha256 if self.sha256 is not None else str(self.sha256_prefix)

    def matches(self, digest: str) -> bool:
        """Whether a file whose sha256 is `digest` is this file."""
        return digest.lower().startswith(self.expected_digest)


MANIFEST: dict[str, WeightFile] = {}


def register_weight(wf: WeightFile) -> WeightFile:
    """Add `wf` to the manifest; registering the same name again is an error unless the entry is identical."""
    old = MANIFEST.get(wf.name)
    if old is not None and old != wf:
        raise ValueError(f"weight file {wf.name!r} is already in the manifest with different details")
    MANIFEST[wf.name] = wf
    return wf


def unregister_weight(name: str) -> None:
    """Remove an entry (used by tests that register stand-ins)."""
    MANIFEST.pop(name, None)


# The full digest of torchvision's VGG19 file is not printed by torchvision itself (only its 8-digit prefix, in the
# file name); the value below is the one that several independent public projects pin for this exact URL and size.
register_weight(
    WeightFile(
        name="vgg19",
        filename="vgg19-dcbb9e9d.pth",
        url="https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
        sha256="dcbb9e9dad569fff7a846263a77324fc34978fea2bfb039c012d710e1776ae44",
        sha256_prefix="dcbb9e9d",
        size=574673361,
        licence="BSD-3-Clause (torchvision); ImageNet terms",
        used_by="CFGAN perceptual loss (paper profile)",
    )
)


# ------------------------------------------------------------------------------------------------------- paths
def bench_home() -> Path:
    """The cache root: $BENCH_HOME, or ~/.cache/bench."""
    env = os.environ.get("BENCH_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "bench"


def weights_dir() -> Path:
    """Where pretrained files are cached: $BENCH_HOME/weights."""
    return bench_home() / "weights"


def entry(name: str) -> WeightFile:
    """The manifest entry `name`, or an UnknownNameError listing the closest names."""
    if name in MANIFEST:
        return MANIFEST[name]
    close = difflib.get_close_matches(name, sorted(MANIFEST), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(sorted(MANIFEST)) or 'none'}"
    raise UnknownNameError(f"unknown weights {name!r}; {hint}")


def path_of(name: str) -> Path:
    """Where the file of entry `name` lives in the cache (present or not)."""
    return weights_dir() / entry(name).filename


def _human(size: int | None) -> str:
    if size is None:
        return "size unknown"
    return f"{size / 1e6:.0f} MB" if size >= 1e6 else f"{size} bytes"


# --------------------------------------------------------------------------------------------- verification
def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _write_sidecar(path: Path, digest: str) -> None:
    """Record (size, mtime, digest) of `path`; best effort (a read-only cache only costs re-hashing)."""
    st = path.stat()
    record = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
    tmp = path.with_name(f".{path.name}.sha256.{uuid.uuid4().hex}.part")
    try:
        tmp.write_text(json.dumps(record) + "\n")
        os.replace(tmp, _sidecar(path))
    except OSError:
        tmp.unlink(missing_ok=True)


def cached_digest(path: Path) -> str:
    """sha256 of `path`, from its sidecar when size and mtime are unchanged, else hashed (and recorded)."""
    st = path.stat()
    try:
        record = json.loads(_sidecar(path).read_text())
        if record["size"] == st.st_size and record["mtime_ns"] == st.st_mtime_ns:
            return str(record["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    digest = sha256_of(path)
    _write_sidecar(path, digest)
    return digest


def verify(path: Path, wf: WeightFile) -> bool:
    """Whether `path` is the file `wf` describes (size first, then the sha256, via the sidecar cache)."""
    path = Path(path)
    if not path.is_file():
        return False
    if wf.size is not None and path.stat().st_size != wf.size:
        return False
    return wf.matches(cached_digest(path))


def is_available(name: str) -> bool:
    """Whether the file of entry `name` is in the cache and verified."""
    return verify(path_of(name), entry(name))


def fix_hint(wf: WeightFile) -> str:
    """The commands that put `wf` into the cache."""
    return f"`bench weights pull {wf.name}` (needs internet) or `bench weights import /path/to/{wf.filename}`"


def require(name: str) -> Path:
    """The verified cached path of entry `name`, or a WeightsMissingError naming the commands that fix it."""
    wf = entry(name)
    path = path_of(name)
    if verify(path, wf):
        return path
    if path.is_file():
        raise WeightsMissingError(
            f"pretrained weights {name!r} at {path} fail verification (size or sha256 differs from the manifest); "
            f"delete it and run {fix_hint(wf)}"
        )
    raise WeightsMissingError(
        f"pretrained weights {name!r} ({wf.filename}, {_human(wf.size)}, for {wf.used_by}) are not in "
        f"{weights_dir()}; run {fix_hint(wf)}"
    )


# ------------------------------------------------------------------------------------------ import and pull
def _copy_hashing(src: BinaryIO, dst: BinaryIO, bar: Any = None) -> str:
    h = hashlib.sha256()
    for block in iter(lambda: src.read(_CHUNK), b""):
        h.update(block)
        dst.write(block)
        if bar is not None:
            bar.update(len(block))
    return h.hexdigest()


def _part_path(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")


def _install(part: Path, dest: Path, digest: str) -> Path:
    """Move a verified temporary file into place atomically and record its digest."""
    os.replace(part, dest)
    _write_sidecar(dest, digest)
    return dest


def _identify(src: Path, digest: str) -> WeightFile:
    """The manifest entry a file is, by its digest (or, to explain a refusal, by its file name)."""
    hits = [wf for wf in MANIFEST.values() if wf.matches(digest)]
    if len(hits) > 1:
        by_name = [wf for wf in hits if wf.filename == src.name]
        hits = by_name or hits
    if len(hits) == 1 or (hits and len({wf.expected_digest for wf in hits}) == 1):
        return hits[0]
    if hits:
        names = ", ".join(wf.name for wf in hits)
        raise BenchError(f"{src} matches several weights entries ({names}); import it naming the entry explicitly")
    named = [wf for wf in MANIFEST.values() if wf.filename == src.name]
    if named:
        wf = named[0]
        raise BenchError(
            f"{src} is named like {wf.name!r} but its sha256 {digest} does not match the manifest "
            f"({wf.expected_digest}); the file is corrupt or a different version"
        )
    raise BenchError(f"{src} (sha256 {digest}) is not any file of the weights manifest ({', '.join(sorted(MANIFEST))})")


def import_file(src: Path, name: str | None = None) -> Path:
    """Copy a file obtained by hand into the cache, after checking it is the manifest's file (`name` or any)."""
    src = Path(src).expanduser()
    if not src.is_file():
        raise BenchError(f"cannot import {src}: no such file")
    weights_dir().mkdir(parents=True, exist_ok=True)
    part = _part_path(weights_dir() / src.name)
    try:
        with open(src, "rb") as fin, open(part, "wb") as fout:
            digest = _copy_hashing(fin, fout)
        wf = _identify(src, digest) if name is None else entry(name)
        if not wf.matches(digest):
            raise BenchError(
                f"{src} is not the weights {wf.name!r}: its sha256 {digest} does not match the manifest "
                f"({wf.expected_digest})"
            )
        if wf.size is not None and part.stat().st_size != wf.size:
            raise BenchError(f"{src} is not the weights {wf.name!r}: {part.stat().st_size} bytes, expected {wf.size}")
        return _install(part, path_of(wf.name), digest)
    finally:
        part.unlink(missing_ok=True)


def pull(name: str, progress: bool = True) -> Path:
    """Download entry `name` into the cache (temporary file, sha256 check, atomic rename); a no-op if present."""
    wf = entry(name)
    dest = path_of(name)
    if verify(dest, wf):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = _part_path(dest)
    hint = "copy the file by hand and run `bench weights import PATH`"
    try:
        try:
            with urllib.request.urlopen(wf.url, timeout=60) as resp, open(part, "wb") as fout:
                total = resp.headers.get("Content-Length")
                with tqdm(
                    total=int(total) if total else wf.size, unit="B", unit_scale=True, unit_divisor=1024,
                    desc=wf.filename, disable=not progress,
                ) as bar:
                    digest = _copy_hashing(resp, fout, bar)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise BenchError(f"could not download {wf.url}: {reason}; {hint}") from exc
        if not wf.matches(digest) or (wf.size is not None and part.stat().st_size != wf.size):
            raise BenchError(
                f"downloaded {wf.url} but it is not the expected file (sha256 {digest}, {part.stat().st_size} bytes; "
                f"manifest {wf.expected_digest}, {wf.size} bytes); nothing installed; {hint}"
            )
        return _install(part, dest, digest)
    finally:
        part.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------------- using
def load_state_dict(name: str) -> dict[str, Any]:
    """The verified file of entry `name`, loaded on the CPU with torch.load(weights_only=True)."""
    path = require(name)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        what = f" (it references {found.group(1)})" if found else ""
        raise BenchError(
            f"refusing to load {path}: it holds objects other than tensors and plain containers{what}, "
            f"which torch.load(weights_only=True) will not unpickle; re-import a clean copy of {Path(path).name}"
        ) from exc


def status_rows() -> list[dict[str, Any]]:
    """One row per manifest entry for `bench weights list`: what it is, and whether it is present and verified."""
    rows = []
    for name in sorted(MANIFEST):
        wf = MANIFEST[name]
        path = path_of(name)
        present = path.is_file()
        rows.append(
            {
                "name": name,
                "filename": wf.filename,
                "size": wf.size,
                "licence": wf.licence,
                "used_by": wf.used_by,
                "present": present,
                "verified": present and verify(path, wf),
                "path": str(path),
                "url": wf.url,
            }
        )
    return rows
