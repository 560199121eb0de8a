"""Leaderboards keyed by configuration: seeds counted, never merged across configurations, statuses shown."""

from __future__ import annotations

import csv
import math
import multiprocessing as mp
import os
from pathlib import Path

import numpy as np
import pytest

from bench.errors import BenchError
from bench.report.leaderboard import leaderboard_frame, metric_direction, refresh_all, refresh_leaderboard
from bench.run.spec import RunSpec
from bench.store import Store


def _spec(**kw) -> RunSpec:
    base = dict(attack="a", defense="none", dataset="d", data_root=None, profile="smoke", seed=0, n_train=20,
                n_test=8, extract_size=64, image_size=32, extractor={"name": "sift", "version": "1"},
                defense_params={"name": "none", "version": "1", "params": {}},
                attack_config={"name": "a", "version": "1", "params": {}})
    base.update(kw)
    return RunSpec(**base)


def _finish(store: Store, spec: RunSpec, metrics: dict, utility: dict | None = None, record: dict | None = None,
            done: bool = True) -> str:
    store.start_run(spec.run_id, spec.to_dict())
    for name, value in metrics.items():
        if isinstance(value, tuple):  # (status, detail)
            store.set_set_metric(spec.run_id, name, float("nan"), spec.n_test, "c", status=value[0], detail=value[1])
        else:
            store.set_set_metric(spec.run_id, name, value, spec.n_test, "c", higher_is_better=True)
    for name, value in (utility or {}).items():
        store.set_utility(spec.run_id, name, value)
    if done:
        store.finish_run(spec.run_id, record or {})
    return spec.run_id


def test_runs_differing_in_n_test_are_two_rows(tmp_path: Path) -> None:
    with Store(tmp_path / "bench.sqlite") as s:
        big = _finish(s, _spec(n_test=200), {"psnr": 12.0})
        quick = _finish(s, _spec(n_test=8), {"psnr": 30.0})  # a later quick run must not replace the big one
        frame = leaderboard_frame(s, "d")
    assert len(frame) == 2
    by_n = {int(r.n_test): r for r in frame.itertuples()}
    assert by_n[200].psnr == 12.0 and by_n[200].run_ids == big
    assert by_n[8].psnr == 30.0 and by_n[8].run_ids == quick
    assert by_n[200].config_id != by_n[8].config_id


def test_other_configuration_fields_are_separate_rows(tmp_path: Path) -> None:
    variants = [dict(), dict(n_train=40), dict(aux_dataset="other"), dict(profile="cpu"),
                dict(dataset_fingerprint={"private": {"content": "other images"}}),
                dict(extractor={"name": "sift", "version": "1", "n": 500}),
                dict(defense_params={"name": "none", "version": "1", "params": {"keep": 0.5}}),
                dict(attack_config={"name": "a", "version": "1", "params": {"w": 2}})]
    with Store(tmp_path / "bench.sqlite") as s:
        for kw in variants:
            _finish(s, _spec(**kw), {"psnr": 1.0})
        _finish(s, _spec(dataset="e"), {"psnr": 1.0})  # another dataset: another table
        _finish(s, _spec(seed=9, n_test=3), {"psnr": 1.0}, done=False)  # unfinished runs are not shown
        frame = leaderboard_frame(s, "d")
    assert len(frame) == len(variants) and frame["seeds"].tolist() == [1] * len(variants)
    assert frame["config_id"].nunique() == len(variants)


def test_the_same_data_elsewhere_pools_into_one_row(tmp_path: Path) -> None:
    """Where the data lay is not part of the configuration: its content fingerprint is."""
    with Store(tmp_path / "bench.sqlite") as s:
        _finish(s, _spec(data_root="/x", seed=0), {"psnr": 1.0})
        _finish(s, _spec(data_root="/mnt/node2/x", aux_data_root="/y", seed=1), {"psnr": 3.0})
        frame = leaderboard_frame(s, "d")
    assert len(frame) == 1 and frame["seeds"].tolist() == [2] and frame["psnr"].tolist() == [2.0]


