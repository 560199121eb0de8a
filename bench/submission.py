"""Submission bundles: a plugin's finished runs packed with what is needed to check and re-run them, and their import.

`bench plugin submit NAME --results DIR` writes a bundle (a folder, or a .tar.gz of one):

    manifest.json                 format, plugin (name, kind, entry point, distribution, version, sha256 of its source
                                  files), bench version, environment, one entry per run (ids, command), file sha256s
    runs/<run-id>/spec.json       the canonical run spec: it hashes to the run id
    runs/<run-id>/run.json        the run's record (versions, timings, conventions, the command that made it)
    runs/<run-id>/sample_metrics.csv   sample_index, sample_id, metric, value, status, version (values exact: repr)
    runs/<run-id>/set_metrics.json     metric, value, n, convention, status, detail, version, direction and range
    runs/<run-id>/attributes.csv, utility.json, grid.png (when the run has them), command.txt

`bench leaderboard import BUNDLE` verifies it (every file matches its sha256 in the manifest, every spec hashes to its
run id with the engine's own hash, rows are complete, metric names and conventions are the registered ones) and only
then adds the runs to the store, marked with their source. The file hashes detect corruption and edits that did not
also rewrite the manifest; they are not a signature. What makes a submitted number trustworthy is that anyone can
re-run it: each run carries the `bench run` command that reproduces it (append `--results DIR`).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import math
import os
import platform
import shlex
import shutil
import sys
import tarfile
import tempfile
import time
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import import_module, metadata
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from bench import __version__, registry
from bench.errors import BenchError
from bench.hashing import canonical_json, file_sha256

BUNDLE_FORMAT = "leakbench-submission"
FORMAT_VERSION = 1
SAMPLE_COLUMNS = ["sample_index", "sample_id", "metric", "value", "status", "version"]
KINDS = ("attacks", "defenses", "metrics")
DEFAULT_MAX_SIZE_MIB = 256  # what an imported archive may expand to, by its declared sizes
MAX_MEMBERS = 20_000  # files and folders in an archive (a bundle holds about 8 per run)
EPS32 = float(np.finfo(np.float32).eps)


# ------------------------------------------------------------------------------------------------ provenance
def _plugin_files(cls: type) -> tuple[Path, list[Path]]:
    """(base folder, source files) of the code that defines `cls`: its whole top-level package for an outside
    plugin, its own module for a built-in (hashing all of bench would say nothing about the plugin)."""
    module = sys.modules[cls.__module__]
    top = cls.__module__.split(".")[0]
    if top == "bench" or not hasattr(import_module(top), "__path__"):
        path = Path(module.__file__ or "")
        return path.parent, [path]
    base = Path(next(iter(import_module(top).__path__)))
    files = sorted(p for p in base.rglob("*.py") if "__pycache__" not in p.parts)
    return base.parent, files


def _distribution(name: str, kind: str, cls: type) -> tuple[str | None, str | None]:
    """(distribution name, version) that provides the plugin: its entry point's, else its top-level package's."""
    group = registry.ENTRY_POINT_GROUPS[kind]
    for ep in metadata.entry_points(group=group):
        if ep.name == name and getattr(ep, "dist", None) is not None:
            return ep.dist.name, ep.dist.version
    top = cls.__module__.split(".")[0]
    for dist in metadata.packages_distributions().get(top, []):
        try:
            return dist, metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None, None


def plugin_provenance(name: str, kind: str) -> dict[str, Any]:
    """Name, kind, where it is registered from, distribution and version, and sha256 of each of its source files."""
    entry = registry.REGISTRIES[kind].get(name)
    cls = entry.obj
    base, files = _plugin_files(cls)
    hashes = {p.relative_to(base).as_posix(): file_sha256(p) for p in files}
    dist, version = _distribution(name, kind, cls)
    return {"name": name, "kind": kind, "registered_from": entry.source, "class": f"{cls.__module__}:{cls.__qualname__}",
            "plugin_version": str(getattr(cls, "version", "")), "distribution": dist, "distribution_version": version,
            "source_files": hashes, "source_sha256": hashlib.sha256(canonical_json(hashes).encode()).hexdigest()}


def environment() -> dict[str, Any]:
    """Python, platform and the versions of the packages that can change a number."""
    from bench.run.outputs import package_versions

    return {"python": platform.python_version(), "platform": platform.platform(), "machine": platform.machine(),
            "packages": package_versions()}


# --------------------------------------------------------------------------------------------------- writing
def rerun_command(recorded: str) -> str:
    """The recorded `bench run ...` line without its `--results DIR` (the re-runner chooses where results go)."""
    args = shlex.split(recorded)
    out: list[str] = []
    skip = False
    for a in args:
        if skip:
            skip = False
            continue
        if a == "--results":
            skip = True
            continue
        if a.startswith("--results="):
            continue
        out.append(a)
    return " ".join(shlex.quote(a) for a in out)


def _value_text(v: Any) -> str:
    return "" if v is None else repr(float(v))


def _runs_of(store: Any, name: str, kind: str) -> list[dict[str, Any]]:
    runs = []
    for run in store.runs(status="done"):
        spec = json.loads(run["spec_json"])
        if (kind == "attacks" and spec.get("attack") == name) or (kind == "defenses" and spec.get("defense") == name) \
                or (kind == "metrics" and name in store.set_metrics(run["run_id"])):
            runs.append(run)
    return runs


def write_bundle(name: str, results: Path, out: Path, kind: str | None = None) -> Path:
    """Bundle every finished run of plugin `name` in `results` into `out` (a folder, or a .tar.gz when the name
    ends so); returns the bundle's path."""
    from bench.contract import find_plugin
    from bench.store import Store

    kind, _ = find_plugin(name, kind)
    db = Path(results) / "bench.sqlite"
    if not db.is_file():
        raise BenchError(f"no results store at {db}; run `bench run --{kind[:-1]} {name} ...` first or pass --results")
    out = Path(out)
    archive = out.name.endswith(".tar.gz")
    if out.exists():
        raise BenchError(f"{out} already exists; choose another --out or remove it")
    provenance = plugin_provenance(name, kind)
    with tempfile.TemporaryDirectory(prefix="bench-bundle-") as tmp:
        root = Path(tmp) / (out.name[: -len(".tar.gz")] if archive else out.name)
        root.mkdir()
        entries = []
        with Store(db) as store:
            runs = _runs_of(store, name, kind)
            if not runs:
                raise BenchError(f"no finished run of {kind[:-1]} {name!r} in {results}; run it with `bench run` first")
            for run in runs:
                entries.append(_write_run(store, run, Path(results), root))
        # Every attack and defense the runs used (a metric's or defense's runs may use outside attacks): what a
        # re-run has to install.
        used: dict[str, Any] = {}
        for e in entries:
            for k, n in (("attacks", e["attack"]), ("defenses", e["defense"])):
                if f"{k}:{n}" not in used:
                    try:
                        used[f"{k}:{n}"] = plugin_provenance(n, k)
                    except BenchError as exc:
                        used[f"{k}:{n}"] = {"name": n, "kind": k, "error": str(exc)}
        paths = [p for p in sorted(root.rglob("*")) if p.is_file()]
        files = {p.relative_to(root).as_posix(): file_sha256(p) for p in paths}
        # Byte sizes: an importer checks an archive's members against them before extracting anything.
        sizes = {p.relative_to(root).as_posix(): p.stat().st_size for p in paths}
        manifest = {"format": BUNDLE_FORMAT, "format_version": FORMAT_VERSION,
                    "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "plugin": provenance,
                    "plugins_used": used, "bench_version": __version__, "environment": environment(), "runs": entries, "files": files,
                    "sizes": sizes,
                    "rerun": "each run's command re-runs it: append --results DIR; `bench leaderboard import` of this "
                             "bundle checks it and adds its rows marked with their source"}
        (root / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
        out.parent.mkdir(parents=True, exist_ok=True)
        if archive:
            with tarfile.open(out, "w:gz") as tar:
                tar.add(root, arcname=root.name)
        else:
            shutil.copytree(root, out)
    return out


def _write_run(store: Any, run: dict[str, Any], results: Path, root: Path) -> dict[str, Any]:
    run_id = run["run_id"]
    spec = json.loads(run["spec_json"])
    record = json.loads(run["record_json"] or "{}")
    d = root / "runs" / run_id
    d.mkdir(parents=True)
    (d / "spec.json").write_text(json.dumps(spec, indent=1, sort_keys=True))
    (d / "run.json").write_text(json.dumps(record, indent=1, sort_keys=True, default=str))
    sets = store.set_metrics(run_id)
    n = int(record.get("n_test_loaded", spec["n_test"]))
    ok_versions = {m: str(r["version"]) for m, r in sets.items() if r["status"] == "ok"}
    rows = [r for r in store.sample_metrics(run_id)
            if int(r["sample_index"]) < n and ok_versions.get(r["metric"]) == str(r["version"])]
    with open(d / "sample_metrics.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(SAMPLE_COLUMNS)
        for r in rows:
            w.writerow([r["sample_index"], r["sample_id"], r["metric"], _value_text(r["value"]), r["status"],
                        r["version"]])
    (d / "set_metrics.json").write_text(json.dumps(list(sets.values()), indent=1, sort_keys=True))
    attributes = store.attributes(run_id)
    if attributes:
        with open(d / "attributes.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["sample_index", "sample_id", "attribute", "value"])
            w.writerows([r["sample_index"], r["sample_id"], r["attribute"], r["value"]] for r in attributes)
    (d / "utility.json").write_text(json.dumps({k: v["value"] for k, v in store.utility(run_id).items()},
                                               indent=1, sort_keys=True))
    grid = results / "runs" / run_id / "grid.png"
    if grid.is_file():
        shutil.copyfile(grid, d / "grid.png")
    command = rerun_command(record.get("command", "")) if record.get("command") else ""
    (d / "command.txt").write_text(command + "\n")
    return {"run_id": run_id, "config_id": run["config_id"], "dataset": spec["dataset"], "attack": spec["attack"],
            "defense": spec["defense"], "profile": spec["profile"], "seed": spec["seed"], "n_test": n,
            "command": command}


# --------------------------------------------------------------------------------------------------- reading
@dataclass
class VerifiedRun:
    """One run of a bundle that passed every check: what the store needs to import it."""

    run_id: str
    config_id: str
    spec: dict[str, Any]
    record: dict[str, Any]
    sample_rows: list[tuple[int, str, str, float | None, str, str]]
    set_rows: list[dict[str, Any]]
    attributes: list[tuple[int, str, str, str | None]] = field(default_factory=list)
    utility: dict[str, float | None] = field(default_factory=dict)
    command: str = ""


@contextmanager
def opened_bundle(path: Path, max_size_mib: float = DEFAULT_MAX_SIZE_MIB) -> Iterator[Path]:
    """The bundle's root folder. A folder must hold only regular files and folders (no links, which could name files
    outside it); a .tar.gz is unpacked into a temporary folder only after its members' declared sizes were checked
    against `max_size_mib` and the manifest's sizes, refusing links and outside paths."""
    path = Path(path)
    if path.is_dir():
        _refuse_links(path)
        yield path
        return
    if not path.is_file():
        raise BenchError(f"no submission bundle at {path}")
    limit = int(max_size_mib * 2**20)
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        try:
            # Data within the limit and headers of at most 1 KiB per member fit in twice the limit (plus 1 MiB).
            with _capped_stream(path, 2 * limit + 2**20, max_size_mib) as stream, \
                    tarfile.open(fileobj=stream, mode="r:") as tar:
                members = _checked_members(tar, path, limit, max_size_mib)
                tar.extractall(tmp, members=members, filter="data")
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise BenchError(f"{path} is not a readable submission bundle (.tar.gz or folder): {exc}") from None
        tops = [p for p in Path(tmp).iterdir()]
        if len(tops) != 1 or not tops[0].is_dir():
            raise BenchError(f"{path}: a bundle archive holds exactly one folder")
        yield tops[0]


class _Capped:
    """The decompressed archive as a stream that gives no byte past `cap` (a read is cut there, so one huge read, as
    tarfile makes for an extended header, never allocates past it): whatever the headers declare, unpacking stops."""

    def __init__(self, raw: Any, cap: int, path: Path, max_size_mib: float) -> None:
        self.raw, self.cap, self.path, self.max_size_mib = raw, cap, path, max_size_mib

    def _refuse(self) -> BenchError:
        return BenchError(f"{self.path}: the archive expands past {self.max_size_mib:g} MiB (and its headers); "
                          f"refused (a genuine bundle this large needs --max-size)")

    def read(self, n: int | None = -1) -> bytes:
        room = self.cap - self.raw.tell()
        if room < 0:
            raise self._refuse()
        data = self.raw.read(room + 1 if n is None or n < 0 or n > room + 1 else n)
        if self.raw.tell() > self.cap:
            raise self._refuse()
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        target = offset if whence == 0 else self.raw.tell() + offset if whence == 1 else None
        if target is None or target > self.cap:  # (tarfile never seeks from the end when reading)
            raise self._refuse()
        return self.raw.seek(target)

    def tell(self) -> int:
        return self.raw.tell()


@contextmanager
def _capped_stream(path: Path, cap: int, max_size_mib: float) -> Iterator[_Capped]:
    """A .tar.gz (or plain .tar) bundle's tar stream, decompressed here so that `_Capped` counts unpacked bytes."""
    with open(path, "rb") as fh:
        magic = fh.read(2)
    with (gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")) as raw:
        yield _Capped(raw, cap, path, max_size_mib)


def _refuse_links(root: Path) -> None:
    """A BenchError for the first symbolic link or special file under `root` (the archive path refuses them too)."""
    base = os.path.realpath(root)
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in sorted(dirs + files):
            p = Path(folder) / name
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                target = os.path.realpath(p)
                where = "inside" if os.path.commonpath([base, target]) == base else "outside"
                raise BenchError(f"{root}: {rel} is a symbolic link to {os.readlink(p)} ({where} the bundle); a "
                                 f"bundle folder holds only regular files and folders: refused")
            if not (p.is_file() or p.is_dir()):
                raise BenchError(f"{root}: {rel} is not a regular file or folder; refused")


def _member_name(name: str) -> str:
    """A member's path without the leading `./` that `tar -C DIR .` writes ('' for the archive's `.` itself)."""
    while name.startswith("./"):
        name = name[2:]
    return "" if name == "." else name.rstrip("/")


def _checked_members(tar: tarfile.TarFile, path: Path, limit: int, max_size_mib: float) -> list[tarfile.TarInfo]:
    """The archive's members, read header by header (each header is checked before the data behind it is read):
    regular files and folders only, one top folder, declared sizes summing to at most `limit` bytes and equal to the
    sizes the manifest lists. Nothing is extracted here; only manifest.json is read, once its size was checked."""
    members: list[tarfile.TarInfo] = []
    total = 0
    for m in tar:
        if not (m.isfile() or m.isdir()):
            raise BenchError(f"{path}: the archive holds links or special files ({m.name}); refused")
        total += m.size
        if total > limit:
            raise BenchError(f"{path}: the archive's members declare more than {max_size_mib:g} MiB (at {m.name}: "
                             f"{m.size} bytes); refused before extracting (a genuine bundle this large needs "
                             f"--max-size)")
        members.append(m)
        if len(members) > MAX_MEMBERS:
            raise BenchError(f"{path}: the archive holds more than {MAX_MEMBERS} members; refused before extracting")
    names = {id(m): _member_name(m.name) for m in members}
    tops = {names[id(m)].split("/")[0] for m in members if names[id(m)]}
    if len(tops) != 1:
        raise BenchError(f"{path}: a bundle archive holds exactly one folder")
    top = tops.pop()
    found = [m for m in members if names[id(m)] == f"{top}/manifest.json" and m.isfile()]
    if not found:
        raise BenchError("bundle is missing manifest.json")
    handle = tar.extractfile(found[0])
    try:
        manifest = json.loads(handle.read() if handle else b"")
    except ValueError as exc:
        raise BenchError(f"bundle manifest.json is not valid JSON: {exc}") from None
    sizes = manifest.get("sizes") if isinstance(manifest, dict) else None
    if sizes is None:  # bundles written before sizes were listed: the total limit above still held
        return members
    if not isinstance(sizes, dict):
        raise BenchError("manifest.json: 'sizes' is not a mapping of file to bytes")
    for m in members:
        rel = names[id(m)][len(top) + 1:]
        if not m.isfile() or rel == "manifest.json":
            continue
        if rel not in sizes:
            raise BenchError(f"{rel}: file not listed in the manifest's sizes (added after the bundle was written)")
        if sizes[rel] != m.size:
            raise BenchError(f"{rel}: the archive declares {m.size} bytes, the manifest {sizes[rel]}; refused "
                             f"before extracting")
    return members


def _load_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise BenchError(f"bundle is missing {what}") from None
    except ValueError as exc:
        raise BenchError(f"bundle {what} is not valid JSON: {exc}") from None


def _real(text: str) -> float | None:
    return None if text == "" else float(text)


def verify_bundle(root: Path) -> tuple[dict[str, Any], list[VerifiedRun]]:
    """Check a bundle folder; the manifest and its runs, or a BenchError naming the first thing that failed (content
    of the wrong type or shape included: a hostile bundle gives an error line, not a traceback)."""
    try:
        return _verify_bundle(root)
    except (ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
        raise BenchError(f"bundle content is malformed ({type(exc).__name__}: {exc}); refused") from None


def _verify_bundle(root: Path) -> tuple[dict[str, Any], list[VerifiedRun]]:
    from bench.spec import config_id as spec_config_id
    from bench.metric_value import METRIC_STATUSES

    manifest = _load_json(root / "manifest.json", "manifest.json")
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise BenchError("manifest.json is not a leakbench submission manifest")
    if int(manifest.get("format_version", 0)) > FORMAT_VERSION:
        raise BenchError(f"bundle format {manifest.get('format_version')} is newer than this bench reads "
                         f"({FORMAT_VERSION}); upgrade leakbench")
    for key in ("plugin", "runs", "files", "environment", "bench_version"):
        if key not in manifest:
            raise BenchError(f"manifest.json lacks {key!r}")
    listed: Mapping[str, str] = manifest["files"]
    present = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} - {"manifest.json"}
    for rel in sorted(set(listed) | present):
        if rel not in listed:
            raise BenchError(f"{rel}: file not listed in the manifest (added after the bundle was written)")
        if rel not in present:
            raise BenchError(f"{rel}: listed in the manifest but missing from the bundle")
        if file_sha256(root / rel) != listed[rel]:
            raise BenchError(f"{rel}: sha256 differs from the manifest (the file was changed after submission)")
    sizes = manifest.get("sizes")
    if sizes is not None:  # (bundles written before sizes were listed have none)
        if not isinstance(sizes, dict) or set(sizes) != set(listed):
            raise BenchError("manifest.json: 'sizes' does not list the same files as 'files'")
        for rel in sorted(listed):
            if (root / rel).stat().st_size != sizes[rel]:
                raise BenchError(f"{rel}: size differs from the manifest's {sizes[rel]} bytes")
    plugin = manifest["plugin"]
    kind, name = plugin.get("kind"), plugin.get("name")
    if kind not in KINDS or not name:
        raise BenchError(f"manifest.json names no plugin kind/name (kind {kind!r})")
    runs = []
    for entry in manifest["runs"]:
        runs.append(_verify_run(root, entry, kind, name, spec_config_id, METRIC_STATUSES))
    if not runs:
        raise BenchError("the bundle holds no runs")
    return manifest, runs


def _verify_run(root: Path, entry: Mapping[str, Any], kind: str, name: str, spec_config_id: Any,
                statuses: tuple[str, ...]) -> VerifiedRun:
    from bench.spec import run_id as spec_run_id

    run_id = str(entry.get("run_id", ""))
    d = root / "runs" / run_id
    where = f"run {run_id}"
    spec = _load_json(d / "spec.json", f"runs/{run_id}/spec.json")
    if not isinstance(spec, dict) or spec_run_id(spec) != run_id:
        raise BenchError(f"{where}: spec.json does not hash to its run id (the spec was changed)")
    record = _load_json(d / "run.json", f"runs/{run_id}/run.json")
    if record.get("spec") not in (None, spec):
        raise BenchError(f"{where}: run.json holds a different spec than spec.json")
    if (kind == "attacks" and spec.get("attack") != name) or (kind == "defenses" and spec.get("defense") != name):
        raise BenchError(f"{where}: the spec's {kind[:-1]} is not the submitted plugin {name!r}")
    n = int(entry.get("n_test", spec.get("n_test", 0)))
    if n != int(record.get("n_test_loaded", spec.get("n_test"))) or n <= 0:
        raise BenchError(f"{where}: n_test {n} disagrees with the run record")
    set_rows = _load_json(d / "set_metrics.json", f"runs/{run_id}/set_metrics.json")
    if not isinstance(set_rows, list) or not set_rows:
        raise BenchError(f"{where}: set_metrics.json holds no metric rows")
    by_metric: dict[str, dict[str, Any]] = {}
    for r in set_rows:
        missing = [k for k in ("metric", "value", "n", "convention", "status", "version") if k not in r]
        if missing:
            raise BenchError(f"{where}: a set-metric row lacks {', '.join(missing)}")
        m = str(r["metric"])
        if m in by_metric:
            raise BenchError(f"{where}: set metric {m!r} appears twice")
        by_metric[m] = r
        if r["status"] not in statuses:
            raise BenchError(f"{where}: metric {m!r} has unknown status {r['status']!r}")
        if int(r["n"]) != n:
            raise BenchError(f"{where}: metric {m!r} was computed on {r['n']} samples, the run has {n}")
        _check_convention(where, r)
    sample_rows = _read_samples(d / "sample_metrics.csv", where)
    _check_complete(where, sample_rows, by_metric, n)
    _check_set_values(where, sample_rows, by_metric, n)
    if kind == "metrics" and name not in by_metric:
        raise BenchError(f"{where}: no value of the submitted metric {name!r}")
    attributes: list[tuple[int, str, str, str | None]] = []
    if (d / "attributes.csv").is_file():
        with open(d / "attributes.csv", newline="") as fh:
            for row in csv.DictReader(fh):
                attributes.append((int(row["sample_index"]), row["sample_id"], row["attribute"], row["value"] or None))
    utility = _load_json(d / "utility.json", f"runs/{run_id}/utility.json") if (d / "utility.json").is_file() else {}
    return VerifiedRun(run_id, spec_config_id(spec), spec, record, sample_rows, list(by_metric.values()), attributes,
                       dict(utility), str(entry.get("command", "")))


def _check_convention(where: str, r: Mapping[str, Any]) -> None:
    """The metric is registered here, with the same convention, version, direction and range."""
    m = str(r["metric"])
    if m not in registry.metrics:
        raise BenchError(f"{where}: metric {m!r} is not registered here (install the plugin that provides it); "
                         f"its values cannot be compared")
    meta = registry.metrics.get(m).meta
    if str(r["convention"]) != str(meta["convention"]):
        raise BenchError(f"{where}: metric {m!r} convention {r['convention']!r} differs from the registered "
                         f"{meta['convention']!r}")
    if str(r["version"]) != str(meta["version"]):
        raise BenchError(f"{where}: metric {m!r} version {r['version']} differs from the registered version "
                         f"{meta['version']} (values of another version are not comparable)")
    if r.get("higher_is_better") is not None and bool(r["higher_is_better"]) != bool(meta["higher_is_better"]):
        raise BenchError(f"{where}: metric {m!r} direction differs from the registered one")
    lo, hi = meta["range"]
    for key, want in (("lo", lo), ("hi", hi)):
        got = r.get(key)
        if got is not None and float(got) != float(want):
            raise BenchError(f"{where}: metric {m!r} range {r.get('lo')}..{r.get('hi')} differs from the registered "
                             f"{lo}..{hi}")
    v = r.get("value")
    if r["status"] == "ok" and (v is None or not (lo <= float(v) <= hi)):
        raise BenchError(f"{where}: metric {m!r} value {v} is missing or outside its range [{lo}, {hi}]")


def _read_samples(path: Path, where: str) -> list[tuple[int, str, str, float | None, str, str]]:
    rows = []
    try:
        with open(path, newline="") as fh:
            reader = csv.reader(fh)
            if next(reader, None) != SAMPLE_COLUMNS:
                raise BenchError(f"{where}: sample_metrics.csv does not have the columns {','.join(SAMPLE_COLUMNS)}")
            for line, row in enumerate(reader, start=2):
                if len(row) != len(SAMPLE_COLUMNS):
                    raise BenchError(f"{where}: sample_metrics.csv line {line} has {len(row)} fields")
                try:
                    rows.append((int(row[0]), row[1], row[2], _real(row[3]), row[4], row[5]))
                except ValueError as exc:
                    raise BenchError(f"{where}: sample_metrics.csv line {line}: {exc}") from None
    except FileNotFoundError:
        raise BenchError(f"{where}: sample_metrics.csv is missing") from None
    return rows


def _check_complete(where: str, rows: list[tuple[int, str, str, float | None, str, str]],
                    sets: Mapping[str, Mapping[str, Any]], n: int) -> None:
    """n rows per per-sample metric with an ok set value, indices 0..n-1, one id per index, no duplicates."""
    seen: set[tuple[int, str]] = set()
    ids: dict[int, str] = {}
    per: dict[str, set[int]] = {}
    for i, sid, m, v, status, version in rows:
        if (i, m) in seen:
            raise BenchError(f"{where}: duplicate sample row (index {i}, metric {m!r})")
        seen.add((i, m))
        if not 0 <= i < n:
            raise BenchError(f"{where}: sample index {i} outside the private split of {n}")
        if ids.setdefault(i, sid) != sid:
            raise BenchError(f"{where}: sample {i} has two ids ({ids[i]!r}, {sid!r})")
        s = sets.get(m)
        if s is None or s["status"] != "ok":
            raise BenchError(f"{where}: sample rows of {m!r}, which has no ok set value")
        if str(version) != str(s["version"]):
            raise BenchError(f"{where}: sample rows of {m!r} are version {version}, its set value {s['version']}")
        if status == "ok":
            lo, hi = registry.metrics.get(m).meta["range"]
            if v is None or not lo <= v <= hi:
                raise BenchError(f"{where}: sample {i} {m!r} value {v} outside the metric's range [{lo}, {hi}]")
        elif status != "undefined" or v is not None:
            raise BenchError(f"{where}: sample {i} {m!r} has status {status!r} with value {v}")
        per.setdefault(m, set()).add(i)
    for m, s in sets.items():
        level = registry.metrics.get(m).meta["level"]
        if level == "sample" and s["status"] == "ok":
            got = per.get(m, set())
            if got != set(range(n)):
                raise BenchError(f"{where}: metric {m!r} has {len(got)} of {n} sample rows (incomplete)")


def _check_set_values(where: str, rows: list[tuple[int, str, str, float | None, str, str]],
                      sets: Mapping[str, Mapping[str, Any]], n: int) -> None:
    """Every ok set value of a per-sample metric equals what the metric's own `aggregate` gives from the bundle's
    per-sample rows (the mean, for every built-in), within n·eps(float32)·mean|v|: the rounding a sum of n values can
    gather in float32 arithmetic. Run after `_check_complete`, so every index 0..n-1 has exactly one row."""
    values: dict[str, np.ndarray] = {}
    for i, _, m, v, _, _ in rows:
        values.setdefault(m, np.full(n, np.nan))[i] = np.nan if v is None else v
    for m, s in sets.items():
        entry = registry.metrics.get(m)
        if entry.meta["level"] != "sample" or s["status"] != "ok":
            continue
        v = values.get(m, np.full(n, np.nan))
        try:
            want = float(entry.obj().aggregate({"values": v.copy()}))
        except KeyError:  # its aggregate needs arrays beyond the per-sample values: not a function of the rows
            continue
        except Exception as exc:  # (a plugin's own code: whatever it raises, the value cannot be checked)
            raise BenchError(f"{where}: the set value of {m!r} cannot be recomputed from its rows here "
                             f"({type(exc).__name__}: {exc}); refused") from None
        got = float(s["value"])
        finite = np.abs(v[np.isfinite(v)])
        tol = n * EPS32 * (float(finite.mean()) if len(finite) else 0.0)
        same = got == want or (math.isfinite(got) and math.isfinite(want) and abs(got - want) <= tol)
        if not same:
            raise BenchError(f"{where}: set value of {m!r} is {got!r} but its {n} per-sample rows give {want!r} "
                             f"(tolerance {tol:.3g} = n·eps32·mean|v|); the set value contradicts the rows")


# --------------------------------------------------------------------------------------------------- import
@dataclass
class ImportReport:
    source: str
    imported: list[str]
    already: list[str]
    commands: list[str]
    leaderboards: list[Path]


def bundle_source(manifest: Mapping[str, Any], manifest_bytes: bytes) -> str:
    """`leakbench-example-attack==0.1.0 bundle 1a2b3c4d5e6f`: the distribution and the manifest's sha256 prefix."""
    p = manifest["plugin"]
    dist = p.get("distribution") or p["name"]
    version = p.get("distribution_version") or "?"
    return f"{dist}=={version} bundle {hashlib.sha256(manifest_bytes).hexdigest()[:12]}"


def import_bundle(path: Path, results: Path, max_size_mib: float = DEFAULT_MAX_SIZE_MIB) -> ImportReport:
    """Verify the bundle at `path` (an archive may expand to `max_size_mib` MiB), then add its runs to the store in
    `results` and refresh the leaderboards."""
    from bench.report.leaderboard import refresh_leaderboard
    from bench.run.runner import results_folder
    from bench.store import Store

    with opened_bundle(Path(path), max_size_mib) as root:
        manifest, runs = verify_bundle(root)
        source = bundle_source(manifest, (root / "manifest.json").read_bytes())
    results = results_folder(results)
    imported, already = [], []
    with Store(results / "bench.sqlite") as store:
        for r in runs:
            added = store.import_run(r.run_id, r.spec, r.config_id, r.record, source, r.sample_rows, r.set_rows,
                                     r.attributes, r.utility)
            (imported if added else already).append(r.run_id)
        boards = [refresh_leaderboard(store, results, d) for d in sorted({r.spec["dataset"] for r in runs})]
    return ImportReport(source, imported, already, [r.command for r in runs], boards)


__all__ = ["write_bundle", "verify_bundle", "import_bundle", "opened_bundle", "plugin_provenance", "rerun_command",
           "ImportReport", "VerifiedRun", "BUNDLE_FORMAT"]
