"""Image I/O and conversions: float32 N×3×H×W tensors in [0, 1], RGB, lossless PNG on disk."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


class ImageReadError(Exception):
    """A file that is not a readable image (corrupt, truncated, unknown format)."""


def pil_to_rgb_array(img: Image.Image) -> np.ndarray:
    """H×W×3 float32 in [0, 1] from any PIL mode (grey, RGBA, palette, 16-bit, CMYK); alpha is dropped."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        grey = np.clip(arr / top, 0.0, 1.0).astype(np.float32)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode == "F":
        grey = np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.float32) / 255.0


def read_image(path: Path, size: int | None = None) -> torch.Tensor:
    """3×H×W float32 RGB in [0, 1]; resized to size×size (bilinear, antialiased) when `size` is given."""
    try:
        with Image.open(path) as img:
            img.load()
            img = ImageOps.exif_transpose(img)  # camera photos: apply their orientation tag
            arr = pil_to_rgb_array(img)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError) as exc:
        raise ImageReadError(f"{path}: {exc}") from exc
    t = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).contiguous()
    if size is not None and (t.shape[1] != size or t.shape[2] != size):
        t = resize(t[None], size)[0]
    return t


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """N×C×H×W resized to size×size, bilinear with antialiasing, clamped to [0, 1]."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    out = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return out.clamp_(0.0, 1.0)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """N×3×H×W [0, 1] tensor (or 3×H×W) -> N×H×W×3 (or H×W×3) uint8 with rounding."""
    arr = images.detach().cpu().clamp(0, 1).mul(255).round().to(torch.uint8)
    if arr.dim() == 4:
        return arr.permute(0, 2, 3, 1).numpy()
    return arr.permute(1, 2, 0).numpy()


def to_grey_uint8(image: torch.Tensor) -> np.ndarray:
    """3×H×W [0, 1] -> H×W uint8 grey with ITU-R 601 luma weights (as OpenCV's RGB2GRAY)."""
    rgb = to_uint8(image).astype(np.float32)
    grey = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    return np.clip(np.round(grey), 0, 255).astype(np.uint8)


def save_png(image: torch.Tensor | np.ndarray, path: Path) -> None:
    """Write a 3×H×W [0, 1] tensor or an H×W×3 uint8 array as lossless PNG, atomically."""
    arr = to_uint8(image) if isinstance(image, torch.Tensor) else np.asarray(image, dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    Image.fromarray(arr).save(tmp, format="PNG")
    os.replace(tmp, path)
