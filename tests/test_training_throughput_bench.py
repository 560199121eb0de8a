"""benchmarks/training_throughput.py: the summary table's figures (min, median, after/before, repeats, load)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tp() -> ModuleType:
    spec = importlib.util.spec_from_file_location("training_throughput", REPO / "benchmarks" / "training_throughput.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _row(mode: str, cpu: float, wall: float, load: str, threads: int = 1) -> dict:
    return {"attack": "cfgan", "stage": "coarse", "threads": threads, "mode": mode, "steps": 3,
            "cpu_steps_per_s": cpu, "wall_steps_per_s": wall, "load_average": load}


def test_summary_gives_min_median_ratio_repeats_and_load(tp: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [_row("before", 1.0, 0.5, "4.0 3.0 2.0"), _row("after", 1.5, 0.4, "6.0 3.0 2.0"),
            _row("before", 2.0, 0.7, "8.0 3.0 2.0"), _row("after", 3.0, 0.9, "2.0 1.0 1.0"),
            _row("before", 1.2, 0.6, "n/a"), _row("after", 1.8, 0.3, "10.0 1.0 1.0"),
            _row("after", 9.0, 9.0, "1.0 1.0 1.0", threads=2)]
    table = tp.summarise(rows)
    one = next(e for e in table if e["threads"] == 1)
    assert (one["before_cpu_min"], one["before_cpu_median"]) == (1.0, 1.2)
    assert (one["after_cpu_min"], one["after_cpu_median"]) == (1.5, 1.8)
    assert (one["before_wall_min"], one["before_wall_median"]) == (0.5, 0.6)
    assert one["speedup_cpu"] == pytest.approx(1.5)
    assert one["speedup_wall"] == pytest.approx(0.4 / 0.6)
    assert one["repeats"] == 3
    assert one["load_median"] == 6.0  # median of 4, 6, 8, 2, 10 ("n/a" left out)
    two = next(e for e in table if e["threads"] == 2)
    assert "speedup_cpu" not in two and two["repeats"] == 1  # only "after" was measured there
    tp.print_table([one], ["before", "after"])
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("| repeats | load (1-min, median) |")
    assert out[2].endswith("| 1.50x | 0.67x | 3 | 6.0 |")


def test_load_of_an_unavailable_average_is_none(tp: ModuleType) -> None:
    assert tp._load1("n/a") is None and tp._load1("") is None
    assert math.isclose(tp._load1("0.25 1 2"), 0.25)


@pytest.mark.slow
def test_training_profile_names_the_convolutions_of_a_real_fit() -> None:
    """benchmarks/training_profile.py on feature-decoder (a conv decoder): its profiled steps contain the
    convolutions' forward and backward, each stage's operators have positive times."""
    spec = importlib.util.spec_from_file_location("training_profile", REPO / "benchmarks" / "training_profile.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    res = mod.profile_fit("feature-decoder", n_train=32, warmup=1, steps=1)
    assert list(res) == ["train"]
    ops = res["train"]
    assert "aten::convolution_backward" in ops and sum(ops.values()) > 0
    assert all(v >= 0 for v in ops.values())
