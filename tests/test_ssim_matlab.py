"""`ssim-matlab`: Wang et al.'s ssim.m on MATLAB rgb2gray input, without automatic downsampling.

Checked against facts that do not come from this project: rgb2gray's coefficients (the inverse of the NTSC
YIQ matrix) and hand-computed gray levels, scikit-image's SSIM on the same gray images, a direct numpy
transcription of ssim.m, and, when the images are available, the SSIM values published with TID2013.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter
from scipy.signal import correlate2d
from skimage.metrics import structural_similarity

from bench import registry
from bench.errors import BenchError
from bench.metrics.ssim import RGB2GRAY, rgb2gray_matlab

CALIBRATION_ENV = "BENCH_TID2013_CALIBRATION"
# float64 window sums of 121 terms of at most 255^2 are off by <= 121·2^-53·255^2 ≈ 1e-9 (absolute); with the
# C2 = 58.5 floor in every denominator that moves an SSIM by well under 1e-10. Two float64 implementations
# (ours: separable banded products; scikit-image: scipy filters) may differ by twice that: 1e-9 is generous.
F64_TOL = 1e-9


def metric():
    return registry.metrics.get("ssim-matlab").obj()


def to_torch(a: np.ndarray) -> torch.Tensor:
    """N×H×W×3 float array -> N×3×H×W float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).float().contiguous()


def u8_images(n: int, h: int, w: int, seed: int) -> np.ndarray:
    """Smooth random 8-bit RGB images, N×H×W×3 uint8 (what a lossless PNG holds)."""
    rng = np.random.default_rng(seed)
    a = gaussian_filter(rng.random((n, h, w, 3)), sigma=(0, 2, 2, 0))
    a = (a - a.min()) / (a.max() - a.min())
    return np.round(a * 255).astype(np.uint8)


def degrade_u8(a: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    b = gaussian_filter(a.astype(np.float64), sigma=(0, 1.0, 1.0, 0)) + 6 * rng.standard_normal(a.shape)
    return np.clip(np.round(b), 0, 255).astype(np.uint8)


def as_unit(a: np.ndarray) -> torch.Tensor:
    return to_torch(a.astype(np.float64) / 255.0)


# ------------------------------------------------------------------- independent references (numpy, 2-D)
def ref_rgb2gray(rgb8: np.ndarray) -> np.ndarray:
    """H×W×3 uint8 -> MATLAB rgb2gray uint8 levels as float64 (coefficients from the NTSC matrix, round half up)."""
    coef = np.linalg.inv(np.array([[1.0, 0.956, 0.621], [1.0, -0.272, -0.647], [1.0, -1.106, 1.703]]))[0]
    return np.floor(rgb8.astype(np.float64) @ coef + 0.5)


def ref_window() -> np.ndarray:
    """fspecial('gaussian', 11, 1.5): the 2-D Gaussian built directly (not as a product of 1-D taps)."""
    r = np.arange(-5, 6, dtype=np.float64)
    h = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * 1.5**2))
    return h / h.sum()


def ref_ssim_m(img1: np.ndarray, img2: np.ndarray) -> float:
    """ssim.m's formula on two 2-D images (0..255), 'valid' filter2, no downsampling."""
    win = ref_window()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def filt(z: np.ndarray) -> np.ndarray:
        return correlate2d(z, win, mode="valid")

    mu1, mu2 = filt(img1), filt(img2)
    s11 = filt(img1 * img1) - mu1 * mu1
    s22 = filt(img2 * img2) - mu2 * mu2
    s12 = filt(img1 * img2) - mu1 * mu2
    ssim_map = ((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1**2 + mu2**2 + c1) * (s11 + s22 + c2))
    return float(ssim_map.mean())


def skimage_gray_ssim(g1: np.ndarray, g2: np.ndarray) -> float:
    """scikit-image on gray images: it filters with reflect padding, then averages after cropping (11 - 1) // 2
    pixels at every border, i.e. over exactly the windows that lie fully inside ('valid')."""
    return float(structural_similarity(g1, g2, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                       data_range=255))


