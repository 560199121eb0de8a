"""Structural similarity (SSIM): Wang et al. 2004, the SIFT-inversion papers' 8-bit convention, MATLAB ssim.m on
rgb2gray input, and the Y-channel downsampled variant.

All are computed for a whole batch at once with separable 'valid' window filters (banded matrix products).
That reproduces scikit-image's `structural_similarity`, which filters with reflect padding and then crops
(win_size - 1) // 2 pixels at every border before averaging, so only windows fully inside the image count.

Two numeric paths compute the same values:

* `ssim_per_image_fast` (used by every metric but ssim-matlab): float32 throughout, batched, with separable banded
  products (both passes as tall products per tile of 9 outputs: the column pass takes the row pass's output as a
  transposed operand, so no transposing copy is made). On CPU, when numba is installed (the `fast` extra), the same
  formulas run instead in one compiled pass per image channel (`bench.metrics.ssim_numba`; `ssim_kernel()` says
  which is used, BENCH_SSIM_KERNEL=torch forces the products): same guard, same fallback, rounding apart.
  float32 window sums cancel badly in E[x^2] - E[x]^2 over flat regions far from mid-grey (~4e-5 error), so:
  (1) the second moments are filtered as u = x + y - c and v = x - y, with c the mean of x + y over each image
  channel (sigma_x^2 + sigma_y^2 = (Var u + Var v) / 2 and 2 sigma_xy = (Var u - Var v) / 2 do not depend on c):
  wherever x and y agree, v is small and Var v exact, and the rounding of Var u cancels between numerator and
  denominator; identical images give exactly 1; (2) the means come from the same maps (mu_x -/+ mu_y), the
  luminance term as (S^2 - D^2 + 2 C1) / (S^2 + D^2 + 2 C1), S = mu_x + mu_y + c, D = mu_x - mu_y;
  (3) each image's mean is accumulated in float64.
  Guard: per window, G_w = (E[u'^2] + E[v^2] + 2 C2 / cn) / (Var u + Var v + 2 C2 / cn) (u' = u - c), i.e.
  (E[x'^2] + E[y'^2] + C2/cn) / (sigma_x^2 + sigma_y^2 + C2/cn): the condition number of the cancellation.
  G, its mean over every 2nd row of windows and over channels, is computed from the maps already filtered; an
  image with G > _GUARD_G_MAX = 200 is recomputed with the float64 path. On adversarial images (flat pairs at
  different levels 0.9 vs 0.1 or 0.97 vs 0.03, two-level and three-level images, 8-bit box-window images,
  out-of-range values) the float32 error measured below 2.3 * 2^-24 * G, so accepted images are within ~3e-5 of
  float64 (within 1e-4 even with a 4x larger constant). Real faces have G ~ 5-60 at 64x64 (never recomputed;
  error <= 3e-7) and up to ~200 at 256x256 (rarely recomputed; error <= 1e-6).
* `ssim_per_image` (the guard's fallback, the reference in tests, and ssim-matlab, whose published values must
  hold to 4 decimals): float64 window sums, as skimage computes.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import ClassVar

import torch

from bench.errors import BenchError
from bench.metrics.pixel import check_pair
from bench import metric_conventions
from bench.plugins import Metric

K1 = 0.01
K2 = 0.03
_TILE = 64  # output columns per banded product: bounds the wasted multiplications for wide images
_CHUNK_ELEMENTS = 1 << 20  # pixels (N*C*H*W) per chunk of images: keeps the working set in cache
_SUM_DTYPE = torch.float64
# float32 path: pixels (N*C*H*W) per chunk (16 RGB 64x64 images; its five buffers then stay in L2/L3), and
# the output rows / columns of one banded product in its first (rows) and second (columns) pass.
_F32_CHUNK_ELEMENTS = 3 << 16
_F32_TILE_ROWS = 9
_F32_TILE_COLS = 9
# Guard: an image whose mean cancellation condition number G exceeds this is recomputed in float64.
_GUARD_G_MAX = 200.0
_GUARD_ROW_STEP = 2  # the guard statistic is averaged over every 2nd row of windows
_F32_EPS = 2.0**-24


def gaussian_taps(sigma: float = 1.5, truncate: float = 3.5) -> torch.Tensor:
    """Normalised 1-D Gaussian window (float64) of radius int(truncate*sigma + 0.5), as scipy.ndimage uses."""
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    w = torch.exp(-0.5 * (x / sigma) ** 2)
    return w / w.sum()


def uniform_taps(size: int = 11) -> torch.Tensor:
    """Normalised 1-D box window (float64) of `size` taps."""
    return torch.full((size,), 1.0 / size, dtype=torch.float64)


@lru_cache(maxsize=64)
def _band_cached(n_in: int, taps: tuple[float, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    k = len(taps)
    n_out = n_in - k + 1
    m = torch.zeros(n_in, n_out, dtype=torch.float64)
    t = torch.tensor(taps, dtype=torch.float64)
    for j in range(n_out):
        m[j : j + k, j] = t
    return m.to(device=device, dtype=dtype)


def _band(n_in: int, taps: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(n_in, n_in - k + 1) matrix M (dtype/device of `like`): z @ M = valid correlation of z's rows with `taps`."""
    return _band_cached(n_in, tuple(taps.tolist()), like.dtype, like.device)