def test_seeds_of_one_configuration_are_one_row_with_mean_and_std(tmp_path: Path) -> None:
    psnr = [11.0, 13.5, 12.25]
    ssim = [0.4, 0.45, 0.6]
    with Store(tmp_path / "bench.sqlite") as s:
        ids = [_finish(s, _spec(seed=k), {"psnr": p, "ssim": q}, record={"dataset_note": "synthetic"})
               for k, (p, q) in enumerate(zip(psnr, ssim))]
        frame = leaderboard_frame(s, "d")
    assert len(frame) == 1
    row = frame.iloc[0]
    assert row["seeds"] == 3
    assert row["psnr"] == pytest.approx(np.mean(psnr)) and row["psnr_std"] == pytest.approx(np.std(psnr, ddof=1))
    assert row["ssim"] == pytest.approx(np.mean(ssim)) and row["ssim_std"] == pytest.approx(np.std(ssim, ddof=1))
    assert row["run_ids"].split() == ids and row["dataset_note"] == "synthetic"
    assert row["config_id"] == _spec().config_id


def test_column_layout(tmp_path: Path) -> None:
    with Store(tmp_path / "bench.sqlite") as s:
        _finish(s, _spec(aux_dataset="aux"), {"ssim": 0.5, "psnr": 10.0}, {"map": 0.9})
        frame = leaderboard_frame(s, "d")
    assert list(frame.columns) == ["attack", "defense", "aux_dataset", "profile", "extractor", "n_train", "n_test",
                                   "seeds", "psnr", "psnr_std", "ssim", "ssim_std", "utility:map", "source",
                                   "config_id", "run_ids", "profile_note", "dataset_note"]
    row = frame.iloc[0]
    assert (row["aux_dataset"], row["profile"], row["extractor"], row["n_train"], row["n_test"]) == (
        "aux", "smoke", "sift", 20, 8)
    assert row["psnr_std"] == ""  # one seed: no spread to show
    assert row["profile_note"] == ""  # the smoke profile has no caveat (the cpu profile's: test_profile_caveat.py)


def test_a_metric_present_in_only_one_seed(tmp_path: Path) -> None:
    with Store(tmp_path / "bench.sqlite") as s:
        _finish(s, _spec(seed=0), {"psnr": 10.0, "lpips": 0.3})
        _finish(s, _spec(seed=1), {"psnr": 14.0})
        frame = leaderboard_frame(s, "d")
    row = frame.iloc[0]
    assert row["seeds"] == 2 and row["psnr"] == 12.0
    assert row["lpips"] == 0.3 and "1/2 seeds" in row["lpips_std"]  # not passed off as a two-seed mean


def test_metric_added_later_to_a_finished_run_appears(tmp_path: Path) -> None:
    with Store(tmp_path / "bench.sqlite") as s:
        rid = _finish(s, _spec(), {"psnr": 10.0})
        s.set_set_metric(rid, "ssim", 0.7, 8, "c")  # `--metrics ssim` on the finished run
        frame = leaderboard_frame(s, "d")
    assert frame.iloc[0]["psnr"] == 10.0 and frame.iloc[0]["ssim"] == 0.7


def test_unavailable_metric_is_shown_as_such(tmp_path: Path) -> None:
    fix = "bench weights pull lpips-alex"
    with Store(tmp_path / "bench.sqlite") as s:
        _finish(s, _spec(seed=0), {"psnr": 10.0, "lpips": ("unavailable", fix)})
        _finish(s, _spec(seed=1), {"psnr": 11.0, "lpips": ("unavailable", fix)})
        path = refresh_leaderboard(s, tmp_path, "d")
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 1 and rows[0]["lpips"] == f"unavailable: {fix}" and rows[0]["lpips_std"] == ""
    assert float(rows[0]["psnr"]) == 10.5


def test_params_in_attack_and_defense_labels(tmp_path: Path) -> None:
    with Store(tmp_path / "bench.sqlite") as s:
        _finish(s, _spec(defense="subsample", defense_params={"name": "subsample", "version": "1",
                                                             "params": {"keep": 0.25, "seed": 3}},
                         attack="cfgan", attack_config={"name": "cfgan", "version": "1", "params": {"lr": 0.0002}}),
                {"psnr": 1.0})
        row = leaderboard_frame(s, "d").iloc[0]
    assert row["defense"] == "subsample(keep=0.25,seed=3)"
    assert row["attack"] == "cfgan(lr=0.0002)"


