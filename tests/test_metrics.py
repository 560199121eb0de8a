"""Pixel metrics (mse, psnr, ssim, ssim-sift-compat) against scikit-image, on random, flat and real images.

ssim and ssim-sift-compat run in float32 with a float64 guard (metrics/ssim.py); these tests pin both paths. The
float32 path has two implementations on CPU (torch products; the numba kernel of the `fast` extra): the tests that
take the `kernel` fixture run once with each (numba skipped when it is not installed)."""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

import bench.metrics.ssim as ssim_mod
from bench import registry
from bench.errors import BenchError
from bench.plugins import EvalBatch

REPO = Path(__file__).resolve().parents[1]
NAMES = ("mse", "psnr", "ssim", "ssim-sift-compat")


def metric(name: str):
    return registry.metrics.get(name).obj()


def to_torch(a: np.ndarray) -> torch.Tensor:
    """N×H×W×3 float array -> N×3×H×W float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).float().contiguous()


def as_f32(a: np.ndarray) -> np.ndarray:
    """The exact values a float32 tensor holds, as float64 (what the reference must see)."""
    return a.astype(np.float32).astype(np.float64)


def ref_ssim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.array(
        [
            structural_similarity(
                a[i], b[i], gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                data_range=1.0, channel_axis=-1,
            )
            for i in range(len(a))
        ]
    )


def ref_ssim_sift(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a8 = np.round(a * 255).astype(np.uint8)
    b8 = np.round(b * 255).astype(np.uint8)
    return np.array(
        [
            structural_similarity(
                a8[i].astype(np.float64), b8[i].astype(np.float64), win_size=11, data_range=255, channel_axis=-1
            )
            for i in range(len(a))
        ]
    )


def ref_mse(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.array([mean_squared_error(a[i], b[i]) for i in range(len(a))])


def ref_psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.array([peak_signal_noise_ratio(a[i], b[i], data_range=1.0) for i in range(len(a))])


REFERENCES = {"mse": ref_mse, "psnr": ref_psnr, "ssim": ref_ssim, "ssim-sift-compat": ref_ssim_sift}
TOL = {"mse": 1e-10, "psnr": 1e-8, "ssim": 1e-4, "ssim-sift-compat": 1e-4}


def check_all(a: np.ndarray, b: np.ndarray) -> None:
    """Every metric on (recon=b, ref=a) equals its scikit-image reference, image by image."""
    a, b = as_f32(a), as_f32(b)
    ta, tb = to_torch(a), to_torch(b)
    for name in NAMES:
        ours = metric(name).per_sample(tb, ta)
        assert ours.shape == (len(a),), name
        assert ours.dtype in (torch.float32, torch.float64), name
        ref = REFERENCES[name](a, b)
        np.testing.assert_allclose(ours.numpy(), ref, rtol=0, atol=TOL[name], err_msg=name)


def random_pair(rng: np.random.Generator, n: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Smooth random images and a blurred, noisy copy (values in [0, 1])."""
    a = gaussian_filter(rng.random((n, h, w, 3)), sigma=(0, 1.5, 1.5, 0))
    a = (a - a.min()) / (a.max() - a.min())
    b = np.clip(gaussian_filter(a, sigma=(0, 1, 1, 0)) + 0.05 * rng.standard_normal(a.shape), 0, 1)
    return a, b


