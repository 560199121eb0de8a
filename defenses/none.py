"""The `none` defense: features are released exactly as extracted (the unprotected baseline)."""

from __future__ import annotations

import numpy as np

from bench.features import FeatureSet, FeatureSpec
from bench.plugins import Defense, UtilityContext, register_defense


@register_defense
class NoDefense(Defense):
    """No protection: the released features are the extracted features."""

    name = "none"
    accepts = ("*",)

    def released_spec(self, spec: FeatureSpec) -> FeatureSpec:
        return spec

    def protect(self, features: FeatureSet, rng: np.random.Generator) -> FeatureSet:
        return features

    def utility_source(self, spec: FeatureSpec) -> str | None:
        """Gradient releases: the undefended baseline of the gradient defenses' ``fl-accuracy`` (the victim trained
        by plain fedSGD); no utility figure for other releases."""
        return "training" if spec.kind == "fl-gradients" else None

    def utility(self, ctx: UtilityContext) -> dict[str, float]:
        from bench.attacks.gradinv import utility as gu  # the gradient family only, loaded when used
        return gu.fl_accuracy(ctx, gu.plain_step)
