"""Keypoint subsampling for SIFT: release a random share of each image's keypoints (rows kept whole, in order)."""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.errors import BenchError
from bench.features import FeatureSet, FeatureSpec
from bench.features.sift import SiftSet
from bench.params import Param
from bench.plugins import Defense, UtilityContext, register_defense
from bench.defenses.coordinates import shuffle_within_records
from bench.defenses.sift_utility import matching_utility


def kept_counts(counts: np.ndarray, keep: float) -> np.ndarray:
    """Rows kept per image: keep·k rounded half up (so 0.25 of 2 keeps 1); an empty image stays empty."""
    return np.floor(np.asarray(counts, dtype=np.float64) * keep + 0.5).astype(np.int64)


@register_defense
class Subsample(Defense):
    """Keeps a random `keep` share of each image's SIFT keypoints (round(keep·k) rows, original order); flags kept."""

    name = "subsample"
    accepts = ("sift",)
    params = {"keep": Param(float, 0.5, "share of each image's keypoints kept, in (0, 1]", low=0.0, high=1.0)}

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        if self.params["keep"] <= 0.0:
            raise BenchError(f"defense {self.name!r}: parameter keep={self.params['keep']!r} is out of range; "
                             "allowed: (0, 1] (a share of the keypoints greater than zero)")

    def released_spec(self, spec: FeatureSpec) -> FeatureSpec:
        return spec

    def protect(self, features: FeatureSet, rng: np.random.Generator) -> FeatureSet:
        assert isinstance(features, SiftSet), f"expected SIFT features, got {features.kind!r}"
        offsets = np.asarray(features.offsets, dtype=np.int64)
        counts = np.diff(offsets)
        kept = kept_counts(counts, float(self.params["keep"]))
        # A uniform random order within each image (rows grouped by image, images in order); the first `kept`
        # rows of each image in that order are a uniform random subset of that size.
        order = shuffle_within_records(offsets, rng)
        record = np.repeat(np.arange(len(counts), dtype=np.int64), counts)  # = record of order[p] too
        rank = np.arange(len(order), dtype=np.int64) - offsets[record]
        rows = np.sort(order[rank < kept[record]])  # back to the original order
        new_offsets = np.zeros_like(offsets)
        np.cumsum(kept, out=new_offsets[1:])
        return SiftSet(features.keypoints[rows], features.descriptors[rows], new_offsets,
                       flags=dict(features.flags), meta=features.meta)

    def utility(self, ctx: UtilityContext) -> dict[str, float]:
        return matching_utility(self, ctx)
