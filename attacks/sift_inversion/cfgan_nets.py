"""CFGAN networks (Li et al., TCSVT 2024): coarse generator, AdaIN-fused fine generator, discriminator.

Architecture, from the paper (Sec. III.B–D) and docs/REFERENCES.md:
- Coarse net: the compressed SIFT map (128 channels, map_size²) goes through encoder blocks (two bottleneck residual
  units 1×1→3×3→1×1, BN, LeakyReLU 0.2, then 2× average pooling) down to a 2×2 bottleneck, then decoder blocks
  (nearest 2× upsampling, concatenated encoder skip at the same resolution, two residual units and one extra 3×3
  conv) up to image_size; decoder blocks above map_size have no skip. A 3×3 conv and a sigmoid give the RGB image.
- Fine net: two encoders of the same shape, one on the SIFT map and one on the coarse image (brought from image_size
  to map_size by extra encoder stages first). After every encoder level the SIFT stream's pooled output and its skip
  are fused with AdaIN(s, c) (s: SIFT features, c: coarse-image features); the fused pooled output feeds the next
  SIFT level, so the last one is the fused bottleneck. The decoder has the coarse net's shape.
- Discriminator: 3×3 conv/BN/LeakyReLU layers with average-pool downsampling to 4×4, a 4×4 conv without padding,
  and a fully connected layer to one raw score (the relativistic loss applies the sigmoid).

Figures of the paper profile (map 128, image 256; encoder 128-256-512-512-512-512, decoder 512-512-512-512-256-128-64,
discriminator 64-128-256-512-512-512-512, every 3×3 conv as wide as its unit; CFGAN.describe(), counted with
torch's FlopCounterMode, convolutions and linear layers only):
  coarse G 63.7 M, fine G 88.7 M: generators 152.3 M; two discriminators 2 × 12.8 M; all 178.0 M.
  One 256×256 inference (coarse + fine): 292.0 GFLOPs = 146.0 GMACs.
Paper Table II: 153 M parameters, 148 G "FLOPs". Best match: generators only (−0.5 %) and MACs (−1.3 %); the paper's
"FLOPs" are multiply-accumulates, as usual in this literature (the FLOP count, 292 G, is twice that), and its
parameter count leaves out the discriminators (with them: 178 M, +16 %). No gap exceeds 25 %. Details the paper leaves
open and that we chose: the width of the residual unit's 3×3 conv (= its output width; bottleneck_div 1), the place
of the decoder's extra 3×3 conv (after the two residual units), how the 256×256 coarse image enters the 128×128 fine
encoder (one extra encoder block of width 64 at 256×256, then average pooling), convolutions without bias before BN.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from bench.errors import BenchError
from bench.nn.blocks import DecoderBlock, EncoderBlock, adain, conv_bn_act

SIFT_CHANNELS = 128


def _levels(big: int, small: int, what: str) -> int:
    ratio = big / small
    n = int(round(math.log2(ratio))) if ratio >= 1 else -1
    if n < 0 or small * (2**n) != big:
        raise BenchError(f"CFGAN: {what} {big} is not a power-of-two multiple of {small}")
    return n


@dataclass(frozen=True)
class CFGANConfig:
    """Shapes of the CFGAN networks; widths are listed per level, from high resolution to low."""

    map_size: int = 128
    image_size: int = 256
    enc_widths: tuple[int, ...] = (128, 256, 512, 512, 512, 512)  # one per encoder level, map_size → bottleneck
    dec_widths: tuple[int, ...] = (512, 512, 512, 512, 256, 128, 64)  # one per decoder level, bottleneck → image
    disc_widths: tuple[int, ...] = (64, 128, 256, 512, 512, 512, 512)  # full res, then after each pooling to 4×4
    bottleneck_size: int = 2
    bottleneck_div: int = 1  # width of a residual unit's 3×3 conv = output width // bottleneck_div
    in_channels: int = SIFT_CHANNELS

    def __post_init__(self) -> None:
        object.__setattr__(self, "enc_widths", tuple(int(w) for w in self.enc_widths))
        object.__setattr__(self, "dec_widths", tuple(int(w) for w in self.dec_widths))
        object.__setattr__(self, "disc_widths", tuple(int(w) for w in self.disc_widths))
        n_enc = _levels(self.map_size, self.bottleneck_size, "map_size")
        n_dec = _levels(self.image_size, self.bottleneck_size, "image_size")
        n_disc = _levels(self.image_size, 4, "image_size")
        if n_dec < n_enc:
            raise BenchError(f"CFGAN: image_size {self.image_size} is smaller than map_size {self.map_size}")
        if len(self.enc_widths) != n_enc:
            raise BenchError(f"CFGAN: enc_widths needs {n_enc} entries for map {self.map_size}, got {self.enc_widths}")
        if len(self.dec_widths) != n_dec:
            raise BenchError(f"CFGAN: dec_widths needs {n_dec} entries for image {self.image_size}, got {self.dec_widths}")
        if len(self.disc_widths) != n_disc + 1:
            raise BenchError(f"CFGAN: disc_widths needs {n_disc + 1} entries for image {self.image_size}")

    @property
    def n_enc(self) -> int:
        """Number of encoder levels (map_size down to the bottleneck)."""
        return len(self.enc_widths)

    @property
    def n_extra(self) -> int:
        """Decoder levels above map_size (no skip); also the coarse-image stages before the fine image encoder."""
        return len(self.dec_widths) - len(self.enc_widths)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (lists, ints) for configs and saved states."""
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CFGANConfig":
        """Inverse of `to_dict` (unknown keys ignored)."""
        keys = {"map_size", "image_size", "enc_widths", "dec_widths", "disc_widths", "bottleneck_size",
                "bottleneck_div", "in_channels"}
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in keys})


