"""SIFT extractor vs direct OpenCV, SiftSet storage, and sift_maps vs plain-loop reference maps."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from bench import registry
from bench.errors import BenchError
from bench.features import FeatureSet
from bench.extractors.sift import SiftExtractor
from bench.images import read_image, to_grey_uint8
from bench.plugins import ImageSet
from bench.attacks.sift_inversion.maps import dense_map, keypoint_priority, sift_maps, splitmix64
from bench.features.sift import SiftSet


# ------------------------------------------------------------------------------------------------ helpers
def synthetic_images(size: int = 96) -> torch.Tensor:
    """Three drawn RGB pictures with corners and blobs, plus a flat grey one (no keypoints)."""
    rng = np.random.default_rng(3)
    pics = []
    for k in range(3):
        img = np.full((size, size, 3), 40 + 30 * k, np.uint8)
        for _ in range(6):
            x, y = (int(v) for v in rng.integers(8, size - 8, 2))
            colour = tuple(int(v) for v in rng.integers(0, 256, 3))
            if rng.random() < 0.5:
                cv2.circle(img, (x, y), int(rng.integers(3, 12)), colour, -1)
            else:
                cv2.rectangle(img, (x - 6, y - 4), (x + 5, y + 7), colour, -1)
        pics.append(img)
    pics.append(np.full((size, size, 3), 128, np.uint8))
    arr = np.stack(pics).astype(np.float32) / 255.0
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


def direct_sift(images: torch.Tensor) -> list[tuple[list, np.ndarray | None]]:
    """OpenCV SIFT called directly (contrastThreshold 0.03, other defaults) on each grey image."""
    sift = cv2.SIFT_create(contrastThreshold=0.03)
    return [sift.detectAndCompute(to_grey_uint8(im), None) for im in images]


def check_against_cv2(features: SiftSet, images: torch.Tensor) -> None:
    for i, (kps, desc) in enumerate(direct_sift(images)):
        assert features.counts()[i] == len(kps)
        rows = features.keypoints_of(i)
        want = np.array([(k.pt[0], k.pt[1], k.size, k.angle, k.response, k.octave) for k in kps], np.float32)
        np.testing.assert_array_equal(rows, want.reshape(-1, 6))
        got = features.descriptors_of(i)
        assert got.dtype == np.uint8 and got.shape == (len(kps), 128)
        if len(kps):
            np.testing.assert_array_equal(got, np.clip(np.round(desc), 0, 255).astype(np.uint8))


def make_set(per_image: list[np.ndarray], image_size: int, seed: int = 0, **flags: bool) -> SiftSet:
    """A SiftSet from lists of K×2 (x, y) coordinates, with random descriptors and keypoint attributes."""
    rng = np.random.default_rng(seed)
    kps = []
    for xy in per_image:
        xy = np.asarray(xy, np.float32).reshape(-1, 2)
        extra = rng.random((len(xy), 4)).astype(np.float32)
        kps.append(np.concatenate([xy, extra], axis=1))
    keypoints = np.concatenate(kps) if kps else np.zeros((0, 6), np.float32)
    descriptors = rng.integers(0, 256, (len(keypoints), 128)).astype(np.uint8)
    offsets = np.concatenate([[0], np.cumsum([len(k) for k in kps])]).astype(np.int64)
    return SiftSet(keypoints, descriptors, offsets, flags, {"image_size": image_size})


# ------------------------------------------------------------------------------------ plain-loop reference
def ref_cell(v: float, grid: int, image_size: int) -> int:
    return min(max(math.ceil(float(v) * grid / image_size) - 1, 0), grid - 1)


def ref_dense(kp: np.ndarray, desc: np.ndarray, grid: int, image_size: int):
    """First-wins dense map by a loop over keypoints: (128×G×G map, G×G owner ordinal or -1)."""
    dense = np.zeros((128, grid, grid), np.float32)
    owner = np.full((grid, grid), -1, np.int64)
    for k in range(len(kp)):
        r, c = ref_cell(kp[k, 1], grid, image_size), ref_cell(kp[k, 0], grid, image_size)
        if owner[r, c] < 0:
            owner[r, c] = k
            dense[:, r, c] = (desc[k].astype(np.float64) / 127.5 - 1.0).astype(np.float32)
    return dense, owner


def ref_map(sift: SiftSet, idx: int, s: int, compress: bool, seed: int, compat: bool, binary: bool) -> np.ndarray:
    kp, desc = sift.keypoints_of(idx), sift.descriptors_of(idx)
    if binary:
        desc = np.zeros((len(kp), 128), np.uint8)
    grid = 2 * s if compress else s
    dense, owner = ref_dense(kp, desc, grid, sift.meta["image_size"])
    if not compress:
        out, occ = dense, owner >= 0
    elif compat:
        out = np.zeros((128, s, s), np.float32)
        occ = np.zeros((s, s), bool)
        for k in range(len(kp)):  # dense cells in the order their owners were written
            r, c = ref_cell(kp[k, 1], grid, sift.meta["image_size"]), ref_cell(kp[k, 0], grid, sift.meta["image_size"])
            if owner[r, c] != k:
                continue
            rr, cc = min(math.ceil(r / 2), s - 1), min(math.ceil(c / 2), s - 1)
            if not occ[rr, cc]:
                occ[rr, cc] = True
                out[:, rr, cc] = dense[:, r, c]
    else:
        out = np.zeros((128, s, s), np.float32)
        occ = np.zeros((s, s), bool)
        for br in range(s):
            for bc in range(s):
                cells = [(r, c) for r in (2 * br, 2 * br + 1) for c in (2 * bc, 2 * bc + 1) if owner[r, c] >= 0]
                if not cells:
                    continue
                prio = [int(keypoint_priority(seed, kp[owner[r, c], :2], np.array([owner[r, c]]))[0]) for r, c in cells]
                best = min(range(len(cells)), key=lambda j: (prio[j], owner[cells[j]]))
                occ[br, bc] = True
                out[:, br, bc] = dense[:, cells[best][0], cells[best][1]]
    return occ[None].astype(np.float32) if binary else out


def ref_occupied_per_block(sift: SiftSet, idx: int, s: int) -> np.ndarray:
    _, owner = ref_dense(sift.keypoints_of(idx), sift.descriptors_of(idx), 2 * s, sift.meta["image_size"])
    occ = owner >= 0
    return occ[0::2, 0::2].astype(int) + occ[1::2, 0::2] + occ[0::2, 1::2] + occ[1::2, 1::2]


@pytest.fixture(scope="module")
def crowded() -> SiftSet:
    """Images whose keypoints collide on cells and blocks, with coordinates at 0, fractions and the border."""
    size = 32
    rng = np.random.default_rng(11)
    edge = [(0.0, 0.0), (0.0, 31.999), (32.0, 32.0), (31.5, 0.2), (1.0, 1.0), (1.0001, 0.9999), (40.0, -3.0)]
    same_cell = [(20.2, 20.7), (20.9, 20.1), (20.5, 20.5)]  # one dense cell at every grid size used below
    block = [(8.5, 9.0), (9.5, 8.6), (11.0, 9.0), (9.0, 11.5), (11.5, 11.9), (10.5, 10.5)]  # 4 cells of a block at G=16
    img0 = np.array(edge + same_cell + block, np.float32)
    img1 = rng.uniform(0, size, (400, 2)).astype(np.float32)  # dense: many collisions
    img2 = np.round(rng.uniform(0, size, (150, 2)) * 2) / 2  # half-pixel grid: exact cell boundaries
    img3 = np.zeros((0, 2), np.float32)  # no keypoints
    img4 = rng.uniform(0, size, (60, 2)).astype(np.float32)
    return make_set([img0, img1, img2, img3, img4], size, seed=5)


# ------------------------------------------------------------------------------------------------ extractor
def test_extractor_matches_direct_opencv() -> None:
    images = synthetic_images()
    ext = SiftExtractor()
    feats = ext.extract(ImageSet([f"im{i}" for i in range(len(images))], images), progress=False)
    assert isinstance(feats, SiftSet) and len(feats) == len(images)
    check_against_cv2(feats, images)
    assert feats.counts()[:3].min() > 0, "the drawn images should give keypoints"
    assert feats.counts()[3] == 0 and feats.keypoints_of(3).shape == (0, 6)
    assert feats.meta["image_size"] == 96
    assert feats.meta["extractor"]["contrast_threshold"] == 0.03
    assert ext.config() == {
        "name": "sift", "version": SiftExtractor.version, "contrast_threshold": 0.03, "n_features": 0,
        "n_octave_layers": 3, "edge_threshold": 10.0, "sigma": 1.6, "opencv": cv2.__version__,
    }
    assert feats.spec.flags == {"has_coordinates": True, "has_descriptors": True}
    assert "sift" in registry.extractors.names()
    assert registry.extractors.get("sift").obj is SiftExtractor


def test_extractor_on_real_faces(shared_data: Path) -> None:
    files = sorted((shared_data / "faces" / "celebahq_256").glob("*.png"))[:2]
    if not files:
        pytest.skip("no celebahq_256 images")
    images = torch.stack([read_image(f, 128) for f in files])
    feats = SiftExtractor().extract(ImageSet([f.name for f in files], images), progress=False)
    check_against_cv2(feats, images)
    assert feats.counts().min() > 10
    maps = sift_maps(feats, [0, 1], 64, seed=3)
    for b in range(2):
        np.testing.assert_array_equal(maps[b].numpy(), ref_map(feats, b, 64, True, 3, False, False))


def test_extractor_rejects_non_square() -> None:
    with pytest.raises(BenchError, match="square"):
        SiftExtractor().extract(ImageSet(["a"], torch.zeros(1, 3, 32, 40)), progress=False)


# ------------------------------------------------------------------------------------------------ SiftSet
def test_save_load_mmap_and_subset(tmp_path: Path, crowded: SiftSet) -> None:
    crowded.save(tmp_path / "f")
    loaded = FeatureSet.load(tmp_path / "f")
    assert isinstance(loaded, SiftSet) and len(loaded) == len(crowded)
    assert not loaded.keypoints.flags.owndata and not loaded.descriptors.flags.writeable  # memory-mapped
    np.testing.assert_array_equal(loaded.keypoints, crowded.keypoints)
    np.testing.assert_array_equal(loaded.descriptors, crowded.descriptors)
    assert loaded.meta == crowded.meta and loaded.flags == crowded.flags
    order = [4, 0, 3, 0, 2]
    sub = loaded.subset(order)
    assert len(sub) == 5
    np.testing.assert_array_equal(sub.counts(), [len(crowded.keypoints_of(i)) for i in order])
    np.testing.assert_array_equal(sub.keypoints, np.concatenate([crowded.keypoints_of(i) for i in order]))
    np.testing.assert_array_equal(sub.descriptors, np.concatenate([crowded.descriptors_of(i) for i in order]))
    for j, i in enumerate(order):
        np.testing.assert_array_equal(sub.descriptors_of(j), crowded.descriptors_of(i))
    assert len(loaded.subset([])) == 0 and loaded.subset([]).keypoints.shape == (0, 6)
    with pytest.raises(BenchError, match="out of range"):
        loaded.subset([5])


def test_no_coordinates_survive_subset_save_load(tmp_path: Path, crowded: SiftSet) -> None:
    kp = crowded.keypoints.copy()
    kp[:, :2] = np.nan
    hidden = SiftSet(kp, crowded.descriptors, crowded.offsets, {"has_coordinates": False}, crowded.meta)
    sub = hidden.subset([1, 0])
    sub.save(tmp_path / "h")
    back = FeatureSet.load(tmp_path / "h", mmap=False)
    assert back.flags["has_coordinates"] is False and back.flags["has_descriptors"] is True
    assert np.isnan(back.keypoints[:, :2]).all()
    off = crowded.offsets
    want = np.concatenate([kp[off[1] : off[2], 2:], kp[off[0] : off[1], 2:]])
    np.testing.assert_array_equal(back.keypoints[:, 2:], want)
    with pytest.raises(BenchError, match="coordinates"):
        sift_maps(back, [0], 8)
    with pytest.raises(BenchError, match="coordinates"):
        sift_maps(back, [0], 8, binary=True)
    pic = back.picture(0, 64)  # no coordinates: the descriptors as a heat map, not an empty or made-up layout
    assert pic.shape == (64, 64, 3) and (pic[:32] < 250).any()
    changed = SiftSet(back.keypoints, 255 - np.asarray(back.descriptors), back.offsets, back.flags, back.meta)
    assert not np.array_equal(changed.picture(0, 64), pic)


def test_constructor_validation() -> None:
    kp = np.zeros((3, 6), np.float32)
    desc = np.zeros((3, 128), np.uint8)
    with pytest.raises(BenchError, match="non-decreasing"):
        SiftSet(kp, desc, np.array([0, 2, 1, 3]))
    with pytest.raises(BenchError, match="end at 3"):
        SiftSet(kp, desc, np.array([0, 2]))
    with pytest.raises(BenchError, match="start at 0"):
        SiftSet(kp, desc, np.array([1, 3]))
    with pytest.raises(BenchError, match="M×6"):
        SiftSet(np.zeros((3, 5), np.float32), desc, np.array([0, 3]))
    with pytest.raises(BenchError, match="uint8"):
        SiftSet(kp, desc.astype(np.float32), np.array([0, 3]))
    with pytest.raises(BenchError, match="one row per keypoint"):
        SiftSet(kp, desc[:2], np.array([0, 3]))
    with pytest.raises(BenchError, match="M×128"):
        SiftSet(kp, np.zeros((3, 64), np.uint8), np.array([0, 3]))
    ok = SiftSet(kp, np.zeros((3, 0), np.uint8), np.array([0, 1, 3]), {"has_descriptors": False}, {"image_size": 8})
    assert len(ok) == 2 and list(ok.counts()) == [1, 2]
    with pytest.raises(BenchError, match="descriptors"):
        sift_maps(ok, [0], 4)
    assert sift_maps(ok, [1], 4, binary=True).shape == (1, 1, 4, 4)


def test_picture_draws_each_keypoint_where_it_is() -> None:
    sift = make_set([np.array([[8.0, 24.0]])], 32)
    pic = sift.picture(0, 128)
    assert pic.shape == (128, 128, 3) and pic.dtype == np.uint8
    coloured = (pic[..., 0] != pic[..., 1]) | (pic[..., 1] != pic[..., 2])  # circle and tick; frame, text are grey
    ys, xs = np.nonzero(coloured)
    assert len(ys) > 0
    body = int(ys.max()) + 1  # the keypoint area is square, centred above the caption
    assert 64 < body < 128
    # The picture's layout, written out: the square area is at most 128 tall; find it from the frame's grey line.
    frame_rows = np.nonzero((pic[:, 64] == 190).all(axis=1))[0]
    top, bottom = int(frame_rows.min()), int(frame_rows.max())
    side = bottom - top + 1
    left = (128 - side) / 2
    cx, cy = (8 + 0.5) * side / 32 - 0.5 + left, (24 + 0.5) * side / 32 - 0.5
    assert abs(xs.mean() - cx) < 1.5 and abs(ys.mean() - cy) < 1.5
    assert np.hypot(xs - cx, ys - cy).max() < 6
    assert not coloured[bottom + 1:].any()  # below the area: the caption, in black


# ------------------------------------------------------------------------------------------------ maps
def test_splitmix64_matches_python_ints() -> None:
    def py_mix(z: int) -> int:
        m = (1 << 64) - 1
        z = (z + 0x9E3779B97F4A7C15) & m
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
        return z ^ (z >> 31)

    vals = [0, 1, 2, 12345, (1 << 63) + 17, (1 << 64) - 1]
    got = splitmix64(np.array(vals, dtype=np.uint64))
    assert [int(v) for v in got] == [py_mix(v) for v in vals]
    assert int(got[0]) == 0xE220A8397B1DCDAF  # the published first output of splitmix64 seeded with 0
    xy = np.array([[1.5, 2.0], [1.5, 2.0], [3.25, 0.0]], dtype=np.float32)
    p = keypoint_priority(7, xy, np.array([0, 1, 0]))
    assert p.dtype == np.uint64 and len(set(p.tolist())) == 3
    bits = [int(b) for b in xy[0].view(np.uint32)]
    assert int(p[0]) == py_mix(py_mix(py_mix(7) ^ ((bits[0] << 32) | bits[1])) ^ 0)


@pytest.mark.parametrize(
    "compress,compat,binary,seed",
    [(False, False, False, 0), (True, False, False, 0), (True, False, False, 9), (True, True, False, 0),
     (True, False, True, 4), (False, False, True, 0), (True, True, True, 0)],
)
@pytest.mark.parametrize("map_size", [8, 16, 5])
@pytest.mark.parametrize("channels_last", [False, True])
def test_maps_match_loop_reference(crowded: SiftSet, compress: bool, compat: bool, binary: bool, seed: int,
                                   map_size: int, channels_last: bool) -> None:
    indices = [0, 1, 2, 3, 4, 1]
    maps = sift_maps(crowded, indices, map_size, compress=compress, seed=seed, compat=compat, binary=binary,
                     channels_last=channels_last)
    assert maps.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    assert maps.dtype == torch.float32 and maps.shape == (6, 1 if binary else 128, map_size, map_size)
    for b, idx in enumerate(indices):
        want = ref_map(crowded, idx, map_size, compress, seed, compat, binary)
        np.testing.assert_array_equal(maps[b].numpy(), want, err_msg=f"image {idx}")
    assert not maps[3].any(), "an image without keypoints gives an all-zero map"


def test_crowded_case_really_collides(crowded: SiftSet) -> None:
    """Guard the reference test: the fixture has shared cells, multi-cell blocks and border cells."""
    _, owner = ref_dense(crowded.keypoints_of(0), crowded.descriptors_of(0), 16, 32)
    assert (owner >= 0).sum() < len(crowded.keypoints_of(0))  # collisions on cells
    assert owner[0, 0] == 0 and owner[15, 15] >= 0 and owner[0, 15] >= 0
    assert (ref_occupied_per_block(crowded, 0, 8) == 4).any()
    assert (ref_occupied_per_block(crowded, 1, 8) >= 2).sum() > 10


def test_seed_changes_only_multi_cell_blocks(crowded: SiftSet) -> None:
    a = sift_maps(crowded, [1, 4], 8, seed=0).numpy()
    b = sift_maps(crowded, [1, 4], 8, seed=1).numpy()
    changed_somewhere = False
    for j, idx in enumerate([1, 4]):
        occupied = ref_occupied_per_block(crowded, idx, 8)
        diff = np.any(a[j] != b[j], axis=0)
        assert not diff[occupied <= 1].any()
        changed_somewhere |= bool(diff[occupied >= 2].any())
    assert changed_somewhere


def test_map_does_not_depend_on_batch(crowded: SiftSet) -> None:
    alone = sift_maps(crowded, [2], 8, seed=5)[0]
    for batch, pos in (([0, 1, 2], 2), ([2, 4, 3], 0), ([4, 4, 2, 0], 2)):
        torch.testing.assert_close(sift_maps(crowded, batch, 8, seed=5)[pos], alone, rtol=0, atol=0)


def test_dense_map_and_empty_sets(crowded: SiftSet) -> None:
    got = dense_map(crowded, 1, 32)
    want, _ = ref_dense(crowded.keypoints_of(1), crowded.descriptors_of(1), 32, 32)
    assert got.shape == (128, 32, 32)
    np.testing.assert_array_equal(got, want)
    # Scaling from the extraction size: at grid 64 a keypoint at x = 10.2 lands in column ceil(20.4) - 1 = 20.
    one = make_set([np.array([[10.2, 3.0]])], 32)
    m = dense_map(one, 0, 64)
    assert np.argwhere(np.any(m != 0, axis=0)).tolist() == [[5, 20]]
    np.testing.assert_allclose(m[:, 5, 20], one.descriptors[0] / 127.5 - 1, rtol=0, atol=1e-7)
    empty = make_set([np.zeros((0, 2)), np.zeros((0, 2))], 32)
    out = sift_maps(empty, [1, 0], 4)
    assert out.shape == (2, 128, 4, 4) and not out.any()
    assert sift_maps(empty, [], 4).shape == (0, 128, 4, 4)
    with pytest.raises(BenchError, match="image_size"):
        sift_maps(SiftSet(empty.keypoints, empty.descriptors, empty.offsets), [0], 4)


def test_out_buffer_is_zeroed_and_filled(crowded: SiftSet) -> None:
    want = sift_maps(crowded, [1, 0], 8, seed=2)
    buf = torch.full((2, 128, 8, 8), 5.0)
    got = sift_maps(crowded, [1, 0], 8, seed=2, out=buf)
    assert got is buf
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    with pytest.raises(BenchError, match="out="):
        sift_maps(crowded, [1, 0], 8, out=torch.zeros(2, 128, 8, 7))


@pytest.mark.parametrize("binary,compat", [(False, False), (True, False), (False, True)])
def test_torch_scatter_path_matches(crowded: SiftSet, binary: bool, compat: bool) -> None:
    """The device path (exercised here with device='cpu') gives the same maps as the numpy path."""
    want = sift_maps(crowded, [0, 1, 2, 3], 8, seed=1, binary=binary, compat=compat)
    got = sift_maps(crowded, [0, 1, 2, 3], 8, seed=1, binary=binary, compat=compat, device="cpu")
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_random_siftset_draws_in_its_documented_order() -> None:
    """random_siftset's draws, written out by hand in the documented order (counts, x/y, sizes, angles,
    descriptors): tests and benchmarks built on it keep their numbers only while this order holds."""
    from bench.features.sift import random_siftset

    feats = random_siftset(6, 48, np.random.default_rng(7), counts=(3, 9), scales=(2.0, 5.0), empty=(2,))
    rng = np.random.default_rng(7)
    counts = rng.integers(3, 9, size=6)
    counts[2] = 0
    m = int(counts.sum())
    xy, size, angle = rng.uniform(0, 48, size=(m, 2)), rng.uniform(2.0, 5.0, size=m), rng.uniform(0, 360, size=m)
    desc = rng.integers(0, 256, size=(m, 128), dtype=np.uint8)
    assert feats.counts().tolist() == counts.tolist() and feats.empty_records() == 1
    np.testing.assert_array_equal(feats.keypoints[:, :2], xy.astype(np.float32))
    np.testing.assert_array_equal(feats.keypoints[:, 2], size.astype(np.float32))
    np.testing.assert_array_equal(feats.keypoints[:, 3], angle.astype(np.float32))
    assert not feats.keypoints[:, 4:].any()
    np.testing.assert_array_equal(feats.descriptors, desc)
    assert feats.image_size == 48
    # a seed gives the same set as a generator of that seed
    again = random_siftset(6, 48, 7, counts=(3, 9), scales=(2.0, 5.0), empty=(2,))
    np.testing.assert_array_equal(again.keypoints, feats.keypoints)
