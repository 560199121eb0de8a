"""Bad inputs a new user makes: each gets one clear line and a non-zero exit (or a defined recovery), no traceback.

One table: (case, set-up, command, expected exit code, words expected in the message). Set-ups build what the case
needs inside the test's own folder; commands run in-process through click (fast) unless they need a fresh
interpreter (outside plugins), which run as subprocesses.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from bench.cli import main

SMOKE = ["--profile", "smoke", "--quiet", "--n-train", "6", "--n-test", "4"]


def _noop(tmp: Path) -> None:
    pass


def _newer_store(tmp: Path) -> None:
    (tmp / "res").mkdir()
    db = sqlite3.connect(tmp / "res" / "bench.sqlite")
    db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    db.execute("INSERT INTO schema_version VALUES (999)")
    db.commit()
    db.close()


def _garbage_store(tmp: Path) -> None:
    (tmp / "res").mkdir()
    (tmp / "res" / "bench.sqlite").write_bytes(os.urandom(3000))


def _truncated_store(tmp: Path) -> None:
    (tmp / "res").mkdir()
    db = sqlite3.connect(tmp / "res" / "bench.sqlite")
    db.execute("CREATE TABLE t (x)")
    db.executemany("INSERT INTO t VALUES (?)", [(os.urandom(200),) for _ in range(200)])
    db.commit()
    db.close()
    data = (tmp / "res" / "bench.sqlite").read_bytes()
    (tmp / "res" / "bench.sqlite").write_bytes(data[: len(data) // 3 + 50])


def _results_is_file(tmp: Path) -> None:
    (tmp / "res").write_text("not a folder")


def _blank_images(tmp: Path) -> None:
    (tmp / "blank").mkdir()
    for i in range(12):  # flat images of distinct greys: identical files would be copies of the private ones
        Image.fromarray(np.full((64, 64, 3), 100 + i, np.uint8)).save(tmp / "blank" / f"{i:02d}.png")


def _unreadable_images(tmp: Path) -> None:
    (tmp / "broken").mkdir()
    for i in range(12):
        (tmp / "broken" / f"{i:02d}.jpg").write_bytes(b"\xff\xd8\xff" + os.urandom(100))


def _folder(tmp: Path) -> None:
    (tmp / "imgs").mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp / "imgs" / f"{i:02d}.png")


CASES: list[tuple[str, Callable[[Path], None], list[str], int, list[str]]] = [
    ("store with a newer schema", _newer_store, ["run", "--attack", "mean-image", "--results", "{tmp}/res", *SMOKE],
     2, ["newer", "schema"]),
    ("store with a newer schema (leaderboard)", _newer_store, ["leaderboard", "--results", "{tmp}/res"], 2,
     ["newer"]),
    ("garbage bench.sqlite", _garbage_store, ["run", "--attack", "mean-image", "--results", "{tmp}/res", *SMOKE], 2,
     ["bench.sqlite", "not a valid results store"]),
    ("garbage bench.sqlite (leaderboard)", _garbage_store, ["leaderboard", "--results", "{tmp}/res"], 2,
     ["not a valid results store"]),
    ("truncated bench.sqlite", _truncated_store, ["run", "--attack", "mean-image", "--results", "{tmp}/res",
                                                  *SMOKE], 2, ["bench.sqlite"]),
    ("truncated bench.sqlite (leaderboard)", _truncated_store, ["leaderboard", "--results", "{tmp}/res"], 2,
     ["bench.sqlite"]),
    ("--results is a file", _results_is_file, ["run", "--attack", "mean-image", "--results", "{tmp}/res", *SMOKE],
     2, ["--results", "not a folder"]),
    ("--seed -1", _noop, ["run", "--attack", "mean-image", "--seed", "-1", "--results", "{tmp}/r", *SMOKE], 2,
     ["--seed", "between 0 and"]),
    ("--seed 2**70", _noop, ["run", "--attack", "mean-image", "--seed", str(2**70), "--results", "{tmp}/r",
                             *SMOKE], 2, ["--seed", "between 0 and"]),
    ("negative --n-train with --aux-dataset", _folder,
     ["run", "--attack", "mean-image", "--dataset", "folder", "--data-root", "{tmp}/imgs", "--aux-dataset",
      "synthetic-faces", "--profile", "smoke", "--n-train", "-2", "--n-test", "4", "--results", "{tmp}/r"], 2,
     ["--n-train", ">= 1"]),
    ("--aux-dataset folder without --aux-data-root", _folder,
     ["run", "--attack", "mean-image", "--dataset", "folder", "--data-root", "{tmp}/imgs", "--aux-dataset", "folder",
      *SMOKE, "--results", "{tmp}/r"], 2, ["--aux-data-root"]),
    ("--device cuda:3", _noop, ["run", "--attack", "mean-image", "--device", "cuda:3", "--results", "{tmp}/r",
                                *SMOKE], 2, ["cuda:3"]),
    ("--device gpu", _noop, ["run", "--attack", "mean-image", "--device", "gpu", "--results", "{tmp}/r", *SMOKE],
     2, ["unknown device", "cuda:N"]),
    ("no image has SIFT keypoints", _blank_images,
     ["run", "--attack", "cfgan", "--dataset", "folder", "--data-root", "{tmp}/blank", *SMOKE, "--results",
      "{tmp}/r"], 2, ["none of the", "sift features"]),
    ("--metrics ,", _noop, ["run", "--attack", "mean-image", "--metrics", ",", "--results", "{tmp}/r", *SMOKE], 2,
     ["no metric"]),
    ("every file of the split unreadable", _unreadable_images,
     ["run", "--attack", "mean-image", "--dataset", "folder", "--data-root", "{tmp}/broken", *SMOKE, "--results",
      "{tmp}/r"], 2, ["no readable image", ".jpg"]),
    ("unknown attack", _noop, ["run", "--attack", "cfgna", "--results", "{tmp}/r", *SMOKE], 2, ["did you mean",
                                                                                              "cfgan"]),
    ("unknown metric", _noop, ["run", "--attack", "mean-image", "--metrics", "psnrr", "--results", "{tmp}/r",
                               *SMOKE], 2, ["psnr"]),
    ("unknown defense parameter", _noop, ["run", "--attack", "mean-image", "--defense-arg", "keep=1", "--results",
                                          "{tmp}/r", *SMOKE], 2, ["no parameter keep"]),
    ("malformed --defense-arg", _noop, ["run", "--attack", "mean-image", "--defense-arg", "keep", "--results",
                                        "{tmp}/r", *SMOKE], 2, ["KEY=VALUE"]),
    ("--data-root that does not exist", _noop, ["run", "--attack", "mean-image", "--dataset", "folder",
                                                "--data-root", "{tmp}/nowhere", *SMOKE, "--results", "{tmp}/r"], 2,
     ["nowhere"]),
    ("leaderboard without a store", _noop, ["leaderboard", "--results", "{tmp}/empty"], 2, ["no results store"]),
]


@pytest.mark.parametrize("case,setup,args,code,words", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_one_clear_line(case: str, setup: Callable[[Path], None], args: list[str], code: int,
                                       words: list[str], tmp_path: Path) -> None:
    setup(tmp_path)
    out = CliRunner().invoke(main, [a.replace("{tmp}", str(tmp_path)) for a in args])
    assert out.exit_code == code, f"{case}: exit {out.exit_code}\n{out.output}\n{out.exception!r}"
    assert "Traceback" not in out.output
    assert isinstance(out.exception, SystemExit), f"{case}: raised {out.exception!r}"
    errors = [line for line in out.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, f"{case}: expected one error line, got:\n{out.output}"
    for word in words:
        assert word in errors[0], f"{case}: {word!r} not in {errors[0]!r}"


def test_locked_store_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_STORE_TIMEOUT", "1")
    (tmp_path / "res").mkdir()
    holder = sqlite3.connect(tmp_path / "res" / "bench.sqlite", isolation_level=None)
    holder.execute("PRAGMA journal_mode=WAL")
    holder.execute("CREATE TABLE x (y)")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        out = CliRunner().invoke(main, ["run", "--attack", "mean-image", "--results", str(tmp_path / "res"),
                                        *SMOKE])
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert out.exit_code == 2, out.output
    assert "locked" in out.output and "Traceback" not in out.output


# the recomputation tests compare psnr only: scoring the default metrics too cost ~2 s of CPU a run
PSNR_ONLY = ["--metrics", "psnr"]


def _finished_run(tmp_path: Path) -> tuple[Path, str]:
    args = ["run", "--attack", "mean-image", "--results", str(tmp_path), *SMOKE, *PSNR_ONLY]
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 0, out.output
    return tmp_path, out.output


def _psnr_line(output: str) -> str:
    return next(line for line in output.splitlines() if line.startswith("psnr"))


def test_corrupt_reconstruction_png_is_recomputed(tmp_path: Path) -> None:
    results, first = _finished_run(tmp_path)
    png = sorted(results.glob("runs/*/reconstructions/*.png"))[0]
    png.write_bytes(b"not a png")
    out = CliRunner().invoke(main, ["run", "--attack", "mean-image", "--results", str(results), *SMOKE, *PSNR_ONLY])
    assert out.exit_code == 0, out.output
    assert _psnr_line(out.output) == _psnr_line(first)
    Image.open(png).verify()  # rebuilt


def test_tampered_cache_entry_is_recomputed(tmp_path: Path) -> None:
    results, first = _finished_run(tmp_path)
    for npy in results.glob("cache/features/*/features/*.npy"):
        data = bytearray(npy.read_bytes())
        data[-1] ^= 0xFF
        npy.write_bytes(bytes(data))
    for pt in results.glob("cache/attacks/*/attack.pt"):
        pt.write_bytes(b"tampered")
    out = CliRunner().invoke(main, ["run", "--attack", "mean-image", "--results", str(results), *SMOKE, *PSNR_ONLY])
    assert out.exit_code == 0, out.output
    assert _psnr_line(out.output) == _psnr_line(first)


BROKEN_PLUGIN = "raise ImportError('this plugin needs a package that is not installed')\n"


def test_outside_plugin_that_fails_to_import_is_a_warning(tmp_path: Path) -> None:
    (tmp_path / "broken_plugin.py").write_text(BROKEN_PLUGIN)
    info = tmp_path / "broken_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[bench.attacks]\nbroken-attack = broken_plugin:BrokenAttack\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    for args in (["list", "attacks"], ["plugin", "check", "mean-image"],
                 # one cheap metric: the warning comes from loading the attacks, the default metrics cost ~3.5 s
                 ["run", "--attack", "mean-image", "--results", str(tmp_path / "r"), *SMOKE, "--metrics", "mse"]):
        proc = subprocess.run([sys.executable, "-m", "bench", *args], env=env, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, f"{args}: {proc.stderr[-2000:]}"
        assert "Traceback" not in proc.stderr
        warnings = [line for line in proc.stderr.splitlines() if "broken-plugin" in line]
        assert len(warnings) == 1 and "broken-attack" in warnings[0] and "failed to load" in warnings[0], \
            proc.stderr
    shutil.rmtree(tmp_path / "r", ignore_errors=True)


def test_mean_image_runs_on_a_dataset_without_keypoints(tmp_path: Path) -> None:
    """The mean-image floor ignores the released features (`uses_features = False`): a dataset where no image has
    a SIFT keypoint is no reason to refuse it (an attack that reads features, cfgan above, is still refused)."""
    from bench.attacks.mean_image import MeanImage

    assert MeanImage.uses_features is False
    _blank_images(tmp_path)
    out = CliRunner().invoke(main, ["run", "--attack", "mean-image", "--dataset", "folder", "--data-root",
                                    str(tmp_path / "blank"), *SMOKE, "--metrics", "mse", "--results",
                                    str(tmp_path / "r")])
    assert out.exit_code == 0, out.output
    assert "none of the" not in out.output and "mse" in out.output
