"""ShuffleBits (Ni et al., 2021): permute the 32 bits of every float32 value by a secret permutation.

Each value is viewed as its uint32 bit pattern (bit i = (u >> i) & 1, bit 0 the lowest mantissa bit, bit 31 the
sign; all bits take part) and output bit j is input bit perm[j]. `mode=fixed` draws one permutation of 0..31 from
the rng for all vectors (what the authors' code does); `mode=one-time-pad` draws a fresh one for every vector. The
released container is `bit-patterns` (N×D uint32): shuffled values are often NaN or Inf as floats, so they are never
handed out as numbers. Decryption (`shufflebits_decrypt`) applies the inverse permutation and is bit-exact.

The permutation is vectorised with lookup tables that send a group of input bits to their output positions: in
fixed mode two 65,536-entry tables (low and high 16 bits, two lookups per value); in one-time-pad mode four
256-entry tables per vector (one per byte), built for blocks of rows at once. No Python loop runs over values or
bits. `benchmarks/shufflebits_bench.py` compares it with a plain per-element Python loop.

There is no utility figure: a holder of the keys decrypts exactly (the unprotected utility), and without them
the patterns cannot be compared.
"""

from __future__ import annotations

import numpy as np

from bench.errors import BenchError
from bench.features import FeatureSet, FeatureSpec
from bench.features.embeddings import BitPatternSet, EmbeddingSet
from bench.params import Param
from bench.plugins import Defense, register_defense

BITS = 32
MODES = ("fixed", "one-time-pad")
_FIXED_BLOCK = 1 << 15  # values per lookup block (fixed mode)
_ROW_BLOCK = 64  # rows per block (one-time-pad): 4·64 = 256 byte tables (256 KiB, in L2); must stay 64 (uint16 index)


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


def _spread_tables_into(weights: np.ndarray, table: np.ndarray) -> None:
    """`_spread_tables(weights, 8)` written into an existing (256, 4m) uint32 buffer (no fresh allocation)."""
    w = weights.reshape(len(weights) * 4, 8).T.copy()  # contiguous rows: the ORs below then vectorise fully
    table[0] = 0
    for k in range(8):
        np.bitwise_or(table[: 1 << k], w[k], out=table[1 << k: 2 << k])


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


def _permute_per_row(u: np.ndarray, perms: np.ndarray) -> np.ndarray:
    """A permutation per row: per-row 256-entry tables for each of the 4 bytes, four lookups per value.

    Blocks of _ROW_BLOCK = 64 rows make 4·64 = 256 tables, so a lookup's index, v·256 + 4r + b (v the byte's value,
    r the row in the block, b the byte), is the integer whose byte 1 is v and byte 0 is 4r + b: the index array is
    filled by one byte copy per block, with no integer arithmetic. Every buffer (tables, indices, lookups) is
    allocated once per call and reused by each block; fresh 256 KiB allocations per block cost more in page faults
    than the lookups themselves.
    """
    n, dim = u.shape
    out = np.empty_like(u)
    weights = _spread_weights(perms)  # all rows at once (a per-block inverse costs as much as the lookups)
    block = min(_ROW_BLOCK, n)
    table = np.empty((256, 4 * block), dtype=np.uint32)
    # Little-endian intp indices written byte by byte: byte 0 is 4r + b, byte 1 is v, the rest stay 0.
    index = np.zeros((block, 4, dim), dtype=np.dtype(np.intp).newbyteorder("<"))
    index_bytes = index.view(np.uint8).reshape(block, 4, dim, index.itemsize)
    index_bytes[..., 0] = np.arange(4 * block, dtype=np.uint8).reshape(block, 4, 1)
    spread = np.empty((block, 4, dim), dtype=np.uint32)
    for lo in range(0, n, block):
        hi = min(lo + block, n)
        m = hi - lo
        _spread_tables_into(weights[lo:hi], table[:, : 4 * m])
        # Byte b of each value (bits 8b .. 8b+7) from its explicitly little-endian layout, as m×4×D bytes v.
        index_bytes[:m, ..., 1] = u[lo:hi].astype("<u4", copy=False).view(np.uint8).reshape(m, dim, 4).transpose(0, 2, 1)
        if m == _ROW_BLOCK:
            table.reshape(-1).take(index, out=spread)
            sp = spread
        else:  # a last, shorter block: the row stride of its tables is 4m, not 256
            idx = index[:m].astype(np.intp)
            sp = np.ascontiguousarray(table[:, : 4 * m]).reshape(-1).take((idx >> 8) * (4 * m) + (idx & 255))
        o = out[lo:hi]
        np.bitwise_or(sp[:, 0], sp[:, 1], out=o)
        o |= sp[:, 2]
        o |= sp[:, 3]
    return out


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
    return _permute_fixed(u, p) if p.ndim == 1 else _permute_per_row(u, p)


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
