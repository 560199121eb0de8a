"""The gradient family's victims as extractors: `fedsgd` (victim, width, trained, batch) and its alias
`fedsgd-lenet-zhu`; trained victims learn on the attacker/train split in the cached `victims` stage; every run
records the victim's accuracy on the private (test) images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from bench import registry
from bench.cli import main
from bench.errors import BenchError

from conftest import SHARED_DATA

CIFAR = SHARED_DATA / "cifar10"
TINY = {"convnet": ["--extractor-arg", "width=2"], "resnet20-4": ["--extractor-arg", "width=1"], "lenet-zhu": []}


def _run(tmp: Path, *extra: str) -> dict:
    res = CliRunner().invoke(main, ["run", "--profile", "smoke", "--n-train", "6", "--n-test", "2", "--metrics",
                                    "mse", "--quiet", "--threads", "1", "--results", str(tmp), *extra])
    assert res.exit_code == 0, res.output
    runs = sorted((tmp / "runs").glob("*/run.json"), key=lambda p: p.stat().st_mtime)
    return json.loads(runs[-1].read_text())


def test_fedsgd_listed_with_its_parameters() -> None:
    meta = registry.extractors.get("fedsgd").meta
    assert set(meta["params"]) == {"victim", "width", "batch", "trained", "train_steps"}
    assert meta["white_box"] is True
    assert set(registry.extractors.get("fedsgd-lenet-zhu").meta["params"]) == {"batch", "trained", "train_steps"}


def test_alias_config_unchanged_by_the_new_parameters() -> None:
    """Only values away from their defaults enter the config, so existing fedsgd-lenet-zhu run ids stay."""
    from bench.attacks.gradinv.extractors import FedSGDLeNetZhu

    assert FedSGDLeNetZhu().config() == {"name": "fedsgd-lenet-zhu", "version": "1"}
    assert FedSGDLeNetZhu(batch=2).config() == {"name": "fedsgd-lenet-zhu", "version": "1", "batch": 2}


def test_bad_combinations_fail_in_one_line() -> None:
    from bench.attacks.gradinv.extractors import FedSGD

    with pytest.raises(BenchError, match="lenet-zhu has no width"):
        FedSGD(width=8)
    with pytest.raises(BenchError, match="train_steps needs trained=true"):
        FedSGD(train_steps=3)
    with pytest.raises(BenchError, match="allowed"):
        FedSGD(victim="vgg")


def test_trained_victim_never_silently_untrained() -> None:
    """A trained=true extractor that was neither trained nor loaded refuses to release, rather than releasing the
    untrained victim's gradients."""
    from bench.attacks.gradinv.extractors import FedSGD
    from bench.plugins import ImageSet

    ex = FedSGD(victim="convnet", width=2, trained=True)
    with pytest.raises(BenchError, match="was not trained or loaded"):
        ex.extract(ImageSet(["a"], torch.rand(1, 3, 32, 32), {"label": np.array([1])}))


def test_convnet_any_input_size() -> None:
    from bench.attacks.gradinv import victims

    net = victims.build_victim("convnet", width=2, image_size=64)
    assert net(torch.rand(1, 3, 64, 64)).shape == (1, 10)
    assert net.fc.in_features == 4 * 2 * 7 * 7  # 64 -> 21 -> 7 after the two 3x3 max-pools


def test_train_victim_runs_exactly_the_given_steps() -> None:
    from bench.attacks.gradinv import victims

    model = victims.build_victim("lenet-zhu", image_size=16)
    calls = []
    model.register_forward_hook(lambda *a: calls.append(1) if model.training else None)
    victims.train_victim(model, torch.rand(10, 3, 16, 16), torch.randint(0, 10, (10,)), batch_size=4, steps=7)
    assert len(calls) == 7  # 3 batches per epoch: two full epochs and one batch of the third


@pytest.mark.parametrize("victim", ["lenet-zhu", "convnet", "resnet20-4"])
@pytest.mark.parametrize("trained", ["false", "true"])
def test_victims_run_at_smoke(victim: str, trained: str, tmp_path: Path) -> None:
    record = _run(tmp_path, "--attack", "idlg", "--attack-arg", "iterations=2", "--extractor", "fedsgd",
                  "--extractor-arg", f"victim={victim}", "--extractor-arg", f"trained={trained}", *TINY[victim])
    v = record["threat_model"]["victim"]
    assert v["state"]["victim"] == victim and v["state"]["trained"] is (trained == "true")
    acc = v["accuracy"]
    # measured on the smoke profile's 16-image utility evaluation split, not on the 2 private images
    assert acc["n"] == 16 and 0.0 <= acc["test_accuracy"] <= 1.0 and acc["on"].startswith("utility-eval/1")
    assert record["utility_evaluation"]["n"] == 16
    assert record["utility"]["victim-accuracy"] == acc["test_accuracy"]
    if trained == "true":
        assert v["training"]["steps"] == 2 and v["training"]["n_train_images"] == 6  # smoke: 2 steps
        assert record["spec"]["extractor"]["training"]["steps"] == 2
    else:
        assert "training" not in v and "training" not in record["spec"]["extractor"]


