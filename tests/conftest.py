"""Shared fixtures: the real-data folder (skipped with a reason when absent) and the slow-test switch."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("BENCH_SHARED_DATA", REPO.parent / "shared" / "data"))


def pytest_configure(config: pytest.Config) -> None:
    """Hermetic weights: every test starts from an empty weights cache unless it sets BENCH_HOME itself, so
    pretrained files on the developer's machine never change what a test sees."""
    import tempfile

    os.environ["BENCH_HOME"] = tempfile.mkdtemp(prefix="bench-home-")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", default=False, help="also run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow test: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder ../shared/data beside the checkout; tests that need it skip when it is absent."""
    if not (SHARED_DATA / "faces").is_dir():
        pytest.skip(f"real face data not found at {SHARED_DATA} (set BENCH_SHARED_DATA or place ../shared/data)")
    return SHARED_DATA


@pytest.fixture()
def bench_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty BENCH_HOME (weights cache) for one test."""
    home = tmp_path / "bench-home"
    monkeypatch.setenv("BENCH_HOME", str(home))
    return home
