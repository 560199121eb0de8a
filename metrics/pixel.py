"""Pixel-difference metrics (MSE, PSNR) on RGB images in [0, 1], computed for a whole batch at once."""

from __future__ import annotations

import torch

from bench import metric_conventions
from bench.errors import BenchError
from bench.plugins import Metric


def check_pair(
    recon: torch.Tensor, ref: torch.Tensor, metric: str, dtype: torch.dtype | None = torch.float64
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both batches as N×C×H×W tensors of `dtype` (None: as given), one shape and device; else a BenchError."""
    if not isinstance(recon, torch.Tensor) or not isinstance(ref, torch.Tensor):
        raise BenchError(f"metric {metric!r} needs torch tensors, got {type(recon).__name__} and {type(ref).__name__}")
    if recon.dim() != 4 or ref.dim() != 4:
        raise BenchError(
            f"metric {metric!r} needs N×3×H×W batches, got shapes {tuple(recon.shape)} and {tuple(ref.shape)}"
        )
    if recon.shape != ref.shape:
        raise BenchError(
            f"metric {metric!r}: reconstructions {tuple(recon.shape)} and originals {tuple(ref.shape)} differ in shape"
        )
    if dtype is None:
        if not (recon.is_floating_point() and ref.is_floating_point()):
            raise BenchError(f"metric {metric!r} needs float images in [0, 1], got {recon.dtype} and {ref.dtype}")
        return recon.detach(), ref.detach().to(recon.device)
    return recon.detach().to(dtype), ref.detach().to(device=recon.device, dtype=dtype)


def mse_per_image(recon: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Mean squared error of each image pair over all pixels and channels, as float64 (N,)."""
    return (recon - ref).square().mean(dim=(1, 2, 3))


class MSE(Metric):
    """Mean squared error per image on RGB values in [0, 1]; 0 means identical images."""

    name = "mse"
    higher_is_better = False
    value_range = (0.0, 1.0)
    convention = metric_conventions.text("mse")

    def per_sample(self, recon: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """MSE of each image pair, float64 (N,)."""
        a, b = check_pair(recon, ref, self.name)
        return mse_per_image(a, b).cpu()


class PSNR(Metric):
    """Peak signal-to-noise ratio in dB per image, data range 1; identical images give +inf."""

    name = "psnr"
    higher_is_better = True
    value_range = (0.0, float("inf"))
    convention = metric_conventions.text("psnr")

    def per_sample(self, recon: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """PSNR of each image pair in dB, float64 (N,); +inf where the pair is identical."""
        a, b = check_pair(recon, ref, self.name)
        mse = mse_per_image(a, b)
        # log10(0) is -inf in torch, so an identical pair gives exactly +inf without a warning.
        return (-10.0 * torch.log10(mse)).cpu()


metric_conventions.register(__name__)  # the rows `mse` and `psnr` of the convention table
