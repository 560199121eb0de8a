"""The `none` defense: features are released exactly as extracted (the unprotected baseline)."""

from __future__ import annotations

import numpy as np

from bench.features import FeatureSet, FeatureSpec, feature_kinds
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
        """The released kind's own baseline, if it declares one (gradient releases: the victim trained by plain
        fedSGD, the undefended counterpart of the gradient defenses' ``fl-accuracy``); no figure otherwise."""
        try:
            kind = feature_kinds.get(spec.kind).obj
        except Exception:  # an unregistered kind has no baseline to report
            return None
        return kind.undefended_utility_source

    def utility(self, ctx: UtilityContext) -> dict[str, float]:
        return type(ctx.features).undefended_utility(ctx)
