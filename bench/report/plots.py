"""Pictures of a run: the original | released features | reconstruction grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from bench.features import FeatureSet
from bench.images import save_png, to_uint8


def _tile(arr: np.ndarray, size: int) -> np.ndarray:
    """H×W×3 uint8 scaled to size×size (nearest when enlarging, so pixels stay visible)."""
    img = Image.fromarray(arr)
    resample = Image.NEAREST if img.width < size else Image.BILINEAR
    return np.asarray(img.resize((size, size), resample))


def comparison_grid(victim_images: torch.Tensor, originals: torch.Tensor, recon: torch.Tensor,
                    released: FeatureSet, path: Path, title: str = "", n: int = 8) -> None:
    """Rows of (original, released features drawn over the victim's image, reconstruction) for the first n."""
    n = min(n, len(recon))
    size = max(128, int(victim_images.shape[-1]), int(recon.shape[-1]))
    pad, head = 4, 34
    labels = ("original", "released features", "reconstruction")
    width = 3 * size + 4 * pad
    height = head + n * (size + pad) + pad
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    victim8 = to_uint8(victim_images[:n])
    orig8 = to_uint8(originals[:n])
    rec8 = to_uint8(recon[:n])
    for row in range(n):
        preview = released.preview(row, victim8[row].copy())
        tiles = (orig8[row], preview, rec8[row])
        y = head + row * (size + pad)
        for col, tile in enumerate(tiles):
            x = pad + col * (size + pad)
            canvas[y:y + size, x:x + size] = _tile(np.ascontiguousarray(tile), size)
    img = Image.fromarray(canvas)
    draw = ImageDraw.Draw(img)
    draw.text((pad, 2), title[: width // 6], fill=(0, 0, 0))
    for col, label in enumerate(labels):
        draw.text((pad + col * (size + pad), 18), label, fill=(60, 60, 60))
    save_png(np.asarray(img), path)
