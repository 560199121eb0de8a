"""Structural similarity (SSIM): the Wang et al. 2004 convention and the SIFT-inversion papers' 8-bit convention.

Both are computed for a whole batch at once with separable 'valid' window filters (banded matrix products).
That reproduces scikit-image's `structural_similarity`, which filters with reflect padding and then crops
(win_size - 1) // 2 pixels at every border before averaging, so only windows fully inside the image count.

Numerics: each image channel is centred on the mean of the pair before the window sums, the sums run in
float32 (twice as fast as float64) and everything after them in float64. Centring removes the cancellation
in E[x^2] - E[x]^2, so the result stays within about 1e-6 of scikit-image in float64 (the tests check 1e-4).
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
_SUM_DTYPE = torch.float32


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
def _band_cached(n_in: int, taps: tuple[float, ...], dtype: torch.dtype) -> torch.Tensor:
    k = len(taps)
    n_out = n_in - k + 1
    m = torch.zeros(n_in, n_out, dtype=torch.float64)
    t = torch.tensor(taps, dtype=torch.float64)
    for j in range(n_out):
        m[j : j + k, j] = t
    return m.to(dtype)


def _band(n_in: int, taps: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(n_in, n_in - k + 1) matrix M with z @ M = valid correlation of the rows of z with `taps`."""
    return _band_cached(n_in, tuple(taps.tolist()), dtype)


def _filter_last(z: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Valid correlation of `z` with `taps` along its last dimension, in tiles of at most _TILE outputs."""
    k = taps.numel()
    n_out = z.shape[-1] - k + 1
    parts = []
    for start in range(0, n_out, _TILE):
        width = min(_TILE, n_out - start)
        parts.append(torch.matmul(z[..., start : start + width + k - 1], _band(width + k - 1, taps, z.dtype)))
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)


def filter_valid_2d(z: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Separable valid filtering of the last two dims; the result is TRANSPOSED (…×W'×H'), fine for means."""
    rows = _filter_last(z, taps)
    return _filter_last(rows.transpose(-1, -2).contiguous(), taps)


def ssim_per_image(
    x: torch.Tensor,
    y: torch.Tensor,
    taps: torch.Tensor,
    data_range: float = 1.0,
    cov_norm: float = 1.0,
) -> torch.Tensor:
    """Mean SSIM of each pair of N×C×H×W float64 batches over channels and fully-inside windows, float64 (N,)."""
    k = taps.numel()
    n, _, h, w = x.shape
    if h < k or w < k:
        raise BenchError(f"SSIM needs images of at least {k}×{k} pixels (its window size); got {h}×{w}")
    c1 = (K1 * data_range) ** 2
    c2 = (K2 * data_range) ** 2
    per_image = max(1, x[0].numel())
    step = max(1, _CHUNK_ELEMENTS // per_image)
    out = []
    for s in range(0, n, step):
        a, b = x[s : s + step], y[s : s + step]
        centre = 0.5 * (a.mean(dim=(2, 3), keepdim=True) + b.mean(dim=(2, 3), keepdim=True))
        ac = (a - centre).to(_SUM_DTYPE)
        bc = (b - centre).to(_SUM_DTYPE)
        # Four window sums suffice: the variances only ever appear as the sum var(x) + var(y).
        stacked = torch.stack([ac, bc, ac * ac + bc * bc, ac * bc])
        mu_a, mu_b, m_sq, m_ab = filter_valid_2d(stacked, taps).double().unbind(0)
        var_sum = cov_norm * (m_sq - mu_a * mu_a - mu_b * mu_b)
        cov = cov_norm * (m_ab - mu_a * mu_b)
        mu_a = mu_a + centre
        mu_b = mu_b + centre
        s_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a * mu_a + mu_b * mu_b + c1) * (var_sum + c2))
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
        a, b = check_pair(recon, ref, self.name)
        return ssim_per_image(a, b, gaussian_taps(1.5, 3.5), data_range=1.0, cov_norm=1.0)


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
        return ssim_per_image(a8, b8, uniform_taps(win), data_range=1.0, cov_norm=win * win / (win * win - 1.0))