# ------------------------------------------------------------------------------------------------- tests
def test_registered_with_pinned_convention_and_new_version() -> None:
    entry = registry.metrics.get("ssim-matlab")
    assert entry.meta["higher_is_better"] is True and entry.meta["range"] == [-1.0, 1.0]
    assert entry.obj.version == "2"  # version 1 was the Y-channel, downsampled convention
    conv = entry.meta["convention"]
    for part in ("ssim.m", "rgb2gray", "0.298936021293775", "0.587043074451121", "0.114020904255103",
                 "no automatic downsampling", "L=255", "'valid'", "TID2013"):
        assert part in conv, part
    old = registry.metrics.get("ssim-y-downsampled")  # the previous behaviour keeps an honest name of its own
    assert "downsampling" in old.meta["convention"] and "65.481" in old.meta["convention"]


def test_rgb2gray_coefficients_are_the_inverse_ntsc_row() -> None:
    """rgb2gray's documented coefficients: the first row of inv([1 0.956 0.621; 1 -0.272 -0.647; 1 -1.106 1.703])."""
    ntsc = np.array([[1.0, 0.956, 0.621], [1.0, -0.272, -0.647], [1.0, -1.106, 1.703]])
    np.testing.assert_allclose(RGB2GRAY, np.linalg.inv(ntsc)[0], rtol=0, atol=1e-14)


def test_rgb2gray_on_known_pixels() -> None:
    """Hand computation: 0.298936021293775 R + 0.587043074451121 G + 0.114020904255103 B, rounded half up."""
    pixels = {  # (R, G, B): gray
        (255, 0, 0): 76,  # 76.2287
        (0, 255, 0): 150,  # 149.6960
        (0, 0, 255): 29,  # 29.0753
        (255, 255, 255): 255,  # the coefficients sum to 1
        (0, 0, 0): 0,
        (10, 20, 30): 18,  # 2.9894 + 11.7409 + 3.4206 = 18.1509
        (200, 100, 50): 124,  # 59.7872 + 58.7043 + 5.7010 = 124.1925
        (1, 1, 0): 1,  # 0.8860 (rgb2gray rounds; a truncating conversion would give 0)
    }
    rgb = torch.tensor(list(pixels), dtype=torch.float64).t().reshape(1, 3, 1, len(pixels)) / 255.0
    gray = rgb2gray_matlab(rgb.float())
    assert gray.shape == (1, 1, 1, len(pixels)) and gray.dtype == torch.float64
    assert gray.flatten().tolist() == [float(v) for v in pixels.values()]


@pytest.mark.parametrize("h, w", [(32, 32), (64, 64), (97, 61), (384, 512)])
def test_equals_skimage_on_the_rgb2gray_images(h: int, w: int) -> None:
    a = u8_images(2, h, w, seed=h + w)
    b = degrade_u8(a, seed=h * w)
    ours = metric().per_sample(as_unit(b), as_unit(a)).numpy()
    ref = [skimage_gray_ssim(ref_rgb2gray(b[i]), ref_rgb2gray(a[i])) for i in range(2)]
    np.testing.assert_allclose(ours, ref, rtol=0, atol=F64_TOL)
    direct = [ref_ssim_m(ref_rgb2gray(b[i]), ref_rgb2gray(a[i])) for i in range(2)]
    np.testing.assert_allclose(ours, direct, rtol=0, atol=F64_TOL)
    assert np.all(ours < 0.999) and np.all(ours > 0.2)


def test_no_automatic_downsampling_at_512() -> None:
    """384×512 is TID2013's size: ssim.m's automatic downsampling would use f = round(384/256) = 2."""
    a = u8_images(1, 384, 512, seed=3)
    b = degrade_u8(a, seed=4)
    ours = float(metric().per_sample(as_unit(b), as_unit(a))[0])
    g1, g2 = ref_rgb2gray(b[0]), ref_rgb2gray(a[0])
    assert ours == pytest.approx(ref_ssim_m(g1, g2), abs=F64_TOL)
    half = ref_ssim_m(g1[::2, ::2], g2[::2, ::2])  # a downsampled convention gives a clearly different value
    assert abs(ours - half) > 1e-3


