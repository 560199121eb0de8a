"""ShuffleBits (Ni et al., 2021): permute the 32 bits of every float32 value by a secret permutation.

Each value is viewed as its uint32 bit pattern (bit i = (u >> i) & 1, bit 0 the lowest mantissa bit, bit 31 the
sign; all bits take part) and output bit j is input bit perm[j]. `mode=fixed` draws one permutation of 0..31 from
the rng for all vectors (what the authors' code does); `mode=one-time-pad` draws a fresh one for every vector. The
released container is `bit-patterns` (N×D uint32): shuffled values are often NaN or Inf as floats, so they are never
handed out as numbers. Decryption (`shufflebits_decrypt`) applies the inverse permutation and is bit-exact.

Fixed mode is vectorised with two 65,536-entry lookup tables (low and high 16 bits, two lookups per value) that
send a group of input bits to their output positions. One-time-pad mode works on bit planes: values are grouped
into 32×32 bit matrices, transposed (5 stages of whole-array shifts and masks), whole planes are moved by each
row's permutation, and the matrices transposed back. No Python loop runs over values or bits. With the `fast` extra
(numba) installed, one-time-pad mode uses the compiled kernel of `bench.defenses.shufflebits_numba` instead (four
256-entry tables per vector; same bits, several times faster); BENCH_SHUFFLEBITS_KERNEL=numpy forces numpy.
`benchmarks/shufflebits_bench.py` compares both with a plain per-element Python loop.

There is no utility figure: a holder of the keys decrypts exactly (the unprotected utility), and without them
the patterns cannot be compared.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Callable

import numpy as np

from bench.errors import BenchError
from bench.features import FeatureSet, FeatureSpec
from bench.features.embeddings import BitPatternSet, EmbeddingSet
from bench.params import Param
from bench.plugins import Defense, register_defense

BITS = 32
MODES = ("fixed", "one-time-pad")
_FIXED_BLOCK = 1 << 15  # values per lookup block (fixed mode)
_PLANE_BLOCK_VALUES = 1 << 17  # values per block (one-time-pad): its two 512 KiB buffers stay near the cache


def shufflebits_keys(rng: np.random.Generator, n: int, mode: str) -> np.ndarray:
    """The secret permutation(s): (32,) int64 for `fixed`, (n, 32) int64 (one per vector) for `one-time-pad`."""
    if mode == "fixed":
        return rng.permutation(BITS).astype(np.int64)
    if mode == "one-time-pad":
        return rng.permuted(np.broadcast_to(np.arange(BITS, dtype=np.int64), (n, BITS)), axis=1)
    raise BenchError(f"ShuffleBits mode {mode!r} is unknown; use {' or '.join(MODES)}")


def _checked_perms(perms: np.ndarray, n: int) -> np.ndarray:
    p = np.asarray(perms)
    if p.shape not in ((BITS,), (n, BITS)):
        raise BenchError(f"ShuffleBits keys must be ({BITS},) or ({n}, {BITS}) permutations, got shape {p.shape}")
    if p.dtype.kind not in "iu" or (p.size and (p.min() < 0 or p.max() >= BITS)):
        raise BenchError(f"ShuffleBits keys must be permutations of 0..{BITS - 1}")
    p = p.astype(np.int64)
    seen = np.bitwise_or.reduce(np.left_shift(np.uint64(1), p.astype(np.uint64)), axis=-1)
    if np.any(seen != np.uint64((1 << BITS) - 1)):  # every position present once
        raise BenchError(f"ShuffleBits keys must be permutations of 0..{BITS - 1}")
    return p


def _spread_weights(perms: np.ndarray) -> np.ndarray:
    """m × 32 uint32 with entry [r, i] = 2^j where perms[r, j] = i: the output position of input bit i, as a weight.

    Output bit j = input bit perm[j], so input bit perm[j] lands at j: one scatter along each row (cheaper than
    inverting the permutations by a sort).
    """
    p = np.atleast_2d(perms)
    out = np.empty(p.shape, dtype=np.uint32)
    powers = np.left_shift(np.uint32(1), np.arange(BITS, dtype=np.uint32))
    np.put_along_axis(out, p, np.broadcast_to(powers, p.shape), axis=-1)
    return out


def _spread_tables(weights: np.ndarray, chunk_bits: int) -> np.ndarray:
    """Lookup tables T[v, g] (2^chunk_bits × m·G uint32, G = 32 / chunk_bits) from `_spread_weights` (m × 32).

    Column r·G + g maps the value v of input bits g·c .. g·c + c − 1 (c = chunk_bits) to where permutation r puts
    them: input bit i goes to output position inv[i]. Built by doubling: T[v + 2^k] = T[v] | 2^inv[g·c + k] for
    v < 2^k, one vectorised step per k.
    """
    m, groups = len(weights), BITS // chunk_bits
    w = weights.reshape(m * groups, chunk_bits).T.copy()  # (c, m·G)
    table = np.empty((1 << chunk_bits, m * groups), dtype=np.uint32)
    table[0] = 0
    for k in range(chunk_bits):
        np.bitwise_or(table[: 1 << k], w[k], out=table[1 << k: 2 << k])
    return table


def _permute_fixed(u: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """One permutation for every value: two lookups per value in 65,536-entry tables (low and high 16 bits)."""
    table = _spread_tables(_spread_weights(perm[None, :]), 16)
    low, high = np.ascontiguousarray(table[:, 0]), np.ascontiguousarray(table[:, 1])
    flat = u.reshape(-1)
    out = np.empty(flat.shape, dtype=np.uint32)
    for lo in range(0, len(flat), _FIXED_BLOCK):  # blocks keep the index buffers in cache
        v = flat[lo:lo + _FIXED_BLOCK]
        o = out[lo:lo + _FIXED_BLOCK]
        low.take((v & np.uint32(0xFFFF)).astype(np.intp), out=o)
        o |= high.take((v >> np.uint32(16)).astype(np.intp))
    return out.reshape(u.shape)


# Delta swaps of the 32×32 bit-matrix transpose (Hacker's Delight, transpose32): (shift s, mask m) per stage, the
# mask repeated in both halves of a 64-bit word (two matrices per word; m's top s bits are 0, so no bit crosses
# from one half into the other).
_TRANSPOSE_STAGES = tuple((np.uint64(s), np.uint64(m)) for s, m in (
    (16, 0x0000FFFF0000FFFF), (8, 0x00FF00FF00FF00FF), (4, 0x0F0F0F0F0F0F0F0F), (2, 0x3333333333333333),
    (1, 0x5555555555555555)))


def _transpose_views(words: np.ndarray, tmp: np.ndarray) -> list[tuple[np.ndarray, ...]]:
    """For a (32, K) uint64 buffer: per stage, the two halves it swaps between (word j and j + s) and a scratch view."""
    views = []
    for shift, mask in _TRANSPOSE_STAGES:
        s = int(shift)
        pairs = words.reshape(BITS // (2 * s), 2, s, -1)
        lo, hi = pairs[:, 0], pairs[:, 1]
        views.append((lo, hi, tmp[: lo.size].reshape(lo.shape), shift, mask))
    return views


def _transpose_bits(views: list[tuple[np.ndarray, ...]]) -> None:
    """Transpose, in place, the 32×32 bit matrices held by the buffer of `_transpose_views` (word j = row j).

    With bit i = (w >> i) & 1 the result is the anti-transpose: new word 31 - i, bit 31 - k = old word k, bit i
    (its own inverse). Each stage swaps bits between words j and j + s: t = (w_j ^ (w_{j+s} >> s)) & m,
    w_j ^= t, w_{j+s} ^= t << s.
    """
    for lo, hi, t, shift, mask in views:
        np.right_shift(hi, shift, out=t)
        np.bitwise_xor(t, lo, out=t)
        np.bitwise_and(t, mask, out=t)
        np.bitwise_xor(lo, t, out=lo)
        np.left_shift(t, shift, out=t)
        np.bitwise_xor(hi, t, out=hi)


def _permute_per_row(u: np.ndarray, perms: np.ndarray) -> np.ndarray:
    """A permutation per row, by bit planes: transpose, move whole planes, transpose back.

    Each row's D values are padded to 32·G (G = ceil(D / 32)) and split into G bit matrices of 32 words, value
    j·G + g being word j of matrix g. The matrices sit word-major in a (32, B, G) buffer (B rows per block), so a
    transpose (`_transpose_bits`) is 5 stages of whole-array bitwise operations on 64-bit words. After it, word
    31 - i of a matrix is the plane of input bit i (bit 31 - k from value k); output bit j is input bit perm[j],
    so output plane 31 - j is input plane 31 - perm[j]: one gather of whole planes (G·4 bytes each) per row and
    output bit, then the same transpose turns planes back into values. Bit-exact, no Python loop over values.
    """
    n, dim = u.shape
    groups = -(-dim // BITS)
    full, rest = divmod(dim, groups)  # words 0..full-1 hold G values each, word `full` the last `rest` values
    rows = max(1, min(n, _PLANE_BLOCK_VALUES // (BITS * groups)))
    rows += (rows * groups) % 2  # whole 64-bit words
    blocks = -(-n // rows)
    # Source plane of every output plane, as an index into the (32·B) planes of a block: (31 - perm[r, 31 - a])·B + r
    # for output plane a of row r; padding rows past n keep their own planes.
    src = np.empty((blocks * rows, BITS), dtype=np.intp)
    src[:n] = BITS - 1 - perms[:, ::-1]
    src[n:] = np.arange(BITS)
    src = src.reshape(blocks, rows, BITS).transpose(0, 2, 1) * rows + np.arange(rows)  # (blocks, 32, B)
    planes = np.dtype((np.void, 4 * groups))
    words = np.zeros((BITS, rows, groups), dtype=np.uint32)
    moved = np.empty_like(words)
    tmp = np.empty(words.size // 4, dtype=np.uint64)
    fwd = _transpose_views(words.reshape(BITS, -1).view(np.uint64), tmp)
    back = _transpose_views(moved.reshape(BITS, -1).view(np.uint64), tmp)
    words_planes = words.reshape(-1, groups).view(planes).reshape(-1)
    moved_planes = moved.reshape(BITS, -1, groups).view(planes).reshape(BITS, rows)
    out = np.empty_like(u)
    for b in range(blocks):
        lo, hi = b * rows, min(n, (b + 1) * rows)
        m = hi - lo
        src_words = u[lo:hi]
        np.copyto(words[:full, :m], src_words[:, : full * groups].reshape(m, full, groups).transpose(1, 0, 2))
        if rest:
            words[full, :m, :rest] = src_words[:, full * groups:]
        _transpose_bits(fwd)
        words_planes.take(src[b], out=moved_planes, mode="clip")  # clip: unbuffered (indices are valid)
        _transpose_bits(back)
        dst = out[lo:hi]
        np.copyto(dst[:, : full * groups].reshape(m, full, groups), moved[:full, :m].transpose(1, 0, 2))
        if rest:
            dst[:, full * groups:] = moved[full, :m, :rest]
    return out


def _compiled_per_row() -> Callable[[np.ndarray, np.ndarray], np.ndarray] | None:
    """The numba kernel for one-time-pad rows when the `fast` extra is installed and not disabled, else None.

    BENCH_SHUFFLEBITS_KERNEL=numpy forces the numpy path (both give the same bits).
    """
    if os.environ.get("BENCH_SHUFFLEBITS_KERNEL", "").strip().lower() == "numpy":
        return None
    return _load_compiled()


@lru_cache(maxsize=1)
def _load_compiled() -> Callable[[np.ndarray, np.ndarray], np.ndarray] | None:
    try:
        from bench.defenses.shufflebits_numba import permute_rows
    except Exception:  # numba missing, or unusable here (e.g. no cache folder): the numpy path gives the same bits
        return None
    return permute_rows


def shufflebits_kernel() -> str:
    """Which one-time-pad implementation `permute_bits` uses here: 'numba' or 'numpy'."""
    return "numpy" if _compiled_per_row() is None else "numba"


def permute_bits(patterns: np.ndarray, perms: np.ndarray) -> np.ndarray:
    """N×D uint32 -> N×D uint32 with output bit j = input bit perms[j] (perms (32,), or (N, 32) one per row).

    Bits are numbered by value (bit i = (u >> i) & 1), never by memory order, so the result does not depend on
    the machine's byte order. Vectorised with lookup tables (no Python loop over values or bits).
    """
    u = np.ascontiguousarray(patterns)
    if u.dtype != np.uint32 or u.ndim != 2:
        raise BenchError(f"permute_bits needs an N×D uint32 array, got {u.dtype} with shape {u.shape}")
    p = _checked_perms(perms, len(u))
    if u.size == 0:
        return np.array(u, copy=True)
    if p.ndim == 1:
        return _permute_fixed(u, p)
    compiled = _compiled_per_row()
    return _permute_per_row(u, p) if compiled is None else compiled(u, p)


def inverse_permutations(perms: np.ndarray) -> np.ndarray:
    """The inverse of each permutation (along the last axis)."""
    return np.argsort(np.asarray(perms), axis=-1, kind="stable").astype(np.int64)


def shufflebits_encrypt(values: np.ndarray, perms: np.ndarray) -> np.ndarray:
    """N×D float32 values -> N×D uint32 shuffled bit patterns (the float32 bits, never a numeric conversion)."""
    v = np.ascontiguousarray(values)
    if v.dtype != np.float32:
        raise BenchError(f"ShuffleBits encrypts float32 values, got {v.dtype}")
    return permute_bits(v.view(np.uint32), perms)


def shufflebits_decrypt(bits: np.ndarray | BitPatternSet, perms: np.ndarray) -> np.ndarray:
    """The exact inverse of the encryption: N×D uint32 patterns (or a BitPatternSet) -> the N×D float32 values."""
    patterns = bits.bits if isinstance(bits, BitPatternSet) else bits
    return permute_bits(np.asarray(patterns), inverse_permutations(perms)).view(np.float32)


@register_defense
class ShuffleBits(Defense):
    """ShuffleBits: each float32's 32 bits permuted by a secret key (fixed or per vector); releases bit patterns."""

    name = "shufflebits"
    # 2: the attacker's training features come from querying the victim's protected API (the paper's threat model):
    # in fixed mode they carry the victim's permutation; before, the attacker drew a permutation of its own.
    version = "2"
    accepts = ("embeddings",)
    api_deployed = True
    params = {"mode": Param(str, "fixed", "fixed: one permutation for all vectors; one-time-pad: one per vector",
                            choices=MODES)}

    def released_spec(self, spec: FeatureSpec) -> FeatureSpec:
        return FeatureSpec(BitPatternSet.kind, {**BitPatternSet.default_flags,
                                                "one_time_pad": self.params["mode"] == "one-time-pad"})

    def protect_queries(self, features: FeatureSet, victim_rng: np.random.Generator,
                        query_rng: np.random.Generator) -> FeatureSet:
        """The attacker's queries to the ShuffleBits-protected API: in fixed mode the answers carry the victim's one
        permutation; with a one-time pad every answer gets a fresh permutation, unrelated to the victim's others."""
        return self.protect(features, victim_rng if self.params["mode"] == "fixed" else query_rng)

    def protect(self, features: FeatureSet, rng: np.random.Generator) -> FeatureSet:
        if not isinstance(features, EmbeddingSet):
            raise BenchError(f"defense {self.name!r} protects 'embeddings' features, got {features.kind!r}")
        perms = shufflebits_keys(rng, len(features), self.params["mode"])
        patterns = shufflebits_encrypt(np.asarray(features.vectors), perms)
        spec = self.released_spec(features.spec)
        return BitPatternSet(patterns, dict(spec.flags), features.meta)
