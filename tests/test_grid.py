"""Grids of runs: expansion and skipped pairings, local vs Dask executors (equal stores), failures recorded, resume,
grid files, and the `bench run` command line rebuilt from a request."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import click
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from bench import registry
from bench.cli.grid import grid_cmd
from bench.cli.run import run_cmd
from bench.errors import BenchError
from bench.features import FeatureSet, Requirement
from bench.params import parse_assignments
from bench.plugins import Attack, FitContext, register_attack
from bench.run import grid_executors, grid_spec
from bench.run.command import request_args, request_command
from bench.run.grid import run_grid
from bench.run.grid_plan import expand
from bench.run.grid_spec import DatasetItem, GridSpec, PluginItem, load_grid_file, parse_plugin_item
from bench.install_hint import extra_install_command
from bench.run.metric_defaults import IMAGE_METRICS
from bench.run.plan import RunRequest
from bench.store import Store

SMALL = {"profile": "smoke", "n_train": 8, "n_test": 4}


def small_grid(results: Path, **kw: Any) -> GridSpec:
    fields = {"attacks": ["cfgan", "mean-image"], "defenses": ["none", "drop-coordinates"], "seeds": [0, 1],
              "results": results, "threads": 1, **SMALL, **kw}
    return GridSpec(**fields)


def store_dump(results: Path) -> tuple[dict, dict, dict]:
    """Run statuses, per-sample rows and set-level rows of a store, by run id."""
    with Store(results / "bench.sqlite") as store:
        runs = {r["run_id"]: r["status"] for r in store.runs()}
        samples = {r: store.sample_metrics(r) for r in runs}
        sets = {r: store.set_metrics(r) for r in runs}
    return runs, samples, sets


def group() -> click.Group:
    g = click.Group()
    g.add_command(grid_cmd, "grid")
    return g


@pytest.fixture(scope="module")
def local_grid(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    results = tmp_path_factory.mktemp("grid-local")
    return results, run_grid(small_grid(results), executor="local", progress=False)


# ------------------------------------------------------------------------------------------------- expansion
def test_expand_skips_incompatible_pairs_and_keeps_the_rest(tmp_path: Path) -> None:
    requests, skipped = expand(small_grid(tmp_path))
    combos = sorted((r.attack, r.defense, r.seed) for r in requests)
    assert combos == sorted([("cfgan", "none", 0), ("cfgan", "none", 1), ("mean-image", "none", 0),
                             ("mean-image", "none", 1), ("mean-image", "drop-coordinates", 0),
                             ("mean-image", "drop-coordinates", 1)])
    assert [(s.attack, s.defense, s.seeds) for s in skipped] == [("cfgan", "drop-coordinates", [0, 1])]
    assert "has_coordinates" in skipped[0].reason
    assert all(r.profile == "smoke" and r.n_train == 8 and r.threads == 1 for r in requests)
    assert not (tmp_path / "bench.sqlite").exists()  # planning touches no store


def test_unknown_name_aborts_before_any_work(tmp_path: Path) -> None:
    grid = small_grid(tmp_path / "res", attacks=["mean-image", "no-such-attack"])
    with pytest.raises(BenchError, match="no-such-attack"):
        run_grid(grid, progress=False)
    assert not (tmp_path / "res").exists()


def test_defense_and_dataset_item_syntax(tmp_path: Path) -> None:
    item = parse_plugin_item("subsample:keep=0.25:seed_offset=1")
    assert item == PluginItem("subsample", {"keep": "0.25", "seed_offset": "1"})
    assert item.label == "subsample(keep=0.25,seed_offset=1)"
    assert grid_spec.parse_dataset_item("utkface=faces/utk", tmp_path) == DatasetItem("utkface", tmp_path / "faces/utk")
    assert grid_spec.parse_seeds("0,2-4,2") == [0, 2, 3, 4]
    with pytest.raises(BenchError, match="KEY=VALUE"):
        parse_plugin_item("subsample:keep")
    with pytest.raises(BenchError, match="seed"):
        grid_spec.parse_seeds("zero")


def test_grid_file_toml_resolves_paths_against_its_folder(tmp_path: Path) -> None:
    folder = tmp_path / "grids"
    folder.mkdir()
    (folder / "g.toml").write_text(
        'attacks = ["mean-image"]\n'
        'defenses = ["none", {name = "drop-coordinates", params = {}}]\n'
        'datasets = ["synthetic-faces", "utkface=../faces", {name = "folder", data_root = "imgs"}]\n'
        'seeds = [0, 1]\nprofile = "smoke"\nn_train = 8\nn_test = 4\nmetrics = ["mse", "psnr"]\n')
    fields = load_grid_file(folder / "g.toml")
    grid = GridSpec(**fields)
    assert [d.name for d in grid.defenses] == ["none", "drop-coordinates"]
    assert grid.datasets[1] == DatasetItem("utkface", folder.resolve() / "../faces")
    assert grid.datasets[2] == DatasetItem("folder", folder.resolve() / "imgs")
    assert grid.seeds == [0, 1] and grid.metrics == ("mse", "psnr") and grid.n_train == 8
    (folder / "bad.toml").write_text('attacks = ["mean-image"]\nseedz = [1]\n')
    with pytest.raises(BenchError, match="unknown key.*seedz"):
        load_grid_file(folder / "bad.toml")


def test_grid_file_yaml_without_pyyaml_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "g.yaml").write_text("attacks: [mean-image]\n")
    monkeypatch.setitem(sys.modules, "yaml", None)  # import yaml -> ImportError
    with pytest.raises(BenchError, match="pip install pyyaml"):
        load_grid_file(tmp_path / "g.yaml")


def test_dask_missing_is_one_exact_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(grid_executors, "dask_available", lambda: False)
    out = CliRunner().invoke(group(), ["grid", "--attacks", "mean-image", "--results", str(tmp_path),
                                       "--executor", "dask"])
    assert out.exit_code == 2
    assert out.output.strip() == f"error: --executor dask needs Dask: {extra_install_command('dask')}"


# ---------------------------------------------------------------------------------------------- executing
def test_local_grid_runs_every_compatible_pair(local_grid: tuple[Path, Any]) -> None:
    results, report = local_grid
    assert (report.done, report.failed, report.n_skipped) == (6, 0, 2)
    runs, samples, sets = store_dump(results)
    assert sorted(runs.values()) == ["done"] * 6
    for run_id in runs:
        assert set(IMAGE_METRICS) <= set(sets[run_id])
        assert len(samples[run_id]) >= 4
    assert report.leaderboards and all(p.is_file() for p in report.leaderboards)


def test_dask_grid_equals_local_grid_row_for_row(local_grid: tuple[Path, Any], tmp_path: Path) -> None:
    pytest.importorskip("dask.distributed")
    results, local = local_grid
    # One seed of the local grid's two: every compatible (attack, defense) pair, cfgan's training included, at
    # half the CPU (the second seed repeated the same code paths; ~46 s of CPU for the whole grid on Dask).
    report = run_grid(small_grid(tmp_path, seeds=[1]), executor="dask", workers=2, progress=False)
    assert (report.done, report.failed, report.n_skipped) == (3, 0, 1)
    same_seed = [r for r in local.runs if r.seed == 1]
    assert [r.run_id for r in report.runs] == [r.run_id for r in same_seed] and len(same_seed) == 3
    a, b = store_dump(results), store_dump(tmp_path)
    a = tuple({k: v for k, v in d.items() if k in b[0]} for d in a)  # the local rows of the runs Dask ran
    # Exact equality is the promise for one thread count: both executors run every task with threads=1 and
    # the same batches (small_grid); across thread counts training would amplify reordering: no tolerance holds.
    assert a[0] == b[0]  # run ids and statuses
    assert a[1] == b[1]  # per-sample values
    assert a[2] == b[2]  # set-level values, statuses, conventions


def test_finished_grid_started_again_is_not_recomputed(local_grid: tuple[Path, Any],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    results, _ = local_grid

    def no_compute(*args: Any) -> Any:
        raise AssertionError("a complete run was computed again")

    monkeypatch.setattr(grid_executors, "compute_task", no_compute)
    report = run_grid(small_grid(results), executor="local", progress=False)
    assert report.done == 6 and all(r.reused for r in report.runs)


def test_a_run_missing_a_requested_metric_is_computed_again(tmp_path: Path) -> None:
    grid = small_grid(tmp_path, attacks=["mean-image"], defenses=["none"], seeds=[0], metrics=("mse",))
    first = run_grid(grid, progress=False)
    assert first.done == 1 and not first.runs[0].reused
    again = run_grid(grid, progress=False)
    assert again.runs[0].reused
    more = run_grid(small_grid(tmp_path, attacks=["mean-image"], defenses=["none"], seeds=[0],
                               metrics=("mse", "psnr")), progress=False)
    assert more.done == 1 and not more.runs[0].reused
    _, _, sets = store_dump(tmp_path)
    assert set(sets[more.runs[0].run_id]) == {"mse", "psnr"}


def test_a_stored_value_of_another_metric_version_is_scored_again(tmp_path: Path, bench_home: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A finished run counts as complete only when each stored value has the version its metric would record now:
    semsim stored `unavailable` is scored once `bench semsim train` bound a checkpoint to the folder (and again
    after a newer one), a metric whose version changed is scored again; the reconstructions are reused."""
    from bench.annotations import semsim_save, semsim_sets, semsim_training
    from test_semsim import make_layout

    results = tmp_path / "results"
    grid = small_grid(results, attacks=["mean-image"], defenses=["none"], seeds=[0], metrics=("mse", "semsim"))
    first = run_grid(grid, progress=False)
    (run_id,) = [r.run_id for r in first.runs]
    assert store_dump(results)[2][run_id]["semsim"]["status"] == "unavailable"
    assert run_grid(grid, progress=False).runs[0].reused  # nothing changed: not computed again

    layout = semsim_sets.load_folder(make_layout(tmp_path / "layout", n_ids=2), 8)
    settings = semsim_training.TrainSettings(epochs=1, batch_size=8, size=8)
    trained = semsim_training.train(layout, settings, progress=False)
    entry = semsim_save.save_checkpoint(layout, settings, trained, results, demo=True)
    second = run_grid(grid, progress=False)
    assert second.done == 1 and not second.runs[0].reused
    stored = store_dump(results)[2][run_id]
    assert (stored["semsim"]["status"], stored["semsim"]["version"]) == ("ok", f"1+{entry['sha256'][:12]}")
    assert run_grid(grid, progress=False).runs[0].reused

    other = semsim_training.TrainSettings(epochs=1, batch_size=8, size=8, seed=1)
    newer = semsim_save.save_checkpoint(layout, other, semsim_training.train(layout, other, progress=False), results,
                                        demo=True)
    assert newer["sha256"] != entry["sha256"]
    assert not run_grid(grid, progress=False).runs[0].reused
    assert store_dump(results)[2][run_id]["semsim"]["version"] == f"1+{newer['sha256'][:12]}"

    monkeypatch.setattr(registry.metrics.get("mse").obj, "version", "2")  # e.g. a fixed bug
    assert not run_grid(grid, progress=False).runs[0].reused
    assert store_dump(results)[2][run_id]["mse"]["version"] == "2"
    assert run_grid(grid, progress=False).runs[0].reused


