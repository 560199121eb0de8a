"""SLI's networks: a U-Net generator (used for both SIFT→LBP and SIFT+LBP→RGB) and a patch discriminator.

U-Net (Wu & Zhou, SLI, Sec. III): L encoder levels, each a 4×4 convolution with stride 2 (halving the resolution),
instance norm and LeakyReLU(0.2) — no norm on the first level (as pix2pix) nor on the innermost one, whose output
is 1×1 at the paper's size, where instance norm is undefined. The decoder mirrors it: each level upsamples 2×
(nearest) and applies a 3×3 convolution + instance norm + LeakyReLU(0.2) to reach the width of the encoder level
of the same resolution, whose output is then concatenated (skip connection); a last 2× upsampling and 3×3
convolution give the output at the input resolution, through tanh (outputs in [-1, 1]).

At the paper's 256×256 with widths 64-128-256-512-512-512-512-512 one such net has 39.3 M parameters (LBP net) and
the two nets together 78.6 M, against the paper's 78 M (see docs/sli.md for the FLOP count).

Instance norm uses per-image statistics and keeps no running statistics, so a network in eval mode maps each image
independently of the batch around it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from bench.errors import BenchError

LEAKY_SLOPE = 0.2


@dataclass(frozen=True)
class UNetConfig:
    """Shape of one U-Net: input/output channels, encoder widths (one per stride-2 level), input size."""

    in_channels: int
    out_channels: int
    widths: tuple[int, ...]
    size: int

    def __post_init__(self) -> None:
        if not self.widths:
            raise BenchError("a U-Net needs at least one encoder level")
        if self.size % (2 ** len(self.widths)) != 0:
            raise BenchError(f"U-Net input size {self.size} is not divisible by 2^{len(self.widths)} "
                             f"({len(self.widths)} stride-2 levels)")

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d


def _norm(channels: int, on: bool) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=True, track_running_stats=False) if on else nn.Identity()


class Down(nn.Module):
    """4×4 stride-2 convolution, optional instance norm, LeakyReLU(0.2)."""

    def __init__(self, cin: int, cout: int, norm: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 4, stride=2, padding=1, bias=not norm)
        self.norm = _norm(cout, norm)
        self.act = nn.LeakyReLU(LEAKY_SLOPE, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class Up(nn.Module):
    """2× nearest upsampling, 3×3 convolution, instance norm, LeakyReLU(0.2)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.up = nn.Upsample(scale_factor=2.0, mode="nearest")
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.norm = _norm(cout, True)
        self.act = nn.LeakyReLU(LEAKY_SLOPE, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(self.up(x))))


class UNet(nn.Module):
    """Encoder of stride-2 levels, decoder with skip connections; N×in×S×S → N×out×S×S in [-1, 1] (tanh)."""

    def __init__(self, cfg: UNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w = list(cfg.widths)
        levels = len(w)
        self.down = nn.ModuleList(
            Down(cfg.in_channels if i == 0 else w[i - 1], w[i], norm=0 < i < levels - 1) for i in range(levels)
        )
        # Decoder level i (i = levels-2 … 0) produces width w[i] at the resolution of encoder level i; its input is
        # the innermost code (i = levels-2) or the previous decoder output concatenated with its skip.
        ups = []
        for i in range(levels - 2, -1, -1):
            cin = w[i + 1] if i == levels - 2 else 2 * w[i + 1]
            ups.append(Up(cin, w[i]))
        self.up = nn.ModuleList(ups)
        last_in = w[0] if levels == 1 else 2 * w[0]
        self.head = nn.Sequential(nn.Upsample(scale_factor=2.0, mode="nearest"),
                                  nn.Conv2d(last_in, cfg.out_channels, 3, padding=1), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.cfg.in_channels or x.shape[-1] != self.cfg.size \
                or x.shape[-2] != self.cfg.size:
            raise BenchError(f"U-Net expects N×{self.cfg.in_channels}×{self.cfg.size}×{self.cfg.size} input, "
                             f"got {tuple(x.shape)}")
        skips = []
        h = x
        for layer in self.down:
            h = layer(h)
            skips.append(h)
        h = skips.pop()  # innermost code: no skip of its own
        for layer in self.up:
            h = torch.cat([layer(h), skips.pop()], dim=1)
        return self.head(h)


class PatchDiscriminator(nn.Module):
    """Patch discriminator: 4×4 convolutions (stride 2, the last hidden one stride 1), instance norm, LeakyReLU(0.2),
    then a 4×4 convolution to one logit per patch (N×1×h×w)."""

    def __init__(self, in_channels: int, widths: tuple[int, ...]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for i, cout in enumerate(widths):
            stride = 1 if (i == len(widths) - 1 and len(widths) > 1) else 2
            layers += [nn.Conv2d(cin, cout, 4, stride=stride, padding=1, bias=i == 0), _norm(cout, i > 0),
                       nn.LeakyReLU(LEAKY_SLOPE, inplace=True)]
            cin = cout
        layers.append(nn.Conv2d(cin, 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
