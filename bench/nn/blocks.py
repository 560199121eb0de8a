"""Generic convolutional building blocks: conv-BN-LeakyReLU, bottleneck residual units, U-Net blocks, AdaIN.

They are written once here so that every encoder-decoder attack (CFGAN and later ones) shares the same, tested
pieces. All activations are LeakyReLU with slope 0.2 and every convolution inside a unit is followed by batch norm.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LEAKY_SLOPE = 0.2


def conv_bn_act(cin: int, cout: int, kernel: int = 3, padding: int | None = None) -> nn.Sequential:
    """Convolution (stride 1, 'same' padding by default, no bias) + BatchNorm + LeakyReLU(0.2)."""
    pad = kernel // 2 if padding is None else padding
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=1, padding=pad, bias=False),
        nn.BatchNorm2d(cout),
        nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
    )


class ResidualUnit(nn.Module):
    """Bottleneck residual unit 1×1 → 3×3 → 1×1 (each conv + BN + LeakyReLU) plus a skip path.

    The skip is the identity when the channel count is unchanged, otherwise a 1×1 convolution. `mid` is the width
    of the 3×3 convolution (defaults to `cout`, i.e. no narrowing).
    """

    def __init__(self, cin: int, cout: int, mid: int | None = None) -> None:
        super().__init__()
        mid = cout if mid is None else max(int(mid), 1)
        self.body = nn.Sequential(conv_bn_act(cin, mid, 1), conv_bn_act(mid, mid, 3), conv_bn_act(mid, cout, 1))
        self.skip: nn.Module = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """body(x) + skip(x)."""
        return self.body(x) + self.skip(x)


def _mid(cout: int, div: int) -> int:
    return max(cout // max(int(div), 1), 1)


class EncoderBlock(nn.Module):
    """Two residual units, then 2× average pooling; returns (pre-pool feature for the skip, pooled output)."""

    def __init__(self, cin: int, cout: int, bottleneck_div: int = 1) -> None:
        super().__init__()
        mid = _mid(cout, bottleneck_div)
        self.units = nn.Sequential(ResidualUnit(cin, cout, mid), ResidualUnit(cout, cout, mid))
        self.pool = nn.AvgPool2d(2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(skip feature at the input resolution, pooled output at half of it)."""
        feat = self.units(x)
        return feat, self.pool(feat)


class DecoderBlock(nn.Module):
    """Nearest 2× upsampling, concatenation with the skip (if any), two residual units and one extra 3×3 conv."""

    def __init__(self, cin: int, cskip: int, cout: int, bottleneck_div: int = 1) -> None:
        super().__init__()
        mid = _mid(cout, bottleneck_div)
        self.cskip = int(cskip)
        self.units = nn.Sequential(
            ResidualUnit(cin + self.cskip, cout, mid),
            ResidualUnit(cout, cout, mid),
            conv_bn_act(cout, cout, 3),
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        """Upsample `x` 2×, append `skip` channels, refine."""
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.units(x)


def adain(s: torch.Tensor, c: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """AdaIN(s, c) = σ(c)·(s − μ(s))/σ(s) + μ(c), with per-sample, per-channel spatial statistics (no parameters).

    σ is the biased spatial standard deviation computed as sqrt(var + eps), so that constant channels stay finite.
    """
    if s.shape[:2] != c.shape[:2]:
        raise ValueError(f"adain needs matching batch and channels, got {tuple(s.shape)} and {tuple(c.shape)}")
    mu_s = s.mean(dim=(2, 3), keepdim=True)
    mu_c = c.mean(dim=(2, 3), keepdim=True)
    sd_s = (s.var(dim=(2, 3), keepdim=True, unbiased=False) + eps).sqrt()
    sd_c = (c.var(dim=(2, 3), keepdim=True, unbiased=False) + eps).sqrt()
    return sd_c * (s - mu_s) / sd_s + mu_c
