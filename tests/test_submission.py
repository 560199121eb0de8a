"""The submission path end to end with the outside example attack (examples/leakbench-example-attack), installed
with pip into a folder of its own: contract kit, smoke run, `bench plugin submit`, `bench leaderboard import` (and its
refusals of tampered or incomplete bundles), and re-running the bundle's command gives the same numbers."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from click.testing import CliRunner

from bench.cli import main
from bench.hashing import file_sha256
from bench.submission import opened_bundle
from conftest import REPO, bench_subprocess, pip_install_target

EXAMPLE = REPO / "examples" / "leakbench-example-attack"
METRICS = "mse,psnr,ssim"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example package installed with pip into its own folder (the test environment is never touched), built
    from a copy so that setuptools' egg-info never lands in the checkout."""
    src = tmp_path_factory.mktemp("example-src") / EXAMPLE.name
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__"))
    return pip_install_target([src], tmp_path_factory.mktemp("example-site"))


@pytest.fixture(scope="module")
def submitted(site: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A smoke run of the example attack and its submission bundle."""
    root = tmp_path_factory.mktemp("submission")
    results, bundle = root / "results", root / "out" / "ridge.tar.gz"
    run = bench_subprocess(["run", "--attack", "ridge-keypoints", "--profile", "smoke", "--quiet", "--metrics", METRICS,
                            "--results", str(results)], site)
    assert run.returncode == 0, run.stdout + run.stderr
    sub = bench_subprocess(["plugin", "submit", "ridge-keypoints", "--results", str(results), "--out", str(bundle)],
                           site)
    assert sub.returncode == 0 and bundle.is_file(), sub.stdout + sub.stderr
    return {"results": results, "bundle": bundle, "root": root}


def _import(bundle: Path, results: Path) -> Any:
    return CliRunner().invoke(main, ["leaderboard", "import", str(bundle), "--results", str(results)])


def _rows(results: Path, table: str, columns: str) -> list[tuple]:
    with sqlite3.connect(results / "bench.sqlite") as db:
        return sorted(db.execute(f"SELECT {columns} FROM {table}").fetchall())


def test_example_passes_the_contract_kit_and_its_own_tests(site: Path) -> None:
    out = bench_subprocess(["plugin", "check", "ridge-keypoints"], site)
    assert out.returncode == 0 and "ridge-keypoints: all contract checks passed" in out.stdout, out.stdout + out.stderr
    own = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests"),
                          "-k", "not contract_kit"],  # (the kit itself ran just above, through the command)
                         capture_output=True, text=True, timeout=600, cwd=EXAMPLE,
                         env={**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"})
    assert own.returncode == 0 and "1 passed" in own.stdout, own.stdout + own.stderr


def test_bundle_holds_provenance_specs_rows_and_commands(submitted: dict[str, Path]) -> None:
    with opened_bundle(submitted["bundle"]) as root:
        manifest = json.loads((root / "manifest.json").read_text())
        plugin = manifest["plugin"]
        assert (plugin["name"], plugin["kind"], plugin["distribution"], plugin["distribution_version"]) == (
            "ridge-keypoints", "attacks", "leakbench-example-attack", "0.1.0")
        source = EXAMPLE / "leakbench_example_attack" / "plugin.py"
        assert plugin["source_files"]["leakbench_example_attack/plugin.py"] == file_sha256(source)
        assert {"python", "platform", "packages"} <= set(manifest["environment"])
        assert manifest["plugins_used"]["attacks:ridge-keypoints"]["source_sha256"] == plugin["source_sha256"]
        assert manifest["plugins_used"]["defenses:none"]["distribution"] == "leakbench"
        (entry,) = manifest["runs"]
        run_dir = root / "runs" / entry["run_id"]
        assert {p.name for p in run_dir.iterdir()} >= {"spec.json", "run.json", "sample_metrics.csv",
                                                       "set_metrics.json", "grid.png", "command.txt"}
        assert entry["command"].startswith("bench run --attack ridge-keypoints") and "--results" not in entry["command"]
        with open(run_dir / "sample_metrics.csv") as fh:
            assert len(list(csv.DictReader(fh))) == entry["n_test"] * 3


def test_import_adds_rows_marked_with_their_source_once(submitted: dict[str, Path], tmp_path: Path) -> None:
    fresh = tmp_path / "maintainer"
    first = _import(submitted["bundle"], fresh)
    assert first.exit_code == 0 and "imported 1 run(s)" in first.output, first.output
    local = _rows(submitted["results"], "sample_metrics", "run_id, sample_index, sample_id, metric, value, status")
    imported = _rows(fresh, "sample_metrics", "run_id, sample_index, sample_id, metric, value, status")
    assert imported == local  # every per-sample value, exactly
    assert _rows(fresh, "set_metrics", "metric, value, convention, version") == _rows(
        submitted["results"], "set_metrics", "metric, value, convention, version")
    again = _import(submitted["bundle"], fresh)
    assert again.exit_code == 0 and "imported 0 run(s); 1 already in the store" in again.output
    assert _rows(fresh, "sample_metrics", "run_id, sample_index, sample_id, metric, value, status") == imported
    with open(fresh / "leaderboards" / "synthetic-faces.csv") as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["source"].startswith("leakbench-example-attack==0.1.0 bundle ")
    with open(submitted["results"] / "leaderboards" / "synthetic-faces.csv") as fh:
        assert all(r["source"] == "" for r in csv.DictReader(fh))  # runs computed here have no source


def test_rerunning_the_bundle_command_gives_the_same_numbers(site: Path, submitted: dict[str, Path],
                                                             tmp_path: Path) -> None:
    with opened_bundle(submitted["bundle"]) as root:
        (entry,) = json.loads((root / "manifest.json").read_text())["runs"]
        sets = {r["metric"]: r["value"] for r in json.loads(
            (root / "runs" / entry["run_id"] / "set_metrics.json").read_text())}
        with open(root / "runs" / entry["run_id"] / "sample_metrics.csv") as fh:
            rows = sorted((int(r["sample_index"]), r["metric"], float(r["value"])) for r in csv.DictReader(fh))
    args = shlex.split(entry["command"])
    assert args[:2] == ["bench", "run"]
    again = tmp_path / "rerun"
    out = bench_subprocess([*args[1:], "--quiet", "--results", str(again)], site)
    assert out.returncode == 0, out.stdout + out.stderr
    assert (again / "runs" / entry["run_id"]).is_dir()  # the same spec, so the same run id
    assert sorted((i, m, v) for _, i, m, v in _rows(again, "sample_metrics", "run_id, sample_index, metric, value")) \
        == rows
    assert {m: v for m, v in _rows(again, "set_metrics", "metric, value")} == sets


# --------------------------------------------------------------------------------------------------- refusals
def _edit_csv(path: Path, change: Callable[[list[list[str]]], list[list[str]]]) -> None:
    with open(path, newline="") as fh:
        lines = list(csv.reader(fh))
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows(lines[:1] + change(lines[1:]))


def _bump_value(rows: list[list[str]]) -> list[list[str]]:
    rows[0][3] = repr(float(rows[0][3]) * 0.5)
    return rows


def _rename_metric(run: Path) -> None:
    text = (run / "set_metrics.json").read_text().replace('"ssim"', '"ssim-unheard-of"')
    (run / "set_metrics.json").write_text(text)
    _edit_csv(run / "sample_metrics.csv", lambda rows: [r[:2] + (["ssim-unheard-of"] if r[2] == "ssim" else [r[2]])
                                                        + r[3:] for r in rows])


TAMPERING = {
    # name: (edit of the run folder, whether the manifest's hashes are rewritten to match, expected words)
    "edited metric row": (lambda run: _edit_csv(run / "sample_metrics.csv", _bump_value), False,
                          "sample_metrics.csv: sha256 differs from the manifest"),
    "edited spec": (lambda run: (run / "spec.json").write_text(
        (run / "spec.json").read_text().replace('"seed": 0', '"seed": 1')), True,
        "spec.json does not hash to its run id"),
    "missing row": (lambda run: _edit_csv(run / "sample_metrics.csv", lambda rows: rows[:-1]), True,
                    "sample rows (incomplete)"),
    "duplicate row": (lambda run: _edit_csv(run / "sample_metrics.csv", lambda rows: rows + rows[-1:]), True,
                      "duplicate sample row"),
    "other convention": (lambda run: (run / "set_metrics.json").write_text(
        (run / "set_metrics.json").read_text().replace('"convention": "', '"convention": "my ')), True,
        "convention"),
    "unknown metric": (_rename_metric, True, "'ssim-unheard-of' is not registered"),
    "added file": (lambda run: (run / "extra.csv").write_text("x\n"), False, "not listed in the manifest"),
    # The set value halved, every hash rewritten: only recomputing it from the per-sample rows catches it.
    "set value contradicts the rows": (lambda run: _halve_set_value(run, "mse"), True,
                                       "set value of 'mse' is"),
    "malformed set row": (lambda run: (run / "set_metrics.json").write_text(
        (run / "set_metrics.json").read_text().replace('"n": ', '"n": "many", "x": ', 1)), True,
        "bundle content is malformed (ValueError"),
    "malformed attributes": (lambda run: (run / "attributes.csv").write_text("sample_index,value\nabc,1\n"), True,
                             "bundle content is malformed"),
}


def _halve_set_value(run: Path, metric: str) -> None:
    rows = json.loads((run / "set_metrics.json").read_text())
    for r in rows:
        if r["metric"] == metric:
            r["value"] = r["value"] * 0.5
    (run / "set_metrics.json").write_text(json.dumps(rows, indent=1, sort_keys=True))


def _rehash(bundle: Path, manifest: dict[str, Any]) -> None:
    """What a careful forger does after editing files: the manifest's hashes and sizes rewritten to match."""
    files = sorted(p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file())
    manifest["files"] = {k: file_sha256(bundle / k) for k in files if k != "manifest.json"}
    manifest["sizes"] = {k: (bundle / k).stat().st_size for k in manifest["files"]}
    (bundle / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("case", list(TAMPERING))
def test_tampered_or_incomplete_bundle_is_refused(case: str, submitted: dict[str, Path], tmp_path: Path) -> None:
    edit, rehash, words = TAMPERING[case]
    bundle = tmp_path / "bundle"
    with opened_bundle(submitted["bundle"]) as root:
        shutil.copytree(root, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    run = bundle / "runs" / manifest["runs"][0]["run_id"]
    edit(run)
    if rehash:  # a careful forger also rewrites the manifest: the content checks must still catch it
        _rehash(bundle, manifest)
    out = _import(bundle, tmp_path / "store")
    assert out.exit_code == 2, out.output
    assert out.output.startswith("error: ") and out.output.count("\n") == 1 and words in out.output, out.output
    assert not (tmp_path / "store" / "bench.sqlite").exists()  # refused before anything was written


def test_submit_and_import_user_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    none = runner.invoke(main, ["plugin", "submit", "mean-image", "--results", str(tmp_path / "nothing")])
    assert none.exit_code == 2 and "no results store" in none.output
    missing = runner.invoke(main, ["leaderboard", "import", str(tmp_path / "no-bundle.tar.gz")])
    assert missing.exit_code == 2 and "no submission bundle" in missing.output
    (tmp_path / "junk.tar.gz").write_bytes(b"not an archive")
    junk = runner.invoke(main, ["leaderboard", "import", str(tmp_path / "junk.tar.gz")])
    assert junk.exit_code == 2 and "not a readable submission bundle" in junk.output


def test_a_metric_submission_bundles_the_runs_that_score_it(site: Path, submitted: dict[str, Path],
                                                            tmp_path: Path) -> None:
    out = bench_subprocess(["plugin", "submit", "psnr", "--results", str(submitted["results"]),
                            "--out", str(tmp_path / "psnr-bundle")], site)  # a folder this time
    assert out.returncode == 0, out.stdout + out.stderr
    manifest = json.loads((tmp_path / "psnr-bundle" / "manifest.json").read_text())
    assert (manifest["plugin"]["kind"], manifest["plugin"]["distribution"]) == ("metrics", "leakbench")
    assert [r["attack"] for r in manifest["runs"]] == ["ridge-keypoints"]
    assert "leakbench-example-attack" == manifest["plugins_used"]["attacks:ridge-keypoints"]["distribution"]
    imported = _import(tmp_path / "psnr-bundle", tmp_path / "store")
    assert imported.exit_code == 0 and "imported 1 run(s)" in imported.output, imported.output
    again = CliRunner().invoke(main, ["plugin", "submit", "psnr", "--results", str(submitted["results"]),
                                      "--out", str(tmp_path / "psnr-bundle")])
    assert again.exit_code == 2 and "already exists" in again.output


def test_set_value_check_allows_float32_rounding_only(submitted: dict[str, Path], tmp_path: Path) -> None:
    """A set mean that differs from the rows' mean by less than n·eps32·mean|v| is accepted; 10× that is refused."""
    bundle = tmp_path / "bundle"
    with opened_bundle(submitted["bundle"]) as root:
        shutil.copytree(root, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    run = bundle / "runs" / manifest["runs"][0]["run_id"]
    with open(run / "sample_metrics.csv") as fh:
        mse = [float(r["value"]) for r in csv.DictReader(fh) if r["metric"] == "mse"]
    tol = len(mse) * float(np.finfo(np.float32).eps) * float(np.mean(np.abs(mse)))
    rows = json.loads((run / "set_metrics.json").read_text())
    for shift, ok in ((0.5 * tol, True), (10 * tol, False)):
        for r in rows:
            if r["metric"] == "mse":
                r["value"] = float(np.mean(mse)) + shift
        (run / "set_metrics.json").write_text(json.dumps(rows))
        _rehash(bundle, manifest)
        out = _import(bundle, tmp_path / f"store-{ok}")
        assert (out.exit_code == 0) == ok, out.output
        if not ok:
            assert "set value of 'mse'" in out.output and "contradicts the rows" in out.output, out.output


def test_folder_bundle_with_a_link_outside_is_refused(submitted: dict[str, Path], tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    with opened_bundle(submitted["bundle"]) as root:
        shutil.copytree(root, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    grid = bundle / "runs" / manifest["runs"][0]["run_id"] / "grid.png"
    outside = tmp_path / "elsewhere.png"
    outside.write_bytes(b"a file that is not part of the bundle")
    grid.unlink()
    grid.symlink_to(outside)
    _rehash(bundle, manifest)  # the hashes match what the link points to
    out = _import(bundle, tmp_path / "store")
    assert out.exit_code == 2 and "grid.png is a symbolic link" in out.output and "outside the bundle" in out.output, \
        out.output
    assert not (tmp_path / "store" / "bench.sqlite").exists()


class _Zeros(io.RawIOBase):
    """`size` zero bytes, read without holding them."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        k = min(len(buf), self.left)
        buf[:k] = bytes(k)
        self.left -= k
        return k


def _no_extraction(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the archive was extracted")
    monkeypatch.setattr(tarfile.TarFile, "extractall", refuse)
    monkeypatch.setattr(tarfile.TarFile, "extract", refuse)


def test_archive_expanding_to_a_gibibyte_is_refused_before_extracting(submitted: dict[str, Path], tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    bomb = tmp_path / "bomb.tar.gz"
    manifest = json.dumps({"format": "leakbench-submission", "format_version": 1}).encode()
    with tarfile.open(bomb, "w:gz", compresslevel=9) as tar:
        info = tarfile.TarInfo("b/manifest.json")
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
        info = tarfile.TarInfo("b/runs/x/sample_metrics.csv")
        info.size = 2**30
        tar.addfile(info, _Zeros(2**30))
    assert bomb.stat().st_size < 2**21  # about 1 MB on disk
    _no_extraction(monkeypatch)
    out = _import(bomb, tmp_path / "store")
    assert out.exit_code == 2 and "declare more than 256 MiB" in out.output, out.output
    assert "refused before extracting" in out.output
    # The limit is an option: a genuine bundle over a tiny one is refused the same way.
    small = CliRunner().invoke(main, ["leaderboard", "import", str(submitted["bundle"]), "--max-size", "0.01",
                                      "--results", str(tmp_path / "store")])
    assert small.exit_code == 2 and "declare more than 0.01 MiB" in small.output, small.output


def test_unpacking_stops_at_the_limit_whatever_the_headers_say(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """An extended (pax) header is read whole by tarfile before any member is seen: 8 MiB of it under a 1 MiB limit
    is refused once the unpacked stream passes twice the limit, without reading the rest."""
    bomb = tmp_path / "pax.tar.gz"
    with tarfile.open(bomb, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("b/manifest.json")
        info.pax_headers = {"comment": "x" * (8 * 2**20)}
        tar.addfile(info, io.BytesIO(b""))
    _no_extraction(monkeypatch)
    read: list[int] = []
    real_read = gzip.GzipFile.read
    monkeypatch.setattr(gzip.GzipFile, "read", lambda self, n=-1: read.append(n) or real_read(self, n))
    out = CliRunner().invoke(main, ["leaderboard", "import", str(bomb), "--max-size", "1",
                                    "--results", str(tmp_path / "store")])
    assert out.exit_code == 2 and "expands past 1 MiB" in out.output, out.output
    assert max(read) <= 3 * 2**20 + 1  # no single read past the cap


def test_archive_member_sizes_are_checked_against_the_manifest_before_extracting(
        submitted: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = tmp_path / "ridge"
    with opened_bundle(submitted["bundle"]) as root:
        shutil.copytree(root, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    grid = bundle / "runs" / manifest["runs"][0]["run_id"] / "grid.png"
    listed = manifest["sizes"][f"runs/{manifest['runs'][0]['run_id']}/grid.png"]
    assert listed == grid.stat().st_size  # written by `bench plugin submit`
    with open(grid, "ab") as fh:
        fh.write(bytes(1000))
    with tarfile.open(tmp_path / "ridge.tar.gz", "w:gz") as tar:
        tar.add(bundle, arcname="ridge")
    _no_extraction(monkeypatch)
    out = _import(tmp_path / "ridge.tar.gz", tmp_path / "store")
    assert out.exit_code == 2 and f"declares {listed + 1000} bytes, the manifest {listed}" in out.output, out.output


def test_an_archive_written_before_sizes_were_listed_still_imports(submitted: dict[str, Path], tmp_path: Path) -> None:
    bundle = tmp_path / "ridge"
    with opened_bundle(submitted["bundle"]) as root:
        shutil.copytree(root, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    del manifest["sizes"]
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with tarfile.open(tmp_path / "ridge.tar.gz", "w:gz") as tar:
        tar.add(bundle, arcname="ridge")
    out = _import(tmp_path / "ridge.tar.gz", tmp_path / "store")
    assert out.exit_code == 0 and "imported 1 run(s)" in out.output, out.output


def test_an_archive_with_dot_slash_names_imports(submitted: dict[str, Path], tmp_path: Path) -> None:
    """`tar -czf B.tar.gz ./ridge` writes names beginning `./`: the size checks see the same files."""
    with opened_bundle(submitted["bundle"]) as root:
        shutil.copytree(root, tmp_path / "ridge")
    with tarfile.open(tmp_path / "ridge.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "ridge", arcname="./ridge")
    out = _import(tmp_path / "ridge.tar.gz", tmp_path / "store")
    assert out.exit_code == 0 and "imported 1 run(s)" in out.output, out.output
