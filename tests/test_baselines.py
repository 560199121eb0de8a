"""SIFT-inversion baselines: nearest-neighbour retrieval (the floor), IVR (Dosovitskiy & Brox), INV (Pittaluga et al.)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from bench import registry
from bench.attacks.sift_inversion import inv as inv_mod
from bench.attacks.sift_inversion import ivr as ivr_mod
from bench.attacks.sift_inversion import nearest as nn_mod
from bench.attacks.sift_inversion.inv import INV
from bench.attacks.sift_inversion.ivr import IVR, keypoint_maps
from bench.attacks.sift_inversion.maps import sift_maps
from bench.attacks.sift_inversion.nearest import NO_MATCH, NearestNeighbour
from bench.cli import main
from bench.contract import smoke_data
from bench.features.sift import SiftSet
from bench.plugins import FitContext

BASELINES = ("nearest-neighbour", "ivr", "inv")


def ctx(seed: int = 0) -> FitContext:
    return FitContext(defense=None, seed=seed, device=torch.device("cpu"), progress=False)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def data() -> dict[str, Any]:
    return smoke_data(n_train=12, n_test=4)


@pytest.mark.parametrize("name", BASELINES)
def test_contract_kit(name: str, builtin_contract) -> None:
    results = builtin_contract(name)
    assert all(ok for _, ok, _ in results), [r for r in results if not r[1]]


def test_registry_metadata() -> None:
    for name, mod in (("nearest-neighbour", nn_mod), ("ivr", ivr_mod), ("inv", inv_mod)):
        meta = registry.attacks.get(name).meta
        assert meta["default_extractor"] == "sift" and meta["paper"]
        assert set(mod.PROFILES) == {"smoke", "cpu", "paper"} == set(meta["profiles"])
    assert dict(NearestNeighbour.consumes.flags) == {"has_descriptors": True}
    assert nn_mod.PROFILES["paper"]["vocabulary"] == 1000 and nn_mod.PROFILES["cpu"]["vocabulary"] == 64


# ------------------------------------------------------------------------------------------ nearest-neighbour
def _fit_nn(d: dict[str, Any]) -> NearestNeighbour:
    a = NearestNeighbour("smoke", d["profile"].image_size, seed=0)
    a.fit(d["aux"], d["aux_images"], ctx())
    return a


@pytest.mark.parametrize("defense", ["none", "drop-coordinates"])
def test_nearest_returns_the_auxiliary_image_itself(defense: str) -> None:
    d = smoke_data(n_train=12, n_test=4, defense=defense)
    a = _fit_nn(d)
    picks = [3, 7, 0, 11]
    private = d["aux"].subset(picks)  # the private images ARE auxiliary images
    assert a.match(private).tolist() == picks
    out = a.reconstruct(private, progress=False)
    expected = d["aux_images"][picks]
    assert torch.allclose(out, (expected * 255).round() / 255, atol=1e-6)
    assert (out - expected).abs().max() <= 0.5 / 255 + 1e-6


def test_nearest_empty_image_gets_mean(data: dict[str, Any]) -> None:
    a = _fit_nn(data)
    empty = SiftSet(np.zeros((0, 6), np.float32), np.zeros((0, 128), np.uint8), np.zeros(2, np.int64),
                    meta=dict(data["aux"].meta))
    assert a.match(empty).tolist() == [NO_MATCH]
    out = a.reconstruct(empty, progress=False)
    assert torch.allclose(out[0], data["aux_images"].double().mean(0).float(), atol=1e-6)


def test_nearest_state_is_small_and_plain(data: dict[str, Any]) -> None:
    sd = _fit_nn(data).state_dict()
    assert sd["aux_images"].dtype == torch.uint8
    assert all(isinstance(v, (torch.Tensor, dict)) for v in sd.values())


def test_nearest_refuses_features_without_descriptors(data: dict[str, Any]) -> None:
    entry_ok = registry.attacks.get("nearest-neighbour").obj.consumes
    from bench.features import FeatureSpec

    assert entry_ok.accepts(FeatureSpec("sift", {"has_coordinates": False, "has_descriptors": True}))
    assert not entry_ok.accepts(FeatureSpec("sift", {"has_coordinates": True, "has_descriptors": False}))


# ----------------------------------------------------------------------------------------------- input maps
def test_keypoint_maps_extend_the_family_map(data: dict[str, Any]) -> None:
    feats, idx = data["aux"], [0, 2, 5]
    m = keypoint_maps(feats, idx, 32, seed=3)
    ref = sift_maps(feats, idx, 32, compress=True, seed=3)
    assert m.shape == (3, 133, 32, 32)
    assert torch.equal(m[:, :128], ref)
    occupied = (ref != 0).any(1)  # a scaled uint8 descriptor is never all zero
    assert torch.equal(m[:, 128] == 1, occupied)
    assert bool((m[:, 128:].abs().sum(1)[~occupied] == 0).all())  # empty cells: zero in every extra channel
    assert m[:, 129:131].abs().max() <= 1 and m[:, 132].abs().max() <= 1  # sub-cell offsets, orientation
    assert keypoint_maps(feats, idx, 32, seed=3, extras=("presence",)).shape[1] == 129


# ------------------------------------------------------------------------------------------------------ IVR
def test_ivr_overfits_four_images_below_the_mean_image_floor(data: dict[str, Any],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(ivr_mod.PROFILES, "smoke", dict(ivr_mod.PROFILES["smoke"], steps=100, batch_size=4, lr=2e-3))
    feats, images = data["aux"].subset([0, 1, 2, 3]), data["aux_images"][:4]
    floor = F.mse_loss(images.mean(0, keepdim=True).expand_as(images), images).item()
    a = IVR("smoke", 32, seed=0)
    a.fit(feats, images, ctx())
    after = F.mse_loss(a.reconstruct(feats, progress=False), images).item()
    assert after < floor, (after, floor)
    assert np.mean(a.history["train"][-5:]) < np.mean(a.history["train"][:5])


# ------------------------------------------------------------------------------------------------------ INV
def test_inv_notes_say_what_is_disabled(data: dict[str, Any]) -> None:
    c = ctx()
    INV("smoke", 32).fit(data["aux"], data["aux_images"], c)
    text = " ".join(c.notes)
    assert "perceptual" in text and "adversarial" in text


def test_inv_paper_preflight_needs_vgg19(bench_home: Path) -> None:
    from bench.errors import BenchError

    with pytest.raises(BenchError, match="vgg19"):
        INV("paper", 256).preflight()


# ------------------------------------------------------------------------------------------- paper figures
@pytest.mark.parametrize("cls,params,gmacs,key", [(IVR, 93e6, 25.0, "params_total"),
                                                  (INV, 88e6, 150.0, "params_generators")])
def test_paper_profile_near_table_ii(cls: Any, params: float, gmacs: float, key: str) -> None:
    d = cls("paper", 256).describe()
    assert abs(d[key] / params - 1) < 0.25, d[key]
    assert abs(d["gmacs"] / gmacs - 1) < 0.25, d["gmacs"]


# ------------------------------------------------------------------------------------------------------ CLI
def _run(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


@pytest.mark.parametrize("name", BASELINES)
def test_cli_smoke_run(name: str, tmp_path: Path) -> None:
    res = _run("run", "--attack", name, "--profile", "smoke", "--n-train", "8", "--n-test", "4", "--quiet",
               "--results", str(tmp_path))
    assert res.exit_code == 0, res.output
    assert "ssim" in res.output


def test_cli_nearest_under_drop_coordinates(tmp_path: Path) -> None:
    res = _run("run", "--attack", "nearest-neighbour", "--defense", "drop-coordinates", "--profile", "smoke",
               "--n-train", "8", "--n-test", "4", "--quiet", "--results", str(tmp_path))
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("name", ["ivr", "inv"])
def test_cli_map_attacks_refuse_drop_coordinates(name: str, tmp_path: Path) -> None:
    res = _run("run", "--attack", name, "--defense", "drop-coordinates", "--profile", "smoke", "--n-train", "8",
               "--n-test", "4", "--quiet", "--results", str(tmp_path))
    assert res.exit_code == 2, res.output
    assert "nearest-neighbour" in res.output and "has_coordinates" in res.output