class FailingAttack(Attack):
    """Toy attack whose training always fails."""

    name = "toy-failing"
    consumes = Requirement("*")
    default_extractor = "sift"

    def fit(self, features: FeatureSet, images: torch.Tensor, ctx: FitContext) -> None:
        raise RuntimeError("toy attack exploded")

    def reconstruct(self, features: FeatureSet, progress: bool = True) -> torch.Tensor:  # pragma: no cover
        return torch.zeros(len(features), 3, self.image_size, self.image_size)


@pytest.fixture()
def failing_attack() -> Any:
    register_attack(FailingAttack)
    yield FailingAttack
    registry.attacks.unregister(FailingAttack.name)


def test_failing_run_is_recorded_and_the_grid_goes_on(failing_attack: Any, tmp_path: Path) -> None:
    out = CliRunner().invoke(group(), ["grid", "--attacks", "toy-failing,mean-image", "--defenses", "none",
                                       "--seeds", "0", "--profile", "smoke", "--n-train", "8", "--n-test", "4",
                                       "--threads", "1", "--results", str(tmp_path), "--quiet"])
    assert out.exit_code == 1, out.output
    assert "RuntimeError: toy attack exploded" in out.output
    assert "1 done, 1 failed, 0 skipped" in out.output
    with Store(tmp_path / "bench.sqlite") as store:
        rows = {r["attack"]: r for r in store.runs()}
    assert rows["toy-failing"]["status"] == "failed"
    assert rows["toy-failing"]["error"] == "RuntimeError: toy attack exploded"
    assert rows["mean-image"]["status"] == "done"


