"""Each contract check can fail: deliberately broken toy plugins, each broken in one way, are rejected by exactly the
check that guards against it (the built-ins pass every check: tests/test_contract_builtins.py)."""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import pytest
import torch

from bench import registry
from bench.attacks.mean_image import MeanImage
from bench.contract import check_plugin
from bench.errors import BenchError
from bench.features import FeatureSet, FeatureSpec, Requirement
from bench.params import Param
from bench.plugins import Defense, Metric, register_attack, register_defense, register_metric


def _failures(name: str, kind: str) -> dict[str, str]:
    return {check: detail for check, ok, detail in check_plugin(name, kind) if not ok}


@pytest.fixture()
def register() -> Iterator[Any]:
    """Register toys for one test and remove them afterwards."""
    added: list[tuple[str, str]] = []

    def add(kind: str, cls: type) -> None:
        {"attacks": register_attack, "defenses": register_defense, "metrics": register_metric}[kind](cls)
        added.append((kind, cls.name))

    yield add
    for kind, name in added:
        registry.REGISTRIES[kind].unregister(name)


# ---------------------------------------------------------------------------------------------------- attacks
class _TypoFlag(MeanImage):
    """Broken toy: declares it needs a flag that SIFT features do not have (a typo of has_coordinates)."""

    name = "toy-typo-flag"
    consumes = Requirement("sift", {"has_coordinate": True})


class _WrongExtractor(MeanImage):
    """Broken toy: consumes SIFT but names an extractor that is not registered as its default."""

    name = "toy-wrong-extractor"
    consumes = Requirement("sift")
    default_extractor = "no-such-extractor"


class _EmptyCrash(MeanImage):
    """Broken toy: indexes its input, so an empty batch raises IndexError instead of an empty output."""

    name = "toy-empty-crash"

    def reconstruct(self, features: FeatureSet, progress: bool = True) -> torch.Tensor:
        first = int(np.asarray(features.counts())[0])  # IndexError on an empty set
        return super().reconstruct(features) + 0 * first


class _BlankNaN(MeanImage):
    """Broken toy: divides by the keypoint count, so an image without keypoints becomes NaN."""

    name = "toy-blank-nan"

    def reconstruct(self, features: FeatureSet, progress: bool = True) -> torch.Tensor:
        counts = torch.as_tensor(features.counts(), dtype=torch.float32)
        scale = (counts / counts)[:, None, None, None]  # 0/0 for a record without keypoints
        return super().reconstruct(features) * scale


class _ClampsParams(MeanImage):
    """Broken toy: silently clamps an out-of-range parameter instead of refusing it."""

    name = "toy-clamps"
    params = {"blend": Param(float, 0.5, "share of grey", low=0.0, high=1.0)}

    def __init__(self, profile: str, image_size: int, device: Any = "cpu", seed: int = 0,
                 params: dict[str, Any] | None = None) -> None:
        if params and "blend" in params:
            params = {**params, "blend": min(max(float(params["blend"]), 0.0), 1.0)}
        super().__init__(profile, image_size, device, seed, params)


class _ClaimsFeatureless(MeanImage):
    """Broken toy: inherits `uses_features = False` from the mean image but tints each output by its keypoint count."""

    name = "toy-claims-featureless"

    def reconstruct(self, features: FeatureSet, progress: bool = True) -> torch.Tensor:
        counts = torch.as_tensor(features.counts(), dtype=torch.float32).clamp(max=255) / 255
        return (0.5 * super().reconstruct(features) + 0.5 * counts[:, None, None, None]).clamp(0, 1)


@pytest.mark.parametrize("cls, check, words", [
    (_ClaimsFeatureless, "declared use of features", "uses_features = False"),
    (_TypoFlag, "declared consumption", "has_coordinate"),
    (_WrongExtractor, "declared consumption", "no-such-extractor"),
    (_EmptyCrash, "empty input", "IndexError"),
    (_BlankNaN, "record without features", "outside [0, 1]"),
    (_ClampsParams, "bad parameter values refused", "accepted"),
], ids=lambda v: v.__name__ if isinstance(v, type) else None)
def test_kit_rejects_broken_attack(register: Any, cls: type, check: str, words: str) -> None:
    register("attacks", cls)
    failed = _failures(cls.name, "attacks")
    assert check in failed and words in failed[check], failed
    if check != "declared consumption":  # the rest of the kit ran and only this check failed
        assert set(failed) == {check}, failed


