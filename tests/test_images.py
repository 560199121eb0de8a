"""Tests of bench.images: mode conversions against hand-computed pixels, resizing against PIL, lossless PNG."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from bench.images import ImageReadError, read_image, resize, save_png, to_grey_uint8, to_uint8


def _rgb(t: torch.Tensor) -> np.ndarray:
    """3×H×W tensor -> H×W×3 float64 array."""
    assert t.dtype == torch.float32 and t.dim() == 3 and t.shape[0] == 3
    return t.permute(1, 2, 0).double().numpy()


def test_grey_png_is_repeated_into_three_channels(tmp_path: Path) -> None:
    grey = np.array([[0, 1, 128], [200, 254, 255]], dtype=np.uint8)
    Image.fromarray(grey, mode="L").save(tmp_path / "g.png")
    got = _rgb(read_image(tmp_path / "g.png"))
    for y in range(2):
        for x in range(3):
            assert got[y, x].tolist() == pytest.approx([grey[y, x] / 255.0] * 3, abs=1e-7)


def test_rgba_png_drops_alpha_without_blending(tmp_path: Path) -> None:
    rgba = np.array([[[10, 20, 30, 0], [255, 0, 128, 255]], [[1, 2, 3, 128], [200, 100, 50, 7]]], dtype=np.uint8)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    got = _rgb(read_image(tmp_path / "a.png"))
    np.testing.assert_allclose(got, rgba[..., :3] / 255.0, atol=1e-7)


@pytest.mark.parametrize("transparency", [False, True])
def test_palette_png_maps_indices_to_palette_colours(tmp_path: Path, transparency: bool) -> None:
    palette = [(0, 0, 0), (255, 0, 0), (12, 200, 99), (250, 250, 5)]
    idx = np.array([[0, 1, 2, 3], [3, 2, 1, 0], [1, 1, 3, 2]], dtype=np.uint8)
    img = Image.fromarray(idx, mode="P")
    img.putpalette([v for colour in palette for v in colour] + [0] * (768 - 3 * len(palette)))
    kwargs = {"transparency": 2} if transparency else {}
    img.save(tmp_path / "p.png", **kwargs)
    with Image.open(tmp_path / "p.png") as check:
        assert check.mode == "P" and ("transparency" in check.info) == transparency
    got = _rgb(read_image(tmp_path / "p.png"))
    for y in range(idx.shape[0]):
        for x in range(idx.shape[1]):
            assert got[y, x].tolist() == pytest.approx([c / 255.0 for c in palette[idx[y, x]]], abs=1e-7)


@pytest.mark.parametrize("scale", [5000, 10])  # 10: a dark 16-bit image whose values all fit in 8 bits
def test_16bit_png_is_divided_by_65535(tmp_path: Path, scale: int) -> None:
    values = (np.arange(12, dtype=np.uint16).reshape(3, 4) * scale).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "d.png")
    with Image.open(tmp_path / "d.png") as check:
        assert check.mode.startswith("I")
    got = _rgb(read_image(tmp_path / "d.png"))
    for y in range(3):
        for x in range(4):
            assert got[y, x].tolist() == pytest.approx([values[y, x] / 65535.0] * 3, abs=1e-7)


def test_jpeg_reads_as_rgb_not_bgr(tmp_path: Path) -> None:
    rgb = np.zeros((16, 16, 3), dtype=np.uint8)
    rgb[..., 0] = 230  # strongly red
    rgb[..., 2] = 20
    Image.fromarray(rgb).save(tmp_path / "r.jpg", quality=95)
    got = _rgb(read_image(tmp_path / "r.jpg"))
    reference = cv2.cvtColor(cv2.imread(str(tmp_path / "r.jpg")), cv2.COLOR_BGR2RGB) / 255.0
    np.testing.assert_allclose(got, reference, atol=3 / 255)
    assert got[..., 0].mean() > 0.85 and got[..., 2].mean() < 0.15


def test_unreadable_files_raise_image_read_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    with pytest.raises(ImageReadError):
        read_image(bad)
    with pytest.raises(ImageReadError):
        read_image(tmp_path / "missing.png")
    truncated = tmp_path / "cut.png"
    Image.fromarray(np.full((64, 64, 3), 77, np.uint8)).save(tmp_path / "ok.png")
    truncated.write_bytes((tmp_path / "ok.png").read_bytes()[:60])
    with pytest.raises(ImageReadError):
        read_image(truncated)


def test_read_image_resizes_to_square(tmp_path: Path) -> None:
    Image.fromarray(np.full((30, 50, 3), 90, np.uint8)).save(tmp_path / "w.png")
    t = read_image(tmp_path / "w.png", size=24)
    assert tuple(t.shape) == (3, 24, 24)
    np.testing.assert_allclose(t.numpy(), 90 / 255.0, atol=1e-6)  # a constant image stays constant
    assert tuple(read_image(tmp_path / "w.png").shape) == (3, 30, 50)


@pytest.mark.parametrize("size", [7, 20, 64])
def test_resize_matches_pil_antialiased_bilinear(size: int) -> None:
    rng = np.random.default_rng(3)
    images = rng.random((2, 3, 40, 40)).astype(np.float32)
    got = resize(torch.from_numpy(images.copy()), size).numpy()
    assert got.shape == (2, 3, size, size)
    for n in range(2):
        for c in range(3):
            ref = np.asarray(Image.fromarray(images[n, c], mode="F").resize((size, size), Image.BILINEAR))
            np.testing.assert_allclose(got[n, c], np.clip(ref, 0, 1), atol=1e-5)


def test_save_png_round_trip_is_lossless(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    arr = rng.integers(0, 256, size=(17, 23, 3), dtype=np.uint8)
    save_png(arr, tmp_path / "sub" / "a.png")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "sub" / "a.png").convert("RGB")), arr)
    assert not list((tmp_path / "sub").glob("*.tmp"))
    tensor = torch.from_numpy(arr).permute(2, 0, 1).float() / 255.0
    save_png(tensor, tmp_path / "t.png")
    back = read_image(tmp_path / "t.png")
    assert torch.equal(back, tensor)
    assert np.array_equal(to_uint8(back), arr)


def test_to_uint8_rounds_and_clamps() -> None:
    t = torch.tensor([-0.5, 0.0, 0.5 / 255 + 1e-4, 1.49 / 255, 254.6 / 255, 1.0, 3.0]).view(1, 1, 7).expand(3, 1, 7)
    assert to_uint8(t)[0, :, 0].tolist() == [0, 0, 1, 1, 255, 255, 255]


def test_grey_conversion_matches_opencv() -> None:
    rng = np.random.default_rng(5)
    arr = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    tensor = torch.from_numpy(arr).permute(2, 0, 1).float() / 255.0
    ours = to_grey_uint8(tensor).astype(int)
    ref = cv2.cvtColor(arr, cv2.COLOR_RGB2GRAY).astype(int)
    assert np.abs(ours - ref).max() <= 1