def test_trained_victim_cached_keyed_and_trained_off_the_private_images(tmp_path: Path) -> None:
    from bench.attacks.gradinv.extractors import FedSGD
    from bench.run.plan import RunRequest, plan

    args = ["--attack", "dlg", "--attack-arg", "iterations=1", "--extractor", "fedsgd", "--extractor-arg",
            "victim=resnet20-4", "--extractor-arg", "width=1", "--extractor-arg", "trained=true"]
    first = _run(tmp_path, *args)
    assert first["threat_model"]["victim"]["training"]["from_cache"] is False
    again = _run(tmp_path, *args, "--metrics", "psnr")  # another run (other metrics: same spec) reuses the victim
    assert again["threat_model"]["victim"]["training"]["from_cache"] is True
    more = _run(tmp_path, *args, "--extractor-arg", "train_steps=3")
    assert more["threat_model"]["victim"]["training"]["from_cache"] is False
    assert more["threat_model"]["victim"]["training"]["steps"] == 3
    seed1 = _run(tmp_path, *args, "--seed", "1")
    assert seed1["threat_model"]["victim"]["training"]["from_cache"] is False
    assert len(list((tmp_path / "cache" / "victims").glob("*/manifest.json"))) == 3

    bound = []
    orig = FedSGD.bind
    FedSGD.bind = lambda self, data: (bound.append(data), orig(self, data))[1]  # type: ignore[method-assign]
    try:
        p = plan(RunRequest(attack="dlg", profile="smoke", n_train=6, n_test=2, extractor="fedsgd",
                            extractor_params={"trained": "true"}, results=tmp_path))
    finally:
        FedSGD.bind = orig  # type: ignore[method-assign]
    assert bound[0].ids == p.train_ids and not set(bound[0].ids) & set(p.test_ids)


def test_trained_weights_differ_and_release_follows_them(tmp_path: Path) -> None:
    from bench.attacks.gradinv.extractors import FedSGD
    from bench.datasets import synthetic  # noqa: F401  (registers the demo set)
    from bench.plugins import ImageSet, VictimData

    ds = registry.datasets.get("synthetic-faces").obj(root=None)
    ids = ds.item_ids()[:8]
    aux = ds.load(ids, 32)
    plain, trained = FedSGD(victim="convnet", width=2), FedSGD(victim="convnet", width=2, trained=True)
    trained.bind(VictimData(ds, ids, 32, "smoke", 0))
    state = trained.train_victim(aux)
    assert set(state) == {"model", "info"} and state["info"]["steps"] == 2
    fresh = FedSGD(victim="convnet", width=2, trained=True)
    fresh.load_victim(state)
    imgs = ImageSet(["x"], aux.images[:1], {k: v[:1] for k, v in aux.labels.items()})
    a, b, c = plain.extract(imgs), trained.extract(imgs), fresh.extract(imgs)
    assert not np.allclose(a.grads, b.grads)
    np.testing.assert_array_equal(b.grads, c.grads)


@pytest.mark.slow
def test_trained_victim_on_cifar10_learns(tmp_path: Path) -> None:
    """A victim trained at the cpu profile's settings on real CIFAR-10 train images classifies 200 test images
    above chance (10 %; measured about 25-30 %)."""
    if not (CIFAR / "test").is_dir():
        pytest.skip(f"CIFAR-10 not found at {CIFAR}")
    record = _run(tmp_path, "--attack", "idlg", "--attack-arg", "iterations=1", "--dataset", "cifar10",
                  "--data-root", str(CIFAR), "--profile", "cpu", "--n-train", "600", "--n-test", "200",
                  "--extractor-arg", "trained=true", "--extractor-arg", "train_steps=600")
    acc = record["threat_model"]["victim"]["accuracy"]["test_accuracy"]
    assert acc > 0.15, acc


# ------------------------------------------------------------------------- declared attack hyper-parameters
def test_gradinv_hyper_parameters_declared_per_profile() -> None:
    ig = registry.attacks.get("inverting-gradients").obj
    assert set(ig.params) == {"iterations", "lr", "tv", "restarts", "labels"}
    assert dict(ig.params["iterations"].defaults) == {"smoke": 10, "cpu": 500, "paper": 24000}
    assert dict(ig.params["restarts"].defaults) == {"smoke": 1, "cpu": 1, "paper": 4}
    assert set(registry.attacks.get("dlg").obj.params) == {"iterations", "lr", "history"}


