"""The picture of a run (grid.png): original | released features | reconstruction, drawn by the runner; it lives
beside the runner, not in report/, so that computing never imports the reports."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from bench.features import FeatureSet
from bench.features.pictures import font
from bench.images import save_png, to_uint8

LABELS = ("original", "released features", "reconstruction")
TITLE_PX = 12


def _tile(arr: np.ndarray, size: int) -> np.ndarray:
    """H×W×3 uint8 scaled to size×size (nearest when enlarging, so pixels stay visible)."""
    img = Image.fromarray(arr)
    resample = Image.NEAREST if img.width < size else Image.BILINEAR
    return np.asarray(img.resize((size, size), resample))


def wrap_title(title: str, width: int, px: int = TITLE_PX) -> list[str]:
    """`title` in lines that each fit `width` pixels in the grid's font, broken at spaces (inside a word only when
    the word alone is wider): the whole title is drawn, never cut."""
    f = font(px)
    lines: list[str] = []
    line = ""
    for word in title.split():
        candidate = f"{line} {word}" if line else word
        if f.getlength(candidate) <= width:
            line = candidate
            continue
        if line:
            lines.append(line)
        line = ""
        for ch in word:  # a word wider than the whole line: split it by characters
            if line and f.getlength(line + ch) > width:
                lines.append(line)
                line = ""
            line += ch
    if line:
        lines.append(line)
    return lines


def comparison_grid(originals: torch.Tensor, recon: torch.Tensor, released: FeatureSet, path: Path,
                    title: str = "", n: int = 8) -> None:
    """Rows of (original, a picture of the released features, reconstruction) for the first n samples.

    The middle column is `released.picture(i, size)`: drawn from the released record alone (keypoints, a heat map
    of a vector, a grid of bits), so that it shows what the attacker received and never the private image."""
    n = min(n, len(recon))
    size = max(128, int(originals.shape[-1]), int(recon.shape[-1]))
    pad = 4
    width = 3 * size + 4 * pad
    title_font, label_font = font(TITLE_PX), font(11)
    lines = wrap_title(title, width - 2 * pad)
    line_h = TITLE_PX + 3
    head = pad + len(lines) * line_h + 16
    height = head + n * (size + pad) + pad
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    orig8 = to_uint8(originals[:n])
    rec8 = to_uint8(recon[:n])
    for row in range(n):
        tiles = (_tile(np.ascontiguousarray(orig8[row]), size), released.picture(row, size),
                 _tile(np.ascontiguousarray(rec8[row]), size))
        y = head + row * (size + pad)
        for col, tile in enumerate(tiles):
            x = pad + col * (size + pad)
            canvas[y:y + size, x:x + size] = tile
    img = Image.fromarray(canvas)
    draw = ImageDraw.Draw(img)
    for k, line in enumerate(lines):
        draw.text((pad, pad + k * line_h), line, fill=(0, 0, 0), font=title_font)
    for col, label in enumerate(LABELS):
        draw.text((pad + col * (size + pad), head - 15), label, fill=(60, 60, 60), font=label_font)
    save_png(np.asarray(img), path)
