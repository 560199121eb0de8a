"""Drawing helpers for `FeatureSet.picture`: what a feature record looks like, drawn from the record alone.

A picture is built only from released values (never from the private image), so that a run's grid shows what an
attacker receives. Colour maps are written out here (linear ramps) so that feature code needs no plotting library.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

EMPTY = (225, 225, 225)  # cells of a grid past the last value
NONFINITE = (0, 0, 0)  # NaN / Inf values
_NEG, _MID, _POS = np.array([33, 102, 172.0]), np.array([247, 247, 247.0]), np.array([178, 24, 43.0])
_LOW, _HIGH = np.array([255, 255, 255.0]), np.array([8, 48, 107.0])


def font(size: int = 11) -> ImageFont.ImageFont:
    """Pillow's bundled font at `size` px (scalable when Pillow has FreeType, its bitmap font otherwise)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow < 10.1 or no FreeType: the fixed bitmap font
        return ImageFont.load_default()


def blank(size: int, colour: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """A size×size×3 uint8 tile of one colour."""
    return np.full((size, size, 3), colour, dtype=np.uint8)


def grid_shape(n: int) -> tuple[int, int]:
    """(rows, cols) of a near-square grid holding n cells, filled row by row."""
    cols = max(1, math.ceil(math.sqrt(n)))
    return max(1, math.ceil(n / cols)), cols


def cells(colours: np.ndarray, height: int, width: int) -> np.ndarray:
    """N×3 uint8 cell colours laid out row by row on a near-square grid, scaled to height×width (nearest)."""
    rows, cols = grid_shape(len(colours))
    board = np.empty((rows * cols, 3), dtype=np.uint8)
    board[:] = EMPTY
    board[: len(colours)] = colours
    img = Image.fromarray(board.reshape(rows, cols, 3))
    return np.asarray(img.resize((width, height), Image.NEAREST))


def diverging(values: np.ndarray) -> np.ndarray:
    """N×3 uint8: blue (negative) - white (0) - red (positive), scaled by the largest finite |value|; black when
    not finite."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    finite = np.isfinite(v)
    scale = float(np.abs(v[finite]).max()) if finite.any() else 0.0
    t = np.zeros_like(v) if scale == 0 else np.clip(np.where(finite, v, 0) / scale, -1, 1)
    out = np.where(t[:, None] < 0, _MID + (-t[:, None]) * (_NEG - _MID), _MID + t[:, None] * (_POS - _MID))
    out[~finite] = NONFINITE
    return np.round(out).astype(np.uint8)


def sequential(values: np.ndarray) -> np.ndarray:
    """N×3 uint8: white (0) to dark blue (the largest value); for non-negative values such as descriptor bins."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    top = float(v.max()) if v.size else 0.0
    t = np.zeros_like(v) if top <= 0 else np.clip(v / top, 0, 1)
    return np.round(_LOW + t[:, None] * (_HIGH - _LOW)).astype(np.uint8)


def matrix(values: np.ndarray, height: int, width: int) -> np.ndarray:
    """A K×M non-negative matrix (e.g. descriptors, one row each) as a height×width heat map, white to dark blue."""
    k, m = values.shape
    rgb = sequential(values.reshape(-1)).reshape(k, m, 3)
    img = Image.fromarray(rgb)
    resample = Image.NEAREST if (k <= height and m <= width) else Image.BOX
    return np.asarray(img.resize((width, height), resample))


def fit(size: int, lines: Sequence[str]) -> list[str]:
    """The caption lines that fit a size×size tile: each no wider than the tile, all together at most a third of
    its height (a small tile gets fewer lines, or none, rather than a squeezed picture)."""
    f = font(_caption_px(size))
    out = [line for line in lines if f.getlength(line) <= size - 4]
    while out and caption_height(size, out) > size // 3:
        out.pop()
    return out


def caption_height(size: int, lines: Sequence[str]) -> int:
    """Pixels the caption `lines` take at the bottom of a size×size tile."""
    f = font(_caption_px(size))
    return sum(f.getbbox(line)[3] + 2 for line in lines) + 2 if lines else 0


def _caption_px(size: int) -> int:
    return max(8, min(11, size // 12))


def with_caption(content: np.ndarray, size: int, lines: Sequence[str]) -> np.ndarray:
    """A size×size tile: `content` (H×size×3 with H = size - caption_height) above the caption `lines` in words."""
    tile = blank(size)
    tile[: content.shape[0]] = content
    img = Image.fromarray(tile)
    draw = ImageDraw.Draw(img)
    f = font(_caption_px(size))
    y = content.shape[0] + 1
    for line in lines:
        draw.text((2, y), line, fill=(0, 0, 0), font=f)
        y += f.getbbox(line)[3] + 2
    return np.asarray(img)


def message(size: int, lines: Sequence[str]) -> np.ndarray:
    """A grey size×size tile saying `lines` (e.g. that nothing drawable was released)."""
    img = Image.fromarray(blank(size, (235, 235, 235)))
    draw = ImageDraw.Draw(img)
    f = font(_caption_px(size))
    y = 4
    for line in lines:
        draw.text((4, y), line, fill=(0, 0, 0), font=f)
        y += f.getbbox(line)[3] + 3
    return np.asarray(img)
