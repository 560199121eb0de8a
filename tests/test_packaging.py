"""The card's folders attacks/, defenses/, metrics/ install under the bench namespace, never top level."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import bench.attacks
import bench.defenses
import bench.metrics

REPO = Path(__file__).resolve().parents[1]


def test_namespaced_packages_come_from_the_card_folders() -> None:
    assert Path(bench.attacks.__file__).resolve() == REPO / "attacks" / "__init__.py"
    assert Path(bench.defenses.__file__).resolve() == REPO / "defenses" / "__init__.py"
    assert Path(bench.metrics.__file__).resolve() == REPO / "metrics" / "__init__.py"


def test_no_top_level_generic_names_are_installed(tmp_path: Path) -> None:
    # Outside the checkout, `import metrics` must not find this project (it would shadow PyPI's `metrics`).
    code = ("import importlib.util as u, bench.metrics\n"
            "for n in ('attacks', 'defenses', 'metrics'):\n"
            "    s = u.find_spec(n)\n"
            "    print(n, s.origin if s else None, list(s.submodule_search_locations or []) if s else [])\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert str(REPO) not in out.stdout, out.stdout


def test_wheel_maps_folders_under_bench(tmp_path: Path) -> None:
    # Build from a copy, so that setuptools' build/ and egg-info folders never land in the checkout.
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "bench-results",
                                                             "__pycache__", ".pytest_cache", ".benchmarks"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path), str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob("leakbench-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in ("bench/attacks/sift_inversion/cfgan.py", "bench/defenses/none.py", "bench/metrics/ssim.py",
                       "bench/cli/__init__.py", "bench/run/runner.py", "bench/store/db.py", "bench/annotations/page.py",
                       "bench/annotations/correlation.py", "bench/cli/plugin.py", "bench/plugin_kit/templates.py",
                       "bench/submission.py"):
        assert module in names, module
    assert not any(n.split("/")[0] in ("attacks", "defenses", "metrics", "tests", "examples") for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "bench = bench.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
