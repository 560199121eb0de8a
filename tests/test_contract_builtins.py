"""Every built-in attack, defense and metric passes the contract test kit (the one `bench plugin check` runs)."""

from __future__ import annotations

import pytest

from bench import registry
from bench.contract import check_plugin
from bench.install_hint import extra_install_command

PLUGINS = [(k, e.name) for k in ("attacks", "defenses", "metrics") for e in registry.REGISTRIES[k]]


@pytest.mark.parametrize("kind, name", PLUGINS, ids=[f"{k}:{n}" for k, n in PLUGINS])
def test_builtin_plugin_passes_contract(kind: str, name: str, builtin_contract) -> None:
    results = builtin_contract(name, kind)
    failed = [(check, detail) for check, ok, detail in results if not ok]
    if failed and all(extra_install_command("faces") in detail for _, detail in failed):
        pytest.skip(f"{name}: its smoke data needs the optional face extractor: {failed[0][1]}")
    assert results and not failed, failed


def test_registry_suggests_close_names() -> None:
    from bench.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match="did you mean cfgan"):
        registry.attacks.get("cfgn")
    with pytest.raises(UnknownNameError, match="registered:"):
        registry.attacks.get("zzzzzz")


# ------------------------------------------------------------------------------- the kit catches broken plugins
import math  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from bench.features import FeatureSet, FeatureSpec  # noqa: E402
from bench.params import Param  # noqa: E402
from bench.plugins import Defense, UtilityContext, register_attack, register_defense  # noqa: E402


class _BadDefault(Defense):
    """Broken toy: its declared default lies outside its own range."""

    name = "toy-bad-default"
    params = {"keep": Param(float, 2.0, "share kept", low=0.0, high=1.0)}

    def released_spec(self, spec: FeatureSpec) -> FeatureSpec:
        return spec

    def protect(self, features: FeatureSet, rng: np.random.Generator) -> FeatureSet:
        return features


class _Swallows(_BadDefault):
    """Broken toy: accepts any keyword silently and reports a NaN utility."""

    name = "toy-swallows"
    params = {}

    def __init__(self, **params: Any) -> None:
        self.params = {}

    def utility(self, ctx: UtilityContext) -> dict[str, float]:
        return {"match-rate": math.nan}


def _failed(name: str) -> dict[str, str]:
    return {check: detail for check, ok, detail in check_plugin(name, "defenses") if not ok}


@pytest.fixture()
def broken_defenses():
    for cls in (_BadDefault, _Swallows):
        register_defense(cls)
    yield
    for cls in (_BadDefault, _Swallows):
        registry.defenses.unregister(cls.name)


def test_kit_reports_bad_declarations_and_utility(broken_defenses) -> None:
    bad = _failed("toy-bad-default")
    assert "keep" in bad["declared parameters"] and "out of range" in bad["declared parameters"]
    swallows = _failed("toy-swallows")
    assert "accepted silently" in swallows["declared parameters"]
    assert "nan" in swallows["utility figures are finite numbers"]
    assert set(swallows) == {"declared parameters", "utility figures are finite numbers"}


def test_kit_checks_attribute_attacks() -> None:
    import torch

    from bench.attacks.mean_image import MeanImage

    class Forgetful(MeanImage):
        """Broken toy: says it predicts two attributes but returns one, of the wrong length."""

        name = "toy-forgetful"
        outputs = "attributes"
        attributes = ("glasses", "smiling")

        def fit(self, features, images, ctx) -> None:
            assert len(ctx.labels["glasses"]) == len(features)  # auxiliary labels reach fit
            self.mean = torch.zeros(1)

        def predict(self, features, progress: bool = True):
            return {"glasses": np.zeros(len(features) + 1)}

    register_attack(Forgetful)
    try:
        results = {c: (ok, d) for c, ok, d in check_plugin("toy-forgetful", "attacks")}
    finally:
        registry.attacks.unregister("toy-forgetful")
    ok, detail = results["fit + predict (smoke)"]
    assert not ok and "smiling" in detail
    assert "fit + reconstruct (smoke)" not in results
