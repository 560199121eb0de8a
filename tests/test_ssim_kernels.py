"""The two float32 SSIM implementations (torch products; the numba kernel of the `fast` extra): SSIM values against
the float64 path, the guard statistic against a float64 scipy computation written here from its definition, and the
kernel's slicing over threads. scikit-image parity of both is in test_metrics.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import correlate1d, gaussian_filter

import bench.metrics.ssim as ssim_mod

U32 = 2.0**-24


def _pair(n: int, c: int, h: int, w: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth random N×C×H×W float32 images in [0, 1] and a blurred, noised copy."""
    rng = np.random.default_rng(seed)
    a = gaussian_filter(rng.random((n, c, h, w)), sigma=(0, 0, 1.5, 1.5))
    a = (a - a.min()) / (a.max() - a.min())
    b = np.clip(gaussian_filter(a, sigma=(0, 0, 1, 1)) + 0.05 * rng.standard_normal(a.shape), 0, 1)
    return torch.from_numpy(a).float(), torch.from_numpy(b).float()


def _guard_reference(x: np.ndarray, y: np.ndarray, taps: np.ndarray, e2: float, step: int) -> np.ndarray:
    """G per image from its definition, in float64: the mean over channels, every `step`-th row of windows and
    every column of (E[u'^2] + E[v^2] + e2) / (Var u + Var v + e2), u' = x + y - mean(x + y), v = x - y."""
    k = len(taps)
    out = []
    for xi, yi in zip(x.astype(np.float64), y.astype(np.float64)):
        vals = []
        for xc, yc in zip(xi, yi):
            u = xc + yc - (xc + yc).mean()
            v = xc - yc

            def mean(z: np.ndarray) -> np.ndarray:
                z = correlate1d(correlate1d(z, taps, axis=0, mode="constant"), taps, axis=1, mode="constant")
                r = k // 2
                return z[r : z.shape[0] - r, r : z.shape[1] - r]

            eu, ev, euu, evv = mean(u), mean(v), mean(u * u), mean(v * v)
            g = (euu + evv + e2) / (euu - eu**2 + evv - ev**2 + e2)
            vals.append(g[::step])
        out.append(np.mean(vals))
    return np.array(out)


@pytest.mark.parametrize("kernel", ["torch", "numba"])
@pytest.mark.parametrize("shape, window, data_range, sample_cov", [
    ((4, 3, 40, 50), ("gaussian", 1.5, 3.5), 1.0, False),
    ((3, 3, 11, 11), ("gaussian", 1.5, 3.5), 1.0, False),  # a single window
    ((2, 1, 33, 64), ("uniform", 11), 255.0, True),  # the SIFT papers' convention on 8-bit levels
    ((2, 3, 97, 31), ("uniform", 7), 1.0, True),  # fewer taps than the kernel's unrolled sums (zero-padded)
    ((2, 3, 45, 40), ("gaussian", 2.5, 3.5), 1.0, False),  # 19 taps: more than the unrolled sums take
])
def test_float32_implementations_match_float64_and_the_guard_definition(
    monkeypatch: pytest.MonkeyPatch, kernel: str, shape: tuple, window: tuple, data_range: float, sample_cov: bool
) -> None:
    if kernel == "numba":
        pytest.importorskip("numba")
    monkeypatch.setenv("BENCH_SSIM_KERNEL", kernel)
    assert ssim_mod.ssim_kernel() == kernel
    a, b = _pair(*shape, seed=sum(shape))
    if data_range == 255.0:
        a, b = torch.round(a * 255), torch.round(b * 255)
    taps = ssim_mod.window_taps(window)
    k = taps.numel()
    cn = k * k / (k * k - 1.0) if sample_cov else 1.0
    values, g, redo = ssim_mod.ssim_per_image_fast(b, a, taps, data_range, cn, return_guard=True)
    ref = ssim_mod.ssim_per_image(b.double(), a.double(), taps, data_range, cn)
    assert not redo.any()
    # float32 within 2.3·u32·G of float64 (metrics/ssim.py); G is measured here
    assert torch.all((values - ref).abs() <= 2.3 * U32 * g)
    e2 = 2.0 * (ssim_mod.K2 * data_range) ** 2 / cn
    g_ref = _guard_reference(b.numpy(), a.numpy(), taps.numpy(), e2, ssim_mod._GUARD_ROW_STEP)
    np.testing.assert_allclose(g.numpy(), g_ref, rtol=1e-4)


def test_numba_kernel_slices_over_threads_give_identical_sums() -> None:
    pytest.importorskip("numba")
    from bench.metrics.ssim_numba import ssim_sums

    a, b = _pair(7, 3, 30, 26, seed=3)
    taps = ssim_mod.gaussian_taps().numpy()
    one = ssim_sums(b.numpy(), a.numpy(), taps, 1e-4, 2 * 9e-4, 2, threads=1)
    three = ssim_sums(b.numpy(), a.numpy(), taps, 1e-4, 2 * 9e-4, 2, threads=3)
    many = ssim_sums(b.numpy(), a.numpy(), taps, 1e-4, 2 * 9e-4, 2, threads=16)  # more threads than images
    for s in (three, many):
        assert np.array_equal(s[0], one[0]) and np.array_equal(s[1], one[1])


def test_numba_kernel_in_float64_equals_the_float64_path() -> None:
    """The kernel's arithmetic runs in its inputs' dtype: in float64 it agrees with `ssim_per_image` to rounding."""
    pytest.importorskip("numba")
    from bench.metrics.ssim_numba import ssim_sums

    a, b = _pair(3, 3, 24, 37, seed=5)
    taps = ssim_mod.gaussian_taps()
    sums, _ = ssim_sums(b.double().numpy(), a.double().numpy(), taps.numpy(), 1e-4, 2 * 9e-4, 2)
    ours = sums.sum(1) / (3 * 14 * 27)
    ref = ssim_mod.ssim_per_image(b.double(), a.double(), taps).numpy()
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)


def test_env_forces_the_torch_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_SSIM_KERNEL", "torch")
    assert ssim_mod.ssim_kernel() == "torch"


def test_inputs_of_any_layout_dtype_and_grad() -> None:
    """Non-contiguous, float64 and grad-requiring inputs give the values of contiguous float32 ones."""
    a, b = _pair(3, 3, 20, 24, seed=9)
    taps = ssim_mod.gaussian_taps()
    plain = ssim_mod.ssim_per_image_fast(b, a, taps)
    odd_b = b.permute(0, 1, 3, 2).contiguous().permute(0, 1, 3, 2).double().requires_grad_(True)
    assert not odd_b.is_contiguous()
    assert torch.equal(ssim_mod.ssim_per_image_fast(odd_b, a, taps), plain)