@pytest.fixture(params=["torch", "numba"])
def kernel(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The float32 SSIM implementation for one test: 'torch' (forced by BENCH_SSIM_KERNEL) or 'numba'."""
    if request.param == "numba":
        pytest.importorskip("numba")
    monkeypatch.setenv("BENCH_SSIM_KERNEL", request.param)
    assert ssim_mod.ssim_kernel() == request.param
    return request.param


# ------------------------------------------------------------------------------------------- registry & meta
def test_registry_lists_metrics_with_metadata() -> None:
    names = registry.metrics.names()
    for name in NAMES:
        assert name in names
        entry = registry.metrics.get(name)
        assert isinstance(entry.meta["higher_is_better"], bool)
        lo, hi = entry.meta["range"]
        assert lo < hi
        assert entry.meta["convention"].strip()
        assert entry.summary.strip()
    assert registry.metrics.get("mse").meta["higher_is_better"] is False
    assert registry.metrics.get("psnr").meta["higher_is_better"] is True
    assert registry.metrics.get("ssim").meta["range"] == [-1.0, 1.0]
    assert "255" in registry.metrics.get("ssim-sift-compat").meta["convention"]


# ---------------------------------------------------------------------------------------- scikit-image parity
@pytest.mark.parametrize("shape", [(4, 64, 64), (3, 11, 11), (2, 23, 40), (2, 97, 31)])
def test_random_pairs_match_skimage(shape: tuple[int, int, int], kernel: str) -> None:
    rng = np.random.default_rng(sum(shape))
    check_all(*random_pair(rng, *shape))


def test_uniform_noise_pairs_match_skimage() -> None:
    rng = np.random.default_rng(7)
    check_all(rng.random((3, 32, 45, 3)), rng.random((3, 32, 45, 3)))


def test_flat_regions_far_from_grey_match_skimage(kernel: str) -> None:
    """Constant and two-level images: the case where E[x^2] - E[x]^2 cancels badly in low precision."""
    rng = np.random.default_rng(3)
    const_a = np.full((2, 20, 30, 3), 0.3)
    const_b = np.full((2, 20, 30, 3), 0.7)
    check_all(const_a, const_b)
    two = np.zeros((2, 48, 48, 3))
    two[:, :24] = 0.999
    two[:, 24:, :24] = 0.001
    two += 1e-3 * rng.random(two.shape)
    check_all(two, np.clip(two + 2e-3 * rng.standard_normal(two.shape), 0, 1))


def test_tiled_and_chunked_paths_match_skimage(monkeypatch: pytest.MonkeyPatch) -> None:
    """Force several filter tiles and several image chunks (torch float32 path and its float64 fallback alike)."""
    monkeypatch.setenv("BENCH_SSIM_KERNEL", "torch")
    monkeypatch.setattr(ssim_mod, "_TILE", 7)
    monkeypatch.setattr(ssim_mod, "_CHUNK_ELEMENTS", 2 * 3 * 40 * 50)
    monkeypatch.setattr(ssim_mod, "_F32_TILE_ROWS", 4)
    monkeypatch.setattr(ssim_mod, "_F32_TILE_COLS", 7)
    monkeypatch.setattr(ssim_mod, "_F32_CHUNK_ELEMENTS", 2 * 3 * 40 * 50)
    rng = np.random.default_rng(11)
    check_all(*random_pair(rng, 5, 40, 50))
    monkeypatch.setattr(ssim_mod, "_GUARD_G_MAX", 0.0)  # every image recomputed by the (tiled) float64 path
    check_all(*random_pair(rng, 5, 40, 50))


# ------------------------------------------------------------------------------- float32 path and its guard
def fast_vs_skimage(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(|ssim - skimage| per image, guard statistic G, recomputed-in-float64 mask) for recon=b, ref=a."""
    a, b = as_f32(a), as_f32(b)
    values, g, redo = ssim_mod.ssim_per_image_fast(to_torch(b), to_torch(a), ssim_mod.gaussian_taps(), 1.0, 1.0,
                                                   return_guard=True)
    return np.abs(values.numpy() - ref_ssim(a, b)), g.numpy(), redo.numpy()


def halves(top: float, bottom: float, shape: tuple[int, int, int, int]) -> np.ndarray:
    """Images whose upper half is `top` and lower half `bottom` (exactly flat)."""
    out = np.full(shape, bottom)
    out[:, : shape[1] // 2] = top
    return out


def test_float32_path_on_flat_images_far_from_grey(monkeypatch: pytest.MonkeyPatch, kernel: str) -> None:
    """Adversarial flat images: within 1e-4 of scikit-image, the guard sending the worst ones to float64."""
    rng = np.random.default_rng(21)
    shape = (3, 48, 48, 3)
    bright = np.full(shape, 0.97) + 1e-4 * rng.standard_normal(shape)
    cases = {
        "0.97 vs 0.97 (tiny noise)": (bright, np.full(shape, 0.97) + 1e-4 * rng.standard_normal(shape)),
        "0.97 vs 0.96": (bright, bright - 0.01),
        "0.9 vs 0.1 (exactly flat)": (np.full(shape, 0.9), np.full(shape, 0.1)),
        "0.999 / 0.001 halves": (halves(0.999, 0.001, shape), halves(0.7, 0.3, shape)),
    }
    for name, (a, b) in cases.items():
        err, g, redo = fast_vs_skimage(a, b)
        assert err.max() <= 1e-4, name
        assert np.all(redo == (g > ssim_mod._GUARD_G_MAX)), name
    # the guard fires on the exactly flat 0.9-vs-0.1 pair (G ~ 360) and then the value is the float64 one
    err, g, redo = fast_vs_skimage(*cases["0.9 vs 0.1 (exactly flat)"])
    assert redo.all() and g.min() > 300 and err.max() < 1e-12
    # without the guard the float32 error there is far larger than float64's (~3e-5), yet inside 1e-4
    monkeypatch.setattr(ssim_mod, "_GUARD_G_MAX", float("inf"))
    err, _, redo = fast_vs_skimage(*cases["0.9 vs 0.1 (exactly flat)"])
    assert not redo.any() and 1e-6 < err.max() <= 1e-4


@pytest.mark.parametrize("size", [64, 256])
def test_float32_path_on_real_faces_within_1e_5(shared_data: Path, size: int, kernel: str) -> None:
    faces = _load_faces(shared_data, size)
    rng = np.random.default_rng(size + 1)
    for other in (gaussian_filter(faces, sigma=(0, 1.5, 1.5, 0)),
                  np.clip(faces + 0.05 * rng.standard_normal(faces.shape), 0, 1),
                  np.round(faces * 255 + 0.5 * rng.standard_normal(faces.shape)) / 255):
        err, g, redo = fast_vs_skimage(faces, other)
        assert err.max() <= 1e-5
        if size == 64:
            assert not redo.any() and g.max() < ssim_mod._GUARD_G_MAX  # real 64x64 faces never fall back


def _load_faces(shared_data: Path, size: int) -> np.ndarray:
    files = sorted((shared_data / "faces" / "celebahq_256").glob("*.png"))
    assert files, "no CelebA-HQ images in the shared data folder"
    out = []
    for f in files[:6]:
        with Image.open(f) as im:
            im = im.convert("RGB")
            if im.size != (size, size):
                im = im.resize((size, size), Image.BILINEAR)
            out.append(np.asarray(im, dtype=np.float64) / 255.0)
    return np.stack(out)


@pytest.mark.parametrize("size", [64, 256])
def test_real_faces_blurred_and_noised_match_skimage(shared_data: Path, size: int) -> None:
    faces = _load_faces(shared_data, size)
    rng = np.random.default_rng(size)
    blurred = gaussian_filter(faces, sigma=(0, 2, 2, 0))
    noised = np.clip(faces + 0.08 * rng.standard_normal(faces.shape), 0, 1)
    check_all(faces, blurred)
    check_all(faces, noised)
    # sanity of the direction: heavier blur -> lower SSIM and PSNR, higher MSE, for every face
    heavier = gaussian_filter(faces, sigma=(0, 4, 4, 0))
    ta, tb, th = to_torch(faces), to_torch(blurred), to_torch(heavier)
    assert torch.all(metric("ssim").per_sample(th, ta) < metric("ssim").per_sample(tb, ta))
    assert torch.all(metric("psnr").per_sample(th, ta) < metric("psnr").per_sample(tb, ta))
    assert torch.all(metric("mse").per_sample(th, ta) > metric("mse").per_sample(tb, ta))


# --------------------------------------------------------------------------------------- special values
def set_value(m, recon: torch.Tensor, ref: torch.Tensor) -> float:
    """The set value as the runner computes it: embed the batch, then aggregate."""
    batch = EvalBatch(list(range(len(ref))), [str(i) for i in range(len(ref))])
    return m.aggregate(m.embed(recon, ref, batch))


def test_identical_images(kernel: str) -> None:
    rng = np.random.default_rng(5)
    a = to_torch(rng.random((3, 24, 24, 3)))
    assert torch.allclose(metric("ssim").per_sample(a, a).double(), torch.ones(3, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(
        metric("ssim-sift-compat").per_sample(a, a).double(), torch.ones(3, dtype=torch.float64), atol=1e-12
    )
    assert torch.equal(metric("mse").per_sample(a, a).double(), torch.zeros(3, dtype=torch.float64))
    psnr = metric("psnr")
    assert torch.all(torch.isposinf(psnr.per_sample(a, a)))
    assert math.isinf(set_value(psnr, a, a)) and set_value(psnr, a, a) > 0


def test_psnr_per_set_is_mean_of_per_image_values() -> None:
    rng = np.random.default_rng(9)
    a, b = random_pair(rng, 4, 16, 16)
    a, b = as_f32(a), as_f32(b)
    assert set_value(metric("psnr"), to_torch(b), to_torch(a)) == pytest.approx(float(np.mean(ref_psnr(a, b))), abs=1e-8)
    assert set_value(metric("mse"), to_torch(b), to_torch(a)) == pytest.approx(float(np.mean(ref_mse(a, b))), abs=1e-12)


# |value in a batch - value alone|: the batch shape may change the summation order (and CPU vector units and
# thread count change it further), never the terms. For n = 3·30·26 terms and unit roundoffs u64 = 2^-53,
# u32 = 2^-24: mse is a float64 mean of n squares in [0, 1], off by <= n·u64 per order, so two orders differ by
# <= 2·n·u64; psnr = -10·log10(mse) turns that relative error into <= 10/ln(10)·2·n·u64 dB; the SSIMs run in
# float32 within 2.3·u32·G of float64 with G <= 200 (the guard recomputes the rest in float64; metrics/ssim.py),
# so two batch shapes differ by <= 2·2.3·u32·200 (a sample scored with another sample's pixels would be ~1e-1 off).
_N_TERMS = 3 * 30 * 26
BATCH_TOL = {"mse": 2 * _N_TERMS * 2.0**-53, "psnr": 10 / math.log(10) * 2 * _N_TERMS * 2.0**-53,
             "ssim": 2 * 2.3 * 2.0**-24 * 200, "ssim-sift-compat": 2 * 2.3 * 2.0**-24 * 200}


@pytest.mark.parametrize("name", NAMES)
def test_batch_equals_single_images(name: str, kernel: str) -> None:
    rng = np.random.default_rng(13)
    a, b = random_pair(rng, 5, 30, 26)
    ta, tb = to_torch(a), to_torch(b)
    m = metric(name)
    batch = m.per_sample(tb, ta)
    singles = torch.cat([m.per_sample(tb[i : i + 1], ta[i : i + 1]) for i in range(5)])
    assert torch.allclose(batch.double(), singles.double(), rtol=0, atol=BATCH_TOL[name])
    assert len(set(batch.tolist())) == 5  # the pairs differ, so must their scores


@pytest.mark.parametrize("name", NAMES)
def test_empty_batch_gives_empty_values(name: str) -> None:
    empty = torch.zeros(0, 3, 16, 16)
    assert metric(name).per_sample(empty, empty).shape == (0,)


# ----------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("name", ["ssim", "ssim-sift-compat"])
def test_tiny_images_are_refused(name: str) -> None:
    a = torch.rand(2, 3, 10, 32)
    with pytest.raises(BenchError, match=r"11×11.*10×32"):
        metric(name).per_sample(a, a)


@pytest.mark.parametrize("name", NAMES)
def test_shape_mismatch_is_refused(name: str) -> None:
    with pytest.raises(BenchError, match=name):
        metric(name).per_sample(torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 17))
    with pytest.raises(BenchError, match="N×3×H×W"):
        metric(name).per_sample(torch.rand(3, 16, 16), torch.rand(3, 16, 16))


# -------------------------------------------------------------------------------------------- benchmark
def test_benchmark_script_runs_small() -> None:
    spec = importlib.util.spec_from_file_location("ssim_bench", REPO / "benchmarks" / "ssim_bench.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    r = mod.measure(n=6, size=24)
    assert r["n"] == 6 and r["size"] == 24
    assert r["max_abs_diff"] <= 1e-4
    assert r["torch_s"] > 0 and r["skimage_s"] > 0 and r["clock"] == "wall"
    r = mod.measure(n=6, size=24, repeats=1, cpu_time=True)  # CPU-time clock (for loaded machines)
    assert r["clock"] == "process CPU time" and r["skimage_s"] > 0 and r["max_abs_diff"] <= 1e-4
    assert r["kernel"] == ssim_mod.ssim_kernel()
    before = os.environ.get("BENCH_SSIM_KERNEL")
    r = mod.measure(n=6, size=24, repeats=1, kernel="torch")
    assert r["kernel"] == "torch" and r["max_abs_diff"] <= 1e-4
    assert os.environ.get("BENCH_SSIM_KERNEL") == before  # the benchmark leaves the setting as it found it
