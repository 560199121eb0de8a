"""Compiled fused SSIM kernel (optional: needs the `fast` extra, i.e. numba) for the float32 path of `ssim`.

Why a compiled kernel: the torch float32 path (`bench.metrics.ssim._sums_torch`) makes about 35 whole-array passes
per chunk of images (maps, two banded products, ~12 elementwise stages), each streaming megabytes through the
cache; this kernel does one image channel at a time with everything in L1/L2: the four maps of one row are built
and filtered along the row at once, then each row of windows is filtered down the columns and turned into SSIM
values and guard terms without being stored. Each filtered value is one unrolled sum of 11 products (windows of
fewer taps are zero-padded, wider ones loop over their taps) computed 8 columns per AVX2 register, rows padded to a
multiple of 8 columns; this halved the kernel's time against 11 accumulating passes. It computes the same
quantities with the same formulas as the torch path (u' = x + y - c, v = x - y, u'^2 + 2 C2 / cn and v^2 filtered;
see the docstring of `bench.metrics.ssim`): the guard statistic and the float64 fallback keep their meaning. It
differs only in summation order (direct sums instead of BLAS products over zero-padded bands; sums of SSIM values
in float64), i.e. by rounding.

numba compiles on first use and caches the machine code on disk (`cache=True`: beside this file, or in numba's
user-wide cache when that folder is read-only), so only the first process pays the compile (a few seconds).
Importing this module raises ImportError when numba is missing; `bench.metrics.ssim` then keeps the torch path.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit

__all__ = ["ssim_sums"]


_UNROLLED_TAPS = 11  # windows of up to this many taps run as unrolled sums (zero-padded); wider ones loop over taps
_LANES = 8  # float32 values per AVX2 register: rows are computed this many columns at a time (extra ones ignored)


@njit(cache=True, nogil=True, boundscheck=False, error_model="numpy", fastmath={"contract"})
def _ssim_sums_kernel(x, y, taps, k, consts, guard_step, sums, guard, rowf, mrow, filt, srow, drow, cen, acc,
                      gacc, colsum):  # pragma: no cover (compiled)
    """sums[n, c] = sum of SSIM over the valid windows of channel c of pair n; guard[n, c] = sum of G_w over the
    windows of every guard_step-th row. In one float dtype (the arithmetic's): x, y (N, C, H, W); taps (>= 11,),
    the k taps of the window then zeros; consts [2 C1, 2 C2 / cn]; scratch rowf (4, H + 10, Wp) and mrow
    (4, >= Wp + max(k, 11)), zero-filled, filt (4, Wp), srow, drow (Wp,), cen (1,), with Wp = W - k + 1 rounded up
    to a multiple of 8. acc, gacc (Wp,) and colsum (W,) float64 scratch."""
    n, c, h, w = x.shape
    ho = h - k + 1
    wo = w - k + 1
    wp = rowf.shape[2]
    c1x2 = consts[0]
    e2 = consts[1]
    unrolled = k <= 11
    t0, t1, t2, t3, t4, t5 = taps[0], taps[1], taps[2], taps[3], taps[4], taps[5]
    t6, t7, t8, t9, t10 = taps[6], taps[7], taps[8], taps[9], taps[10]
    for i_n in range(n):
        for i_c in range(c):
            xa = x[i_n, i_c]
            ya = y[i_n, i_c]
            # centre c = mean of x + y over the channel (float64 sums per column, a loop that vectorises)
            for j in range(w):
                colsum[j] = 0.0
            for r in range(h):
                for j in range(w):
                    colsum[j] += np.float64(xa[r, j] + ya[r, j])
            tot = 0.0
            for j in range(w):
                tot += colsum[j]
            cen[0] = tot / (h * w)
            cc = cen[0]
            # row pass: maps u', v, u'^2 + 2C2/cn, v^2 of one image row, filtered along the row
            for r in range(h):
                for j in range(w):
                    u = xa[r, j] + ya[r, j] - cc
                    v = xa[r, j] - ya[r, j]
                    mrow[0, j] = u
                    mrow[1, j] = v
                    mrow[2, j] = u * u + e2
                    mrow[3, j] = v * v
                for m in range(4):
                    if unrolled:  # all taps of one output in registers: one store per output
                        for j in range(wp):
                            rowf[m, r, j] = (t0 * mrow[m, j] + t1 * mrow[m, j + 1] + t2 * mrow[m, j + 2]
                                             + t3 * mrow[m, j + 3] + t4 * mrow[m, j + 4] + t5 * mrow[m, j + 5]
                                             + t6 * mrow[m, j + 6] + t7 * mrow[m, j + 7] + t8 * mrow[m, j + 8]
                                             + t9 * mrow[m, j + 9] + t10 * mrow[m, j + 10])
                    else:
                        for j in range(wp):
                            rowf[m, r, j] = t0 * mrow[m, j]
                        for t in range(1, k):
                            wt = taps[t]
                            for j in range(wp):
                                rowf[m, r, j] += wt * mrow[m, j + t]
            # column pass, one row of windows at a time, straight into SSIM values and guard terms
            for j in range(wp):
                acc[j] = 0.0
                gacc[j] = 0.0
            for i in range(ho):
                for m in range(4):
                    if unrolled:
                        for j in range(wp):
                            filt[m, j] = (t0 * rowf[m, i, j] + t1 * rowf[m, i + 1, j] + t2 * rowf[m, i + 2, j]
                                          + t3 * rowf[m, i + 3, j] + t4 * rowf[m, i + 4, j]
                                          + t5 * rowf[m, i + 5, j] + t6 * rowf[m, i + 6, j]
                                          + t7 * rowf[m, i + 7, j] + t8 * rowf[m, i + 8, j]
                                          + t9 * rowf[m, i + 9, j] + t10 * rowf[m, i + 10, j])
                    else:
                        for j in range(wp):
                            filt[m, j] = t0 * rowf[m, i, j]
                        for t in range(1, k):
                            wt = taps[t]
                            for j in range(wp):
                                filt[m, j] += wt * rowf[m, i + t, j]
                # three loops that the compiler vectorises (a branch or a float64 sum inside would keep them scalar)
                for j in range(wp):
                    fu = filt[0, j]
                    fv = filt[1, j]
                    var_u = filt[2, j] - fu * fu  # Var u + 2C2/cn
                    var_v = filt[3, j] - fv * fv  # Var v
                    den = var_u + var_v  # 2 (sigma_x^2 + sigma_y^2 + C2) / cn
                    num = var_u - var_v  # 2 (2 sigma_xy + C2) / cn
                    s = fu + cc  # mu_x + mu_y
                    lum_e = s * s + c1x2
                    fv2 = fv * fv
                    srow[j] = (lum_e - fv2) * num / ((lum_e + fv2) * den)
                    drow[j] = den
                for j in range(wp):
                    acc[j] += srow[j]
                if i % guard_step == 0:
                    for j in range(wp):
                        gacc[j] += (filt[2, j] + filt[3, j]) / drow[j]
            total = 0.0
            gtotal = 0.0
            for j in range(wo):  # the columns past wo are padding
                total += acc[j]
                gtotal += gacc[j]
            sums[i_n, i_c] = total
            guard[i_n, i_c] = gtotal


def _run(x: np.ndarray, y: np.ndarray, taps: np.ndarray, consts: np.ndarray, guard_step: int,
         sums: np.ndarray, guard: np.ndarray) -> None:
    """The kernel on one slice of images, with scratch of its own (so that slices can run in parallel)."""
    _, _, h, w = x.shape
    k = taps.shape[0]
    wp = -(-(w - k + 1) // _LANES) * _LANES
    dt = x.dtype
    padded = np.zeros(max(k, _UNROLLED_TAPS), dt)
    padded[:k] = taps
    scratch = (np.zeros((4, h + _UNROLLED_TAPS - 1, wp), dt), np.zeros((4, wp + max(k, _UNROLLED_TAPS) + _LANES), dt),
               np.empty((4, wp), dt), np.empty(wp, dt), np.empty(wp, dt), np.empty(1, dt), np.empty(wp), np.empty(wp),
               np.empty(w))
    _ssim_sums_kernel(x, y, padded, k, consts, guard_step, sums, guard, *scratch)


def ssim_sums(x: np.ndarray, y: np.ndarray, taps: np.ndarray, c1: float, e2: float, guard_step: int,
              threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(sums, guard), each (N, C) float64: per image channel, the sum of the SSIM map over the valid windows and the
    sum of the guard terms G_w over every `guard_step`-th row of windows.

    x, y: C-contiguous (N, C, H, W) arrays of one float dtype (float32 for the metric), in which the arithmetic
    runs; taps (k,) the 1-D window; c1 = (K1 L)^2; e2 = 2 C2 / cov_norm. `threads` > 1 splits the images into that
    many slices run at once (the kernel releases the GIL).
    """
    dt = x.dtype
    n, c, _, _ = x.shape
    taps = np.ascontiguousarray(taps, dtype=dt)
    consts = np.array([2.0 * c1, e2], dtype=dt)
    sums = np.zeros((n, c))
    guard = np.zeros((n, c))
    parts = max(1, min(int(threads), n))
    if parts == 1:
        _run(x, y, taps, consts, guard_step, sums, guard)
        return sums, guard
    bounds = np.linspace(0, n, parts + 1).astype(int)
    with ThreadPoolExecutor(parts) as pool:
        list(pool.map(lambda lo_hi: _run(x[lo_hi[0]:lo_hi[1]], y[lo_hi[0]:lo_hi[1]], taps, consts, guard_step,
                                         sums[lo_hi[0]:lo_hi[1]], guard[lo_hi[0]:lo_hi[1]]),
                      zip(bounds[:-1], bounds[1:])))
    return sums, guard