def test_gradinv_overrides_reach_the_attack_and_defaults_keep_the_config() -> None:
    from bench.compat import make_attack

    cls = registry.attacks.get("inverting-gradients").obj
    plain = make_attack(cls, "smoke", 32, "cpu", 0, {})
    # The config runs with every default had before the hyper-parameters were declared (their run ids).
    assert plain.config() == {"name": "inverting-gradients", "version": "1", "profile": "smoke", "image_size": 32,
                              "params": {"iterations": 0}}
    same = make_attack(cls, "smoke", 32, "cpu", 0, {"iterations": "10", "tv": "0.0001"})  # the smoke defaults
    assert same.config() == plain.config()
    other = make_attack(cls, "smoke", 32, "cpu", 0, {"tv": "0.01", "restarts": "2"})
    assert other._hp() == {"iterations": 10, "lr": 0.1, "tv": 0.01, "restarts": 2, "labels": "idlg"}
    assert other.config()["overrides"] == {"restarts": 2, "tv": 0.01}
    with pytest.raises(BenchError, match="has no parameter"):
        make_attack(cls, "smoke", 32, "cpu", 0, {"history": "5"})  # an L-BFGS setting: not IG's


# ------------------------------------------------------------------------------- grid extractor parameters
def test_grid_items_and_extractor_arg_reach_the_extractor(tmp_path: Path) -> None:
    from bench.run.grid_plan import plan_grid
    from bench.run.grid_spec import GridSpec

    grid = GridSpec(attacks=["dlg", "dlg:extractor.batch=2", "idlg:iterations=2"], profile="smoke", n_train=2,
                    n_test=2, results=tmp_path, extractor_params={"trained": "true"})
    runs, skipped = plan_grid(grid)
    assert not skipped
    ex = [r.spec["extractor"] for r in runs]
    assert [e.get("batch") for e in ex] == [None, 2, None] and all(e["trained"] is True for e in ex)
    assert runs[2].spec["attack_config"]["overrides"] == {"iterations": 2}
    res = CliRunner().invoke(main, ["grid", "--attacks", "dlg", "--extractor-arg", "batch=2", "--profile", "smoke",
                                    "--n-train", "2", "--n-test", "2", "--metrics", "mse", "--threads", "1",
                                    "--quiet", "--results", str(tmp_path / "cli")])
    assert res.exit_code == 0, res.output
    import pandas as pd

    board = pd.read_csv(tmp_path / "cli" / "leaderboards" / "synthetic-faces.csv")
    assert list(board["extractor"]) == ["fedsgd-lenet-zhu(batch=2)"]


def test_grid_file_extractor_params(tmp_path: Path) -> None:
    from bench.run.grid_spec import GridSpec, load_grid_file

    f = tmp_path / "g.toml"
    f.write_text('attacks = ["dlg"]\n[extractor_params]\nbatch = 4\n')
    assert load_grid_file(f)["extractor_params"] == {"batch": 4}
    with pytest.raises(BenchError, match="names no extractor parameter"):
        from bench.run.grid_plan import plan_grid

        plan_grid(GridSpec(attacks=["dlg:extractor.=3"], profile="smoke", results=tmp_path))


# ------------------------------------------------------------------------------------ batch > 1 label recovery
@pytest.mark.parametrize("attack", [pytest.param("dlg", marks=pytest.mark.slow), "idlg",
                                    pytest.param("inverting-gradients", marks=pytest.mark.slow)])
def test_every_attack_runs_at_batch_2(attack: str, tmp_path: Path) -> None:
    """Every attack at batch 2 on CIFAR-10 (whose `label` field label-accuracy scores); also the grid's pairs."""
    if not (CIFAR / "test").is_dir():
        pytest.skip(f"CIFAR-10 not found at {CIFAR}")
    record = _run(tmp_path, "--attack", attack, "--extractor-arg", "batch=2", "--n-test", "4", "--metrics",
                  "mse,label-accuracy", "--dataset", "cifar10", "--data-root", str(CIFAR))
    assert record["releases"]["records"] == 2
    assert record["set_metrics"]["label-accuracy"]["status"] == "ok"
    assert 0.0 <= record["set_metrics"]["label-accuracy"]["value"] <= 1.0


