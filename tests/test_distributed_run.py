"""`bench run --launcher torchrun --nproc 2`: one run trained by 2 gloo processes on CPU, written once by rank 0.

torchrun starts two `bench run` ranks; rank 0 extracts and caches the features while rank 1 waits and reads them,
both train CFGAN (smoke profile) on halves of every batch, rank 0 alone writes the checkpoint, the run folder and
the store, and prints; rank 1 prints nothing. About 45 s of CPU time (two torch start-ups and the smoke
pipeline); 92 s wall on a busy 2-core machine.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli.launch import rank_device, torchrun_command


@pytest.mark.slow
def test_bench_run_on_two_processes_writes_exactly_one_run(tmp_path: Path) -> None:
    results = tmp_path / "results"
    env = {**os.environ, "BENCH_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "bench", "run", "--attack", "cfgan", "--profile", "smoke", "--results",
           str(results), "--threads", "1", "--quiet", "--metrics", "mse,psnr,ssim", "--launcher", "torchrun",
           "--nproc", "2"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("run folder:") == 1  # rank 0's summary, once
    assert "trained on 2 processes (torchrun)" in done.stdout
    with sqlite3.connect(results / "bench.sqlite") as db:
        runs = db.execute("SELECT run_id, status FROM runs").fetchall()
    assert len(runs) == 1 and runs[0][1] == "done"
    assert [p.name for p in (results / "runs").iterdir() if p.is_dir()] == [runs[0][0]]
    record = json.loads((results / "runs" / runs[0][0] / "run.json").read_text())
    assert record["distributed"] == {"world_size": 2, "backend": "gloo"}
    assert record["training"]["distributed"]["world_size"] == 2 and not record["training"]["from_cache"]
    assert len([p for p in (results / "cache" / "attacks").iterdir() if p.is_dir()]) == 1
    assert not list((results / "cache").rglob("*.tmp-*"))


def test_the_launcher_restarts_the_request_under_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    cmd = torchrun_command(3, ["--attack", "cfgan"])
    assert cmd[1:] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=3", "-m", "bench", "run",
                       "--attack", "cfgan"]
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert rank_device("cuda") == "cuda:1" and rank_device("cuda:0") == "cuda:0" and rank_device("cpu") == "cpu"


def test_bench_grid_under_torchrun_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from bench.cli import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    out = CliRunner().invoke(main, ["grid", "--attacks", "cfgan", "--defenses", "none", "--profile", "smoke"])
    assert out.exit_code == 2 and "bench grid does not run under torchrun" in out.output


def test_a_run_of_an_undeclared_attack_is_refused_before_any_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under several ranks `bench run` refuses attacks that do not declare `shards_exactly` (non-learned ones too)
    before the store records a run; declared ones pass."""
    from types import SimpleNamespace

    from bench import registry
    from bench.errors import BenchError
    from bench.nn import distributed
    from bench.run.runner import check_parallel

    def plan_of(name: str) -> SimpleNamespace:
        cls = registry.attacks.get(name).obj
        return SimpleNamespace(attack=cls("smoke", 32, "cpu"), spec=SimpleNamespace(attack=name))

    check_parallel(plan_of("mean-image"))  # one process: nothing to refuse
    monkeypatch.setattr(distributed, "active", lambda: True)
    for name in ("mean-image", "ivr", "sli-r"):
        with pytest.raises(BenchError, match=f"attack '{name}' cannot train on several processes"):
            check_parallel(plan_of(name))
    check_parallel(plan_of("cfgan"))
    check_parallel(plan_of("sli-b"))


def test_nproc_without_the_launcher_is_an_error() -> None:
    from click.testing import CliRunner

    from bench.cli import main

    out = CliRunner().invoke(main, ["run", "--attack", "cfgan", "--profile", "smoke", "--nproc", "2"])
    assert out.exit_code == 2 and "--nproc needs --launcher torchrun" in out.output