def test_utility_column_is_the_mean_over_seeds(tmp_path: Path) -> None:
    with Store(tmp_path / "bench.sqlite") as s:
        _finish(s, _spec(seed=0), {"psnr": 1.0}, {"retrieval_map": 0.8})
        _finish(s, _spec(seed=1), {"psnr": 1.0}, {"retrieval_map": 0.6})
        row = leaderboard_frame(s, "d").iloc[0]
    assert row["utility:retrieval_map"] == pytest.approx(0.7)


def test_utilities_of_different_conventions_are_not_averaged(tmp_path: Path) -> None:
    """A row whose seeds measured a utility under different conventions (one re-scored, one not) has no value for
    it, rather than a mean of two different things; the same convention is averaged as usual."""
    with Store(tmp_path / "bench.sqlite") as s:
        for seed, detail in ((0, "utility-eval/1: top-1 accuracy on 1000 images"), (1, "on the 4 private images")):
            rid = _finish(s, _spec(seed=seed), {"psnr": 1.0}, done=False)
            s.set_utility(rid, "fl-accuracy", 0.1 * (seed + 1), detail)
            s.set_utility(rid, "victim-accuracy", 0.3 + 0.1 * seed, "utility-eval/1: top-1 accuracy")
            s.finish_run(rid, {})
        row = leaderboard_frame(s, "d").iloc[0]
    assert row["utility:fl-accuracy"] == "" or math.isnan(row["utility:fl-accuracy"])  # an empty cell
    assert row["utility:victim-accuracy"] == pytest.approx(0.35)


def test_refresh_all_writes_one_csv_per_dataset(tmp_path: Path) -> None:
    with Store(tmp_path / "bench.sqlite") as s:
        _finish(s, _spec(), {"psnr": float("inf")})
        _finish(s, _spec(dataset="e"), {"psnr": 1.0 / 3})
    paths = refresh_all(tmp_path)
    assert [p.name for p in paths] == ["d.csv", "e.csv"]
    assert list(csv.DictReader(paths[0].open()))[0]["psnr"] == "inf"
    assert list(csv.DictReader(paths[1].open()))[0]["psnr"] == "0.333333"
    assert not [p for p in (tmp_path / "leaderboards").iterdir() if p.name.endswith(".tmp")]
    out = refresh_all(tmp_path, tmp_path / "elsewhere")
    assert out[0].parent == tmp_path / "elsewhere"


def test_refresh_all_on_a_corrupt_store_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "bench.sqlite").write_bytes(os.urandom(4096))
    with pytest.raises(BenchError, match="not a valid results store"):
        refresh_all(tmp_path)
    with pytest.raises(BenchError, match="no results store"):
        refresh_all(tmp_path / "missing")


def test_empty_leaderboard_has_its_columns(tmp_path: Path) -> None:
    with Store(tmp_path / "bench.sqlite") as s:
        path = refresh_leaderboard(s, tmp_path, "d")
    assert path.read_text().startswith("attack,defense,aux_dataset")


def _refresh_many(results: str, start: "mp.synchronize.Event") -> None:
    start.wait(30)
    for _ in range(20):
        refresh_all(Path(results))


def test_two_processes_refresh_at_once(tmp_path: Path) -> None:
    with Store(tmp_path / "bench.sqlite") as s:
        _finish(s, _spec(), {"psnr": 1.0})
    # fork where there is one: a spawned child imports this module, i.e. bench and torch, again (~5 s of CPU each)
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=_refresh_many, args=(str(tmp_path), start)) for _ in range(2)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert sorted(p.name for p in (tmp_path / "leaderboards").iterdir()) == ["d.csv"]


def test_metric_direction() -> None:
    assert metric_direction("anything", higher_is_better=False) == "lower"
    assert metric_direction("anything", higher_is_better=True) == "higher"
    assert metric_direction("no-such-metric-xyz") == "?"
