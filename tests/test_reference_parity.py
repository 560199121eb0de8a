"""Every metric convention named after a reference implementation equals that implementation on images of several
sizes and colour content, colour-only changes (a hue rotation that keeps BT.601 luminance) included.

References: scikit-image (mse, psnr, ssim, ssim-sift-compat, and ssim-matlab on rgb2gray images), the `lpips`
package (lpips, lpips-vgg, lpips-squeeze, on identical random backbones: the pretrained files cannot be downloaded
here) and torch-fidelity (the Inception features that fid and kid are computed from; their formulas on features
are compared with torch-fidelity in test_distribution_metrics.py). Each tolerance is stated where it is defined.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from bench import registry, weights

SIZES = [(32, 32), (64, 64), (97, 61)]
CONTENTS = ["colour", "grey", "saturated", "hue-shift"]
U64, U32 = 2.0**-53, 2.0**-24

# NTSC YIQ (Y is BT.601 luminance 0.299 R + 0.587 G + 0.114 B).
YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def hue_rotated(a: np.ndarray, degrees: float = 90.0) -> np.ndarray:
    """Rotate the chroma plane (I, Q) of N×H×W×3 RGB, keeping Y: a colour-only change of equal luminance."""
    yiq = a @ YIQ.T
    t = math.radians(degrees)
    i, q = yiq[..., 1].copy(), yiq[..., 2].copy()
    yiq[..., 1], yiq[..., 2] = i * math.cos(t) - q * math.sin(t), i * math.sin(t) + q * math.cos(t)
    return yiq @ np.linalg.inv(YIQ).T


def pair(content: str, n: int, h: int, w: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(original, reconstruction) N×H×W×3 in [0, 1], holding exactly float32 values."""
    rng = np.random.default_rng(seed)
    smooth = gaussian_filter(rng.random((n, h, w, 3)), sigma=(0, 2, 2, 0))
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    if content == "colour":
        a = smooth
        b = np.clip(gaussian_filter(a, sigma=(0, 1, 1, 0)) + 0.05 * rng.standard_normal(a.shape), 0, 1)
    elif content == "grey":  # R = G = B
        a = np.repeat(smooth[..., :1], 3, axis=3)
        b = np.repeat(np.clip(gaussian_filter(a[..., :1], sigma=(0, 1, 1, 0))
                              + 0.05 * rng.standard_normal(a[..., :1].shape), 0, 1), 3, axis=3)
    elif content == "saturated":  # primaries and their mixes near 0 and 1, shifted by a pixel
        a = np.clip((smooth - 0.5) * 6 + 0.5, 0, 1)
        b = np.roll(a, 1, axis=2)
    elif content == "hue-shift":  # mid-tones with moderate chroma, so the rotation never leaves [0, 1]
        a = 0.5 + 0.25 * (smooth - 0.5)
        b = hue_rotated(a)
        assert b.min() > 0 and b.max() < 1
        lum = np.array([0.299, 0.587, 0.114])
        np.testing.assert_allclose(b @ lum, a @ lum, rtol=0, atol=1e-12)  # equal luminance
        assert np.abs(b - a).max() > 0.02  # ... but another colour
    else:  # pragma: no cover
        raise ValueError(content)
    f32 = np.float32
    return a.astype(f32).astype(np.float64), b.astype(f32).astype(np.float64)


