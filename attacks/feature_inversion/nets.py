"""The ShuffleBits paper's feature decoder and the conditional discriminator of its GAN variant.

Decoder: fully connected layers to a small spatial map (the paper's is 12×4×128 for person re-identification
crops; faces here are square, so the map is s×s×c), then residual upsampling blocks (nearest ×2, two 3×3 conv +
BN with ReLU, plus a 1×1-conv shortcut) and a 3×3 conv with tanh, mapped to [0, 1] as (tanh + 1)/2.
Discriminator: strided 4×4 convolutions (LeakyReLU 0.2) down to 4×4, flattened and joined with a linear embedding
of the conditioning feature vector; one unbounded output (least-squares GAN).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bench.errors import BenchError


@dataclass(frozen=True)
class DecoderConfig:
    in_width: int
    fc: tuple[int, ...]  # hidden widths of the dense layers
    map_size: int  # side of the spatial map the dense layers produce
    map_channels: int
    blocks: tuple[int, ...]  # output channels of each residual upsampling block (each doubles the side)


class UpBlock(nn.Module):
    """Residual upsampling block: up ×2 -> (conv BN ReLU conv BN) + 1×1 shortcut -> ReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                                  nn.ReLU(inplace=True), nn.Conv2d(cout, cout, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(cout))
        self.skip = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return F.relu(self.body(x) + self.skip(x))


class FeatureDecoder(nn.Module):
    """Feature vector -> dense layers -> map_size² × map_channels -> residual upsampling -> (tanh + 1) / 2."""

    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        if cfg.map_size < 1 or not cfg.blocks:
            raise BenchError("feature decoder: needs a map and at least one upsampling block")
        self.cfg = cfg
        layers: list[nn.Module] = []
        width = cfg.in_width
        for w in cfg.fc:
            layers += [nn.Linear(width, w), nn.LeakyReLU(0.2, inplace=True)]
            width = w
        layers += [nn.Linear(width, cfg.map_channels * cfg.map_size ** 2), nn.LeakyReLU(0.2, inplace=True)]
        self.dense = nn.Sequential(*layers)
        ups: list[nn.Module] = []
        cin = cfg.map_channels
        for cout in cfg.blocks:
            ups.append(UpBlock(cin, cout))
            cin = cout
        self.ups = nn.Sequential(*ups)
        self.head = nn.Conv2d(cin, 3, 3, padding=1)

    @property
    def out_size(self) -> int:
        return self.cfg.map_size * 2 ** len(self.cfg.blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        h = self.dense(x).reshape(x.shape[0], c.map_channels, c.map_size, c.map_size)
        return (torch.tanh(self.head(self.ups(h))) + 1.0) / 2.0


class ConditionalDiscriminator(nn.Module):
    """(image, feature vector) -> one score: strided convs to 4×4, joined with a linear embedding of the vector."""

    def __init__(self, in_width: int, image_size: int, widths: tuple[int, ...], cond: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin, s = 3, int(image_size)
        for w in widths:
            layers += [nn.Conv2d(cin, w, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
            cin, s = w, s // 2
        if s < 1:
            raise BenchError(f"discriminator: {len(widths)} stride-2 convs do not fit {image_size}px")
        self.convs = nn.Sequential(*layers)
        self.cond = nn.Sequential(nn.Linear(in_width, cond), nn.LeakyReLU(0.2, inplace=True))
        self.out = nn.Linear(cin * s * s + cond, 1)

    def forward(self, image: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        h = self.convs(image * 2.0 - 1.0).flatten(1)
        return self.out(torch.cat([h, self.cond(features)], dim=1)).squeeze(1)
