"""Keypoint-coordinate removal: release SIFT descriptors without their (x, y) positions.

OpenCV returns keypoints sorted by position (x, then y), so releasing rows in extraction order would still tell
the attacker each descriptor's x-rank. The defense therefore blanks x and y and shuffles each image's rows
(keypoint and descriptor together) with a permutation drawn from the defense's secret rng.
"""

from __future__ import annotations

import numpy as np

from bench.features import FeatureSet, FeatureSpec
from bench.plugins import Defense, UtilityContext, register_defense


def shuffle_within_records(offsets: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Row order that permutes the rows of every CSR record among themselves, uniformly at random.

    One stable argsort on (record index, random key): rows stay inside their record, and their order within it
    is the order of independent uniform keys, i.e. a uniform random permutation.
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    counts = np.diff(offsets)
    record = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    keys = rng.random(int(offsets[-1]))
    return np.lexsort((keys, record))


@register_defense
class DropCoordinates(Defense):
    """Removes SIFT keypoint coordinates (x, y set to NaN) and shuffles each image's keypoints; the rest stays."""

    name = "drop-coordinates"
    version = "2"  # 2: rows shuffled within each image (extraction order leaked the x-rank)
    accepts = ("sift",)

    def released_spec(self, spec: FeatureSpec) -> FeatureSpec:
        return spec.with_flags(has_coordinates=False)

    def protect(self, features: FeatureSet, rng: np.random.Generator) -> FeatureSet:
        from bench.features.sift import SiftSet

        assert isinstance(features, SiftSet)
        order = shuffle_within_records(features.offsets, rng)
        keypoints = np.array(features.keypoints[order], dtype=np.float32)  # fancy indexing copies
        keypoints[:, :2] = np.nan
        descriptors = np.ascontiguousarray(features.descriptors[order])
        return SiftSet(keypoints, descriptors, np.array(features.offsets, copy=True),
                       flags={**features.flags, "has_coordinates": False}, meta=features.meta)

    def utility(self, ctx: UtilityContext) -> dict[str, float]:
        """The shared SIFT matching figures (defenses/sift_utility.py); correspondences are checked against the
        true positions, since the released rows carry none."""
        from bench.defenses.sift_utility import matching_utility

        return matching_utility(self, ctx)
