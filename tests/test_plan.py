"""Planning a run: the attacker never trains on a private image, and options are checked before any work."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.errors import BenchError
from bench.run.plan import RunRequest, plan


def _folder(root: Path, n: int) -> Path:
    root.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(root / f"{i:03d}.png")
    return root


@pytest.mark.parametrize("aux_root_kind", ["same", "parent"])
def test_cross_dataset_on_shared_files_never_trains_on_private_ids(tmp_path: Path, aux_root_kind: str) -> None:
    root = _folder(tmp_path / "faces", 30)
    aux_root = root if aux_root_kind == "same" else tmp_path
    for seed in range(5):
        p = plan(RunRequest(attack="mean-image", dataset="folder", data_root=root, aux_dataset="folder",
                            aux_data_root=aux_root, profile="smoke", seed=seed, n_train=20, n_test=10))
        private = set(p.test_ids)
        train = {Path(i).name for i in p.train_ids}
        assert not private & train, f"seed {seed}: the attacker trains on private images {private & train}"
        assert len(p.train_ids) == 20 and len(p.test_ids) == 10


def test_cross_dataset_needs_its_own_root(tmp_path: Path) -> None:
    root = _folder(tmp_path / "faces", 12)
    with pytest.raises(BenchError, match="--aux-data-root"):
        plan(RunRequest(attack="mean-image", dataset="folder", data_root=root, aux_dataset="folder",
                        profile="smoke", n_train=4, n_test=4))


def test_cross_dataset_too_few_after_exclusion(tmp_path: Path) -> None:
    root = _folder(tmp_path / "faces", 12)
    with pytest.raises(BenchError, match="once the 6 private ids are excluded"):
        plan(RunRequest(attack="mean-image", dataset="folder", data_root=root, aux_dataset="folder",
                        aux_data_root=root, profile="smoke", n_train=8, n_test=6))


def test_run_and_config_ids(tmp_path: Path) -> None:
    a = plan(RunRequest(attack="mean-image", profile="smoke", seed=0, n_train=6, n_test=4))
    b = plan(RunRequest(attack="mean-image", profile="smoke", seed=1, n_train=6, n_test=4))
    c = plan(RunRequest(attack="mean-image", profile="smoke", seed=0, n_train=6, n_test=5))
    d = plan(RunRequest(attack="mean-image", profile="smoke", seed=0, n_train=6, n_test=4, metrics=("psnr",)))
    assert a.spec.run_id != b.spec.run_id and a.spec.config_id == b.spec.config_id  # seeds share a configuration
    assert a.spec.config_id != c.spec.config_id  # split sizes never merge
    assert a.spec.run_id == d.spec.run_id  # metrics accumulate on one reconstruction set
    assert a.spec.to_dict()["defense_params"] == {"name": "none", "version": "1", "params": {}}
    assert a.spec.to_dict()["version"] == 2


def test_code_versions_are_in_the_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.attacks.mean_image import MeanImage
    from bench.extractors.sift import SiftExtractor

    before = plan(RunRequest(attack="mean-image", profile="smoke", n_train=6, n_test=4)).spec.run_id
    monkeypatch.setattr(MeanImage, "version", "999")
    fixed_attack = plan(RunRequest(attack="mean-image", profile="smoke", n_train=6, n_test=4)).spec.run_id
    monkeypatch.setattr(SiftExtractor, "version", "999")
    fixed_extractor = plan(RunRequest(attack="mean-image", profile="smoke", n_train=6, n_test=4)).spec.run_id
    assert len({before, fixed_attack, fixed_extractor}) == 3


def test_seed_derived_fields_stay_out_of_the_configuration() -> None:
    """A trained victim's training seed and seed-drawn split digest are the seed's: the two seeds of one
    configuration share its id (one leaderboard row), while every declared training setting still splits it."""
    from bench.spec import config_id, run_id

    def spec(seed: int, data: str, steps: int = 100) -> dict:
        return {"attack": "inverting-gradients", "seed": seed, "data_root": None,
                "extractor": {"name": "fedsgd", "trained": True,
                              "training": {"seed": seed, "data": data, "steps": steps, "lr": 0.01}}}

    s0, s1 = spec(0, "44c5dd0c"), spec(1, "25929a86")
    assert run_id(s0) != run_id(s1)
    assert config_id(s0) == config_id(s1)
    assert config_id(spec(0, "44c5dd0c", steps=300)) != config_id(s0)
    # the seed-derived fields are dropped from the configuration only, not from the spec itself
    assert s0["extractor"]["training"]["seed"] == 0 and s0["extractor"]["training"]["data"] == "44c5dd0c"


def test_an_extractor_declares_its_seed_derived_fields_through_the_registry() -> None:
    """config_id asks the extractor's registry entry which config fields the seed determines: a toy extractor's
    declared path leaves the configuration id, an undeclared field of the same shape stays in it."""
    from bench import registry
    from bench.attacks.gradinv.extractors import FedAvg, FedSGD, FedSGDLeNetZhu
    from bench.plugins import Extractor
    from bench.spec import config_id, run_id, seed_derived_fields

    assert FedSGD.seed_derived == FedSGDLeNetZhu.seed_derived == FedAvg.seed_derived == ("training.seed",
                                                                                         "training.data")
    assert seed_derived_fields("fedavg") == ("training.seed", "training.data")
    assert seed_derived_fields("sift") == () and seed_derived_fields("no-such-extractor") == ()

    class Toy(Extractor):
        name = "toy-seeded-extractor"
        seed_derived = ("noise.draw",)

    def spec(name: str, seed: int) -> dict:
        return {"seed": seed, "extractor": {"name": name, "noise": {"draw": 1000 + seed, "sigma": 0.1},
                                            "training": {"seed": seed}}}

    registry.extractors.register(Toy.name, Toy)
    try:
        a, b = spec(Toy.name, 0), spec(Toy.name, 1)
        assert run_id(a) != run_id(b)
        # noise.draw is declared; training.seed is not (it is fedsgd's, not this extractor's): it splits the id
        assert config_id(a) != config_id(b)
        b["extractor"]["training"]["seed"] = 0
        assert config_id(a) == config_id(b) and run_id(a) != run_id(b)
        assert a["extractor"]["noise"]["draw"] == 1000  # the spec itself keeps the field
    finally:
        registry.extractors.unregister(Toy.name)
