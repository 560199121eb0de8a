"""`ssim-y-downsampled` (ssim-matlab before version 2): Y channel with ssim.m's automatic downsampling, against a
direct numpy/scipy transcription of its formula."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image
from scipy.ndimage import gaussian_filter
from scipy.signal import correlate2d

from bench import registry
from bench.errors import BenchError
from bench.metrics.ssim import matlab_downsample_factor
from test_ssim_matlab import ref_ssim_m as ssim_m_valid, ref_window  # ssim.m formula, no downsampling


def metric():
    return registry.metrics.get("ssim-y-downsampled").obj()


def to_torch(a: np.ndarray) -> torch.Tensor:
    """N×H×W×3 float array -> N×3×H×W float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).float().contiguous()


# ------------------------------------------------------------------------ independent reference (numpy, 2-D)
def ref_y(rgb: np.ndarray) -> np.ndarray:
    """H×W×3 in [0, 1] -> MATLAB rgb2ycbcr Y on 0..255 (uint8 semantics: rounded half up)."""
    rgb = np.clip(rgb, 0.0, 1.0)
    y = 16.0 + 65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]
    return np.floor(y + 0.5)


def ref_downsample(img: np.ndarray, f: int) -> np.ndarray:
    """imfilter(img, ones(f)/f^2, 'symmetric', 'same') then img(1:f:end, 1:f:end), written out directly."""
    if f == 1:
        return img
    centre = (f + 1) // 2  # MATLAB: floor((size(h) + 1) / 2), 1-based
    before, after = centre - 1, f - centre
    padded = np.pad(img, ((before, after), (before, after)), mode="symmetric")
    same = sliding_window_view(padded, (f, f)).mean(axis=(2, 3))
    assert same.shape == img.shape
    return same[::f, ::f]


def ref_ssim_m(img1: np.ndarray, img2: np.ndarray) -> float:
    """ssim.m on two 2-D images (0..255), with its automatic downsampling and 'valid' filtering."""
    f = max(1, int(np.floor(min(img1.shape) / 256 + 0.5)))
    return ssim_m_valid(ref_downsample(img1, f), ref_downsample(img2, f))