# ------------------------------------------------------------------------------------------- FedAvg releases
def test_fedavg_simulation_matches_the_client_update() -> None:
    """The attacker's unrolled local steps give exactly the client's update (releases.fedavg_update) at the true
    images, and a different one elsewhere."""
    from bench.attacks.gradinv import attacks, releases, victims

    model = victims.build_victim("lenet-zhu", image_size=16).double().eval()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 16, 16, generator=g, dtype=torch.float64)
    y = torch.tensor([1, 4, 7])
    update = tuple(releases.fedavg_update(model, x, y, local_steps=4, lr=0.05, local_batch=2))
    f = attacks._objective(model, "euclidean", 0.0, False, fedavg=attacks.FedAvgSetting(4, 0.05, 2))
    assert float(f(x, y, update)) < 1e-20
    assert float(f(x + 0.01, y, update)) > 1e-8


def test_fedavg_extractor_one_full_step_is_lr_times_the_gradient() -> None:
    from bench.attacks.gradinv.extractors import FedAvg, FedSGD
    from bench.plugins import ImageSet

    imgs = ImageSet(["a", "b", "c"], torch.rand(3, 3, 32, 32), {"label": np.array([3, 7, 1])})
    upd = FedAvg(batch=2, local_steps=1, local_lr=0.5).extract(imgs)
    grad = FedSGD(batch=2).extract(imgs)
    assert upd.kind == "fl-updates" and upd.covers() == [[0, 1], [2]]
    assert upd.meta["fedavg"] == {"local_steps": 1, "lr": 0.5, "local_batch": None}
    np.testing.assert_allclose(upd.grads, 0.5 * grad.grads, rtol=1e-4, atol=1e-7)


def test_ig_fedavg_attack_moves_towards_the_images() -> None:
    from bench.attacks.gradinv import attacks, releases, victims

    model = victims.build_victim("lenet-zhu", image_size=16).double().eval()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 16, 16, generator=g, dtype=torch.float64)
    y = torch.tensor([2, 5])
    s = attacks.FedAvgSetting(3, 0.1, None)
    target = [torch.stack(t) for t in zip(*[releases.fedavg_update(model, x[i:i + 1], y[i:i + 1], 3, 0.1)
                                            for i in range(2)])]
    start = torch.rand(1, 2, 1, 3, 16, 16, generator=g, dtype=torch.float64)
    r = attacks.inverting_gradients(model, target, (3, 16, 16), iterations=60, init=start, fedavg=s, tv=0.0,
                                    true_labels=y)
    assert r.label_accuracy == 1.0
    # measured: the image error falls from 0.163 to 0.093 in 60 steps
    assert ((r.images[:, 0] - x) ** 2).mean() < 0.75 * ((start[0, :, 0] - x) ** 2).mean()


def test_fedavg_runs_with_inverting_gradients_and_the_family_plans_on_it(tmp_path: Path) -> None:
    """FedAvg updates: inverting-gradients runs; dlg, idlg and every gradient defense plan on them too (each such
    pair runs in tests/test_gradinv_matrix.py); a defense of another family is refused in one line."""
    from bench.run.plan import RunRequest, plan

    record = _run(tmp_path / "ok", "--attack", "inverting-gradients", "--extractor", "fedavg", "--extractor-arg",
                  "batch=2", "--extractor-arg", "local_steps=2", "--n-test", "4")
    assert record["releases"]["records"] == 2 and record["spec"]["extractor"]["local_steps"] == 2
    for attack in ("dlg", "idlg"):
        for defense in ("none", "gradient-pruning", "gradient-noise", "dp-sgd", "ats-augment"):
            p = plan(RunRequest(attack=attack, defense=defense, extractor="fedavg", profile="smoke", n_train=2,
                                n_test=2))
            assert p.released.kind == "fl-updates"
            assert p.defense.utility_source(p.released) is None  # no fedSGD figure for a FedAvg release
    res = CliRunner().invoke(main, ["run", "--attack", "dlg", "--defense", "gaussian-noise", "--extractor", "fedavg",
                                    "--profile", "smoke", "--results", str(tmp_path / "no")])
    assert res.exit_code != 0 and "cannot protect 'fl-updates'" in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_fedavg_release_claims_no_fedsgd_baseline_utility() -> None:
    from bench.attacks.gradinv.release_kind import GradientRelease, UpdateRelease

    assert GradientRelease.undefended_utility_source == "training"
    assert UpdateRelease.undefended_utility_source is None


