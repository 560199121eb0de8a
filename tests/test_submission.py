"""The submission path end to end with the outside example attack (examples/leakbench-example-attack), installed
with pip into a folder of its own: contract kit, smoke run, `bench plugin submit`, `bench leaderboard import` (and its
refusals of tampered or incomplete bundles), and re-running the bundle's command gives the same numbers."""

from __future__ import annotations

import csv
import json
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

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
}


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
        manifest["files"] = {k: file_sha256(bundle / k) for k in manifest["files"]}
        (bundle / "manifest.json").write_text(json.dumps(manifest))
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
