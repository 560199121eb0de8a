"""A new feature kind, extractor, defense, attack and metric plug in without touching runner, store or CLI.

Everything here is registered inside the test and driven through the same machinery as `bench run`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from bench import registry
from bench.cli import main
from bench.contract import check_plugin
from bench.features import FeatureSet, FeatureSpec, Requirement, feature_kinds, register_feature_kind
from bench.plugins import (Attack, Defense, Extractor, FitContext, ImageSet, Metric, register_attack,
                           register_defense, register_extractor, register_metric)
from bench.run.plan import RunRequest
from bench.run.runner import execute
from bench.store.db import Store


class ColourSet(FeatureSet):
    """Toy feature kind: the mean RGB colour of each image."""

    kind = "toy-colour"
    default_flags = {"exact": True}

    def __init__(self, colours: np.ndarray, flags: Mapping[str, bool] | None = None, meta: Any = None) -> None:
        super().__init__(flags, meta)
        self.colours = np.asarray(colours, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.colours)

    def subset(self, indices: Sequence[int]) -> "ColourSet":
        return ColourSet(self.colours[list(indices)], self.flags, self.meta)

    def _save_arrays(self) -> dict[str, np.ndarray]:
        return {"colours": self.colours}

    @classmethod
    def _from_arrays(cls, arrays, flags, meta) -> "ColourSet":
        return cls(np.array(arrays["colours"]), flags, meta)


class ColourExtractor(Extractor):
    """Toy victim: releases each image's mean colour."""

    name = "toy-colour"
    produces = FeatureSpec("toy-colour", {"exact": True})

    def extract(self, images: ImageSet, progress: bool = True) -> ColourSet:
        return ColourSet(images.images.mean(dim=(2, 3)).numpy())


class ColourNoise(Defense):
    """Toy defense: adds keyed Gaussian noise to the colours."""

    name = "toy-noise"
    accepts = ("toy-colour",)

    def released_spec(self, spec: FeatureSpec) -> FeatureSpec:
        return spec.with_flags(exact=False)

    def protect(self, features: FeatureSet, rng: np.random.Generator) -> FeatureSet:
        noisy = features.colours + rng.normal(0, 0.01, features.colours.shape).astype(np.float32)
        return ColourSet(noisy, {**features.flags, "exact": False}, features.meta)


class ColourAttack(Attack):
    """Toy attack: the mean auxiliary image re-coloured to the released mean colour."""

    name = "toy-colour-attack"
    consumes = Requirement("toy-colour")
    paper = "toy attack of the extensibility test"

    def fit(self, features: FeatureSet, images: torch.Tensor, ctx: FitContext) -> None:
        ctx.notes.append("toy attack: nothing to learn but a mean image")
        self.mean = images.mean(dim=0)

    def reconstruct(self, features: FeatureSet, progress: bool = True) -> torch.Tensor:
        shift = torch.from_numpy(np.array(features.colours))[:, :, None, None] - self.mean.mean(dim=(1, 2))[None, :, None, None]
        return (self.mean[None] + shift).clamp(0, 1).float()

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.mean = state["mean"]


class ColourError(Metric):
    """Toy metric: absolute error of the mean colour."""

    name = "toy-colour-error"
    higher_is_better = False
    value_range = (0.0, 1.0)
    convention = "mean absolute difference of per-image mean RGB in [0, 1]"

    def per_sample(self, recon: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        return (recon.mean(dim=(2, 3)) - ref.mean(dim=(2, 3))).abs().mean(dim=1)


@pytest.fixture()
def toys():
    register_feature_kind(ColourSet)
    register_extractor(ColourExtractor)
    register_defense(ColourNoise)
    register_attack(ColourAttack)
    register_metric(ColourError)
    yield
    feature_kinds.unregister("toy-colour")
    registry.extractors.unregister("toy-colour")
    registry.defenses.unregister("toy-noise")
    registry.attacks.unregister("toy-colour-attack")
    registry.metrics.unregister("toy-colour-error")


def test_toy_plugins_run_through_the_runner(toys, tmp_path: Path) -> None:
    req = RunRequest(attack="toy-colour-attack", defense="toy-noise", profile="smoke", n_train=10, n_test=6,
                     results=tmp_path, metrics=("toy-colour-error", "psnr"), progress=False)
    res = execute(req)
    assert res.set_metrics["toy-colour-error"]["value"] < 0.05  # the colour really was used
    record = json.loads((res.run_dir / "run.json").read_text())
    assert record["spec"]["extractor"]["name"] == "toy-colour"  # chosen from what the attack consumes
    assert record["threat_model"]["released_features"] == "toy-colour -exact"
    assert "toy attack: nothing to learn but a mean image" in record["notes"]
    with Store(tmp_path / "bench.sqlite") as s:
        assert len(s.sample_metrics(res.run_id)) == 6 * 2
    board = res.leaderboard.read_text()
    assert "toy-colour-attack,toy-noise,smoke" in board
    # the same run again is served entirely from the caches and the store
    again = execute(req)
    assert again.record["cache"] == {"features": True, "attack": True, "eval_batches_reused": 1}
    assert again.set_metrics == res.set_metrics


def test_toy_plugins_through_the_cli(toys, tmp_path: Path) -> None:
    cli = CliRunner()
    out = cli.invoke(main, ["list", "attacks"])
    assert "toy-colour-attack" in out.output
    out = cli.invoke(main, ["run", "--attack", "toy-colour-attack", "--defense", "toy-noise", "--profile",
                            "smoke", "--n-train", "8", "--n-test", "4", "--results", str(tmp_path), "--quiet",
                            "--metrics", "toy-colour-error,mse"])
    assert out.exit_code == 0, out.output
    assert "toy-colour-error" in out.output and "demo set" in out.output
    # the toy defense releases nothing that the SIFT attack can use: a clear error naming what fits
    out = cli.invoke(main, ["run", "--attack", "mean-image", "--defense", "toy-noise", "--profile", "smoke",
                            "--results", str(tmp_path)])
    assert out.exit_code != 0 and "cannot protect 'sift'" in out.output
    out = cli.invoke(main, ["run", "--attack", "toy-colour-attack", "--extractor", "sift", "--profile", "smoke",
                            "--results", str(tmp_path)])
    assert out.exit_code != 0
    assert "attacks that can consume it:" in out.output and "mean-image" in out.output


def test_toy_plugins_pass_the_contract_kit(toys) -> None:
    for name in ("toy-colour-attack", "toy-noise", "toy-colour-error"):
        results = check_plugin(name)
        assert results and all(ok for _, ok, _ in results), results
