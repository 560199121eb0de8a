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
