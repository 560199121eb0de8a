"""benchmarks/device_paper_profile.py (the GPU check of the paper profile) runs end to end on the CPU's smoke profile."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from bench.errors import WeightsMissingError

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "device_paper_profile.py"


def _module():
    spec = importlib.util.spec_from_file_location("device_paper_profile", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


def test_times_coarse_steps_of_a_profile() -> None:
    r = _module().time_coarse_steps("smoke", torch.device("cpu"), steps=2, n=8, perceptual=None)
    assert r["steps"] == 2 and r["image_size"] == 32 and r["s_per_step"] > 0 and r["final_loss"] > 0
    assert r["peak_memory_gib"] is None  # only measured on CUDA


def test_paper_profile_without_vgg19_weights_stops_with_the_fix(monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    from bench import weights

    def missing(name: str) -> None:
        raise WeightsMissingError(f"{name} weights are missing: bench weights pull {name}")

    monkeypatch.setattr(weights, "require", missing)
    with pytest.raises(WeightsMissingError, match="vgg19"):
        _module().time_coarse_steps("paper", torch.device("cpu"), steps=1, n=8, perceptual=None)


@pytest.mark.slow
def test_the_script_runs_as_two_data_parallel_processes() -> None:
    """--nproc 2 on CPU (gloo): rank 0 alone prints, the time per step is reported for the global batch."""
    import json
    import os
    import subprocess
    import sys

    done = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--profile", "smoke", "--steps", "3",
                           "--warmup", "0", "--n", "8", "--nproc", "2"], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("coarse steps:") == 1 and "on 2 process(es)" in done.stdout
    r = json.loads(done.stdout.strip().splitlines()[-1])
    assert r["processes"] == 2 and r["batch_size"] == 4 and r["s_per_step"] > 0
