"""`bench plugin new`: each kind's scaffold is a package whose entry point bench finds once installed, and whose
skeleton passes `bench plugin check` as written."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.cli import main
from conftest import bench_subprocess, pip_install_target

KINDS = {"attack": "attacks", "defense": "defenses", "metric": "metrics"}


def _toml(path: Path) -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    return tomllib.loads(path.read_text())


def _site_from_pyproject(package: Path, site: Path) -> None:
    """What installing does, by hand and fast: the import package on the path plus a .dist-info whose
    entry_points.txt is read from the scaffold's own pyproject.toml (so a wrong entry point fails here)."""
    project = _toml(package / "pyproject.toml")["project"]
    for module in _toml(package / "pyproject.toml")["tool"]["setuptools"]["packages"]:
        shutil.copytree(package / module, site / module)
    info = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    lines = []
    for group, entries in project["entry-points"].items():
        lines.append(f"[{group}]")
        lines += [f"{k} = {v}" for k, v in entries.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


def test_new_writes_a_package_per_kind_that_passes_the_contract_kit(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    for kind in KINDS:
        out = CliRunner().invoke(main, ["plugin", "new", f"toy-{kind}", "--kind", kind, "--dir", str(tmp_path)])
        assert out.exit_code == 0, out.output
        package = tmp_path / f"leakbench-toy-{kind}"
        assert {p.relative_to(package).as_posix() for p in package.rglob("*") if p.is_file()} == {
            "pyproject.toml", "README.md", f"leakbench_toy_{kind}/__init__.py", f"leakbench_toy_{kind}/plugin.py",
            "tests/test_contract.py"}
        assert f'[project.entry-points."bench.{KINDS[kind]}"]' in (package / "pyproject.toml").read_text()
        _site_from_pyproject(package, site)
    out = bench_subprocess(["plugin", "check", *[f"toy-{kind}" for kind in KINDS]], site)  # one interpreter
    assert out.returncode == 0, out.stdout + out.stderr
    assert all(f"toy-{kind}: all contract checks passed" in out.stdout for kind in KINDS), out.stdout
    assert "FAIL" not in out.stdout and "warning" not in out.stderr  # every entry point loaded


def test_new_refuses_bad_names_and_existing_folders(tmp_path: Path) -> None:
    runner = CliRunner()
    bad = runner.invoke(main, ["plugin", "new", "My_Attack", "--kind", "attack", "--dir", str(tmp_path)])
    assert bad.exit_code == 2 and "lower-case" in bad.output and "Traceback" not in bad.output
    taken = runner.invoke(main, ["plugin", "new", "mean-image", "--kind", "attack", "--dir", str(tmp_path)])
    assert taken.exit_code == 2 and "already registered" in taken.output
    assert runner.invoke(main, ["plugin", "new", "x-attack", "--kind", "attack", "--dir", str(tmp_path)]).exit_code == 0
    again = runner.invoke(main, ["plugin", "new", "x-attack", "--kind", "attack", "--dir", str(tmp_path)])
    assert again.exit_code == 2 and "already exists" in again.output


@pytest.mark.slow
def test_scaffolds_install_with_pip(tmp_path: Path) -> None:
    """The scaffolds' pyproject.toml builds with setuptools and installs the entry points (pip --target)."""
    for kind in KINDS:
        CliRunner().invoke(main, ["plugin", "new", f"pip-{kind}", "--kind", kind, "--dir", str(tmp_path)])
    target = pip_install_target([tmp_path / f"leakbench-pip-{k}" for k in KINDS], tmp_path / "target")
    out = bench_subprocess(["list"], target)
    assert out.returncode == 0 and all(f"pip-{k}" in out.stdout for k in KINDS), out.stdout + out.stderr


def test_check_names_why_an_installed_plugin_did_not_load(tmp_path: Path) -> None:
    CliRunner().invoke(main, ["plugin", "new", "broken-attack", "--kind", "attack", "--dir", str(tmp_path)])
    package = tmp_path / "leakbench-broken-attack"
    plugin = package / "leakbench_broken_attack" / "plugin.py"
    plugin.write_text(plugin.read_text() + "\nimport numpy_that_does_not_exist\n")
    site = tmp_path / "site"
    site.mkdir()
    _site_from_pyproject(package, site)
    out = bench_subprocess(["plugin", "check", "broken-attack"], site)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert "warning: attack plugin 'broken-attack' from leakbench-broken-attack" in out.stderr
    assert "error: 'broken-attack' is installed but failed to load" in out.stderr
    assert "numpy_that_does_not_exist" in out.stderr