def to_torch(a: np.ndarray) -> torch.Tensor:
    """N×H×W×3 float array -> N×3×H×W float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).float().contiguous()


# ------------------------------------------------------------------------------------- scikit-image family
def _sk():
    return pytest.importorskip("skimage.metrics", reason="scikit-image is not installed (a dependency of leakbench)")


def _rgb2gray_u8(a: np.ndarray) -> np.ndarray:
    """MATLAB rgb2gray on 8-bit levels, written from its documented coefficients (inverse NTSC matrix, first row)."""
    coef = np.linalg.inv(np.array([[1.0, 0.956, 0.621], [1.0, -0.272, -0.647], [1.0, -1.106, 1.703]]))[0]
    return np.floor(np.round(np.clip(a, 0, 1) * 255) @ coef + 0.5)


def skimage_reference(name: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    sk = _sk()
    out = []
    for x, y in zip(a, b):
        if name == "mse":
            out.append(sk.mean_squared_error(x, y))
        elif name == "psnr":
            out.append(sk.peak_signal_noise_ratio(x, y, data_range=1.0))
        elif name == "ssim":
            out.append(sk.structural_similarity(x, y, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                                data_range=1.0, channel_axis=-1))
        elif name == "ssim-sift-compat":
            x8, y8 = np.round(x * 255), np.round(y * 255)
            out.append(sk.structural_similarity(x8, y8, win_size=11, data_range=255, channel_axis=-1))
        elif name == "ssim-matlab":
            out.append(sk.structural_similarity(_rgb2gray_u8(x), _rgb2gray_u8(y), gaussian_weights=True, sigma=1.5,
                                                use_sample_covariance=False, data_range=255))
    return np.array(out, dtype=np.float64)


def tolerance(name: str, h: int, w: int) -> float:
    """|ours - scikit-image|, from the arithmetic. n = 3·H·W terms; u64 = 2^-53, u32 = 2^-24.

    mse: two float64 means of n squares in [0, 1], each within n·u64: 2·n·u64. psnr = -10·log10(mse): that
    relative error times 10/ln(10) dB, plus 1e-13 for the two log10 evaluations. ssim, ssim-sift-compat: our
    float32 path is within 2.3·u32·G of float64 with G <= 200 (larger G is recomputed in float64;
    metrics/ssim.py), scikit-image's float64 within 1e-9.
    ssim-matlab: float64 on both sides (window sums of 121 terms <= 255^2: <= 1e-9 between the two).
    """
    n = 3 * h * w
    return {"mse": 2 * n * U64, "psnr": 10 / math.log(10) * 2 * n * U64 + 1e-13,
            "ssim": 2.3 * U32 * 200 + 1e-9, "ssim-sift-compat": 2.3 * U32 * 200 + 1e-9, "ssim-matlab": 1e-9}[name]


@pytest.mark.parametrize("content", CONTENTS)
@pytest.mark.parametrize("h, w", SIZES, ids=[f"{h}x{w}" for h, w in SIZES])
@pytest.mark.parametrize("name", ["mse", "psnr", "ssim", "ssim-sift-compat", "ssim-matlab"])
def test_pixel_metrics_equal_scikit_image(name: str, h: int, w: int, content: str) -> None:
    a, b = pair(content, 2, h, w, seed=h * 7 + w + len(content))
    ours = registry.metrics.get(name).obj().per_sample(to_torch(b), to_torch(a)).double().numpy()
    ref = skimage_reference(name, a, b)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=tolerance(name, h, w), err_msg=f"{name} {content}")


def test_colour_only_change_is_seen_by_rgb_metrics() -> None:
    """The equal-luminance hue rotation changes every RGB metric clearly (it is not a no-op in the fixtures)."""
    a, b = pair("hue-shift", 2, 64, 64, seed=1)
    ta, tb = to_torch(a), to_torch(b)
    assert (registry.metrics.get("mse").obj().per_sample(tb, ta) > 1e-3).all()
    assert (registry.metrics.get("ssim").obj().per_sample(tb, ta) < 0.99).all()


# ----------------------------------------------------------------------------------------------- lpips package
LPIPS_NAMES = {"alex": "lpips", "vgg": "lpips-vgg", "squeeze": "lpips-squeeze"}


@pytest.mark.parametrize("net", ["alex", "vgg", "squeeze"])
def test_lpips_equals_the_lpips_package(net: str, bench_home: Path, tmp_path: Path) -> None:
    """Same random backbone and the package's own v0.1 linear layers; inputs in [0, 1] scaled to [-1, 1] by both.
    Tolerance 1e-5: the same float32 network on the same input, differing only in where the [-1, 1] scaling and
    the normalisation run; LPIPS values here are 0.01-1 and float32 keeps ~6e-8 relative per operation."""
    pytest.importorskip("lpips", reason="the lpips package is not installed (a dependency of leakbench)")
    from test_lpips import NETS, pinned_to, reference_model, standin_files

    ref_model = reference_model(net)
    backbone_file, lin_file = standin_files(ref_model, tmp_path / "standins", net)
    backbone_name, lin_name = NETS[net]
    with pinned_to({backbone_name: backbone_file, lin_name: lin_file}):
        metric = registry.metrics.get(LPIPS_NAMES[net]).obj().load("cpu")
        for h, w in SIZES:
            for content in CONTENTS:
                a, b = pair(content, 2, h, w, seed=h + w)
                ta, tb = to_torch(a), to_torch(b)
                mine = metric.per_sample(tb, ta)
                with torch.no_grad():
                    theirs = ref_model(tb, ta, normalize=True).flatten().double()
                assert torch.allclose(mine, theirs, atol=1e-5, rtol=0), (net, h, w, content, mine, theirs)
                assert (mine > 0).all(), (net, h, w, content)  # colour-only changes included


# ----------------------------------------------------------------------------------------------- torch-fidelity
def test_inception_features_equal_torch_fidelity(bench_home: Path) -> None:
    """fid and kid are computed from these features (their formulas are checked against torch-fidelity on
    features in test_distribution_metrics.py). Random weights of the real architecture, made here; both sides see
    the same uint8 images. Tolerance rtol 1e-5, atol 1e-6: one float32 network, the same arithmetic up to order."""
    pytest.importorskip("torch_fidelity", reason="torch-fidelity is not installed (a dependency of leakbench)")
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    from bench.embedders import inception

    path = weights.path_of("pt-inception")
    path.parent.mkdir(parents=True)
    torch.save(inception.random_state_dict(seed=5), path)
    digest = weights.sha256_of(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        reference = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                                feature_extractor_weights_path=str(path))
    with weights.override("pt-inception", sha256=digest, sha256_prefix=digest[:8], size=path.stat().st_size):
        emb = inception.load()
        for h, w in SIZES:
            a, b = pair("colour", 1, h, w, seed=3)
            g, _ = pair("grey", 1, h, w, seed=4)
            s, _ = pair("saturated", 1, h, w, seed=5)
            m, hue = pair("hue-shift", 1, h, w, seed=6)
            images = to_torch(np.concatenate([a, b, g, s, m, hue]))
            ours = emb.embed(images)["features"]
            with torch.no_grad():
                (theirs,) = reference((images * 255).round().to(torch.uint8))
            np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-5, atol=1e-6, err_msg=f"{h}x{w}")
            assert np.abs(ours[4] - ours[5]).max() > 1e-4  # the colour-only change reaches the features
