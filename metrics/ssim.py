"""Structural similarity (SSIM): the Wang et al. 2004 convention and the SIFT-inversion papers' 8-bit convention.

Both are computed for a whole batch at once with separable 'valid' window filters (banded matrix products).
That reproduces scikit-image's `structural_similarity`, which filters with reflect padding and then crops
(win_size - 1) // 2 pixels at every border before averaging, so only windows fully inside the image count.

Numerics: everything runs in float64, as skimage does for float64 input. float32 window sums were tried and
rejected: over flat regions far from mid-grey the cancellation in E[x^2] - E[x]^2 left errors of ~4e-5 (the
whole window repeats the same rounding error), too close to the 1e-4 agreement that the convention promises.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from bench.errors import BenchError
from bench.metrics.pixel import check_pair
from bench.plugins import Metric, register_metric

K1 = 0.01
K2 = 0.03
_TILE = 64  # output columns per banded product: bounds the wasted multiplications for wide images
_CHUNK_ELEMENTS = 1 << 20  # pixels (N*C*H*W) per chunk of images: keeps the working set in cache
_SUM_DTYPE = torch.float64


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


@register_metric
class SSIM(Metric):
    """SSIM of Wang et al. 2004 (Gaussian σ=1.5 window, data range 1), per image, averaged over RGB channels."""

    name = "ssim"
    higher_is_better = True
    value_range = (-1.0, 1.0)
    convention = (
        "Wang et al. 2004: Gaussian window sigma=1.5 truncated at 3.5 sigma (11 taps), population covariance, "
        "K1=0.01, K2=0.03, data range 1 on RGB in [0, 1], per channel then mean over channels, mean over the "
        "fully-inside windows; equals skimage structural_similarity(gaussian_weights=True, sigma=1.5, "
        "use_sample_covariance=False, data_range=1, channel_axis=-1)"
    )

    def per_sample(self, recon: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """SSIM of each image pair, float64 (N,); a BenchError for images smaller than 11×11."""
        a, b = check_pair(recon, ref, self.name, dtype=None)  # converted to float64 chunk by chunk
        return ssim_per_image(a, b, gaussian_taps(1.5, 3.5), data_range=1.0, cov_norm=1.0).cpu()


@register_metric
class SSIMSiftCompat(Metric):
    """SSIM as the SIFT-inversion papers report it: 8-bit images, 11×11 box window, sample covariance."""

    name = "ssim-sift-compat"
    higher_is_better = True
    value_range = (-1.0, 1.0)
    convention = (
        "SIFT-papers SSIM (not Wang et al. 2004): images quantised to 8 bit (round(clamp(x,0,1)*255)), uniform "
        "11x11 window, sample covariance (NP/(NP-1)), K1=0.01, K2=0.03, data range 255, per channel then mean "
        "over channels; equals skimage structural_similarity(a8, b8, win_size=11, data_range=255, channel_axis=-1)"
    )

    def per_sample(self, recon: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """SSIM of each 8-bit-quantised image pair, float64 (N,); a BenchError for images smaller than 11×11."""
        a, b = check_pair(recon, ref, self.name)
        # SSIM is unchanged when data, data range and constants scale together, so stay on the [0, 1] scale.
        a8 = torch.round(a.clamp(0.0, 1.0) * 255.0) / 255.0
        b8 = torch.round(b.clamp(0.0, 1.0) * 255.0) / 255.0
        win = 11
        cov_norm = win * win / (win * win - 1.0)
        return ssim_per_image(a8, b8, uniform_taps(win), data_range=1.0, cov_norm=cov_norm).cpu()
