"""Keypoint-coordinate removal: release SIFT descriptors without their (x, y) positions."""

from __future__ import annotations

import numpy as np

from bench.features import FeatureSet, FeatureSpec
from bench.plugins import Defense, register_defense


@register_defense
class DropCoordinates(Defense):
    """Removes SIFT keypoint coordinates (x, y set to NaN); scale, angle, response and descriptors stay."""

    name = "drop-coordinates"
    accepts = ("sift",)

    def released_spec(self, spec: FeatureSpec) -> FeatureSpec:
        return spec.with_flags(has_coordinates=False)

    def protect(self, features: FeatureSet, rng: np.random.Generator) -> FeatureSet:
        from bench.features.sift import SiftSet

        assert isinstance(features, SiftSet)
        keypoints = np.array(features.keypoints, dtype=np.float32, copy=True)
        keypoints[:, :2] = np.nan
        return SiftSet(keypoints, features.descriptors, features.offsets,
                       flags={**features.flags, "has_coordinates": False}, meta=features.meta)
