"""Compiled one-time-pad kernel for ShuffleBits (optional: needs the `fast` extra, i.e. numba).

Why a compiled kernel: the pure-numpy path (`bench.defenses.shufflebits`, bit planes) needs about 30 whole-array
passes per value; this kernel builds each row's four 256-entry byte tables (1,024 entries) in registers' reach and
does four lookups per value, so it runs several times faster on one thread. It computes exactly what the numpy path
computes (output bit j = input bit perm[j]); `tests/test_shufflebits_kernels.py` checks the two bit for bit.

numba compiles on first use and caches the machine code on disk (`cache=True`: beside this file, or in numba's
user-wide cache when that folder is read-only), so only the first process pays the compile (a few seconds here).
Importing this module raises ImportError when numba is missing; `bench.defenses.shufflebits` then keeps numpy.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["permute_rows"]


@njit(cache=True, boundscheck=False, nogil=True)
def _permute_rows_kernel(u: np.ndarray, perms: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover (compiled)
    n, d = u.shape
    t0 = np.empty(256, dtype=np.uint32)
    t1 = np.empty(256, dtype=np.uint32)
    t2 = np.empty(256, dtype=np.uint32)
    t3 = np.empty(256, dtype=np.uint32)
    weight = np.empty(32, dtype=np.uint32)  # weight[i] = 2^j where perm[j] = i: where input bit i goes
    for r in range(n):
        for j in range(32):
            weight[perms[r, j]] = np.uint32(1) << np.uint32(j)
        t0[0] = 0
        t1[0] = 0
        t2[0] = 0
        t3[0] = 0
        for k in range(8):  # doubling: T[v + 2^k] = T[v] | weight of bit k, for v < 2^k
            h = 1 << k
            for v in range(h):
                t0[h + v] = t0[v] | weight[k]
                t1[h + v] = t1[v] | weight[8 + k]
                t2[h + v] = t2[v] | weight[16 + k]
                t3[h + v] = t3[v] | weight[24 + k]
        for c in range(d):
            v = u[r, c]
            out[r, c] = (t0[v & np.uint32(255)] | t1[(v >> np.uint32(8)) & np.uint32(255)]
                         | t2[(v >> np.uint32(16)) & np.uint32(255)] | t3[v >> np.uint32(24)])


def permute_rows(u: np.ndarray, perms: np.ndarray) -> np.ndarray:
    """N×D uint32 -> N×D uint32 with output bit j of row r = input bit perms[r, j] (perms (N, 32), checked)."""
    u = np.ascontiguousarray(u, dtype=np.uint32)
    p = np.ascontiguousarray(perms, dtype=np.int64)
    out = np.empty_like(u)
    _permute_rows_kernel(u, p, out)
    return out
