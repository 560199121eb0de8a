"""One metric-value vocabulary and one aggregation over seeds: the CSV leaderboard and the paper tables show the same
mean and standard deviation of a configuration's seeds."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench.metric_value import METRIC_STATUSES, mean_std, over_seeds
from bench.report.leaderboard import leaderboard_frame
from bench.report.tables import load_board
from bench.run.spec import RunSpec
from bench.store import Store


def test_the_status_vocabulary_is_the_stores() -> None:
    from bench.run import evaluate
    from bench.store import results

    assert METRIC_STATUSES == ("ok", "unavailable", "undefined", "not-applicable", "failed")
    assert results.METRIC_STATUSES is METRIC_STATUSES
    assert (evaluate.OK, evaluate.UNDEFINED, evaluate.FAILED) == ("ok", "undefined", "failed")


def test_mean_std_by_hand() -> None:
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)  # sample std: sqrt(((-1)^2 + 0 + 1^2) / 2) = 1
    mean, std = mean_std([4.0])
    assert mean == 4.0 and math.isnan(std)  # one seed: no spread to show
    assert all(math.isnan(v) for v in mean_std([]))
    assert mean_std([0.1, 0.1, 0.1])[1] == 0.0  # numpy's std here is 1.7e-17 (the mean is not exactly 0.1)
    assert mean_std([math.inf, math.inf]) == (math.inf, 0.0)  # not inf - inf = NaN


def test_over_seeds_counts_ok_values_and_keeps_the_others() -> None:
    stats = over_seeds([{"status": "ok", "value": 1.0}, None, {"status": "unavailable", "value": None},
                        {"status": "ok", "value": 3.0}, {"status": "ok", "value": None}])
    assert (stats.k, stats.n, stats.mean) == (2, 5, 2.0)
    assert stats.std == pytest.approx(math.sqrt(2))
    assert [e["status"] for e in stats.not_ok] == ["unavailable"]
    assert len(stats.present) == 4


def _spec(seed: int) -> RunSpec:
    return RunSpec(attack="a", defense="none", dataset="d", data_root=None, profile="smoke", seed=seed, n_train=20,
                   n_test=8, extract_size=64, image_size=32, extractor={"name": "sift", "version": "1"},
                   defense_params={"name": "none", "version": "1", "params": {}},
                   attack_config={"name": "a", "version": "1", "params": {}})


def test_csv_and_tables_show_the_same_seed_statistics(tmp_path: Path) -> None:
    values = {"psnr": [0.1, 0.1, 0.1], "mse": [1.0, 2.0, 4.0]}
    with Store(tmp_path / "bench.sqlite") as store:
        for seed in range(3):
            spec = _spec(seed)
            store.start_run(spec.run_id, spec.to_dict())
            for name, vals in values.items():
                store.set_set_metric(spec.run_id, name, vals[seed], 8, f"conv-{name}", higher_is_better=True,
                                     value_range=(0.0, 10.0))
            store.set_utility(spec.run_id, "u", 0.1)
            store.finish_run(spec.run_id, {})
        csv_row = leaderboard_frame(store, "d").iloc[0]
        table_row = load_board(store, "d").frame.iloc[0]
    assert csv_row["psnr_std"] == table_row["psnr_std"] == 0.0  # identical seeds: no spread in either
    assert csv_row["mse"] == table_row["mse"] == pytest.approx(7 / 3)
    assert csv_row["mse_std"] == table_row["mse_std"] == pytest.approx(math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2
                                                                               + (4 - 7 / 3) ** 2) / 2))
    assert table_row["utility:u_std"] == 0.0
