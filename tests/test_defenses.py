"""Tests of the built-in defenses: what `drop-coordinates` removes, and that row order leaks nothing."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from bench.contract import smoke_data
from bench.defenses.coordinates import DropCoordinates, shuffle_within_records
from bench.features.sift import SiftSet
from bench.plugins import seeded_rng


@pytest.fixture(scope="module")
def sift() -> SiftSet:
    """Real OpenCV SIFT features of 16 synthetic faces (in OpenCV's order: sorted by x, then y)."""
    return smoke_data(n_train=12, n_test=4)["features"]


def _original_rows(orig: SiftSet, released: SiftSet, i: int) -> np.ndarray:
    """For each released row of image i, the row of the original image it came from (matched by descriptor
    bytes and the kept keypoint fields); -1 where the match is ambiguous (duplicate rows)."""
    def key(kp: np.ndarray, desc: np.ndarray, j: int) -> bytes:
        return desc[j].tobytes() + kp[j, 2:].tobytes()

    okp, odesc = orig.keypoints_of(i), orig.descriptors_of(i)
    rkp, rdesc = released.keypoints_of(i), released.descriptors_of(i)
    where: dict[bytes, list[int]] = {}
    for j in range(len(okp)):
        where.setdefault(key(okp, odesc, j), []).append(j)
    return np.array([where[key(rkp, rdesc, j)][0] if len(where[key(rkp, rdesc, j)]) == 1 else -1
                     for j in range(len(rkp))], dtype=np.int64)


def test_row_order_no_longer_reveals_x(sift: SiftSet) -> None:
    released = DropCoordinates().protect(sift, seeded_rng(0, "victim-keys"))
    rhos = []
    for i in range(len(sift)):
        if sift.counts()[i] < 10:
            continue
        src = _original_rows(sift, released, i)
        ok = src >= 0
        x = sift.keypoints_of(i)[src[ok], 0]
        rhos.append(spearmanr(np.arange(len(src))[ok], x).statistic)
    assert len(rhos) >= 8
    # Before the fix rows kept OpenCV's order and rho was ~1 for every image.
    assert abs(float(np.mean(rhos))) < 0.3, rhos
    assert float(np.mean(np.abs(rhos))) < 0.5, rhos


def test_released_rows_are_a_per_image_permutation(sift: SiftSet) -> None:
    released = DropCoordinates().protect(sift, seeded_rng(3, "victim-keys"))
    assert np.array_equal(released.offsets, sift.offsets)
    assert np.isnan(released.keypoints[:, :2]).all()
    moved = 0
    for i in range(len(sift)):
        o_desc, r_desc = sift.descriptors_of(i), released.descriptors_of(i)
        o_rows = np.concatenate([o_desc, sift.keypoints_of(i)[:, 2:].view(np.uint8)], axis=1)
        r_rows = np.concatenate([r_desc, released.keypoints_of(i)[:, 2:].view(np.uint8)], axis=1)
        # same multiset of (descriptor, size, angle, response, octave) rows: nothing lost, nothing crosses images
        assert sorted(map(bytes, o_rows)) == sorted(map(bytes, r_rows)), i
        moved += int(not np.array_equal(o_desc, r_desc))
    assert moved >= len(sift) - 1  # the order really changed
    assert released.flags["has_coordinates"] is False and released.meta == sift.meta


def test_same_rng_same_output_and_input_untouched(sift: SiftSet) -> None:
    before = (sift.keypoints.copy(), sift.descriptors.copy())
    a = DropCoordinates().protect(sift, seeded_rng(5, "k"))
    b = DropCoordinates().protect(sift, seeded_rng(5, "k"))
    c = DropCoordinates().protect(sift, seeded_rng(6, "k"))
    assert np.array_equal(a.descriptors, b.descriptors)
    assert np.array_equal(a.keypoints, b.keypoints, equal_nan=True)
    assert not np.array_equal(a.descriptors, c.descriptors)  # the permutation is the key
    assert np.array_equal(sift.keypoints, before[0]) and np.array_equal(sift.descriptors, before[1])


def test_shuffle_keeps_rows_inside_records_including_empty_ones() -> None:
    offsets = np.array([0, 0, 3, 3, 4, 9, 9])
    order = shuffle_within_records(offsets, np.random.default_rng(0))
    assert sorted(order.tolist()) == list(range(9))
    for k in range(len(offsets) - 1):
        lo, hi = offsets[k], offsets[k + 1]
        assert sorted(order[lo:hi].tolist()) == list(range(lo, hi))
    assert len(shuffle_within_records(np.array([0]), np.random.default_rng(0))) == 0


def test_shuffle_is_uniform_over_positions() -> None:
    offsets = np.array([0, 4])
    rng = np.random.default_rng(1)
    first = np.bincount([shuffle_within_records(offsets, rng)[0] for _ in range(4000)], minlength=4)
    assert (np.abs(first / 4000 - 0.25) < 0.04).all(), first


def test_version_bumped_and_no_parameters() -> None:
    from bench.defenses.none import NoDefense

    assert DropCoordinates.version == "2"
    assert DropCoordinates.params == {} and NoDefense.params == {}
    assert DropCoordinates().config() == {"name": "drop-coordinates", "version": "2", "params": {}}