# --------------------------------------------------------------------------------------------------- defenses
class _Copy(Defense):
    """A sound toy defense (releases a copy); the broken ones below change one thing."""

    name = "toy-copy"
    accepts = ("sift",)
    params = {"keep": Param(float, 1.0, "share kept", low=0.0, high=1.0)}

    def released_spec(self, spec: FeatureSpec) -> FeatureSpec:
        return spec

    def protect(self, features: FeatureSet, rng: np.random.Generator) -> FeatureSet:
        return features.subset(list(range(len(features))))


class _EmptyValueError(_Copy):
    """Broken toy: an empty input raises a bare ValueError."""

    name = "toy-empty-valueerror"

    def protect(self, features: FeatureSet, rng: np.random.Generator) -> FeatureSet:
        if len(features) == 0:
            raise ValueError("zero-size array to reduction operation maximum which has no identity")
        return super().protect(features, rng)


class _ParamTypeError(_Copy):
    """Broken toy: checks its parameter itself, with an assert instead of a clear error."""

    name = "toy-param-assert"

    def __init__(self, **params: Any) -> None:
        assert float(params.get("keep", 1.0)) <= 1.0
        super().__init__(**params)


class _BlankCrash(_Copy):
    """Broken toy: scales coordinates by each image's keypoint count, which fails for an image without keypoints."""

    name = "toy-blank-crash"

    def protect(self, features: FeatureSet, rng: np.random.Generator) -> FeatureSet:
        per_image = [1.0 / int(c) for c in features.counts()]  # ZeroDivisionError for a blank image
        return super().protect(features, rng) if per_image or len(features) == 0 else features


def test_sound_toy_defense_passes(register: Any) -> None:
    register("defenses", _Copy)
    assert _failures("toy-copy", "defenses") == {}


@pytest.mark.parametrize("cls, check, words", [
    (_EmptyValueError, "empty input", "ValueError"),
    (_ParamTypeError, "bad parameter values refused", "AssertionError"),
    (_BlankCrash, "record without features", "ZeroDivisionError"),
], ids=lambda v: v.__name__ if isinstance(v, type) else None)
def test_kit_rejects_broken_defense(register: Any, cls: type, check: str, words: str) -> None:
    register("defenses", cls)
    failed = _failures(cls.name, "defenses")
    assert set(failed) == {check} and words in failed[check], failed


# ---------------------------------------------------------------------------------------------------- metrics
class _L1(Metric):
    """A sound toy metric: mean absolute error."""

    name = "toy-l1"
    higher_is_better = False
    value_range = (0.0, 1.0)
    convention = "mean |recon - ref|"

    def per_sample(self, recon: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        return (recon - ref).abs().mean(dim=(1, 2, 3))


class _Jittery(_L1):
    """Broken toy: adds unseeded noise, so one input scores differently twice."""

    name = "toy-jittery"

    def per_sample(self, recon: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        return (super().per_sample(recon, ref) + 1e-3 * torch.rand(len(recon))).clamp(0, 1)


class _ContrastRatio(_L1):
    """Broken toy: normalises by the reconstruction's spread, which is zero for a constant image (inf)."""

    name = "toy-contrast-ratio"
    value_range = (0.0, 10.0)

    def per_sample(self, recon: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        spread = recon.flatten(1).std(dim=1)
        return (super().per_sample(recon, ref) / spread).clamp(max=10.0) if bool((spread > 0).all()) \
            else super().per_sample(recon, ref) / spread


def test_sound_toy_metric_passes(register: Any) -> None:
    register("metrics", _L1)
    assert _failures("toy-l1", "metrics") == {}


@pytest.mark.parametrize("cls, check, words", [
    (_Jittery, "same input, same value", "then"),
    (_ContrastRatio, "constant images", "outside"),
], ids=lambda v: v.__name__ if isinstance(v, type) else None)
def test_kit_rejects_broken_metric(register: Any, cls: type, check: str, words: str) -> None:
    register("metrics", cls)
    failed = _failures(cls.name, "metrics")
    assert check in failed and words in failed[check], failed


def test_bad_value_for_each_parameter_type() -> None:
    from bench.contract import _bad_value

    for p in (Param(int, 3, low=1, high=5), Param(float, 0.5, low=0.0), Param(float, 0.0), Param(bool, True),
              Param(str, "a", choices=("a", "b")), Param(int, 2, choices=(1, 2))):
        with pytest.raises(BenchError):
            p.coerce("toy", "k", _bad_value(p))
    assert _bad_value(Param(str, "free text")) is None  # every string is valid: nothing to refuse
