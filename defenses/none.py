"""The `none` defense: features are released exactly as extracted (the unprotected baseline)."""

from __future__ import annotations

import numpy as np

from bench.features import FeatureSet, FeatureSpec
from bench.plugins import Defense, register_defense


@register_defense
class NoDefense(Defense):
    """No protection: the released features are the extracted features."""

    name = "none"
    accepts = ("*",)

    def released_spec(self, spec: FeatureSpec) -> FeatureSpec:
        return spec

    def protect(self, features: FeatureSet, rng: np.random.Generator) -> FeatureSet:
        return features
