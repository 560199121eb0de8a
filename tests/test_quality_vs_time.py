"""benchmarks/quality_vs_time.py: the step budget arithmetic, and that it never changes an attack's profile."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from bench.attacks.sift_inversion import cfgan, sli

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "quality_vs_time.py"


@pytest.fixture(scope="module")
def qvt():
    spec = importlib.util.spec_from_file_location("quality_vs_time", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_steps_keep_the_profile_ratio_and_fill_the_budget(qvt) -> None:
    steps = qvt.steps_for(600.0, {"coarse": 400, "fine": 240}, {"coarse": 0.25, "fine": 0.4})
    cost = steps["coarse"] * 0.25 + steps["fine"] * 0.4
    assert abs(cost - 600.0) < 1.0
    assert abs(steps["coarse"] / steps["fine"] - 400 / 240) < 0.01
    assert qvt.steps_for(0.0, {"lbp": 200, "image": 600}, {"lbp": 0.2, "image": 0.3}) == {"lbp": 1, "image": 1}


def test_set_steps_leaves_the_profiles_alone(qvt) -> None:
    before = {k: dict(v) for k, v in sli.PROFILES.items()}, {k: dict(v) for k, v in cfgan.PROFILES.items()}
    a = qvt.set_steps(sli.SLI("cpu", 64), {"lbp": 3, "image": 5})
    c = qvt.set_steps(cfgan.CFGAN("cpu", 64), {"coarse": 2, "fine": 7})
    assert (a.hp["lbp_steps"], a.hp["image_steps"]) == (3, 5)
    assert (c.hp["coarse_steps"], c.hp["fine_steps"]) == (2, 7)
    assert ({k: dict(v) for k, v in sli.PROFILES.items()}, {k: dict(v) for k, v in cfgan.PROFILES.items()}) == before


def test_overrides_apply_to_the_instance_and_unknown_keys_stop(qvt) -> None:
    assert qvt.parse_overrides(["sift_loss=false", "lambda_adv=0", "lr_decay=none"]) == {
        "sift_loss": False, "lambda_adv": 0, "lr_decay": "none"}
    before = dict(cfgan.PROFILES["cpu"])
    c = qvt.set_steps(cfgan.CFGAN("cpu", 64), {"coarse": 2, "fine": 7}, {"sift_loss": False})
    assert c.hp["sift_loss"] is False and cfgan.PROFILES["cpu"] == before
    with pytest.raises(SystemExit, match="no_such_key"):
        qvt.set_steps(cfgan.CFGAN("cpu", 64), {"coarse": 1, "fine": 1}, {"no_such_key": 1})


def _write_study(qvt, path: Path, attack: str, ssim: float, threads: int = 1, floor_ssim: float = 0.43) -> Path:
    base = {"n_train": 1500, "n_test": 200, "profile": "cpu", "seed": 0, "torch_threads": threads,
            "opencv_threads": threads, "cpu_count": 2, "hp_overrides": "{}", "load_avg_start": "",
            "load_avg_end": "", "sec_per_step": ""}
    rows = [{**base, "attack": "mean-image", "budget_min": 0, "steps": "", "train_s": 0.0, "train_min": 0.0,
             "ssim": floor_ssim, "psnr": 13.0},
            {**base, "attack": attack, "budget_min": 1.0, "steps": "a:1+b:2", "train_s": 61.0, "train_min": 1.017,
             "ssim": ssim, "psnr": 14.0}]
    import argparse
    qvt.write_outputs(rows, argparse.Namespace(out=path, dataset="utkface", tag=attack))
    return path / f"quality-vs-time-utkface-{attack}.csv"


def test_merge_keeps_one_floor_and_every_attack(qvt, tmp_path: Path) -> None:
    a = _write_study(qvt, tmp_path, "cfgan", 0.46)
    b = _write_study(qvt, tmp_path, "sli", 0.35)
    qvt.main(["--from-csv", str(a), str(b), "--out", str(tmp_path / "merged")])
    import csv
    with open(tmp_path / "merged" / "quality-vs-time-utkface.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["attack"], float(r["ssim"])) for r in rows] == [("mean-image", 0.43), ("cfgan", 0.46), ("sli", 0.35)]
    assert (tmp_path / "merged" / "quality-vs-time-utkface.png").stat().st_size > 0


def test_merge_refuses_studies_of_different_threads_or_splits(qvt, tmp_path: Path) -> None:
    a = _write_study(qvt, tmp_path / "a", "cfgan", 0.46, threads=1)
    b = _write_study(qvt, tmp_path / "b", "sli", 0.35, threads=2)
    with pytest.raises(SystemExit, match="torch_threads"):
        qvt.main(["--from-csv", str(a), str(b), "--out", str(tmp_path / "m")])
    c = _write_study(qvt, tmp_path / "c", "sli", 0.35, floor_ssim=0.5)
    with pytest.raises(SystemExit, match="floors differ"):
        qvt.main(["--from-csv", str(a), str(c), "--out", str(tmp_path / "m")])


def test_study_needs_a_data_root_unless_merging(qvt) -> None:
    with pytest.raises(SystemExit, match="--data-root is required"):
        qvt.main([])
