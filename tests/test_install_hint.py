"""Hints that name an extra give the pip command for the way leakbench was installed (bench/install_hint.py).

Each case builds the metadata pip writes (a dist-info folder with or without `direct_url.json`, PEP 610) in a
temporary import path, so the cases do not depend on how this test environment was installed.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

import pytest

import bench
from bench.embedders import dlib_face
from bench.install_hint import extra_install_command

REPO = Path(__file__).resolve().parents[1]
VIRTUAL_ENV = os.environ.get("VIRTUAL_ENV")  # as the messages' module constants saw it at import


@pytest.fixture(autouse=True)
def _active_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if this environment were activated, so that the hint starts with plain `pip`."""
    monkeypatch.setenv("VIRTUAL_ENV", sys.prefix)


def _site(tmp_path: Path, record: dict | None, name: str = "site") -> Path:
    """A site-packages folder holding leakbench's dist-info, with `record` as its direct_url.json (None: none)."""
    site = tmp_path / name
    info = site / "leakbench-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: leakbench\nVersion: 0.1.0\n")
    if record is not None:
        (info / "direct_url.json").write_text(json.dumps(record))
    return site


def _checkout(tmp_path: Path, name: str = "my checkout") -> Path:
    root = tmp_path / name
    (root / "bench").mkdir(parents=True)
    (root / "setup.cfg").write_text("[metadata]\nname = leakbench\n")
    return root


def test_editable_install_names_its_checkout(tmp_path: Path) -> None:
    root = _checkout(tmp_path)
    site = _site(tmp_path, {"url": root.as_uri(), "dir_info": {"editable": True}})
    line = extra_install_command("faces", here=root, path=[str(site)])
    assert shlex.split(line) == ["pip", "install", "-e", f"{root}[faces]"], line


def test_installed_by_name_from_an_index_or_wheel(tmp_path: Path) -> None:
    site = _site(tmp_path, None)
    assert extra_install_command("faces", here=site, path=[str(site)]) == 'pip install "leakbench[faces]"'


def test_an_editable_record_of_another_checkout_is_not_used(tmp_path: Path) -> None:
    """Two installs on the path (e.g. a chained environment): only the one providing the running code counts."""
    other = _checkout(tmp_path, "other")
    first = _site(tmp_path, {"url": other.as_uri(), "dir_info": {"editable": True}}, "first")
    wheel = _site(tmp_path, None, "second")
    line = extra_install_command("dask", here=wheel, path=[str(first), str(wheel)])
    assert line == 'pip install "leakbench[dask]"', line


def test_local_wheel_and_git_installs_reinstall_from_their_source(tmp_path: Path) -> None:
    wheel = "file:///wheels/leakbench-0.1.0-py3-none-any.whl"
    site = _site(tmp_path, {"url": wheel, "archive_info": {}}, "a")
    line = extra_install_command("faces", here=site, path=[str(site)])
    assert shlex.split(line) == ["pip", "install", f"leakbench[faces] @ {wheel}"], line
    site = _site(tmp_path, {"url": "https://example.org/x/leakbench.git",
                            "vcs_info": {"vcs": "git", "commit_id": "0123abc"}}, "b")
    line = extra_install_command("faces", here=site, path=[str(site)])
    spec = shlex.split(line)[-1]
    assert spec == "leakbench[faces] @ git+https://example.org/x/leakbench.git@0123abc", line
    requirements = pytest.importorskip("packaging.requirements")
    parsed = requirements.Requirement(spec)
    assert parsed.name == "leakbench" and parsed.extras == {"faces"}


def test_a_source_tree_that_pip_did_not_install(tmp_path: Path) -> None:
    root = _checkout(tmp_path)
    line = extra_install_command("faces", here=root, path=[str(tmp_path / "empty")])
    assert shlex.split(line) == ["pip", "install", "-e", f"{root}[faces]"], line


def test_an_inactive_virtual_environment_names_its_own_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = _site(tmp_path, None)
    monkeypatch.delenv("VIRTUAL_ENV")
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "venv"))
    monkeypatch.setattr(sys, "base_prefix", str(tmp_path / "base"))
    line = extra_install_command("faces", here=site, path=[str(site)])
    assert shlex.split(line) == [sys.executable, "-m", "pip", "install", "leakbench[faces]"], line


def test_the_running_copy_and_the_messages_use_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """In this checkout (editable, or on the import path) the hint installs this checkout; messages carry it."""
    if VIRTUAL_ENV is None:
        monkeypatch.delenv("VIRTUAL_ENV")
    else:
        monkeypatch.setenv("VIRTUAL_ENV", VIRTUAL_ENV)
    line = extra_install_command("faces")
    if REPO in Path(bench.__file__).resolve().parents:
        assert shlex.split(line)[-2:] == ["-e", f"{REPO}[faces]"], line
    assert dlib_face.FIX == line