def test_colour_only_change_is_seen_through_rgb2gray() -> None:
    """Swapping R and B (a colour change) moves rgb2gray's gray levels by 0.185·(B - R): the metric sees it, as
    ssim.m on rgb2gray input does (the Y-rounded variant scored TID2013's colour-only pairs exactly 1)."""
    a = u8_images(1, 48, 48, seed=5)[0].astype(np.int64)
    swapped = a.copy()
    swapped[..., [0, 2]] = a[..., [2, 0]]  # R <-> B: gray changes by 0.185·(B - R)
    same_gray = (ref_rgb2gray(a.astype(np.uint8)) == ref_rgb2gray(swapped.astype(np.uint8))).all()
    value = float(metric().per_sample(as_unit(swapped[None].astype(np.uint8)), as_unit(a[None].astype(np.uint8)))[0])
    assert not same_gray and value < 1.0
    assert value == pytest.approx(skimage_gray_ssim(ref_rgb2gray(swapped.astype(np.uint8)),
                                                    ref_rgb2gray(a.astype(np.uint8))), abs=F64_TOL)


def test_identical_images_give_one() -> None:
    a = as_unit(u8_images(2, 40, 52, seed=6))
    assert torch.allclose(metric().per_sample(a, a), torch.ones(2, dtype=torch.float64), rtol=0, atol=1e-12)


def test_too_small_and_non_rgb_are_refused() -> None:
    with pytest.raises(BenchError, match=r"11×11"):
        metric().per_sample(torch.rand(1, 3, 10, 40), torch.rand(1, 3, 10, 40))
    with pytest.raises(BenchError, match="RGB"):
        metric().per_sample(torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32))


def _read_rgb(path: Path) -> torch.Tensor:
    with Image.open(path) as im:
        arr = np.asarray(im.convert("RGB"), dtype=np.float64) / 255.0
    return to_torch(arr[None])


def test_published_tid2013_values() -> None:
    """The SSIM values published with TID2013 (e.g. 0.6993 0.9978 0.9989 0.9669 0.6519 for five calibration pairs),
    to 4 decimals. The images are not shipped: BENCH_TID2013_CALIBRATION names a CSV with the header
    `reference,distorted,published` (paths relative to the CSV's folder; docs/metrics.md)."""
    path = os.environ.get(CALIBRATION_ENV)
    if not path:
        pytest.skip(f"{CALIBRATION_ENV} is not set: the TID2013 images are not shipped (see docs/metrics.md for "
                    "the calibration CSV format)")
    csv_path = Path(path)
    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows, f"{csv_path}: no calibration rows"
    m = metric()
    wrong = []
    for row in rows:
        ref = _read_rgb(csv_path.parent / row["reference"])
        dist = _read_rgb(csv_path.parent / row["distorted"])
        value = float(m.per_sample(dist, ref)[0])
        if f"{value:.4f}" != f"{float(row['published']):.4f}":
            wrong.append(f"{row['distorted']}: {value:.6f} vs published {row['published']}")
    assert not wrong, wrong


def test_calibration_csv_is_read_relative_to_its_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The calibration test itself works: a CSV of two made-up pairs whose 'published' values come from the
    direct numpy transcription of ssim.m (not from the metric) passes, and a wrong value fails."""
    a = u8_images(2, 40, 44, seed=8)
    b = degrade_u8(a, seed=9)
    (tmp_path / "img").mkdir()
    lines = ["reference,distorted,published"]
    for i in range(2):
        Image.fromarray(a[i]).save(tmp_path / "img" / f"r{i}.bmp")
        Image.fromarray(b[i]).save(tmp_path / "img" / f"d{i}.bmp")
        lines.append(f"img/r{i}.bmp,img/d{i}.bmp,{ref_ssim_m(ref_rgb2gray(b[i]), ref_rgb2gray(a[i])):.4f}")
    good = tmp_path / "good.csv"
    good.write_text("\n".join(lines) + "\n")
    monkeypatch.setenv(CALIBRATION_ENV, str(good))
    test_published_tid2013_values()
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines[:-1] + [lines[-1].rsplit(",", 1)[0] + ",0.1234"]) + "\n")
    monkeypatch.setenv(CALIBRATION_ENV, str(bad))
    with pytest.raises(AssertionError, match="published 0.1234"):
        test_published_tid2013_values()