def _filter_last(z: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Valid correlation of `z` with `taps` along its last dimension, in tiles of at most _TILE outputs."""
    k = taps.numel()
    n_out = z.shape[-1] - k + 1
    parts = []
    for start in range(0, n_out, _TILE):
        width = min(_TILE, n_out - start)
        parts.append(torch.matmul(z[..., start : start + width + k - 1], _band(width + k - 1, taps, z)))
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)


def _filter_second_last(z: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Valid correlation of `z` with `taps` along its second-last dimension (no transposed copy)."""
    k = taps.numel()
    n_out = z.shape[-2] - k + 1
    parts = []
    for start in range(0, n_out, _TILE):
        width = min(_TILE, n_out - start)
        band_t = _band(width + k - 1, taps, z).t()
        parts.append(torch.matmul(band_t, z[..., start : start + width + k - 1, :]))
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-2)


def filter_valid_2d(z: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Separable valid filtering of the last two dims (…×H×W -> …×(H-k+1)×(W-k+1))."""
    return _filter_second_last(_filter_last(z, taps), taps)


def ssim_per_image(
    x: torch.Tensor,
    y: torch.Tensor,
    taps: torch.Tensor,
    data_range: float = 1.0,
    cov_norm: float = 1.0,
) -> torch.Tensor:
    """Mean SSIM of each pair of N×C×H×W batches over channels and fully-inside windows, float64 (N,)."""
    k = taps.numel()
    n, c, h, w = x.shape
    if h < k or w < k:
        raise BenchError(f"SSIM needs images of at least {k}×{k} pixels (its window size); got {h}×{w}")
    c1 = (K1 * data_range) ** 2
    c2 = (K2 * data_range) ** 2
    step = max(1, _CHUNK_ELEMENTS // max(1, c * h * w))
    out = []
    for s in range(0, n, step):
        # Four window sums suffice: the variances only ever appear as the sum var(x) + var(y).
        maps = torch.empty((4,) + x[s : s + step].shape, dtype=_SUM_DTYPE, device=x.device)
        a, b = maps[0].copy_(x[s : s + step]), maps[1].copy_(y[s : s + step])
        torch.mul(a, a, out=maps[2]).addcmul_(b, b)
        torch.mul(a, b, out=maps[3])
        mu_a, mu_b, m_sq, m_ab = filter_valid_2d(maps, taps).unbind(0)
        p = mu_a * mu_b
        q = mu_a * mu_a
        q.addcmul_(mu_b, mu_b)
        # (2 mu_x mu_y + C1)(2 cov + C2) / ((mu_x^2 + mu_y^2 + C1)(var_x + var_y + C2)), updated in place.
        cs_num = m_ab.sub_(p).mul_(2.0 * cov_norm).add_(c2)
        cs_den = m_sq.sub_(q).mul_(cov_norm).add_(c2)
        s_map = p.mul_(2.0).add_(c1).mul_(cs_num).div_(q.add_(c1).mul_(cs_den))
        out.append(s_map.mean(dim=(1, 2, 3)))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def _tiles(n_out: int, tile: int) -> list[tuple[int, int]]:
    """(start, width) of near-equal tiles of at most `tile` outputs covering range(n_out)."""
    count = -(-n_out // tile)
    width = -(-n_out // count)
    return [(s, min(width, n_out - s)) for s in range(0, n_out, width)]


def _banded_rows(tiles: list[tuple[int, int, torch.Tensor]], src: torch.Tensor, k: int, out: torch.Tensor) -> None:
    """out[s : s + wd] = band_t @ src[s : s + wd + k - 1] for every tile (start s, width wd, band_t wd × (wd+k-1)).

    `src` may be a transposed view (the column pass). Tiles of one width share one band, so they run as one
    batched product over overlapping windows of `src` (a strided view, no copy); otherwise one product per tile.
    """
    width = tiles[0][1]
    if all(wd == width for _, wd, _ in tiles):
        count, n = len(tiles), src.shape[1]
        windows = src.as_strided((count, width + k - 1, n), (width * src.stride(0), src.stride(0), src.stride(1)))
        torch.matmul(tiles[0][2], windows, out=out.view(count, width, n))
        return
    for s, wd, band_t in tiles:
        torch.mm(band_t, src[s : s + wd + k - 1], out=out[s : s + wd])


def ssim_kernel() -> str:
    """Which implementation the float32 path uses on CPU tensors here: 'numba' (the `fast` extra's fused kernel,
    `bench.metrics.ssim_numba`) or 'torch' (batched banded products). BENCH_SSIM_KERNEL=torch forces torch; both
    compute the same formulas and differ only in summation order (rounding, ~1e-7)."""
    if os.environ.get("BENCH_SSIM_KERNEL", "").strip().lower() == "torch":
        return "torch"
    return "torch" if _load_compiled() is None else "numba"


@lru_cache(maxsize=1)
def _load_compiled():
    try:
        from bench.metrics.ssim_numba import ssim_sums
    except Exception:  # numba missing or unusable here (e.g. no cache folder): the torch path gives the same values
        return None
    return ssim_sums


def ssim_per_image_fast(
    x: torch.Tensor,
    y: torch.Tensor,
    taps: torch.Tensor,
    data_range: float = 1.0,
    cov_norm: float = 1.0,
    return_guard: bool = False,
):
    """Mean SSIM of each pair of N×C×H×W batches, computed in float32 with a float64 guard; float64 (N,).

    Same value as `ssim_per_image` (within ~3e-5; see the module docstring for the guard's rule). With
    `return_guard`, also returns the guard statistic G (N,) and the boolean mask of images recomputed in float64.
    CPU tensors go through the compiled kernel when `ssim_kernel()` is 'numba' (as many slices of images at once
    as torch has threads), everything else through the torch products.
    """
    k = taps.numel()
    n, c, h, w = x.shape
    if h < k or w < k:
        raise BenchError(f"SSIM needs images of at least {k}×{k} pixels (its window size); got {h}×{w}")
    ho, wo = h - k + 1, w - k + 1
    dev = x.device
    x = x.detach().to(torch.float32).contiguous()
    y = y.detach().to(device=dev, dtype=torch.float32).contiguous()
    c1 = (K1 * data_range) ** 2
    e2 = 2.0 * (K2 * data_range) ** 2 / cov_norm  # 2 C2 / cov_norm, folded into the u^2 map
    if dev.type == "cpu" and n and ssim_kernel() == "numba":
        s_np, g_np = _load_compiled()(x.numpy(), y.numpy(), taps.numpy(), c1, e2, _GUARD_ROW_STEP,
                                      torch.get_num_threads())
        sums, guard = torch.from_numpy(s_np), torch.from_numpy(g_np)
    else:
        sums, guard = _sums_torch(x, y, taps, c1, e2)
    gr = -(-ho // _GUARD_ROW_STEP)  # rows of windows that the guard statistic samples
    values = sums.sum(1) / (c * ho * wo)
    guard = guard.sum(1) / (c * gr * wo)
    redo = guard > _GUARD_G_MAX
    if bool(redo.any()):
        idx = redo.nonzero().flatten()
        values[idx] = ssim_per_image(
            x[idx].double(), y[idx].double(), taps, data_range=data_range, cov_norm=cov_norm
        ).to(dev)
    return (values, guard, redo) if return_guard else values


def _sums_torch(x: torch.Tensor, y: torch.Tensor, taps: torch.Tensor, c1: float, e2: float
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(sums, guard) (N, C) float64 of float32 N×C×H×W x, y: per image channel the sum of the SSIM map over the
    valid windows and of the guard terms over every _GUARD_ROW_STEP-th row of windows (batched banded products)."""
    k = taps.numel()
    n, c, h, w = x.shape
    ho, wo = h - k + 1, w - k + 1
    dev = x.device
    e2_t = torch.tensor(e2, dtype=torch.float32, device=dev)
    c1x2_t = torch.tensor(2.0 * c1, dtype=torch.float32, device=dev)
    rows = [(s, wd, _band(wd + k - 1, taps, x).t()) for s, wd in _tiles(ho, _F32_TILE_ROWS)]
    cols = [(s, wd, _band(wd + k - 1, taps, x).t()) for s, wd in _tiles(wo, _F32_TILE_COLS)]
    step = max(1, min(n, _F32_CHUNK_ELEMENTS // max(1, c * h * w)))
    gr = -(-ho // _GUARD_ROW_STEP)  # rows of windows that the guard statistic samples
    # Buffers allocated once and reused by every chunk (fresh large allocations cost page faults each time).
    sizes = {"maps": h * 4 * c * w, "rowf": ho * 4 * c * w, "filt": wo * ho * 4 * c, "den": wo * ho * c,
             "lum": wo * ho * c, "g": wo * gr * c}
    bufs = {key: torch.empty(step * size, dtype=torch.float32, device=dev) for key, size in sizes.items()}
    sums = torch.zeros(n, c, dtype=torch.float64, device=dev)
    guard = torch.zeros(n, c, dtype=torch.float64, device=dev)

    def views(m: int) -> dict[str, torch.Tensor]:
        """The views of the buffers that a chunk of m images uses (built once for full chunks: a chunk of small
        images spends as much time creating views as computing)."""
        def buf(key: str, *shape: int) -> torch.Tensor:
            return bufs[key][: m * sizes[key]].view(*shape)

        maps = buf("maps", h, 4, m, c, w)
        rowf = buf("rowf", ho, 4 * m * c * w)
        filt = buf("filt", wo, ho, 4, m, c)
        g = buf("g", wo, gr, m, c)
        fq, fp = filt[:, :, 2], filt[:, :, 3]
        den = buf("den", wo, ho, m, c)
        return {"mu": maps[:, 0], "mv": maps[:, 1], "mq": maps[:, 2], "mp": maps[:, 3], "flat": maps.view(h, -1),
                "rowf": rowf, "inner_t": rowf.view(-1, w).t(), "outer": filt.view(wo, -1), "fu": filt[:, :, 0],
                "fv": filt[:, :, 1], "fq": fq, "fp": fp, "fq_g": fq[:, ::_GUARD_ROW_STEP],
                "fp_g": fp[:, ::_GUARD_ROW_STEP], "g": g, "g_rows": g.view(wo * gr, m * c),
                "den": den, "den_g": den[:, ::_GUARD_ROW_STEP], "lum": buf("lum", wo, ho, m, c)}

    full = views(step)
    xp, yp = x.permute(2, 0, 1, 3), y.permute(2, 0, 1, 3)  # H x N x C x W views, sliced per chunk
    for s0 in range(0, n, step):
        ap, bp = xp[:, s0 : s0 + step], yp[:, s0 : s0 + step]
        m = ap.shape[1]
        v = full if m == step else views(m)
        # Maps u' = x + y - c_sum, v = x - y, u'^2 + 2 C2 / cov_norm and v^2, laid out H x map x N x C x W so
        # that the row pass is one tall product per tile (the filtered axis outermost). c_sum is the mean of
        # u = x + y over each image channel: variances and covariance do not depend on it, and centring keeps
        # E[u'^2] - E[u']^2 well conditioned (Var v needs no centre: v is small wherever x and y agree).
        mu, mv = v["mu"], v["mv"]
        torch.add(ap, bp, out=mu)
        c_sum = mu.sum(3, keepdim=True).sum(0, keepdim=True).div_(h * w)  # 1 x m x c x 1
        mu.sub_(c_sum)
        torch.sub(ap, bp, out=mv)
        torch.addcmul(e2_t, mu, mu, out=v["mq"])
        torch.mul(mv, mv, out=v["mp"])
        _banded_rows(rows, v["flat"], k, v["rowf"])
        # Column pass as a tall product too: the rows of the row pass's output (ho x map x m x c, each w wide)
        # enter as a transposed operand, so the output comes out wo x (ho x map x m x c) with no transposing copy,
        # and the band tiles stay small (a product with few output columns runs far below the BLAS's speed).
        _banded_rows(cols, v["inner_t"], k, v["outer"])
        # Window means of u', v, u'^2 + 2C2/cn and v^2, each wo x ho x m x c.
        fu, fv, fq, fp = v["fu"], v["fv"], v["fq"], v["fp"]
        # Guard statistic G_w = (E[u'^2] + E[v^2] + 2C2/cn) / (Var u + Var v + 2C2/cn), i.e.
        # (E[x'^2] + E[y'^2] + C2/cn) / (sigma_x^2 + sigma_y^2 + C2/cn) with x' = x - centre: the condition
        # number of the cancellation, sampled on every _GUARD_ROW_STEP-th row of windows.
        g = torch.add(v["fq_g"], v["fp_g"], out=v["g"])
        var_u = fq.addcmul_(fu, fu, value=-1.0)  # Var u + 2C2/cn
        var_v = fp.addcmul_(fv, fv, value=-1.0)  # Var v
        den = torch.add(var_u, var_v, out=v["den"])  # 2 (sigma_x^2 + sigma_y^2 + C2) / cn
        num = torch.sub(var_u, var_v, out=var_v)  # 2 (2 sigma_xy + C2) / cn
        g.div_(v["den_g"])
        # Luminance with S = mu_x + mu_y, D = mu_x - mu_y: (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1)
        # = (S^2 - D^2 + 2 C1) / (S^2 + D^2 + 2 C1); D = 0 exactly for identical images.
        lum_e = fu.add_(c_sum.view(m, c))  # S = mu_x + mu_y
        lum_e = torch.addcmul(c1x2_t, lum_e, lum_e, out=v["lum"])  # S^2 + 2 C1
        lum_num = torch.addcmul(lum_e, fv, fv, value=-1.0, out=var_u)
        lum_den = lum_e.addcmul_(fv, fv)
        smap = lum_num.mul_(num).div_(lum_den.mul_(den))
        # per image and channel: rows of windows summed in float32 (ho values), then float64
        torch.sum(smap.sum(1), 0, dtype=torch.float64, out=sums[s0 : s0 + m])
        torch.sum(v["g_rows"], 0, dtype=torch.float64, out=guard[s0 : s0 + m].view(-1))
    return sums, guard


# --------------------------------------------------------------------------------------------- MATLAB ssim.m
def rgb_to_y_matlab(img: torch.Tensor) -> torch.Tensor:
    """Y of YCbCr (ITU-R BT.601, MATLAB rgb2ycbcr) of N×3×H×W RGB in [0, 1] -> N×1×H×W float64 on 0..255.

    Y = 16 + 65.481 R + 128.553 G + 24.966 B (values in [16, 235]), rounded half up to an integer as MATLAB's
    rgb2ycbcr returns it for 8-bit images (and as pyiqa rounds it); RGB is clamped to [0, 1] first.
    """
    rgb = img.to(torch.float64).clamp(0.0, 1.0)
    y = 16.0 + 65.481 * rgb[:, 0:1] + 128.553 * rgb[:, 1:2] + 24.966 * rgb[:, 2:3]
    return torch.floor(y + 0.5)


def matlab_downsample_factor(h: int, w: int) -> int:
    """f = max(1, round(min(H, W) / 256)) with MATLAB's round (halves away from zero)."""
    return max(1, int(min(h, w) / 256.0 + 0.5))


def _box_subsample_indices(n: int, f: int, device: torch.device) -> torch.Tensor:
    """Indices (ceil(n/f), f) of the f samples that MATLAB's imfilter(ones(f)/f^2, 'symmetric', 'same') averages
    for the kept outputs 1:f:end, with 'symmetric' padding (mirror including the edge sample)."""
    centre = (f + 1) // 2  # MATLAB's kernel centre floor((f + 1) / 2), 1-based
    starts = torch.arange(0, n, f, device=device)
    idx = starts[:, None] + torch.arange(f, device=device)[None, :] - (centre - 1)
    idx = torch.where(idx < 0, -idx - 1, idx)
    return torch.where(idx >= n, 2 * n - idx - 1, idx)


def matlab_downsample(img: torch.Tensor, f: int) -> torch.Tensor:
    """ssim.m's automatic downsampling of N×C×H×W: f×f mean filter (symmetric borders, 'same'), then img(1:f:end,
    1:f:end); the identity when f == 1."""
    if f <= 1:
        return img
    n, c, h, w = img.shape
    ri = _box_subsample_indices(h, f, img.device)
    ci = _box_subsample_indices(w, f, img.device)
    rows = img.index_select(2, ri.flatten()).view(n, c, ri.shape[0], f, w).mean(3)
    return rows.index_select(3, ci.flatten()).view(n, c, ri.shape[0], ci.shape[0], f).mean(4)


# MATLAB rgb2gray: the first row of inv([1 0.956 0.621; 1 -0.272 -0.647; 1 -1.106 1.703]) (NTSC luminance).
RGB2GRAY = (0.298936021293775, 0.587043074451121, 0.114020904255103)


def rgb2gray_matlab(img: torch.Tensor) -> torch.Tensor:
    """MATLAB rgb2gray of 8-bit images: N×3×H×W RGB in [0, 1] -> N×1×H×W float64 gray levels 0..255 (integers).

    RGB is clamped to [0, 1] and rounded to 8-bit levels (round(x·255), the values of the lossless PNGs the runner
    writes); gray = 0.298936021293775 R + 0.587043074451121 G + 0.114020904255103 B in float64, rounded half up
    to an integer as MATLAB's uint8 conversion does (the sum is never negative).
    """
    rgb8 = torch.round(img.to(torch.float64).clamp(0.0, 1.0) * 255.0)
    r, g, b = RGB2GRAY
    gray = r * rgb8[:, 0:1] + g * rgb8[:, 1:2] + b * rgb8[:, 2:3]
    return torch.floor(gray + 0.5).clamp_(0.0, 255.0)


def _check_rgb(a: torch.Tensor, name: str) -> None:
    if a.shape[1] != 3:
        raise BenchError(f"metric {name!r} needs RGB (N×3×H×W) batches, got {a.shape[1]} channels")


# ------------------------------------------------------------------------------------------- the SSIM family
def _quantise_8bit(img: torch.Tensor) -> torch.Tensor:
    """8-bit levels 0..255 of images in [0, 1] (quantised in float64, exact in float32), as float32."""
    return torch.round(img.clamp(0.0, 1.0) * 255.0).float()


def _y_downsampled(img: torch.Tensor) -> torch.Tensor:
    """BT.601 Y (rgb2ycbcr, rounded) downsampled as ssim.m does it for the image's size."""
    return matlab_downsample(rgb_to_y_matlab(img), matlab_downsample_factor(img.shape[2], img.shape[3]))


# What an SSIM convention is fed (`space` of its table row): (pair dtype that check_pair converts to, None: float
# images as given; whether RGB is required; the transform of each image batch).
_SPACES = {
    "rgb": (None, False, None),  # float32 path with its float64 guard
    "rgb-8bit": (torch.float64, False, _quantise_8bit),
    "gray-matlab": (None, True, rgb2gray_matlab),
    "y-downsampled": (None, True, _y_downsampled),
}


def window_taps(window: tuple) -> torch.Tensor:
    """The 1-D taps of a table row's `window`: ("gaussian", sigma, truncate) or ("uniform", size)."""
    kind, *params = window
    if kind == "gaussian":
        return gaussian_taps(*params)
    if kind == "uniform":
        return uniform_taps(*params)
    raise ValueError(f"unknown SSIM window {window!r}")


class SSIMMetric(Metric):
    """SSIM of each image pair; one registered subclass per row of the convention table (bench/metric_conventions.py):

    `space` (what each image is turned into before SSIM: see _SPACES), `window` (window_taps), `data_range`,
    `sample_covariance` (NP/(NP-1) with NP the window's pixel count) and `float64` (float64 window sums, else the
    float32 path with its float64 guard).
    """

    higher_is_better = True
    value_range = (-1.0, 1.0)
    space: ClassVar[str] = "rgb"
    window: ClassVar[tuple] = ("gaussian", 1.5, 3.5)
    data_range: ClassVar[float] = 1.0
    sample_covariance: ClassVar[bool] = False
    float64: ClassVar[bool] = False

    def per_sample(self, recon: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """SSIM of each image pair, float64 (N,); a BenchError for images smaller than the window (or non-RGB input
        where the convention converts RGB)."""
        dtype, rgb, transform = _SPACES[self.space]
        a, b = check_pair(recon, ref, self.name, dtype=dtype)
        if rgb:
            _check_rgb(a, self.name)
        if transform is not None:
            a, b = transform(a), transform(b)
        taps = window_taps(self.window)
        win = taps.numel()
        cov_norm = win * win / (win * win - 1.0) if self.sample_covariance else 1.0
        ssim = ssim_per_image if self.float64 else ssim_per_image_fast
        return ssim(a, b, taps, data_range=self.data_range, cov_norm=cov_norm).cpu()


_REGISTERED = metric_conventions.register(__name__)  # ssim, ssim-sift-compat, ssim-matlab, ssim-y-downsampled
SSIM = _REGISTERED["ssim"]  # the standard convention (benchmarks time it)
