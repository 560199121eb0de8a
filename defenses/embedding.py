"""Reference defenses for embeddings (Gaussian noise, quantisation) and the shared face-verification utility.

Verification utility (used by `gaussian-noise`, `quantize` and `pe-miu`), on the private split:

1. Identities come from `ctx.images.labels["identity"]` (LFW has them); records with a negative identity are left
   out. Without identity labels, or without at least one genuine and one impostor pair, there is no figure ({}).
2. Genuine pairs: every unordered pair (i < j) of records with the same identity; more than `MAX_GENUINE` are
   thinned to a uniform random subset of `MAX_GENUINE`. Impostor pairs: every unordered pair with different
   identities when there are at most `MAX_IMPOSTOR`, else `MAX_IMPOSTOR` distinct pairs drawn uniformly at random.
   Both draws use `ctx.rng("verification-pairs")`.
3. All private templates are protected in one `protect` call with keys from `ctx.rng("verification-keys")` (each
   template gets its own noise / permutation, as each would on enrolment), and each pair is scored on the protected
   templates with the defense's comparison (cosine similarity; PE-MIU re-orders blocks first).
4. The threshold at a false-match rate f: with the M impostor scores sorted from high to low, s_1 >= ... >= s_M, and
   k = floor(f·M), the threshold is s_(k+1); a comparison matches when its score is strictly above it, so at most
   k <= f·M impostor pairs match. With fewer than 1/f impostor pairs k = 0: the threshold is the highest impostor
   score (empirical FMR 0). The true-match rate is the share of genuine pairs that match.

Figures: `tmr@fmr=0.1%` and `tmr@fmr=1%` (in [0, 1], higher is better), of the protected features only.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from bench.errors import BenchError
from bench.features import FeatureSet, FeatureSpec
from bench.features.embeddings import EmbeddingSet
from bench.params import Param
from bench.plugins import Defense, UtilityContext, register_defense

MAX_GENUINE = 3000  # genuine pairs scored at most
MAX_IMPOSTOR = 5000  # impostor pairs scored at most
FMRS: tuple[tuple[str, float], ...] = (("tmr@fmr=0.1%", 0.001), ("tmr@fmr=1%", 0.01))
_ROWS = 65536  # rows processed per block by the noise and quantisation defenses

Compare = Callable[[np.ndarray, np.ndarray], np.ndarray]


def embeddings_of(features: FeatureSet, defense: str) -> EmbeddingSet:
    """`features` as an EmbeddingSet, or a BenchError naming the defense and the kind it got."""
    if not isinstance(features, EmbeddingSet):
        raise BenchError(f"defense {defense!r} protects 'embeddings' features, got {features.kind!r}")
    return features


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of matching rows of two M×D arrays (float64); a zero-norm row scores 0."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    dot = np.einsum("md,md->m", a, b)
    norm = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(norm > 0, dot / np.where(norm > 0, norm, 1.0), 0.0)
    return out


# ----------------------------------------------------------------------------------------- verification pairs
def genuine_pairs(identity: np.ndarray, rng: np.random.Generator, cap: int = MAX_GENUINE) -> np.ndarray:
    """P×2 int64 index pairs (i < j) of records with one identity (negative identities left out), at most `cap`."""
    identity = np.asarray(identity, dtype=np.int64)
    valid = np.flatnonzero(identity >= 0)
    order = valid[np.argsort(identity[valid], kind="stable")]
    _, starts, counts = np.unique(identity[order], return_index=True, return_counts=True)
    parts = []
    for start, count in zip(starts.tolist(), counts.tolist()):  # one step per identity, never per pair
        if count >= 2:
            a, b = np.triu_indices(count, 1)
            members = np.sort(order[start:start + count])
            parts.append(np.stack([members[a], members[b]], axis=1))
    pairs = np.concatenate(parts) if parts else np.zeros((0, 2), dtype=np.int64)
    if len(pairs) > cap:
        pairs = pairs[np.sort(rng.choice(len(pairs), size=cap, replace=False))]
    return pairs.astype(np.int64)


def impostor_pairs(identity: np.ndarray, rng: np.random.Generator, cap: int = MAX_IMPOSTOR) -> np.ndarray:
    """P×2 int64 index pairs (i < j) of records with different identities: all of them, or `cap` drawn uniformly."""
    identity = np.asarray(identity, dtype=np.int64)
    valid = np.flatnonzero(identity >= 0)
    n = len(valid)
    total_pairs = n * (n - 1) // 2
    if total_pairs == 0:
        return np.zeros((0, 2), dtype=np.int64)
    _, counts = np.unique(identity[valid], return_counts=True)
    n_impostor = total_pairs - int((counts * (counts - 1) // 2).sum())
    if n_impostor <= cap:
        a, b = np.triu_indices(n, 1)
        keep = identity[valid[a]] != identity[valid[b]]
        return np.stack([valid[a[keep]], valid[b[keep]]], axis=1).astype(np.int64)
    found = np.zeros((0, 2), dtype=np.int64)
    while len(found) < cap:  # rejection sampling in vectorised rounds (each round keeps most of its draws)
        draw = rng.integers(0, n, size=(2 * cap, 2))
        draw = np.sort(draw, axis=1)
        draw = draw[(draw[:, 0] != draw[:, 1]) & (identity[valid[draw[:, 0]]] != identity[valid[draw[:, 1]]])]
        merged = np.concatenate([found, draw])
        _, first = np.unique(merged[:, 0] * n + merged[:, 1], return_index=True)
        found = merged[np.sort(first)]  # first occurrences, in draw order
    return valid[found[:cap]].astype(np.int64)


def tmr_at_fmr(genuine: np.ndarray, impostor: np.ndarray, fmr: float) -> float:
    """Share of genuine scores strictly above the threshold s_(k+1), k = floor(fmr·M), of M impostor scores."""
    imp = np.sort(np.asarray(impostor, dtype=np.float64))[::-1]
    k = int(np.floor(fmr * len(imp)))
    threshold = imp[min(k, len(imp) - 1)]
    return float(np.mean(np.asarray(genuine, dtype=np.float64) > threshold))


def verification_utility(defense: Defense, ctx: UtilityContext, compare: Compare) -> dict[str, float]:
    """`tmr@fmr=0.1%` and `tmr@fmr=1%` of the protected templates (protocol in this module's docstring); {} when
    the private split has no identity labels or lacks genuine or impostor pairs."""
    identity = ctx.images.labels.get("identity")
    if identity is None:
        return {}
    identity = np.asarray(identity, dtype=np.int64).reshape(-1)
    if len(identity) != len(ctx.features):
        raise BenchError(f"utility of {defense.name!r}: {len(identity)} identity labels for "
                         f"{len(ctx.features)} feature records")
    pair_rng = ctx.rng("verification-pairs")
    genuine = genuine_pairs(identity, pair_rng)
    impostor = impostor_pairs(identity, pair_rng)
    if len(genuine) == 0 or len(impostor) == 0:
        return {}
    protected = defense.protect(ctx.features, ctx.rng("verification-keys"))
    templates = np.asarray(embeddings_of(protected, defense.name).vectors)
    scores_g = compare(templates[genuine[:, 0]], templates[genuine[:, 1]])
    scores_i = compare(templates[impostor[:, 0]], templates[impostor[:, 1]])
    return {name: tmr_at_fmr(scores_g, scores_i, fmr) for name, fmr in FMRS}


# ---------------------------------------------------------------------------------------------------- defenses
def _released(features: EmbeddingSet, vectors: np.ndarray) -> EmbeddingSet:
    return EmbeddingSet(vectors, dict(features.flags), features.meta)


@register_defense
class GaussianNoise(Defense):
    """Adds Gaussian noise (std `sigma`, in embedding units) to every embedding value; reference defense."""

    name = "gaussian-noise"
    accepts = ("embeddings",)
    params = {"sigma": Param(float, 0.05, "noise std in embedding units (dlib descriptor values: std about 0.12)",
                             low=0.0)}

    def released_spec(self, spec: FeatureSpec) -> FeatureSpec:
        return spec

    def protect(self, features: FeatureSet, rng: np.random.Generator) -> FeatureSet:
        emb = embeddings_of(features, self.name)
        sigma = np.float32(self.params["sigma"])
        out = np.array(emb.vectors, dtype=np.float32, copy=True)
        if sigma == 0:
            return _released(emb, out)
        for lo in range(0, len(out), _ROWS):  # row blocks bound the noise buffer; each block is vectorised
            block = out[lo:lo + _ROWS]
            block += sigma * rng.standard_normal(block.shape, dtype=np.float32)
        return _released(emb, out)

    def utility(self, ctx: UtilityContext) -> dict[str, float]:
        return verification_utility(self, ctx, cosine_rows)


def quantize_rows(vectors: np.ndarray, bits: int) -> np.ndarray:
    """Each row uniformly quantised to 2^bits levels over [-s, s], s = its largest |value|, at bin centres.

    With L = 2^bits and step = 2s/L, a value x becomes -s + (q + 1/2)·step, q = min(floor((x + s)/step), L − 1).
    A zero row stays zero. Each row's scale s can be read back from its values (they lie on its grid).
    """
    x = np.asarray(vectors, dtype=np.float64)
    levels = float(1 << int(bits))
    scale = np.abs(x).max(axis=1, keepdims=True) if x.shape[1] else np.zeros((len(x), 1))
    step = np.where(scale > 0, 2.0 * scale / levels, 1.0)
    q = np.clip(np.floor((x + scale) / step), 0.0, levels - 1.0)
    out = np.where(scale > 0, -scale + (q + 0.5) * step, 0.0)
    return out.astype(np.float32)


@register_defense
class Quantize(Defense):
    """Quantises each embedding to `bits` bits per value (uniform over ±its max |value|, bin centres)."""

    name = "quantize"
    accepts = ("embeddings",)
    params = {"bits": Param(int, 4, "bits per value (2^bits levels over [-max|x|, max|x|] of each vector)",
                            low=1, high=16)}

    def released_spec(self, spec: FeatureSpec) -> FeatureSpec:
        return spec

    def protect(self, features: FeatureSet, rng: np.random.Generator) -> FeatureSet:
        emb = embeddings_of(features, self.name)
        vectors = np.asarray(emb.vectors)
        bits = int(self.params["bits"])
        parts = [quantize_rows(vectors[lo:lo + _ROWS], bits) for lo in range(0, len(vectors), _ROWS)]
        out = np.concatenate(parts) if parts else np.zeros(vectors.shape, dtype=np.float32)
        return _released(emb, out)

    def utility(self, ctx: UtilityContext) -> dict[str, float]:
        return verification_utility(self, ctx, cosine_rows)
