"""Two `bench run` processes on one results folder: each finishes or waits, and a finished run is never failed."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ARGS = ["run", "--defense", "none", "--profile", "smoke", "--n-train", "12", "--n-test", "10", "--quiet",
        "--metrics", "mse,psnr,ssim,ssim-sift-compat"]


def _start(results: Path, attack: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "bench.cli", *ARGS, "--attack", attack, "--results", str(results),
                             "--threads", "1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("attack", [
    # slow: the cfgan case races the same two processes on one folder, through a training stage that keeps them
    # overlapping longer (two bench processes each: ~20 s of CPU per case)
    pytest.param("mean-image", marks=pytest.mark.slow), "cfgan"])
def test_two_identical_runs_on_one_results_folder(attack: str, tmp_path: Path) -> None:
    procs = [_start(tmp_path, attack) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
        assert "psnr" in out
    db = sqlite3.connect(tmp_path / "bench.sqlite")
    assert db.execute("SELECT status FROM runs").fetchall() == [("done",)]
    assert db.execute("SELECT COUNT(*) FROM sample_metrics").fetchone()[0] == 10 * 4
    db.close()
    board = (tmp_path / "leaderboards" / "synthetic-faces.csv").read_text()
    assert attack in board
    assert not [p for p in tmp_path.rglob("*") if ".tmp-" in p.name]
