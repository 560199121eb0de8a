"""The manifest and cache of pretrained files: what each is, where it lives, and proof that it is the right file.

Files live in $BENCH_HOME/weights/<filename> (BENCH_HOME defaults to ~/.cache/bench). Some small files are shipped
inside a pip package (the LPIPS v0.1 linear layers in `lpips`); those are found with `importlib.util.find_spec`
(nothing is imported) and used in place when no cached copy exists.

A file is used only after its sha256 matches the manifest, hashed once per process before its first use (`require`,
`load_state_dict`); the digest is also remembered in a sidecar `<file>.sha256` (size, mtime, digest), which the quick
status checks (`bench weights list`, `is_available`) trust while size and mtime are unchanged. Files are loaded with
torch.load(weights_only=True), so a tampered pickle cannot run code. A refused file is explained: an HTML page saved
in place of the checkpoint, a truncated file (size mismatch), or a different file (both digests named).
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import http.client
import importlib.util
import json
import os
import pickle
import re
import threading
import urllib.error
import urllib.request
import uuid
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import torch
from tqdm import tqdm

from bench.errors import BenchError, UnknownNameError, WeightsMissingError

_CHUNK = 1 << 20
_HEX = re.compile(r"^[0-9a-f]+$")
HTML_PAGE = "the server returned an HTML page, not the checkpoint"


@dataclass(frozen=True)
class WeightFile:
    """One pretrained file: name, file name, URL, expected digest, size in bytes, licence and what uses it.

    `sha256` is the full hex digest. Where no trustworthy full digest is published, set `sha256=None` and give
    `sha256_prefix` instead: torchvision's convention, whose file names carry the first 8 hex digits of the
    file's sha256 (e.g. "vgg19-dcbb9e9d.pth"); the file is then accepted when its digest starts with the prefix.
    With both set, the prefix must be the start of the full digest (checked here). `size` (None if unknown)
    rejects a wrong-sized file before hashing it.

    `package`/`package_path`: the file also ships inside that pip package at that path (relative to the package
    folder); it is then usable without a download, after the same hash check. `aliases` are other file names the
    same file is published under (recognised by `bench weights import`).
    """

    name: str
    filename: str
    url: str
    sha256: str | None
    size: int | None
    licence: str
    used_by: str
    sha256_prefix: str | None = None
    package: str | None = None
    package_path: str | None = None
    aliases: tuple[str, ...] = field(default=())

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
        if (self.package is None) != (self.package_path is None):
            raise ValueError(f"weight file {self.name!r}: give both package and package_path, or neither")

    @property
    def expected_digest(self) -> str:
        """The full digest, or the prefix when only the prefix is known."""
        return self.sha256 if self.sha256 is not None else str(self.sha256_prefix)

    def matches(self, digest: str) -> bool:
        """Whether a file whose sha256 is `digest` is this file."""
        return digest.lower().startswith(self.expected_digest)

    def describe_digest(self) -> str:
        return self.sha256 if self.sha256 is not None else f"{self.sha256_prefix}… (prefix only)"


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


@contextlib.contextmanager
def override(name: str, **changes: Any) -> Iterator[WeightFile]:
    """Temporarily replace manifest entry `name` by a copy with `changes` (e.g. a test pinning a stand-in's digest)."""
    old = entry(name)
    new = replace(old, **changes)
    MANIFEST[name] = new
    try:
        yield new
    finally:
        MANIFEST[name] = old


# ----------------------------------------------------------------------------------------------- the manifest
# Full digests of torchvision's files are not printed by torchvision (only their 8-digit prefix, in the file name).
# The values below are the ones that several independent public projects pin for these exact URLs and sizes; each
# starts with the prefix in its file name (checked by WeightFile), and the prefix stays as the documented origin.
_TV_LICENCE = "BSD-3-Clause (torchvision); trained on ImageNet (its terms: non-commercial research)"
register_weight(
    WeightFile(
        name="vgg19",
        filename="vgg19-dcbb9e9d.pth",
        url="https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
        sha256="dcbb9e9dad569fff7a846263a77324fc34978fea2bfb039c012d710e1776ae44",
        sha256_prefix="dcbb9e9d",
        size=574673361,
        licence=_TV_LICENCE,
        used_by="CFGAN perceptual loss (paper profile)",
    )
)
register_weight(
    WeightFile(
        name="alexnet",
        filename="alexnet-owt-7be5be79.pth",
        url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
        sha256="7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02",
        sha256_prefix="7be5be79",
        size=244408911,
        licence=_TV_LICENCE,
        used_by="metric lpips (AlexNet backbone)",
    )
)
register_weight(
    WeightFile(
        name="vgg16",
        filename="vgg16-397923af.pth",
        url="https://download.pytorch.org/models/vgg16-397923af.pth",
        sha256="397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0",
        sha256_prefix="397923af",
        size=553433881,
        licence=_TV_LICENCE,
        used_by="metric lpips-vgg (VGG16 backbone)",
    )
)
register_weight(
    WeightFile(
        name="squeezenet1_1",
        filename="squeezenet1_1-b8a52dc0.pth",
        url="https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth",
        sha256="b8a52dc049b60e4b6ab68ad0df457362afab8b6304b2febdc1650a5dab4d7e7b",
        sha256_prefix="b8a52dc0",
        size=4958839,
        licence=_TV_LICENCE,
        used_by="metrics lpips-squeeze, lpips-semsim-compat (SqueezeNet 1.1 backbone)",
    )
)

# The LPIPS v0.1 linear layers ship in the `lpips` wheel (lpips/weights/v0.1/*.pth); their digests were computed
# from lpips 0.1.4's installed files (and agree with the prefixes other projects put in these files' names).
_LPIPS_RAW = "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/"
_LPIPS_LICENCE = "BSD-2-Clause (richzhang/PerceptualSimilarity, the lpips package)"
for _net, _digest, _size, _users in (
    ("alex", "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0", 6009, "metric lpips"),
    ("vgg", "a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868", 7289, "metric lpips-vgg"),
    ("squeeze", "4a5350f23600cb79923ce65bb07cbf57dca461329894153e05a1346bd531cf76", 10811,
     "metrics lpips-squeeze, lpips-semsim-compat"),
):
    register_weight(
        WeightFile(
            name=f"lpips-{_net}",
            filename=f"lpips-v0.1-{_net}.pth",
            url=f"{_LPIPS_RAW}{_net}.pth",
            sha256=_digest,
            size=_size,
            licence=_LPIPS_LICENCE,
            used_by=f"{_users} (LPIPS v0.1 linear layers)",
            package="lpips",
            package_path=f"weights/v0.1/{_net}.pth",
        )
    )

# The FID Inception-v3 (TensorFlow's 2015-12-05 graph, converted); torch-fidelity publishes it as
# weights-inception-2015-12-05-6726825d.pth and pytorch-fid as pt_inception-2015-12-05-6726825d.pth (same bytes:
# public projects pin the same digest and size for both names).
register_weight(
    WeightFile(
        name="pt-inception",
        filename="pt_inception-2015-12-05-6726825d.pth",
        url="https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
            "weights-inception-2015-12-05-6726825d.pth",
        sha256="6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
        sha256_prefix="6726825d",
        size=95628359,
        licence="Apache-2.0 (TensorFlow models' Inception-v3 2015-12-05, converted by torch-fidelity/pytorch-fid)",
        used_by="FID and KID metrics (Inception-v3 pool features, as torch-fidelity computes them)",
        aliases=("weights-inception-2015-12-05-6726825d.pth",),
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


def packaged_path(wf: WeightFile) -> Path | None:
    """The copy shipped inside `wf.package` (located without importing the package), or None."""
    if wf.package is None or wf.package_path is None:
        return None
    try:
        spec = importlib.util.find_spec(wf.package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        candidate = Path(root) / wf.package_path
        if candidate.is_file():
            return candidate
    return None


def _human(size: int | None) -> str:
    if size is None:
        return "size unknown"
    if size >= 1e6:
        return f"{size / 1e6:.0f} MB"
    return f"{size / 1e3:.1f} kB" if size >= 1e3 else f"{size} bytes"


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


# Digests this process computed itself, keyed by the file's identity and state: a file is hashed once per process
# before its first use, and again whenever it is replaced or changed.
_HASHED: dict[tuple[str, int, int, int, int], str] = {}
_HASHED_LOCK = threading.Lock()


def _state_key(path: Path) -> tuple[str, int, int, int, int]:
    st = path.stat()
    return (str(path.resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _remember(path: Path, digest: str) -> None:
    with _HASHED_LOCK:
        _HASHED[_state_key(path)] = digest


def forget_verifications() -> None:
    """Drop this process's remembered digests (the next use re-hashes every file)."""
    with _HASHED_LOCK:
        _HASHED.clear()


def file_digest(path: Path, trust_sidecar: bool = True, record: bool = True) -> str:
    """sha256 of `path`: hashed by this process already, else from its sidecar (when `trust_sidecar` and size and
    mtime are unchanged), else hashed now (remembered, and recorded in the sidecar when `record`)."""
    path = Path(path)
    key = _state_key(path)
    with _HASHED_LOCK:
        known = _HASHED.get(key)
    if known is not None:
        return known
    if trust_sidecar:
        try:
            rec = json.loads(_sidecar(path).read_text())
            if rec["size"] == key[3] and rec["mtime_ns"] == key[4]:
                return str(rec["sha256"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    digest = sha256_of(path)
    with _HASHED_LOCK:
        _HASHED[key] = digest
    if record:
        _write_sidecar(path, digest)
    return digest


def cached_digest(path: Path) -> str:
    """sha256 of `path`, from this process's memory or its sidecar when size and mtime are unchanged, else hashed."""
    return file_digest(path, trust_sidecar=True)


def verify(path: Path, wf: WeightFile, full: bool = False) -> bool:
    """Whether `path` is the file `wf` describes: size first, then the sha256 (`full`: hashed by this process, never
    taken from a sidecar; used before loading)."""
    path = Path(path)
    if not path.is_file():
        return False
    if wf.size is not None and path.stat().st_size != wf.size:
        return False
    in_cache = path.resolve().parent == weights_dir().resolve()  # sidecars only beside cached files
    return wf.matches(file_digest(path, trust_sidecar=not full, record=in_cache))


def _head(path: Path, n: int = 512) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError:
        return b""


def looks_like_html(head: bytes) -> bool:
    """Whether a file's first bytes are a web page (a login or redirect page saved under the checkpoint's name).

    A torch checkpoint starts with a zip header ("PK") or a pickle opcode, never with "<".
    """
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return text.startswith(b"<")


def diagnose(path: Path, wf: WeightFile, digest: str | None = None) -> str:
    """Why `path` is not the file `wf` describes, in one phrase ("" when it is)."""
    path = Path(path)
    if not path.is_file():
        return "no such file"
    size = path.stat().st_size
    if looks_like_html(_head(path)):
        return f"{HTML_PAGE} ({size} bytes of HTML; download it in a browser or another way, then import it)"
    if wf.size is not None and size < wf.size:
        return f"truncated: {size} of {wf.size} bytes (an interrupted download?)"
    if wf.size is not None and size > wf.size:
        return f"size mismatch: {size} bytes, expected {wf.size}"
    if wf.size is None and _head(path, 4) == b"PK\x03\x04" and not zipfile.is_zipfile(path):
        return "truncated: the checkpoint's zip archive has no end (an interrupted download?)"
    digest = digest or file_digest(path, trust_sidecar=False, record=False)
    if wf.matches(digest):
        return ""
    return f"sha256 mismatch: the file's sha256 is {digest}, the manifest expects {wf.describe_digest()}"


def is_available(name: str) -> bool:
    """Whether entry `name` is usable: a verified copy in the cache or shipped with its package (quick check)."""
    wf = entry(name)
    if verify(path_of(name), wf):
        return True
    shipped = packaged_path(wf)
    return shipped is not None and verify(shipped, wf)


def fix_hint(wf: WeightFile) -> str:
    """The commands that put `wf` into the cache."""
    return f"`bench weights pull {wf.name}` (needs internet) or `bench weights import /path/to/{wf.filename}`"


def fix_command(name: str) -> str:
    """The one-line fix a metric reports when entry `name` is missing (online and offline forms)."""
    wf = entry(name)
    return f"bench weights pull {wf.name} (offline: bench weights import {wf.filename})"


def missing_fix(names: list[str] | tuple[str, ...]) -> str | None:
    """The fix for every entry of `names` that is not usable, joined by "; ", or None when all are usable."""
    fixes = []
    for name in names:
        try:
            require(name)
        except WeightsMissingError:
            fix = fix_command(name)
            cached = path_of(name)
            if cached.is_file():  # present but refused: say why beside the command
                fix = f"{fix}; the cached {cached.name} was refused: {diagnose(cached, entry(name))}"
            fixes.append(fix)
    return "; ".join(fixes) if fixes else None


def require(name: str) -> Path:
    """The verified path of entry `name` (cache first, then a copy shipped with its package), hashed by this process
    before its first use; else a WeightsMissingError naming the problem and the commands that fix it."""
    wf = entry(name)
    path = path_of(name)
    if verify(path, wf, full=True):
        return path
    shipped = packaged_path(wf)
    if shipped is not None and verify(shipped, wf, full=True):
        return shipped
    if path.is_file():
        raise WeightsMissingError(
            f"pretrained weights {name!r} at {path} fail verification ({diagnose(path, wf)}); "
            f"delete it and run {fix_hint(wf)}"
        )
    where = f" (and the copy shipped with {wf.package} fails verification: {diagnose(shipped, wf)})" if shipped else ""
    raise WeightsMissingError(
        f"pretrained weights {name!r} ({wf.filename}, {_human(wf.size)}, for {wf.used_by}) are not in "
        f"{weights_dir()}{where}; run {fix_hint(wf)}"
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
    _remember(dest, digest)
    return dest


def _named_like(src: Path) -> list[WeightFile]:
    return [wf for wf in MANIFEST.values() if src.name == wf.filename or src.name in wf.aliases]


def _identify(src: Path, digest: str, part: Path | None = None) -> WeightFile:
    """The manifest entry a file is, by its digest (or, to explain a refusal, by its file name)."""
    hits = [wf for wf in MANIFEST.values() if wf.matches(digest)]
    if len(hits) > 1:
        by_name = [wf for wf in hits if wf in _named_like(src)]
        hits = by_name or hits
    if len(hits) == 1 or (hits and len({wf.expected_digest for wf in hits}) == 1):
        return hits[0]
    if hits:
        names = ", ".join(wf.name for wf in hits)
        raise BenchError(f"{src} matches several weights entries ({names}); import it naming the entry explicitly")
    named = _named_like(src)
    if named:
        wf = named[0]
        raise BenchError(f"{src} is named like {wf.name!r} but is not that file: {diagnose(part or src, wf, digest)}")
    if looks_like_html(_head(part or src)):
        raise BenchError(f"{src} is not a checkpoint: {HTML_PAGE}")
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
        wf = _identify(src, digest, part) if name is None else entry(name)
        problem = diagnose(part, wf, digest)
        if problem:
            raise BenchError(f"{src} is not the weights {wf.name!r}: {problem}")
        return _install(part, path_of(wf.name), digest)
    finally:
        part.unlink(missing_ok=True)


@dataclass
class ImportReport:
    """What `import_path` did with each file: imported (file, entry, destination), refused (file, reason), unknown."""

    imported: list[tuple[Path, str, Path]] = field(default_factory=list)
    refused: list[tuple[Path, str]] = field(default_factory=list)
    unknown: list[Path] = field(default_factory=list)


def _worth_hashing(path: Path) -> bool:
    """Whether a file in an imported folder could be a manifest file (by name, or by size where sizes are known)."""
    if _named_like(path):
        return True
    size = path.stat().st_size
    return any(wf.size is None or wf.size == size for wf in MANIFEST.values())


def import_path(path: Path) -> ImportReport:
    """Import a file, or every file of a folder (recursively) recognised by its hash or name; list the others."""
    path = Path(path).expanduser()
    report = ImportReport()
    if path.is_file():
        wf_dest = import_file(path)
        report.imported.append((path, _entry_at(wf_dest), wf_dest))
        return report
    if not path.is_dir():
        raise BenchError(f"cannot import {path}: no such file or folder")
    for src in sorted(p for p in path.rglob("*") if p.is_file()):
        if src.name.endswith((".sha256", ".part")) or src.name.startswith("."):
            continue
        if not _worth_hashing(src):
            report.unknown.append(src)
            continue
        try:
            dest = import_file(src)
        except BenchError as exc:
            if _named_like(src) or "is not a checkpoint" in str(exc):
                report.refused.append((src, str(exc)))
            else:
                report.unknown.append(src)
            continue
        report.imported.append((src, _entry_at(dest), dest))
    return report


def _entry_at(dest: Path) -> str:
    return next(wf.name for wf in MANIFEST.values() if wf.filename == dest.name)


def _download(wf: WeightFile, part: Path, progress: bool) -> str:
    """Stream `wf.url` into `part` with a progress bar; the sha256 of what was received."""
    hint = "copy the file by hand and run `bench weights import PATH`"
    try:
        with urllib.request.urlopen(wf.url, timeout=60) as resp, open(part, "wb") as fout:
            total = resp.headers.get("Content-Length")
            ctype = (resp.headers.get("Content-Type") or "").lower()
            if "text/html" in ctype:
                raise BenchError(f"downloading {wf.url}: {HTML_PAGE} (Content-Type {ctype}); nothing installed; "
                                 f"{hint}")
            with tqdm(
                total=int(total) if total else wf.size, unit="B", unit_scale=True, unit_divisor=1024,
                desc=wf.filename, disable=not progress,
            ) as bar:
                digest = _copy_hashing(resp, fout, bar)
    except http.client.IncompleteRead as exc:
        raise BenchError(f"downloading {wf.url}: truncated: the connection closed before the end "
                         f"({exc.expected} bytes were still due); nothing installed; try again or {hint}") from exc
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        if isinstance(exc, urllib.error.HTTPError):
            reason = f"HTTP {exc.code} {exc.reason}"
        raise BenchError(f"could not download {wf.url}: {reason}; {hint}") from exc
    got = part.stat().st_size
    if total and total.isdigit() and got < int(total):
        raise BenchError(f"downloading {wf.url}: truncated: received {got} of {total} bytes; nothing installed; "
                         f"try again or {hint}")
    return digest


def pull(name: str, progress: bool = True) -> Path:
    """Put entry `name` into the cache: from its package's shipped copy, else by download (temporary file, sha256
    check, atomic rename); a no-op when a verified copy is already cached."""
    wf = entry(name)
    dest = path_of(name)
    if verify(dest, wf, full=True):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    shipped = packaged_path(wf)
    if shipped is not None and verify(shipped, wf, full=True):
        return import_file(shipped, name)
    part = _part_path(dest)
    try:
        digest = _download(wf, part, progress)
        problem = diagnose(part, wf, digest)
        if problem:
            raise BenchError(
                f"downloaded {wf.url} but it is not the expected file: {problem}; nothing installed; "
                f"copy the file by hand and run `bench weights import PATH`"
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
    """One row per manifest entry for `bench weights list`: what it is, what it enables, and its state.

    `state` is "verified" (cached copy), "shipped" (the copy inside its package), "refused" (present, fails
    verification: `problem` says why) or "missing".
    """
    rows = []
    for name in sorted(MANIFEST):
        wf = MANIFEST[name]
        path = path_of(name)
        present = path.is_file()
        verified = present and verify(path, wf)
        shipped = None if verified else packaged_path(wf)
        shipped_ok = shipped is not None and verify(shipped, wf)
        problem = diagnose(path, wf) if present and not verified else ""
        state = "verified" if verified else "shipped" if shipped_ok else "refused" if present else "missing"
        rows.append(
            {
                "name": name,
                "filename": wf.filename,
                "size": wf.size,
                "licence": wf.licence,
                "used_by": wf.used_by,
                "present": present,
                "verified": verified,
                "state": state,
                "problem": problem,
                "path": str(shipped if shipped_ok else path),
                "url": wf.url,
                "digest": "full" if wf.sha256 else "prefix",
            }
        )
    return rows
