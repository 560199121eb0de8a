"""PE-MIU (Terhörst et al., IEEE Access 2020): shuffle blocks of each embedding, compare by optimal re-ordering.

Protection: each D-value embedding is cut into k = D / block_size consecutive blocks ("minimum information units")
and the blocks are put in a new order drawn afresh for every template (no stored key). `block_size` must divide D.

`moved` (WIFS 2023 study: fewer moved blocks leak more), exactly:

- `moved = -1` (default): the order is a uniformly random permutation of all k blocks (the original PE-MIU; a
  block may stay in place by chance).
- `moved = 0`: the identity (nothing moves).
- `2 <= moved <= k`: `moved` distinct block positions are chosen uniformly at random per template, and the blocks
  at those positions are permuted among themselves by a uniformly random derangement (no chosen block keeps its
  position, every other block stays), so exactly `moved` blocks leave their place. `moved = 1` is refused (one
  block cannot move alone), and `moved > k` is a BenchError at protect time naming k.

Comparison (`pe_miu_compare`): the probe's blocks are matched to the reference's by the Hungarian algorithm
(scipy.optimize.linear_sum_assignment) on block-to-block Euclidean distances, the probe is re-ordered accordingly,
and the score is the cosine similarity of the re-ordered probe and the reference.

Utility: the verification utility of defenses/embedding.py with this comparison (each private template protected
with its own fresh permutation, as PE-MIU enrols): `tmr@fmr=0.1%` and `tmr@fmr=1%` on identity-labelled pairs of
the private split; {} when the split has no identity labels (e.g. UTKFace, the synthetic faces whose identities
are all distinct) or no genuine or impostor pair.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from bench.errors import BenchError
from bench.features import FeatureSet, FeatureSpec
from bench.features.embeddings import EmbeddingSet
from bench.params import Param
from bench.plugins import Defense, UtilityContext, register_defense
from bench.defenses.embedding import cosine_rows, embeddings_of, verification_utility

_COST_ELEMENTS = 1 << 22  # pairs per distance block: at most this many float64 block differences at once


def block_count(dim: int, block_size: int, defense: str = "pe-miu") -> int:
    """k = dim / block_size, or a BenchError naming D and the block sizes that divide it."""
    if block_size < 1 or dim % block_size:
        valid = [b for b in range(1, dim + 1) if dim % b == 0]
        raise BenchError(f"defense {defense!r}: block_size={block_size} does not divide the embedding size D={dim}; "
                         f"valid block sizes: {', '.join(map(str, valid))}")
    return dim // block_size


def random_derangements(rng: np.random.Generator, n: int, m: int) -> np.ndarray:
    """n independent uniform random derangements of 0..m-1 (n×m int64, no fixed point), m >= 2.

    Rejection sampling in vectorised rounds: uniform permutations are drawn for the rows still pending and the
    ones without a fixed point are kept (about 1/e of each round), which keeps the result uniform.
    """
    out = np.empty((n, m), dtype=np.int64)
    pending = np.arange(n)
    ident = np.arange(m)
    while len(pending):
        draw = rng.permuted(np.broadcast_to(ident, (len(pending), m)), axis=1)
        ok = ~np.any(draw == ident, axis=1)
        out[pending[ok]] = draw[ok]
        pending = pending[~ok]
    return out


def block_orders(rng: np.random.Generator, n: int, k: int, moved: int) -> np.ndarray:
    """n×k int64: row r gives, for each output block position i, the input block placed there (see module doc)."""
    ident = np.broadcast_to(np.arange(k, dtype=np.int64), (n, k))
    if moved < 0:
        return rng.permuted(ident, axis=1)
    orders = np.array(ident, copy=True)
    if moved == 0 or n == 0:
        return orders
    chosen = np.argsort(rng.random((n, k)), axis=1)[:, :moved]  # `moved` distinct positions per row, uniform
    der = random_derangements(rng, n, moved)
    rows = np.arange(n)[:, None]
    orders[rows, chosen] = np.take_along_axis(chosen, der, axis=1)  # chosen[a] receives block chosen[der[a]]
    return orders


def apply_block_orders(vectors: np.ndarray, orders: np.ndarray, block_size: int) -> np.ndarray:
    """out[r, block i] = vectors[r, block orders[r, i]] (a new float32 array)."""
    n, dim = vectors.shape
    blocks = np.asarray(vectors, dtype=np.float32).reshape(n, dim // block_size, block_size)
    return np.take_along_axis(blocks, orders[:, :, None], axis=1).reshape(n, dim)


def pe_miu_compare(probe: np.ndarray, reference: np.ndarray, block_size: int) -> np.ndarray | float:
    """PE-MIU comparison score(s): the probe's blocks re-ordered to the reference's, then cosine similarity.

    `probe` and `reference` are D-vectors or M×D arrays (row m compared with row m). The assignment minimises the
    summed Euclidean distances between reference block i and the probe block placed at i (Hungarian algorithm).
    Returns a float for vectors and an (M,) float64 array for arrays.
    """
    single = np.ndim(probe) == 1
    p = np.atleast_2d(np.asarray(probe, dtype=np.float64))
    r = np.atleast_2d(np.asarray(reference, dtype=np.float64))
    if p.shape != r.shape:
        raise BenchError(f"pe_miu_compare: probe {p.shape} and reference {r.shape} differ in shape")
    m, dim = p.shape
    k = block_count(dim, int(block_size))
    pb = p.reshape(m, k, block_size)
    rb = r.reshape(m, k, block_size)
    reordered = np.empty_like(pb)
    chunk = max(1, _COST_ELEMENTS // max(1, k * dim))
    for lo in range(0, m, chunk):
        hi = min(lo + chunk, m)
        # cost[q, i, j] = ||reference block i - probe block j|| for the pairs lo..hi
        cost = np.linalg.norm(rb[lo:hi, :, None, :] - pb[lo:hi, None, :, :], axis=-1)
        for q in range(hi - lo):  # one small assignment problem per pair (scipy solves one at a time)
            _, cols = linear_sum_assignment(cost[q])
            reordered[lo + q] = pb[lo + q, cols]
    scores = cosine_rows(reordered.reshape(m, dim), r)
    return float(scores[0]) if single else scores


@register_defense
class PEMIU(Defense):
    """PE-MIU: blocks of `block_size` values shuffled per template (`moved` limits how many move); Hungarian compare."""

    name = "pe-miu"
    accepts = ("embeddings",)
    params = {
        "block_size": Param(int, 16, "values per block; must divide the embedding size D", low=1),
        "moved": Param(int, -1, "blocks that leave their place (-1: a uniform permutation of all blocks)", low=-1),
    }

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        if self.params["moved"] == 1:
            raise BenchError(f"defense {self.name!r}: parameter moved=1 is not possible (one block cannot leave its "
                             "place while all others stay); use 0, 2 or more, or -1 for all blocks")

    def released_spec(self, spec: FeatureSpec) -> FeatureSpec:
        return spec.with_flags(block_permuted=True)

    def protect(self, features: FeatureSet, rng: np.random.Generator) -> FeatureSet:
        emb = embeddings_of(features, self.name)
        vectors = np.asarray(emb.vectors)
        block_size, moved = int(self.params["block_size"]), int(self.params["moved"])
        k = block_count(emb.dim, block_size, self.name)
        if moved > k:
            raise BenchError(f"defense {self.name!r}: moved={moved} exceeds the {k} blocks of D={emb.dim} values "
                             f"at block_size={block_size}; use at most {k} (or -1 for all)")
        orders = block_orders(rng, len(emb), k, moved)
        out = apply_block_orders(vectors, orders, block_size)
        return EmbeddingSet(out, {**emb.flags, "block_permuted": True}, emb.meta)

    def compare(self, probe: np.ndarray, reference: np.ndarray) -> np.ndarray:
        """Scores of matching rows of two M×D arrays of protected templates (pe_miu_compare at this block size)."""
        return np.asarray(pe_miu_compare(probe, reference, int(self.params["block_size"])))

    def utility(self, ctx: UtilityContext) -> dict[str, float]:
        """`tmr@fmr=0.1%` and `tmr@fmr=1%` of protected-vs-protected comparisons on the private split's identity
        pairs (defenses/embedding.py); {} when the split has no identity labels or no genuine/impostor pair."""
        return verification_utility(self, ctx, self.compare)