class Encoder(nn.Module):
    """Encoder blocks from `cin` channels down to the bottleneck; returns the skips and the pooled outputs."""

    def __init__(self, cin: int, widths: tuple[int, ...], bottleneck_div: int) -> None:
        super().__init__()
        chans = (cin, *widths)
        self.blocks = nn.ModuleList(
            EncoderBlock(chans[i], chans[i + 1], bottleneck_div) for i in range(len(widths))
        )

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """(skips, high resolution first; the bottleneck output)."""
        skips = []
        for block in self.blocks:
            skip, x = block(x)
            skips.append(skip)
        return skips, x


class Decoder(nn.Module):
    """Decoder blocks from the bottleneck to image_size, then a 3×3 conv and a sigmoid to RGB in [0, 1]."""

    def __init__(self, cfg: CFGANConfig) -> None:
        super().__init__()
        skips = list(reversed(cfg.enc_widths)) + [0] * cfg.n_extra  # skip widths, low resolution first
        chans = (cfg.enc_widths[-1], *cfg.dec_widths)
        self.blocks = nn.ModuleList(
            DecoderBlock(chans[i], skips[i], chans[i + 1], cfg.bottleneck_div) for i in range(len(cfg.dec_widths))
        )
        self.head = nn.Conv2d(cfg.dec_widths[-1], 3, 3, padding=1)

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        """`skips` are ordered low resolution first; decoder levels beyond them get none."""
        for i, block in enumerate(self.blocks):
            x = block(x, skips[i] if i < len(skips) else None)
        return torch.sigmoid(self.head(x))


def _check_map(cfg: CFGANConfig, sift_map: torch.Tensor) -> None:
    want = (cfg.in_channels, cfg.map_size, cfg.map_size)
    if sift_map.dim() != 4 or tuple(sift_map.shape[1:]) != want:
        raise BenchError(f"CFGAN: SIFT map of shape {tuple(sift_map.shape)}, expected B×{want[0]}×{want[1]}×{want[2]}")


class CoarseNet(nn.Module):
    """SIFT map → coarse RGB image: U-Net of residual encoder/decoder blocks."""

    def __init__(self, cfg: CFGANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg.in_channels, cfg.enc_widths, cfg.bottleneck_div)
        self.decoder = Decoder(cfg)

    def forward(self, sift_map: torch.Tensor) -> torch.Tensor:
        """B×128×m×m SIFT map → B×3×S×S image in [0, 1]."""
        _check_map(self.cfg, sift_map)
        skips, x = self.encoder(sift_map)
        return self.decoder(x, skips[::-1])


class FineNet(nn.Module):
    """(SIFT map, coarse image) → refined image: two parallel encoders fused by AdaIN at every level."""

    def __init__(self, cfg: CFGANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        # Extra stages bring the coarse image from image_size down to map_size (widths mirror the decoder's top).
        extra_w = list(reversed(cfg.dec_widths[len(cfg.dec_widths) - cfg.n_extra:]))
        chans = [3, *extra_w]
        self.image_stem = nn.ModuleList(
            EncoderBlock(chans[i], chans[i + 1], cfg.bottleneck_div) for i in range(cfg.n_extra)
        )
        self.sift_encoder = Encoder(cfg.in_channels, cfg.enc_widths, cfg.bottleneck_div)
        self.image_encoder = Encoder(chans[-1], cfg.enc_widths, cfg.bottleneck_div)
        self.decoder = Decoder(cfg)

    def forward(self, sift_map: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        """(B×128×m×m SIFT map, B×3×S×S coarse image) → refined B×3×S×S image in [0, 1]."""
        _check_map(self.cfg, sift_map)
        c = coarse
        for block in self.image_stem:
            _, c = block(c)
        s, skips = sift_map, []
        for s_block, c_block in zip(self.sift_encoder.blocks, self.image_encoder.blocks):
            s_skip, s_pooled = s_block(s)
            c_skip, c = c_block(c)
            skips.append(adain(s_skip, c_skip))
            s = adain(s_pooled, c)
        return self.decoder(s, skips[::-1])


class Discriminator(nn.Module):
    """Image → one raw realness score: 3×3 conv/BN/LReLU with average pooling, a 4×4 valid conv, a linear layer."""

    def __init__(self, cfg: CFGANConfig) -> None:
        super().__init__()
        w = cfg.disc_widths
        layers: list[nn.Module] = [conv_bn_act(3, w[0], 3)]
        for i in range(1, len(w)):
            layers += [nn.AvgPool2d(2), conv_bn_act(w[i - 1], w[i], 3)]
        layers.append(conv_bn_act(w[-1], w[-1], 4, padding=0))
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(w[-1], 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """B×3×S×S image → B raw scores."""
        return self.fc(self.features(image).flatten(1)).squeeze(1)
