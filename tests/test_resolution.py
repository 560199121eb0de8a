"""Per-dataset native resolution: small native datasets keep their size, face datasets keep the profile's exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pytest
import torch

from bench import registry
from bench.errors import BenchError
from bench.plugins import Dataset, ImageSet
from bench.profiles import PROFILES, resolve_resolution
from bench.run.plan import RunRequest, plan
from bench.run.spec import RunSpec

# Today's sizes (extract, image) per profile, written out: face runs must keep them exactly.
FACE_SIZES = {"smoke": (64, 32), "cpu": (128, 64), "paper": (256, 256)}


@pytest.mark.parametrize("profile", ["smoke", "cpu", "paper"])
@pytest.mark.parametrize("native", [None, 200, 250])
def test_face_and_generated_datasets_keep_the_profile_sizes(profile: str, native: int | None) -> None:
    r = resolve_resolution(PROFILES[profile], native)
    assert (r.extract_size, r.image_size) == FACE_SIZES[profile] and r.rule == "profile"


@pytest.mark.parametrize("profile,expected", [("smoke", (32, 32)), ("cpu", (32, 32)), ("paper", (32, 32))])
def test_small_native_dataset_is_never_upscaled(profile: str, expected: tuple[int, int]) -> None:
    r = resolve_resolution(PROFILES[profile], 32)
    assert (r.extract_size, r.image_size) == expected and r.rule == "native" and r.native_size == 32


def test_a_smaller_profile_size_still_applies_to_a_small_dataset() -> None:
    r = resolve_resolution(PROFILES["smoke"], 48)  # smoke scores at 32 px: a 48-px dataset goes down, not up
    assert (r.extract_size, r.image_size) == (48, 32)


def test_user_sizes_override_and_are_checked() -> None:
    r = resolve_resolution(PROFILES["cpu"], 32, image_size=64, extract_size=128)
    assert (r.extract_size, r.image_size, r.rule) == (128, 64, "requested")
    with pytest.raises(BenchError, match="--image-size must be between"):
        resolve_resolution(PROFILES["cpu"], 32, image_size=2)


def test_builtin_native_sizes() -> None:
    assert registry.datasets.get("utkface").obj.native_size == 200
    assert registry.datasets.get("synthetic-faces").obj.native_size is None


@pytest.mark.parametrize("profile", ["smoke", "cpu"])
def test_existing_face_specs_are_unchanged(profile: str) -> None:
    """The planned spec of a face run has today's sizes and fields, so its run id is today's."""
    spec = plan(RunRequest(attack="mean-image", profile=profile, n_train=6, n_test=4)).spec
    assert (spec.extract_size, spec.image_size) == FACE_SIZES[profile]
    assert spec.attack_config["image_size"] == FACE_SIZES[profile][1]
    assert sorted(spec.to_dict()) == sorted([
        "attack", "defense", "dataset", "data_root", "profile", "seed", "n_train", "n_test", "extract_size",
        "image_size", "extractor", "defense_params", "attack_config", "aux_dataset", "aux_data_root",
        "dataset_fingerprint", "version"])


def test_run_id_of_a_literal_spec_is_unchanged() -> None:
    """The hash of a spec written by hand, as the code before native resolution hashed it (schema, hashing kept)."""
    spec = RunSpec(attack="a", defense="none", dataset="utkface", data_root="/d", profile="cpu", seed=0, n_train=10,
                   n_test=5, extract_size=128, image_size=64, extractor={"name": "x"},
                   defense_params={"name": "none"}, attack_config={"name": "a", "image_size": 64},
                   dataset_fingerprint={"private": {"name": "utkface"}})
    assert spec.run_id == "9f8b802f6ca6b9d7"


class _Tiny(Dataset):
    """Toy dataset with a 16-px native size: 12 flat images."""

    name = "toy-tiny"
    needs_root = False
    native_size = 16

    def item_ids(self) -> list[str]:
        return [f"{i:02d}" for i in range(12)]

    def load(self, ids: Sequence[str], size: int) -> ImageSet:
        imgs = torch.stack([torch.full((3, size, size), int(i) / 12.0) for i in ids])
        return ImageSet(ids=list(ids), images=imgs)


@pytest.fixture
def tiny() -> object:
    registry.datasets.register(_Tiny.name, _Tiny)
    yield _Tiny
    registry.datasets.unregister(_Tiny.name)


def test_run_records_the_resolved_size(tiny: object, tmp_path: Path) -> None:
    from bench.run.runner import execute

    res = execute(RunRequest(attack="mean-image", dataset="toy-tiny", profile="smoke", n_train=6, n_test=4,
                             results=tmp_path, metrics=("mse",), progress=False))
    assert res.record["resolutions"] == {"extract": 16, "reconstruct_and_score": 16, "native": 16, "rule": "native"}
    assert res.record["spec"]["image_size"] == 16


def test_list_datasets_verbose_shows_native_size() -> None:
    from click.testing import CliRunner

    from bench.cli import main

    out = CliRunner().invoke(main, ["list", "datasets", "-v"]).output
    assert "native size 200 px" in out and "native size: any" in out


def test_recorded_command_reproduces_requested_sizes() -> None:
    import shlex

    from bench.cli.run import run_cmd
    from bench.run.command import request_command

    words = shlex.split(request_command(RunRequest(attack="mean-image", image_size=48, extract_size=96)))
    params = run_cmd.make_context("run", words[2:]).params
    assert (params["image_size"], params["extract_size"]) == (48, 96)
    assert "--image-size" not in request_command(RunRequest(attack="mean-image"))
