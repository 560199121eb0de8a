"""An outside package written against plugin interface v1 keeps working: `bench plugin check` and `bench run`.

The package is installed the way pip installs one (a module beside a dist-info folder with entry_points.txt, found on
PYTHONPATH), and the CLI runs in a child process, so the registry discovers it exactly as it would an installed one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from bench.compat import make_attack
from bench.errors import BenchError
from bench.plugins import Attack

# Written as the plugin guide of interface v1 showed: __init__(profile, image_size, device, seed), no `params`,
# no declared parameters, no default extractor.
V1_PLUGIN = '''
import torch

from bench.features import Requirement
from bench.plugins import Attack


class OldMean(Attack):
    """Mean of the auxiliary images, written against plugin interface v1."""

    name = "old-mean"
    consumes = Requirement("sift")
    paper = "baseline"

    def __init__(self, profile, image_size, device="cpu", seed=0):
        super().__init__(profile, image_size, device, seed)
        self.mean = torch.zeros(3, image_size, image_size)

    def fit(self, features, images, ctx):
        self.mean = images.float().mean(0) if len(images) else self.mean

    def reconstruct(self, features, progress=True):
        return self.mean.unsqueeze(0).repeat(len(features), 1, 1, 1)

    def state_dict(self):
        return {"mean": self.mean}

    def load_state_dict(self, state):
        self.mean = state["mean"]
'''


@pytest.fixture(scope="module")
def v1_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("site")
    (root / "old_bench_plugin.py").write_text(V1_PLUGIN)
    info = root / "old_bench_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: old-bench-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[bench.attacks]\nold-mean = old_bench_plugin:OldMean\n")
    return root


def _bench(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, env=env,
                          timeout=600)


def test_v1_plugin_passes_plugin_check(v1_package: Path) -> None:
    proc = _bench(v1_package, "plugin", "check", "old-mean")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "FAIL" not in proc.stdout and "Traceback" not in proc.stderr
    assert proc.stdout.count("PASS") >= 11


def test_v1_plugin_runs_without_extractor_option(v1_package: Path, tmp_path: Path) -> None:
    proc = _bench(v1_package, "run", "--attack", "old-mean", "--profile", "smoke", "--metrics", "mse",
                  "--results", str(tmp_path), "--quiet")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert "old-mean vs none" in proc.stdout


def test_v1_plugin_given_a_parameter_is_one_line_naming_the_change(v1_package: Path, tmp_path: Path) -> None:
    proc = _bench(v1_package, "run", "--attack", "old-mean", "--profile", "smoke", "--attack-arg", "k=1",
                  "--results", str(tmp_path), "--quiet")
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "old-mean" in line]
    assert len(errors) == 1 and "interface v1" in errors[0] and "params" in errors[0], proc.stderr


class _Recorder(Attack):
    """Records what its constructor was given (a v2 attack)."""

    name = "recorder"
    seen: dict[str, Any] = {}

    def __init__(self, profile: str, image_size: int, device: torch.device | str = "cpu", seed: int = 0,
                 params: Any = None) -> None:
        type(self).seen = {"profile": profile, "image_size": image_size, "seed": seed, "params": params}
        super().__init__(profile, image_size, device, seed, params)

    def fit(self, features: Any, images: torch.Tensor, ctx: Any) -> None:
        pass


class _KeywordOnly(_Recorder):
    """A v1 signature that takes only some of the arguments, by keyword."""

    name = "keyword-only"

    def __init__(self, *, profile: str, image_size: int) -> None:  # type: ignore[override]
        Attack.__init__(self, profile, image_size)


class _NeedsMore(_Recorder):
    name = "needs-more"

    def __init__(self, profile: str, image_size: int, weights_path: str) -> None:  # type: ignore[override]
        Attack.__init__(self, profile, image_size)


def test_make_attack_passes_params_only_where_declared() -> None:
    make_attack(_Recorder, "smoke", 32, "cpu", 3, {})
    assert _Recorder.seen == {"profile": "smoke", "image_size": 32, "seed": 3, "params": None}
    a = make_attack(_KeywordOnly, "smoke", 32, "cpu", 3)
    assert (a.profile, a.image_size, a.seed) == ("smoke", 32, 0)
    with pytest.raises(BenchError, match="requires weights_path"):
        make_attack(_NeedsMore, "smoke", 32)


def test_default_extractor_when_none_is_declared() -> None:
    from bench.features import Requirement
    from bench.run.plan import default_extractor

    class Any_(_Recorder):
        name = "any-kind"
        consumes = Requirement("*")

    class Sift(_Recorder):
        name = "sift-kind"
        consumes = Requirement("sift")

    assert default_extractor(Sift) == "sift"  # the one registered extractor that produces sift features
    with pytest.raises(BenchError, match=r"declares no default extractor .* several .* pass --extractor NAME \(.*sift"):
        default_extractor(Any_)
