"""INV networks (Pittaluga et al., CVPR 2019): a cascade of two U-Nets and a patch discriminator.

- CoarseNet: a U-Net on the sparse input (here the compressed dense SIFT map, 128 channels, plus a binary keypoint
  mask) at map resolution; every level is two 3×3 conv + BN + ReLU, levels are joined by 2× max pooling on the way
  down and by 2× nearest upsampling + concatenated skip on the way up. When the image is larger than the map, extra
  upsampling levels (without skip) bring it to image size. A 1×1 conv and a sigmoid give RGB.
- RefineNet: a U-Net of the same kind at image resolution whose input is the CoarseNet image concatenated with the
  sparse input (nearest-upsampled to image size), so the second stage still sees every point.
- Discriminator (adversarial loss of the paper profile): 4×4 stride-2 conv + BN + LeakyReLU(0.2) stages and a 4×4
  conv to a map of patch logits.

Pittaluga et al. use three networks (VisibNet, CoarseNet, RefineNet); VisibNet predicts which 3D points are
visible from a viewpoint and has no role for single-image SIFT, where every keypoint is visible. Widths per profile
are in inv.py (PROFILES); figures in docs/baselines.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.errors import BenchError


def double_conv(cin: int, cout: int) -> nn.Sequential:
    """Two 3×3 conv (no bias) + BatchNorm + ReLU."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """U-Net: `widths` per level (input resolution first), then `up_extra` skip-less 2× upsampling levels."""

    def __init__(self, cin: int, widths: tuple[int, ...], up_extra: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.down = nn.ModuleList()
        prev = cin
        for w in widths:
            self.down.append(double_conv(prev, w))
            prev = w
        self.up = nn.ModuleList()
        for w_skip in reversed(widths[:-1]):
            self.up.append(double_conv(prev + w_skip, w_skip))
            prev = w_skip
        self.extra = nn.ModuleList()
        for w in up_extra:
            self.extra.append(double_conv(prev, w))
            prev = w
        self.head = nn.Conv2d(prev, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, level in enumerate(self.down):
            if i:
                x = F.max_pool2d(x, 2)
            x = level(x)
            skips.append(x)
        skips.pop()
        for level in self.up:
            x = level(torch.cat([F.interpolate(x, scale_factor=2.0, mode="nearest"), skips.pop()], dim=1))
        for level in self.extra:
            x = level(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        return torch.sigmoid(self.head(x))


@dataclass(frozen=True)
class INVConfig:
    """Shapes of the INV cascade."""

    map_size: int
    image_size: int
    coarse: tuple[int, ...]
    refine: tuple[int, ...]
    disc: tuple[int, ...]
    in_channels: int = 129  # 128 descriptor channels + the keypoint mask

    def __post_init__(self) -> None:
        for k in ("coarse", "refine", "disc"):
            object.__setattr__(self, k, tuple(int(w) for w in getattr(self, k)))
        ratio = self.image_size // self.map_size
        if ratio < 1 or ratio * self.map_size != self.image_size or ratio & (ratio - 1):
            raise BenchError(f"INV: image {self.image_size} is not a power-of-two multiple of map {self.map_size}")
        if self.map_size % 2 ** (len(self.coarse) - 1) or self.image_size % 2 ** (len(self.refine) - 1):
            raise BenchError("INV: too many U-Net levels for the map or image size")

    @property
    def up_levels(self) -> int:
        return (self.image_size // self.map_size).bit_length() - 1

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


class CoarseNet(UNet):
    def __init__(self, cfg: INVConfig) -> None:
        extra = tuple(max(cfg.coarse[0] // 2 ** (i + 1), 16) for i in range(cfg.up_levels))
        super().__init__(cfg.in_channels, cfg.coarse, extra)


class RefineNet(nn.Module):
    def __init__(self, cfg: INVConfig) -> None:
        super().__init__()
        self.scale = cfg.image_size // cfg.map_size
        self.unet = UNet(3 + cfg.in_channels, cfg.refine)

    def forward(self, sparse: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        if self.scale > 1:
            sparse = F.interpolate(sparse, scale_factor=float(self.scale), mode="nearest")
        return self.unet(torch.cat([coarse, sparse], dim=1))


class Discriminator(nn.Module):
    """Patch discriminator: 4×4 stride-2 conv stages (BN after the first), LeakyReLU(0.2), 4×4 conv to logits."""

    def __init__(self, cfg: INVConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = 3
        for i, w in enumerate(cfg.disc):
            layers.append(nn.Conv2d(prev, w, 4, stride=2, padding=1, bias=i == 0))
            if i:
                layers.append(nn.BatchNorm2d(w))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            prev = w
        layers.append(nn.Conv2d(prev, 1, 4, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