def test_cli_prints_skipped_pairs_table_and_leaderboards(tmp_path: Path) -> None:
    out = CliRunner().invoke(group(), ["grid", "--attacks", "mean-image", "--defenses", "none,drop-coordinates",
                                       "--seeds", "0", "--profile", "smoke", "--n-train", "8", "--n-test", "4",
                                       "--threads", "1", "--metrics", "mse,psnr", "--results", str(tmp_path),
                                       "--quiet"])
    assert out.exit_code == 0, out.output
    assert "run id" in out.output and "drop-coordinates" in out.output
    assert "2 done, 0 failed, 0 skipped" in out.output
    assert "leaderboard: " in out.output
    bad = CliRunner().invoke(group(), ["grid", "--attacks", "mean-imag", "--results", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "mean-image" in bad.output and "Traceback" not in bad.output


def test_dry_run_plans_every_run_and_runs_none(tmp_path: Path) -> None:
    out = CliRunner().invoke(group(), ["grid", "--attacks", "mean-image", "--defenses", "none,drop-coordinates",
                                       "--seeds", "0,1", "--profile", "smoke", "--n-train", "8", "--n-test", "4",
                                       "--metrics", "mse", "--results", str(tmp_path / "r"), "--dry-run"])
    assert out.exit_code == 0, out.output
    assert "4 runs planned, 0 pairings skipped" in out.output
    assert out.output.count("mean-image vs drop-coordinates") == 2
    from bench.store import Store

    with Store(tmp_path / "r" / "bench.sqlite") as store:  # the store may be created; it holds no run
        assert not store.runs()
    bad = CliRunner().invoke(group(), ["grid", "--attacks", "mean-image:nope=1", "--profile", "smoke",
                                       "--results", str(tmp_path / "r"), "--dry-run"])
    assert bad.exit_code != 0 and "nope" in bad.output and "Traceback" not in bad.output


# -------------------------------------------------------------------------------------------------- command
REQUESTS = [
    RunRequest(attack="cfgan"),
    RunRequest(attack="mean-image", defense="drop-coordinates", dataset="utkface", data_root=Path("/data/my faces"),
               profile="smoke", seed=7, n_train=8, n_test=4, results=Path("out dir"), threads=1,
               metrics=("mse", "psnr"), extractor="sift"),
    RunRequest(attack="cfgan", defense="subsample", attack_params={"steps": "10", "lr": 0.0002},
               defense_params={"keep": 0.25, "seed_offset": 1, "flag": True}, device="cuda:1",
               aux_dataset="ffhq", aux_data_root=Path("/data/ffhq"), dataset="celebahq",
               data_root=Path("/data/celeba;rm -rf x")),
    RunRequest(attack="dlg", dataset="cifar10", extractor_params={"batch": 2}),
]


@pytest.mark.parametrize("req", REQUESTS)
def test_request_command_parses_back_to_the_same_request(req: RunRequest) -> None:
    line = request_command(req)
    words = shlex.split(line)
    assert words[:2] == ["bench", "run"] and words[2:] == request_args(req)
    params = run_cmd.make_context("run", words[2:]).params
    assert params["attack"] == req.attack and params["defense"] == req.defense
    assert params["dataset"] == req.dataset and params["profile"] == req.profile and params["seed"] == req.seed
    assert params["n_train"] == req.n_train and params["n_test"] == req.n_test
    assert params["threads"] == req.threads and params["device"] == req.device
    assert params["extractor"] == req.extractor and params["aux_dataset"] == req.aux_dataset
    assert Path(params["results"]) == Path(req.results)
    for key in ("data_root", "aux_data_root"):
        assert params[key] == (Path(getattr(req, key)).resolve() if getattr(req, key) else None)
    metrics = tuple(params["metric_names"].split(",")) if params["metric_names"] else None
    assert metrics == (None if req.metrics is None else tuple(req.metrics))
    assert parse_assignments(params["attack_args"], "a") == {k: str(v) if not isinstance(v, float) else repr(v)
                                                             for k, v in req.attack_params.items()}
    given = parse_assignments(params["defense_args"], "d")
    assert given.keys() == req.defense_params.keys()
    assert parse_assignments(params["extractor_args"], "e") == {k: str(v) for k, v in req.extractor_params.items()}
    assert "--quiet" not in words


def test_default_request_is_the_shortest_command() -> None:
    assert request_command(RunRequest(attack="cfgan")) == "bench run --attack cfgan"


def test_leaderboard_of_a_grid_file_holds_only_its_runs(local_grid: tuple[Path, Any], tmp_path: Path) -> None:
    """`bench leaderboard --grid-file F`: the table of one grid from a results folder that holds other runs too."""
    from bench.cli.leaderboard import leaderboard_cmd
    from bench.run.grid_plan import planned_run_ids

    results, _ = local_grid
    (tmp_path / "g.toml").write_text('attacks = ["mean-image"]\ndefenses = ["none"]\nseeds = [0, 1]\n'
                                     'profile = "smoke"\nn_train = 8\nn_test = 4\n')
    planned = planned_run_ids(tmp_path / "g.toml")
    runs, _, _ = store_dump(results)
    assert len(planned) == 2 and planned < set(runs)  # a strict subset of the store's six runs
    for grid_file, n_rows in ((None, 3), (tmp_path / "g.toml", 1)):
        out = tmp_path / ("all" if grid_file is None else "grid")
        args = ["--results", str(results), "--out", str(out), "--format", "csv,md"]
        res = CliRunner().invoke(leaderboard_cmd, args + (["--grid-file", str(grid_file)] if grid_file else []))
        assert res.exit_code == 0, res.output
        table = pd.read_csv(next(out.glob("*.csv")))
        assert len(table) == n_rows
    assert set(table["run_ids"].iloc[0].split()) == planned and table["seeds"].iloc[0] == 2
    assert "--grid-file" in (out / f"{next(out.glob('*.csv')).stem}.md").read_text()  # the regenerate command
