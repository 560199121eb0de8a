"""New feature kinds, extractors, defenses, attacks and metrics plug in without touching runner, store or CLI.

Everything here is registered inside the test and driven through the same machinery as `bench run`: a toy
feature kind and extractor, a toy defense with a declared parameter and a utility figure, a toy image attack,
a toy attribute attack, a toy metric that uses labels and the evaluation context, a toy set metric that streams,
a toy attribute metric and a toy metric that is unavailable.
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
from bench.errors import BenchError
from bench.features import FeatureSet, FeatureSpec, Requirement, feature_kinds, register_feature_kind
from bench.params import Param
from bench.plugins import (Attack, Defense, EvalBatch, EvalContext, Extractor, FitContext, ImageSet, Metric,
                           MetricUnavailable, UtilityContext, register_attack, register_defense, register_extractor,
                           register_metric)
from bench.run.plan import RunRequest
from bench.run.runner import execute
from bench.store import Store


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
    """Toy defense: adds keyed Gaussian noise of a declared strength to the colours; reports a utility figure."""

    name = "toy-noise"
    accepts = ("toy-colour",)
    params = {"sigma": Param(float, 0.01, "noise standard deviation", low=0.0, high=1.0)}

    def released_spec(self, spec: FeatureSpec) -> FeatureSpec:
        return spec.with_flags(exact=False)

    def protect(self, features: FeatureSet, rng: np.random.Generator) -> FeatureSet:
        noise = rng.normal(0, self.params["sigma"], features.colours.shape).astype(np.float32)
        return ColourSet(features.colours + noise, {**features.flags, "exact": False}, features.meta)

    def utility(self, ctx: UtilityContext) -> dict[str, float]:
        protected = self.protect(ctx.features, ctx.rng("utility"))
        return {"colour-kept": float(1 - np.abs(protected.colours - ctx.features.colours).mean())}


class ColourAttack(Attack):
    """Toy attack: the mean auxiliary image re-coloured to the released mean colour."""

    name = "toy-colour-attack"
    consumes = Requirement("toy-colour")
    default_extractor = "toy-colour"
    paper = "toy attack of the extensibility test"

    def fit(self, features: FeatureSet, images: torch.Tensor, ctx: FitContext) -> None:
        ctx.notes.append("toy attack: nothing to learn but a mean image")
        self.mean = images.mean(dim=0)

    def reconstruct(self, features: FeatureSet, progress: bool = True) -> torch.Tensor:
        target = torch.from_numpy(np.array(features.colours))[:, :, None, None]
        return (self.mean[None] + target - self.mean.mean(dim=(1, 2))[None, :, None, None]).clamp(0, 1).float()

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.mean = state["mean"]


class SmilePredictor(Attack):
    """Toy attribute attack: predicts 'smiling' from the released colour by a threshold learnt on auxiliary labels."""

    name = "toy-smile"
    consumes = Requirement("toy-colour")
    default_extractor = "toy-colour"
    outputs = "attributes"
    attributes = ("smiling",)
    paper = "toy attribute-inference baseline of the extensibility test"

    def fit(self, features: FeatureSet, images: torch.Tensor, ctx: FitContext) -> None:
        assert "smiling" in ctx.labels and len(ctx.labels["smiling"]) == len(features), "aux labels reach fit"
        self.majority = int(np.round(np.mean(ctx.labels["smiling"])))

    def predict(self, features: FeatureSet, progress: bool = True) -> dict[str, np.ndarray]:
        return {"smiling": np.full(len(features), self.majority, dtype=np.int64)}

    def state_dict(self) -> dict[str, Any]:
        return {"majority": self.majority}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.majority = int(state["majority"])


class ColourError(Metric):
    """Toy metric: absolute error of the mean colour."""

    name = "toy-colour-error"
    higher_is_better = False
    value_range = (0.0, 1.0)
    convention = "mean absolute difference of per-image mean RGB in [0, 1]"

    def per_sample(self, recon: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        return (recon.mean(dim=(2, 3)) - ref.mean(dim=(2, 3))).abs().mean(dim=1)


class LabelAligned(Metric):
    """Toy metric that uses labels and the evaluation context: 1 where a sample's identity label matches its id."""

    name = "toy-label-aligned"
    value_range = (0.0, 1.0)
    convention = "1 when the batch's identity label equals the number in the sample id"

    def prepare(self, ctx: EvalContext) -> None:
        assert len(ctx.aux_images) > 0 and "identity" in ctx.labels and len(ctx.labels["identity"]) == len(ctx.ids)
        self.n_private = len(ctx.ids)

    def score_batch(self, recon, ref, batch: EvalBatch) -> np.ndarray:
        ids = np.array([int(s.rsplit("-", 1)[1]) for s in batch.ids])
        return (batch.labels["identity"] == ids).astype(np.float64)


