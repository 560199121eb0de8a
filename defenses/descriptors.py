"""Descriptor defenses for SIFT: drop the descriptors, add Gaussian noise to them, or quantise them.

All three keep every keypoint row (x, y, size, angle, response, octave) and its order; they change only the
K×128 uint8 descriptors. Each reports the shared SIFT matching utility (defenses/sift_utility.py).
"""

from __future__ import annotations

import numpy as np

from bench.features import FeatureSet, FeatureSpec
from bench.features.sift import SiftSet
from bench.params import Param
from bench.plugins import Defense, UtilityContext, register_defense
from bench.defenses.sift_utility import matching_utility

_NOISE_CHUNK = 65536  # descriptor rows drawn per block (bounds the float32 noise buffer to 32 MiB)


def _with_descriptors(features: FeatureSet, descriptors: np.ndarray, **flags: bool) -> SiftSet:
    """A SiftSet with the input's keypoints (copied), offsets and meta, new descriptors and changed flags."""
    assert isinstance(features, SiftSet), f"expected SIFT features, got {features.kind!r}"
    return SiftSet(np.array(features.keypoints, dtype=np.float32, copy=True), descriptors,
                   np.array(features.offsets, copy=True), flags={**features.flags, **flags}, meta=features.meta)


@register_defense
class DropDescriptors(Defense):
    """Releases keypoints only (x, y, size, angle, response, octave): descriptors zeroed, has_descriptors=False."""

    name = "drop-descriptors"
    accepts = ("sift",)

    def released_spec(self, spec: FeatureSpec) -> FeatureSpec:
        return spec.with_flags(has_descriptors=False)

    def protect(self, features: FeatureSet, rng: np.random.Generator) -> FeatureSet:
        assert isinstance(features, SiftSet), f"expected SIFT features, got {features.kind!r}"
        zeros = np.zeros((len(features.keypoints), features.descriptors.shape[1]), dtype=np.uint8)
        return _with_descriptors(features, zeros, has_descriptors=False)

    def utility(self, ctx: UtilityContext) -> dict[str, float]:
        return matching_utility(self, ctx)


@register_defense
class DescriptorNoise(Defense):
    """Adds Gaussian noise (std `sigma`, descriptor units 0..255) to every descriptor value; rounded, clipped."""

    name = "descriptor-noise"
    accepts = ("sift",)
    params = {"sigma": Param(float, 8.0, "noise std in descriptor units (values 0..255)", low=0.0)}

    def released_spec(self, spec: FeatureSpec) -> FeatureSpec:
        return spec

    def protect(self, features: FeatureSet, rng: np.random.Generator) -> FeatureSet:
        assert isinstance(features, SiftSet), f"expected SIFT features, got {features.kind!r}"
        sigma = float(self.params["sigma"])
        desc = np.array(features.descriptors, dtype=np.uint8, copy=True)
        if sigma == 0.0 or not features.flags.get("has_descriptors", True):
            return _with_descriptors(features, desc)
        for lo in range(0, len(desc), _NOISE_CHUNK):  # blocks of rows, each one vectorised
            block = desc[lo:lo + _NOISE_CHUNK]
            noise = rng.standard_normal(block.shape, dtype=np.float32)
            noisy = block.astype(np.float32) + np.float32(sigma) * noise
            block[...] = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
        return _with_descriptors(features, desc)

    def utility(self, ctx: UtilityContext) -> dict[str, float]:
        return matching_utility(self, ctx)


@register_defense
class DescriptorQuantize(Defense):
    """Keeps the top `bits` bits of each descriptor value, reconstructed at the centre of its bin.

    With s = 8 − bits, a value v becomes ((v >> s) << s) + 2^(s−1) (for s ≥ 1): the midpoint of the 2^s values
    that share its top bits, so the reconstruction error is centred (at most 2^(s−1), mean about zero) instead of
    always rounding down. The largest output is 256 − 2^(s−1) ≤ 255. `bits=8` is the identity.
    """

    name = "descriptor-quantize"
    accepts = ("sift",)
    params = {"bits": Param(int, 4, "bits kept per descriptor value (8 = unchanged)", low=1, high=8)}

    def released_spec(self, spec: FeatureSpec) -> FeatureSpec:
        return spec

    def protect(self, features: FeatureSet, rng: np.random.Generator) -> FeatureSet:
        assert isinstance(features, SiftSet), f"expected SIFT features, got {features.kind!r}"
        shift = 8 - int(self.params["bits"])
        desc = np.array(features.descriptors, dtype=np.uint8, copy=True)
        if shift and features.flags.get("has_descriptors", True):
            desc >>= shift
            desc <<= shift
            desc |= np.uint8(1 << (shift - 1))  # the low bits are zero, so OR adds the half step
        return _with_descriptors(features, desc)

    def utility(self, ctx: UtilityContext) -> dict[str, float]:
        return matching_utility(self, ctx)
