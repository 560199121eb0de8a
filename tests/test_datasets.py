"""Tests of the dataset plugins: the synthetic demo set and the folder-backed sets (tmp trees and real files)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from bench import registry
from bench.datasets.folders import LFW, UTKFace, ImageFolder, parse_utkface_name
from bench.datasets.synthetic import SyntheticFaces
from bench.errors import BenchError
from bench.images import resize, to_grey_uint8

# ------------------------------------------------------------------------------------------------ registry


def test_registry_lists_all_six_datasets() -> None:
    names = registry.datasets.names()
    for name in ("synthetic-faces", "folder", "utkface", "celebahq", "ffhq", "lfw", "cifar10", "cifar100"):
        assert name in names
        assert registry.datasets.get(name).summary  # one-line docstring summary
    entry = registry.datasets.get("synthetic-faces")
    assert entry.meta["needs_root"] is False and "synthetic" in entry.meta["note"]
    assert all(registry.datasets.get(n).meta["needs_root"] for n in ("folder", "utkface", "celebahq", "ffhq", "lfw"))
    for name in ("utkface", "celebahq", "ffhq"):
        assert "non-commercial" in registry.datasets.get(name).summary


# ----------------------------------------------------------------------------------------------- synthetic


def test_synthetic_ids_and_count() -> None:
    ds = SyntheticFaces()
    ids = ds.item_ids()
    assert len(ids) == 5000 and ids[0] == "synthetic-000000" and ids[-1] == "synthetic-004999"
    assert ids == sorted(ids)
    assert SyntheticFaces(count=7).item_ids()[-1] == "synthetic-000006"
    assert SyntheticFaces(count=7).fingerprint() != ds.fingerprint()
    with pytest.raises(BenchError):
        SyntheticFaces(count=0)
    for bad in ("synthetic-000007", "synthetic-7", "face-000001"):
        with pytest.raises(BenchError, match="synthetic-faces"):
            SyntheticFaces(count=7).load([bad], 32)


def test_synthetic_is_deterministic_and_varied() -> None:
    ids = ["synthetic-000000", "synthetic-000001", "synthetic-000042", "synthetic-004999"]
    a = SyntheticFaces().load(ids, 64)
    b = SyntheticFaces(count=5000).load(list(reversed(ids)), 64)
    assert a.ids == ids
    for k in range(len(ids)):
        assert torch.equal(a.images[k], b.images[len(ids) - 1 - k])
    for i in range(len(ids)):
        for j in range(i + 1, len(ids)):
            assert (a.images[i] - a.images[j]).abs().mean() > 0.05
    for key in ("identity", "glasses"):
        assert np.array_equal(a.labels[key], b.labels[key][::-1])


def test_synthetic_is_identical_in_a_fresh_process_with_other_thread_settings() -> None:
    code = (
        "import sys, cv2, torch; cv2.setNumThreads(3); torch.set_num_threads(3)\n"
        "from bench.datasets.synthetic import SyntheticFaces\n"
        "ds = SyntheticFaces()\n"
        "for size in (128, 40):\n"
        "    sys.stdout.buffer.write(ds.load(['synthetic-000005', 'synthetic-000777'], size).images.numpy().tobytes())\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "3", "OPENBLAS_NUM_THREADS": "3"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, env=env, check=True).stdout
    ds = SyntheticFaces()
    here = b"".join(ds.load(["synthetic-000005", "synthetic-000777"], s).images.numpy().tobytes() for s in (128, 40))
    assert out == here


def test_synthetic_refuses_tiny_sizes() -> None:
    with pytest.raises(BenchError, match="at least"):
        SyntheticFaces().load(["synthetic-000000"], 8)


def test_synthetic_shape_range_dtype_and_labels() -> None:
    ds = SyntheticFaces()
    ids = ds.item_ids()[:24]
    s = ds.load(ids, 48)
    assert s.images.shape == (24, 3, 48, 48) and s.images.dtype == torch.float32
    assert float(s.images.min()) >= 0.0 and float(s.images.max()) <= 1.0
    assert float(s.images.std()) > 0.1  # not blank
    assert s.skipped == []
    assert s.labels["identity"].dtype.kind == "i" and s.labels["identity"].tolist() == list(range(24))
    glasses = s.labels["glasses"]
    assert glasses.dtype.kind == "i" and set(glasses.tolist()) == {0, 1}  # both occur among 24 faces
    assert all(len(v) == 24 for v in s.labels.values())
    # 8-bit quantised, like a real photo
    assert torch.equal(torch.round(s.images * 255) / 255, s.images)
    empty = ds.load([], 32)
    assert empty.images.shape == (0, 3, 32, 32) and len(empty) == 0


def test_synthetic_draws_the_same_face_at_every_size() -> None:
    ds = SyntheticFaces()
    ids = ["synthetic-000003", "synthetic-000010"]
    big = ds.load(ids, 128).images
    small = ds.load(ids, 64).images
    # smaller sizes are the 128 rendering shrunk with an antialiased bilinear filter: compare with torch's
    assert (resize(big, 64) - small).abs().max() <= 0.6 / 255
    # larger sizes redraw the same face: shrunk back, it is close to the 128 rendering (and far from another face)
    huge = ds.load(ids, 256).images
    assert (resize(huge, 128) - big).abs().mean() < 0.03
    assert (big[0] - big[1]).abs().mean() > 0.1


def test_synthetic_faces_give_sift_plenty_of_keypoints() -> None:
    ds = SyntheticFaces()
    s = ds.load(ds.item_ids()[100:108], 128)
    sift = cv2.SIFT_create(contrastThreshold=0.03)
    counts = [len(sift.detect(to_grey_uint8(img), None)) for img in s.images]
    assert float(np.median(counts)) >= 40, counts
    assert min(counts) >= 10, counts


# -------------------------------------------------------------------------------------------- folder trees


def _png(path: Path, arr: np.ndarray, mode: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode=mode).save(path)


def _solid(colour: tuple[int, int, int], h: int = 12, w: int = 12) -> np.ndarray:
    return np.tile(np.array(colour, np.uint8), (h, w, 1))


@pytest.fixture()
def mixed_tree(tmp_path: Path) -> Path:
    """A folder of every awkward kind of image file, with known constant colours, plus junk to ignore."""
    root = tmp_path / "imgs"
    _png(root / "grey.png", np.full((10, 14), 51, np.uint8), "L")
    rgba = np.zeros((12, 12, 4), np.uint8)
    rgba[...] = (200, 100, 0, 0)  # fully transparent: the colour must still come through, alpha dropped
    _png(root / "nested" / "rgba.PNG", rgba, "RGBA")
    pal = Image.fromarray(np.full((8, 8), 1, np.uint8), mode="P")
    pal.putpalette([0, 0, 0, 10, 220, 30] + [0] * 762)
    pal.save(root / "nested" / "pal.png")
    _png(root / "deep" / "er" / "sixteen.png", np.full((9, 9), 13107, np.uint16))  # 13107 / 65535 = 0.2
    Image.fromarray(_solid((30, 60, 240), 16, 16)).save(root / "photo.JPG", quality=95)
    (root / "nested" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (root / "notes.txt").write_text("not an image")
    (root / "._hidden.jpg").write_bytes(b"macOS metadata")
    return root


EXPECTED_IDS = ["deep/er/sixteen.png", "grey.png", "nested/corrupt.jpg", "nested/pal.png", "nested/rgba.PNG",
                "photo.JPG"]


def test_folder_lists_images_recursively_sorted(mixed_tree: Path) -> None:
    ds = ImageFolder(root=mixed_tree)
    assert ds.item_ids() == EXPECTED_IDS
    fp = ds.fingerprint()
    assert fp["name"] == "folder" and "root" not in fp and fp["files"] == 6  # known by content, not by place
    assert fp["version"] == ImageFolder.version and len(fp["content"]) == 64  # one digest, not a list per file


def test_folder_load_converts_every_mode_and_skips_corrupt_files(mixed_tree: Path) -> None:
    ds = ImageFolder(root=mixed_tree)
    s = ds.load(ds.item_ids(), 8)
    assert s.ids == [i for i in EXPECTED_IDS if i != "nested/corrupt.jpg"]
    assert [name for name, _ in s.skipped] == ["nested/corrupt.jpg"]
    assert s.skipped[0][1]  # a reason is given
    assert s.images.shape == (5, 3, 8, 8) and s.images.dtype == torch.float32
    expected = {
        "deep/er/sixteen.png": (0.2, 0.2, 0.2),
        "grey.png": (51 / 255, 51 / 255, 51 / 255),
        "nested/pal.png": (10 / 255, 220 / 255, 30 / 255),
        "nested/rgba.PNG": (200 / 255, 100 / 255, 0.0),
    }
    for k, item in enumerate(s.ids):
        mean = s.images[k].mean(dim=(1, 2)).tolist()
        if item == "photo.JPG":
            assert mean == pytest.approx([30 / 255, 60 / 255, 240 / 255], abs=4 / 255)
        else:
            assert mean == pytest.approx(list(expected[item]), abs=1e-5)
            assert float(s.images[k].std(dim=(1, 2)).max()) < 1e-5  # constant images stay constant


def test_folder_errors_are_bench_errors(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="does not exist"):
        UTKFace(root=tmp_path / "x").item_ids()
    with pytest.raises(BenchError, match="--data-root"):
        registry.datasets.get("utkface").obj(root=None).item_ids()
    (tmp_path / "file.png").write_bytes(b"")
    with pytest.raises(BenchError, match="not a folder"):
        ImageFolder(root=tmp_path / "file.png").load(["a.png"], 8)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    with pytest.raises(BenchError, match="no images"):
        LFW(root=tmp_path / "empty").item_ids()
    with pytest.raises(BenchError, match="does not exist"):
        registry.datasets.get("ffhq").obj(root=tmp_path / "x").fingerprint()


def test_unknown_ids_are_refused(mixed_tree: Path) -> None:
    with pytest.raises(BenchError, match="not an image"):
        ImageFolder(root=mixed_tree).load(["../outside.png"], 8)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("25_1_2_20170116174525125.jpg.chip.jpg", (25, 1, 2)),
        ("1_0_4_20161221193016140.jpg.chip.jpg", (1, 0, 4)),
        ("61_1_20170109150557335.jpg.chip.jpg", (61, 1, -1)),  # race missing, as in a few real files
        ("30_7_9_2017.jpg", (30, -1, -1)),  # out-of-range gender and race
        ("portrait.jpg", (-1, -1, -1)),
        ("sub/40_0_3_2017.png", (40, 0, 3)),
    ],
)
def test_parse_utkface_name(name: str, expected: tuple[int, int, int]) -> None:
    assert parse_utkface_name(name) == expected


def test_utkface_labels_align_with_loaded_ids(tmp_path: Path) -> None:
    names = ["25_1_2_20170116174525125.jpg.chip.jpg", "3_0_0_20170110.jpg.chip.jpg", "61_1_20170109.jpg.chip.jpg",
             "9_1_1_2017.jpg.chip.jpg", "zz.png"]
    for k, n in enumerate(names):
        if n.startswith("3_"):
            (tmp_path / n).write_bytes(b"corrupt")
        else:
            Image.fromarray(_solid((k * 40, 10, 10))).save(tmp_path / n, format="PNG" if n.endswith("png") else "JPEG")
    ds = UTKFace(root=tmp_path)
    s = ds.load(ds.item_ids(), 16)
    assert s.ids == ["25_1_2_20170116174525125.jpg.chip.jpg", "61_1_20170109.jpg.chip.jpg", "9_1_1_2017.jpg.chip.jpg",
                     "zz.png"]
    assert [n for n, _ in s.skipped] == ["3_0_0_20170110.jpg.chip.jpg"]
    assert s.labels["age"].tolist() == [25, 61, 9, -1]
    assert s.labels["gender"].tolist() == [1, 1, 1, -1]
    assert s.labels["race"].tolist() == [2, -1, 1, -1]
    assert all(v.dtype.kind == "i" for v in s.labels.values())


def test_lfw_identity_is_the_sorted_folder_index(tmp_path: Path) -> None:
    for person, n in (("Zoe_Z", 2), ("Adam_A", 1), ("Mia_M", 3)):
        for k in range(n):
            _png(tmp_path / person / f"{person}_{k + 1:04d}.jpg", _solid((k * 50, 90, 90)))
    ds = LFW(root=tmp_path)
    ids = ds.item_ids()
    s = ds.load(ids[::-1], 10)  # order of the request is kept; labels follow it
    expected = {"Adam_A": 0, "Mia_M": 1, "Zoe_Z": 2}
    assert s.labels["identity"].tolist() == [expected[i.split("/")[0]] for i in ids[::-1]]


def test_folder_fingerprint_follows_file_content(tmp_path: Path) -> None:
    """A private picture replaced under the same name must change the fingerprint (and so every cache key)."""
    root = tmp_path / "private"
    for k in range(3):
        _png(root / f"img{k}.png", _solid((40 * k, 90, 200)))
    first = ImageFolder(root=root).fingerprint()
    assert ImageFolder(root=root).fingerprint() == first  # unchanged folder, same fingerprint
    assert set(first) == {"name", "version", "files", "content", "keys"} and first["files"] == 3

    target = root / "img1.png"
    old = target.stat()
    _png(target, _solid((250, 10, 10), 14, 14))  # another picture, same name
    os.utime(target, ns=(old.st_atime_ns, old.st_mtime_ns + 1_000_000_000))  # coarse clocks: force a new mtime
    changed = ImageFolder(root=root).fingerprint()
    assert changed != first and changed["files"] == 3

    # only the modification time changes (same bytes, same name): the same dataset
    os.utime(target, ns=(old.st_atime_ns, old.st_mtime_ns + 2_000_000_000))
    assert ImageFolder(root=root).fingerprint() == changed
    # the same number of bytes, one of them changed, modification time kept: the cached digest is not trusted
    st = target.stat()
    data = bytearray(target.read_bytes())
    data[-20] ^= 0xFF
    target.write_bytes(bytes(data))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 3_000_000_000))
    assert ImageFolder(root=root).fingerprint() != changed
    changed = ImageFolder(root=root).fingerprint()
    # renaming a file changes it too, though sizes and times stay
    os.rename(root / "img2.png", root / "img9.png")
    assert ImageFolder(root=root).fingerprint()["content"] != changed["content"]


def test_synthetic_fingerprint_names_generator_and_code_version() -> None:
    from bench.datasets.synthetic import GENERATOR_VERSION

    fp = SyntheticFaces(count=10).fingerprint()
    assert fp["generator"] == GENERATOR_VERSION and fp["version"] == SyntheticFaces.version and fp["count"] == 10


def test_all_unreadable_split_is_one_clear_error(tmp_path: Path) -> None:
    """Every file bad: the dataset lists each with a reason and the runner refuses the split, naming them."""
    from bench.run.stages import load_split

    root = tmp_path / "bad"
    root.mkdir()
    (root / "empty.png").write_bytes(b"")
    (root / "text.jpg").write_bytes(b"not a jpeg at all")
    for k in range(5):
        (root / f"junk{k}.bmp").write_bytes(b"BM" + bytes(20))
    ds = ImageFolder(root=root)
    s = ds.load(ds.item_ids(), 16)
    assert len(s) == 0 and s.images.shape == (0, 3, 16, 16)
    reasons = dict(s.skipped)
    assert set(reasons) == set(ds.item_ids())
    assert reasons["empty.png"] == "empty file" and reasons["text.jpg"] == "not a recognised image format"
    assert all(str(root) not in r for r in reasons.values())  # the reason does not repeat the path
    with pytest.raises(BenchError) as err:
        load_split(ds, ds.item_ids(), 16, "private")
    msg = str(err.value)
    assert "\n" not in msg and "no readable image" in msg and "(7 files)" in msg
    assert "empty.png (empty file)" in msg and "and 2 more" in msg  # five named, the rest counted


# ---------------------------------------------------------------------------------------------- real data


def test_real_utkface_files(shared_data: Path) -> None:
    ds = registry.datasets.get("utkface").obj(root=shared_data / "faces" / "utkface")
    ids = ds.item_ids()
    assert len(ids) >= 100
    s = ds.load(ids[:4], 64)
    assert s.images.shape == (4, 3, 64, 64) and not s.skipped
    for k, item in enumerate(s.ids):
        age, gender, race = (int(p) for p in item.split("_")[:3])
        assert (s.labels["age"][k], s.labels["gender"][k], s.labels["race"][k]) == (age, gender, race)
    ref = np.asarray(Image.open(shared_data / "faces" / "utkface" / ids[0]).convert("RGB"), dtype=np.float32) / 255
    full = ds.load(ids[:1], ref.shape[0]).images[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(full, ref, atol=1e-6)


def test_real_ffhq_rgba_files(shared_data: Path) -> None:
    root = shared_data / "faces" / "ffhq_256"
    ds = registry.datasets.get("ffhq").obj(root=root)
    ids = ds.item_ids()[:2]
    s = ds.load(ids, 256)
    assert s.images.shape == (2, 3, 256, 256) and not s.skipped
    for k, item in enumerate(ids):
        with Image.open(root / item) as img:
            arr = np.asarray(img)
        assert arr.shape[2] == 4  # the file really is RGBA
        np.testing.assert_allclose(s.images[k].permute(1, 2, 0).numpy(), arr[..., :3] / 255.0, atol=1e-6)


def test_real_lfw_pairs(shared_data: Path) -> None:
    ds = registry.datasets.get("lfw").obj(root=shared_data / "faces" / "lfw_pairs")
    ids = ds.item_ids()
    s = ds.load(ids[:4], 32)
    assert s.images.shape == (4, 3, 32, 32) and not s.skipped
    ident = s.labels["identity"].tolist()
    assert ident[0] == ident[1] == 0 and ident[2] == ident[3] == 1  # two photos per person, sorted folders
    # greyscale JPEGs come out with three equal channels
    assert torch.allclose(s.images[:, 0], s.images[:, 1]) and torch.allclose(s.images[:, 1], s.images[:, 2])