def test_dlg_and_idlg_on_a_one_step_fedavg_update_are_dlg_and_idlg() -> None:
    """One local step on the whole batch releases lr x the gradient; DLG's distance on updates is taken in units of
    the local lr, so from the same start DLG (and iDLG) on that update follow DLG on the gradient."""
    from bench.attacks.gradinv import attacks, releases, victims

    model = victims.build_victim("lenet-zhu", image_size=16).double().eval()
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 3, 16, 16, generator=g, dtype=torch.float64)
    y = torch.tensor([4, 8])
    lr = 1e-4
    grad = [torch.stack(t) for t in zip(*[releases.batch_gradient(model, x[i:i + 1], y[i:i + 1])
                                          for i in range(2)])]
    update = [torch.stack(t) for t in zip(*[releases.fedavg_update(model, x[i:i + 1], y[i:i + 1], 1, lr)
                                            for i in range(2)])]
    start = (torch.rand(2, 1, 3, 16, 16, generator=g, dtype=torch.float64),
             torch.randn(2, 1, 10, generator=g, dtype=torch.float64))
    s = attacks.FedAvgSetting(1, lr, None)
    plain = attacks.dlg(model, grad, (3, 16, 16), iterations=20, init=start)
    fed = attacks.dlg(model, update, (3, 16, 16), iterations=20, init=start, fedavg=s)
    torch.testing.assert_close(fed.images, plain.images, rtol=0, atol=1e-6)
    f = attacks._objective(model, "euclidean", 0.0, True, s)
    first = [float(f(start[0][k], start[1][k], tuple(t[k] for t in update))) for k in range(2)]
    assert (fed.loss < 0.5 * torch.tensor(first, dtype=torch.float64)).all(), (fed.loss, first)  # it optimised
    plain = attacks.idlg(model, grad, (3, 16, 16), iterations=20, init=start[0], true_labels=y)
    fed = attacks.idlg(model, update, (3, 16, 16), iterations=20, init=start[0], true_labels=y, fedavg=s)
    assert fed.label_accuracy == plain.label_accuracy == 1.0
    torch.testing.assert_close(fed.images, plain.images, rtol=0, atol=1e-6)


def test_the_victim_has_one_output_per_class_of_the_dataset() -> None:
    """On CIFAR-100 the victim's head has 100 outputs (labels up to 99 are released); a dataset that names no
    classes keeps 10, and only a count other than 10 enters the config (10-class run ids unchanged)."""
    from bench.attacks.gradinv.extractors import FedAvg, FedSGD, dataset_classes
    from bench.datasets.cifar import Cifar10, Cifar100
    from bench.plugins import ImageSet, VictimData

    assert dataset_classes(Cifar100()) == 100 and dataset_classes(Cifar10()) == 10
    assert dataset_classes(registry.datasets.get("synthetic-faces").obj()) == 10
    ext = FedSGD(victim="convnet", width=2)
    ext.bind(VictimData(Cifar100(), [], 32, "smoke", 0))
    assert ext.config()["num_classes"] == 100
    rel = ext.extract(ImageSet(["a", "b"], torch.rand(2, 3, 32, 32), {"label": np.array([57, 99])}))
    assert rel.meta["shapes"][-2] == [100, 4 * 2 * 3 * 3] and rel.meta["shapes"][-1] == [100]
    assert ext.victim().state["num_classes"] == 100
    ten = FedSGD(victim="convnet", width=2)
    ten.bind(VictimData(Cifar10(), [], 32, "smoke", 0))
    assert "num_classes" not in ten.config() and "num_classes" not in ten.victim().state
    with pytest.raises(BenchError, match="0..9 for the 10-class victim"):
        ten.extract(ImageSet(["a"], torch.rand(1, 3, 32, 32), {"label": np.array([57])}))
    fed = FedAvg(victim="resnet20-4", width=1)
    fed.bind(VictimData(Cifar100(), [], 32, "smoke", 0))
    assert [m for m in fed.victim().model.modules() if isinstance(m, torch.nn.Linear)][-1].out_features == 100


def test_bench_list_shows_the_victims_and_both_cifar_datasets() -> None:
    res = CliRunner().invoke(main, ["list"])
    assert res.exit_code == 0, res.output
    line = next(ln for ln in res.output.splitlines() if ln.strip().startswith("fedsgd "))
    assert "victims lenet-zhu, convnet, resnet20-4" in line and "produces fl-gradients" in line
    assert "victims lenet-zhu" in next(ln for ln in res.output.splitlines() if "fedsgd-lenet-zhu" in ln)
    assert "produces fl-updates" in next(ln for ln in res.output.splitlines() if ln.strip().startswith("fedavg "))
    for name in ("cifar10 ", "cifar100 ", "dlg ", "idlg ", "inverting-gradients ", "dp-sgd ", "ats-augment "):
        assert any(ln.strip().startswith(name) for ln in res.output.splitlines()), name
