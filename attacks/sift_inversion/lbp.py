"""Local binary patterns (LBP): SLI's structure image, 8 neighbours at radius 1, scaled to [-1, 1].

For every pixel c of a grey image, the eight neighbours of its 3×3 square are read clockwise from the top-left one
(top-left, top, top-right, right, bottom-right, bottom, bottom-left, left); neighbour k contributes bit 2^k when its
value is at least the centre's (s(g_k − g_c) = 1 for g_k ≥ g_c). The code 0..255 is scaled to [-1, 1] by
code/127.5 − 1. Pixels outside the image repeat the nearest border pixel (replicate padding), so a flat image is all
255 (every neighbour equals the centre) and maps to 1.

The grey image is quantised to 8 bits first (as OpenCV's RGB→grey conversion of an 8-bit image would be), so that
comparisons of equal-looking pixels do not flip on float rounding. Everything is one vectorised torch expression
over the batch: eight shifted views of the padded image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bench.attacks.sift_inversion.losses import to_grey

# (row offset, column offset) of neighbour k, clockwise from the top-left; bit k has weight 2**k.
NEIGHBOURS: tuple[tuple[int, int], ...] = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))


def lbp_codes(grey: torch.Tensor) -> torch.Tensor:
    """Integer LBP codes (0..255, as float32) of N×1×H×W grey images, compared as given (no quantisation)."""
    if grey.dim() != 4 or grey.shape[1] != 1:
        raise ValueError(f"lbp_codes needs N×1×H×W grey images, got shape {tuple(grey.shape)}")
    h, w = grey.shape[-2:]
    padded = F.pad(grey, (1, 1, 1, 1), mode="replicate")
    codes = torch.zeros_like(grey)
    for k, (dy, dx) in enumerate(NEIGHBOURS):  # eight whole-image comparisons, not a pixel loop
        shifted = padded[:, :, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
        codes = codes + (shifted >= grey).to(grey.dtype) * float(1 << k)
    return codes


def lbp_image(images: torch.Tensor) -> torch.Tensor:
    """N×1×H×W LBP structure images in [-1, 1] of N×3×H×W RGB (or N×1×H×W grey) images in [0, 1]."""
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"lbp_image needs N×3×H×W or N×1×H×W images, got shape {tuple(images.shape)}")
    x = images.float()
    grey = to_grey(x) if x.shape[1] == 3 else x
    grey = torch.round(grey.clamp(0.0, 1.0) * 255.0)
    return lbp_codes(grey) / 127.5 - 1.0