class MeanColourDistance(Metric):
    """Toy set metric that streams: distance between the mean colours of the two sets."""

    name = "toy-set-distance"
    higher_is_better = False
    value_range = (0.0, 2.0)
    level = "set"
    convention = "L2 distance between set means of per-image mean RGB"
    calls = 0

    def embed(self, recon, ref, batch: EvalBatch) -> dict[str, np.ndarray]:
        type(self).calls += 1
        return {"recon": recon.mean(dim=(2, 3)).numpy(), "ref": ref.mean(dim=(2, 3)).numpy()}

    def aggregate(self, parts: dict[str, np.ndarray]) -> float:
        return float(np.linalg.norm(parts["recon"].mean(0) - parts["ref"].mean(0)))


class SmileAccuracy(Metric):
    """Toy attribute metric: accuracy of the predicted 'smiling' attribute."""

    name = "toy-smile-accuracy"
    inputs = "attributes"
    value_range = (0.0, 1.0)
    convention = "share of samples whose predicted smiling label is right"

    def score_batch(self, recon, ref, batch: EvalBatch) -> np.ndarray:
        return (batch.attributes["smiling"] == batch.labels["smiling"]).astype(np.float64)


class NeedsWeights(Metric):
    """Toy metric whose weights are missing."""

    name = "toy-unavailable"
    needs_weights = True
    convention = "needs weights that are not here"

    def prepare(self, ctx: EvalContext) -> None:
        raise MetricUnavailable("bench weights pull toy-weights")

    def per_sample(self, recon: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        raise AssertionError("an unavailable metric is never scored")


TOYS = {"attacks": (ColourAttack, SmilePredictor), "defenses": (ColourNoise,), "extractors": (ColourExtractor,),
        "metrics": (ColourError, LabelAligned, MeanColourDistance, SmileAccuracy, NeedsWeights)}
REGISTER = {"attacks": register_attack, "defenses": register_defense, "extractors": register_extractor,
            "metrics": register_metric}
METRICS = ("toy-colour-error", "toy-label-aligned", "toy-set-distance", "toy-unavailable", "psnr")


@pytest.fixture()
def toys():
    register_feature_kind(ColourSet)
    for kind, classes in TOYS.items():
        for cls in classes:
            REGISTER[kind](cls)
    yield
    feature_kinds.unregister("toy-colour")
    for kind, classes in TOYS.items():
        for cls in classes:
            registry.REGISTRIES[kind].unregister(cls.name)


def _request(tmp_path: Path, **kw: Any) -> RunRequest:
    base = dict(attack="toy-colour-attack", defense="toy-noise", profile="smoke", n_train=10, n_test=12,
                results=tmp_path, metrics=METRICS, progress=False)
    base.update(kw)
    return RunRequest(**base)


def test_toy_plugins_run_through_the_runner(toys, tmp_path: Path) -> None:
    res = execute(_request(tmp_path))
    sm = res.set_metrics
    assert sm["toy-colour-error"]["value"] < 0.05  # the colour really was used
    assert sm["toy-label-aligned"]["value"] == 1.0  # labels reach metrics aligned with their samples
    assert sm["toy-unavailable"]["status"] == "unavailable"
    assert sm["toy-unavailable"]["detail"] == "bench weights pull toy-weights"
    assert sm["toy-colour-error"]["higher_is_better"] in (0, False)  # direction stored with the value
    record = json.loads((res.run_dir / "run.json").read_text())
    assert record["spec"]["extractor"]["name"] == "toy-colour"  # the attack's declared default
    assert record["spec"]["defense_params"]["params"] == {"sigma": 0.01}  # defaults filled in before hashing
    assert record["threat_model"]["released_features"] == "toy-colour -exact"
    assert "toy attack: nothing to learn but a mean image" in record["notes"]
    assert record["set_metrics"]["toy-unavailable"]["status"] == "unavailable"
    assert 0.9 < record["utility"]["colour-kept"] <= 1.0
    with Store(tmp_path / "bench.sqlite") as s:
        rows = s.sample_metrics(res.run_id)
        assert len(rows) == 12 * 3  # per-sample rows of the three per-sample metrics that are available
        assert set(s.utility(res.run_id)) == {"colour-kept"}
    board = res.leaderboard.read_text()
    assert "toy-noise(sigma=0.01)" in board and "unavailable: bench weights pull toy-weights" in board
    # The set metric streamed: one embedding file per batch (smoke eval batch is 8, so two batches).
    assert len(list((res.run_dir / "scores" / "toy-set-distance").glob("b*.npz"))) == 2
    # The same run again is served entirely from the caches and the run folder.
    MeanColourDistance.calls = 0
    again = execute(_request(tmp_path))
    assert again.record["cache"] == {"features": True, "attack": True, "eval_batches_reused": 2, "eval_batches": 2}
    assert again.record["training"]["from_cache"] and again.record["training"]["train_s"] == \
        record["training"]["train_s"]  # the cached attack reports its own training, not the reuse
    assert MeanColourDistance.calls == 0  # a set-only metric's finished batches are skipped too
    assert again.set_metrics == res.set_metrics


def test_set_metric_streams_equal_to_whole_set(toys, tmp_path: Path) -> None:
    res = execute(_request(tmp_path, metrics=("toy-set-distance",)))
    from bench.images import read_image
    from bench.run.evaluate import recon_path

    ids = json.loads((res.run_dir / "run.json").read_text())
    recon = torch.stack([read_image(p) for p in sorted((res.run_dir / "reconstructions").glob("*.png"))])
    assert len(recon) == ids["n_test_loaded"] == 12 and recon_path(res.run_dir, 0, "x").parent.is_dir()
    # whole-set reference: the same formula on all reconstructions and originals at once
    from bench import registry as reg
    ds = reg.datasets.get("synthetic-faces").obj()
    from bench.images import resize
    test_ids = [p.stem.split("_", 1)[1] for p in sorted((res.run_dir / "reconstructions").glob("*.png"))]
    orig = resize(ds.load(test_ids, 64).images, 32)
    expected = float(np.linalg.norm(recon.mean(dim=(2, 3)).numpy().mean(0) - orig.mean(dim=(2, 3)).numpy().mean(0)))
    assert res.set_metrics["toy-set-distance"]["value"] == pytest.approx(expected, abs=1e-6)


def test_adding_a_metric_scores_existing_reconstructions(toys, tmp_path: Path) -> None:
    first = execute(_request(tmp_path, metrics=("psnr",)))
    pngs = {p.name: p.stat().st_mtime_ns for p in (first.run_dir / "reconstructions").glob("*.png")}
    second = execute(_request(tmp_path, metrics=("toy-colour-error",)))
    assert second.run_id == first.run_id  # metrics are not part of the run id
    assert {p.name: p.stat().st_mtime_ns for p in (first.run_dir / "reconstructions").glob("*.png")} == pngs
    assert set(second.set_metrics) == {"psnr", "toy-colour-error"}  # values accumulate
    board = second.leaderboard.read_text().splitlines()
    assert len(board) == 2 and "psnr" in board[0] and "toy-colour-error" in board[0]


def test_attribute_attack_and_metric(toys, tmp_path: Path) -> None:
    res = execute(_request(tmp_path, attack="toy-smile", metrics=("toy-smile-accuracy", "psnr")))
    sm = res.set_metrics
    assert sm["psnr"]["status"] == "not-applicable"  # image metrics do not apply to attribute outputs
    with Store(tmp_path / "bench.sqlite") as s:
        attrs = s.attributes(res.run_id)
        labels = registry.datasets.get("synthetic-faces").obj().load([a["sample_id"] for a in attrs], 32).labels
    assert len(attrs) == 12 and {a["attribute"] for a in attrs} == {"smiling"}
    predicted = np.array([int(a["value"]) for a in attrs])
    assert sm["toy-smile-accuracy"]["value"] == pytest.approx(float((predicted == labels["smiling"]).mean()))
    assert not (res.run_dir / "reconstructions").exists() or not list((res.run_dir / "reconstructions").iterdir())


def test_defense_parameters_are_validated_and_change_the_run(toys, tmp_path: Path) -> None:
    a = execute(_request(tmp_path, metrics=("toy-colour-error",), defense_params={"sigma": "0.2"}))
    b = execute(_request(tmp_path, metrics=("toy-colour-error",)))
    assert a.run_id != b.run_id
    assert a.set_metrics["toy-colour-error"]["value"] > b.set_metrics["toy-colour-error"]["value"]
    with pytest.raises(BenchError, match="no parameter strength"):
        execute(_request(tmp_path, defense_params={"strength": "1"}))
    with pytest.raises(BenchError, match="out of range"):
        execute(_request(tmp_path, defense_params={"sigma": "7"}))


def test_toy_plugins_through_the_cli(toys, tmp_path: Path) -> None:
    cli = CliRunner()
    out = cli.invoke(main, ["list", "attacks"])
    assert "toy-colour-attack" in out.output and "toy-smile" in out.output
    out = cli.invoke(main, ["run", "--attack", "toy-colour-attack", "--defense", "toy-noise", "--defense-arg",
                            "sigma=0.05", "--profile", "smoke", "--n-train", "8", "--n-test", "4", "--results",
                            str(tmp_path), "--quiet", "--metrics", "toy-colour-error,mse,toy-unavailable"])
    assert out.exit_code == 0, out.output
    assert "toy-colour-error" in out.output and "demo set" in out.output
    assert "unavailable" in out.output and "bench weights pull toy-weights" in out.output
    assert "colour-kept" in out.output
    # the toy defense releases nothing that the SIFT attack can use: a clear error naming what fits
    out = cli.invoke(main, ["run", "--attack", "mean-image", "--defense", "toy-noise", "--profile", "smoke",
                            "--results", str(tmp_path)])
    assert out.exit_code == 2 and "cannot protect 'sift'" in out.output
    out = cli.invoke(main, ["run", "--attack", "toy-colour-attack", "--extractor", "sift", "--profile", "smoke",
                            "--results", str(tmp_path)])
    assert out.exit_code == 2
    assert "attacks that can consume it:" in out.output and "mean-image" in out.output


def test_toy_plugins_pass_the_contract_kit(toys) -> None:
    for name in ("toy-colour-attack", "toy-smile", "toy-noise", "toy-colour-error", "toy-set-distance"):
        results = check_plugin(name)
        assert results and all(ok for _, ok, _ in results), (name, results)


def test_toy_plugins_through_bench_grid(toys, tmp_path: Path) -> None:
    from bench.run.grid import run_grid
    from bench.run.grid_spec import GridSpec

    grid = GridSpec(attacks=["toy-colour-attack", "toy-smile", "mean-image"], defenses=["toy-noise",
                    "toy-noise:sigma=0.1"], seeds=[0, 1], profile="smoke", n_train=10, n_test=6, results=tmp_path,
                    metrics=("toy-colour-error", "toy-smile-accuracy", "toy-unavailable"), threads=1)
    report = run_grid(grid, executor="local", progress=False)
    assert report.done == 8 and report.failed == 0  # mean-image cannot consume toy-colour: skipped, listed
    assert {s.attack for s in report.skipped} == {"mean-image"}
    with Store(tmp_path / "bench.sqlite") as s:
        configs = {r["config_id"] for r in s.runs(status="done")}
    assert len(configs) == 4  # 2 attacks x 2 defense settings; the two seeds of each share a configuration
    board = (tmp_path / "leaderboards" / "synthetic-faces.csv").read_text()
    assert "toy-noise(sigma=0.1)" in board and "utility:colour-kept" in board