def ref_values(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Reference for (recon=b, ref=a), N×H×W×3 arrays (the float32 values the metric sees)."""
    return np.array([ref_ssim_m(ref_y(b[i]), ref_y(a[i])) for i in range(len(a))])


def as_f32(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float32).astype(np.float64)


def degraded(a: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(gaussian_filter(a, sigma=(0, 1.2, 1.2, 0)) + 0.03 * rng.standard_normal(a.shape), 0, 1)


def smooth_images(n: int, h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = gaussian_filter(rng.random((n, h, w, 3)), sigma=(0, 3, 3, 0))
    return (a - a.min()) / (a.max() - a.min())


def faces_or_smooth(shared: Path | None, n: int, size: int, seed: int) -> np.ndarray:
    files = sorted((shared / "faces" / "celebahq_256").glob("*.png"))[:n] if shared else []
    if len(files) < n:
        return smooth_images(n, size, size, seed)
    out = []
    for f in files:
        with Image.open(f) as im:
            out.append(np.asarray(im.convert("RGB").resize((size, size), Image.BICUBIC), dtype=np.float64) / 255.0)
    return np.stack(out)


# ------------------------------------------------------------------------------------------------- tests
def test_registered_with_pinned_convention() -> None:
    entry = registry.metrics.get("ssim-y-downsampled")
    assert entry.meta["higher_is_better"] is True
    assert entry.meta["range"] == [-1.0, 1.0]
    conv = entry.meta["convention"]
    for part in ("65.481", "128.553", "24.966", "255", "round(min(H, W) / 256)", "symmetric", "valid"):
        assert part in conv, part


def test_downsample_factor_follows_matlab_round() -> None:
    assert matlab_downsample_factor(64, 64) == 1
    assert matlab_downsample_factor(383, 500) == 1  # 1.496 -> 1
    assert matlab_downsample_factor(384, 500) == 2  # 1.5 rounds away from zero (Python's round would give 2 too)
    assert matlab_downsample_factor(512, 512) == 2
    assert matlab_downsample_factor(640, 700) == 3  # 2.5 -> 3 (Python's banker's round would give 2)


def test_identical_images_give_one() -> None:
    rng = np.random.default_rng(1)
    for size in (11, 64, 512):
        a = to_torch(rng.random((2, size, size, 3)))
        assert torch.allclose(metric().per_sample(a, a), torch.ones(2, dtype=torch.float64), rtol=0, atol=1e-12)


def test_f1_path_matches_direct_formula_64() -> None:
    a = as_f32(smooth_images(3, 64, 64, seed=2))
    b = as_f32(degraded(a, seed=3))
    ours = metric().per_sample(to_torch(b), to_torch(a)).numpy()
    np.testing.assert_allclose(ours, ref_values(a, b), rtol=0, atol=1e-5)
    assert np.all(ours < 1) and np.all(ours > 0.3)


def test_uniform_noise_and_anticorrelated_pairs_64() -> None:
    """Negative contrast-structure windows are kept as ssim.m keeps them (no clamp at 0)."""
    rng = np.random.default_rng(4)
    a = as_f32(rng.random((2, 40, 52, 3)))
    b = as_f32(1.0 - a)
    ours = metric().per_sample(to_torch(b), to_torch(a)).numpy()
    np.testing.assert_allclose(ours, ref_values(a, b), rtol=0, atol=1e-5)
    assert np.all(ours < 0)


@pytest.fixture()
def shared_or_none(request: pytest.FixtureRequest) -> Path | None:
    try:
        return request.getfixturevalue("shared_data")
    except pytest.skip.Exception:
        return None


def test_f2_path_matches_direct_formula_512(shared_or_none: Path | None) -> None:
    a = as_f32(faces_or_smooth(shared_or_none, 2, 512, seed=5))
    b = as_f32(degraded(a, seed=6))
    ours = metric().per_sample(to_torch(b), to_torch(a)).numpy()
    np.testing.assert_allclose(ours, ref_values(a, b), rtol=0, atol=1e-5)
    # the downsampling matters: without it (f = 1 on the full image) the value is clearly different
    assert min(abs(ours[i] - _no_downsample(a[i], b[i])) for i in range(2)) > 1e-3


def _no_downsample(a: np.ndarray, b: np.ndarray) -> float:
    win = ref_window()
    y1, y2 = ref_y(b), ref_y(a)
    mu1, mu2 = correlate2d(y1, win, mode="valid"), correlate2d(y2, win, mode="valid")
    s11 = correlate2d(y1 * y1, win, mode="valid") - mu1**2
    s22 = correlate2d(y2 * y2, win, mode="valid") - mu2**2
    s12 = correlate2d(y1 * y2, win, mode="valid") - mu1 * mu2
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    return float((((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1**2 + mu2**2 + c1) * (s11 + s22 + c2))).mean())


def test_f3_path_with_ragged_border_matches_direct_formula() -> None:
    """f = 3 on 770×700: the centred box filter needs 'symmetric' padding at both ends (770 is not a multiple)."""
    a = as_f32(smooth_images(1, 770, 700, seed=7))
    b = as_f32(degraded(a, seed=8))
    assert matlab_downsample_factor(770, 700) == 3
    ours = metric().per_sample(to_torch(b), to_torch(a)).numpy()
    np.testing.assert_allclose(ours, ref_values(a, b), rtol=0, atol=1e-5)


def test_too_small_and_non_rgb_are_refused() -> None:
    with pytest.raises(BenchError, match=r"11×11"):
        metric().per_sample(torch.rand(1, 3, 10, 40), torch.rand(1, 3, 10, 40))
    with pytest.raises(BenchError, match="RGB"):
        metric().per_sample(torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32))


def test_matches_pyiqa_when_installed() -> None:
    """pyiqa's SSIM arch with test_y_channel=True, color_space='ycbcr', downsample=True (f <= 2, cs >= 0)."""
    try:
        from pyiqa.archs.ssim_arch import SSIM as PyiqaSSIM
    except Exception as exc:  # noqa: BLE001  (not installed, or its heavy dependencies do not import)
        pytest.skip(f"pyiqa not importable here ({type(exc).__name__}: {exc}); the convention is checked against "
                    "the direct numpy transcription of ssim.m instead")
    a = smooth_images(2, 64, 64, seed=9)
    b = np.clip(gaussian_filter(a, sigma=(0, 1, 1, 0)), 0, 1)
    a512 = smooth_images(1, 512, 512, seed=10)
    b512 = np.clip(gaussian_filter(a512, sigma=(0, 1, 1, 0)), 0, 1)
    for x, y in ((a, b), (a512, b512)):
        tx, ty = to_torch(x).double(), to_torch(y).double()
        ref = PyiqaSSIM(test_y_channel=True, color_space="ycbcr", downsample=True)(ty, tx).double()
        ours = metric().per_sample(ty.float(), tx.float())
        assert torch.allclose(ours, ref.cpu(), rtol=0, atol=1e-4)
