"""Tests of the SIFT release defenses (drop-descriptors, subsample, descriptor-noise, descriptor-quantize) and of
the shared SIFT matching utility figure (defenses/sift_utility.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from bench import registry
from bench.cli import main
from bench.contract import smoke_data
from bench.defenses.sift_utility import ratio_test
from bench.errors import BenchError
from bench.features.sift import SiftSet
from bench.plugins import Defense, UtilityContext, seeded_rng

NEW = ["drop-descriptors", "subsample", "descriptor-noise", "descriptor-quantize"]
CONFIGS: list[tuple[str, dict[str, Any]]] = [
    ("drop-descriptors", {}), ("subsample", {"keep": 0.25}), ("subsample", {}),
    ("descriptor-noise", {"sigma": 20.0}), ("descriptor-quantize", {"bits": 2}), ("descriptor-quantize", {}),
]


def defense(name: str, **params: Any) -> Defense:
    return registry.defenses.get(name).obj(**params)


def arrays(fs: SiftSet) -> dict[str, np.ndarray]:
    return {"keypoints": np.array(fs.keypoints), "descriptors": np.array(fs.descriptors),
            "offsets": np.array(fs.offsets)}


@pytest.fixture(scope="module")
def sift() -> SiftSet:
    """Real OpenCV SIFT features of 16 synthetic faces at the smoke size."""
    return smoke_data(n_train=12, n_test=4)["features"]


def constant_set(value: int, counts: list[int]) -> SiftSet:
    """A SiftSet whose descriptor values are all `value` (keypoints numbered by row), with the given counts."""
    total = sum(counts)
    kp = np.zeros((total, 6), dtype=np.float32)
    kp[:, 0] = np.arange(total)
    kp[:, 1] = np.arange(total) * 2
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return SiftSet(kp, np.full((total, 128), value, dtype=np.uint8), offsets, meta={"image_size": 64})


# ------------------------------------------------------------------------------------------------ generic checks
@pytest.mark.parametrize("name, params", CONFIGS)
def test_released_spec_matches_output(sift: SiftSet, name: str, params: dict[str, Any]) -> None:
    d = defense(name, **params)
    out = d.protect(sift, seeded_rng(0, "victim-keys"))
    assert out.spec == d.released_spec(sift.spec)
    assert len(out) == len(sift)
    assert out.flags["has_descriptors"] is (name != "drop-descriptors")
    assert out.flags["has_coordinates"] is True


@pytest.mark.parametrize("name, params", CONFIGS)
def test_input_untouched_and_same_rng_same_output(sift: SiftSet, name: str, params: dict[str, Any]) -> None:
    before = arrays(sift)
    a = arrays(defense(name, **params).protect(sift, seeded_rng(5, "k")))
    assert all(np.array_equal(before[k], v) for k, v in arrays(sift).items()), "input was modified"
    b = arrays(defense(name, **params).protect(sift, seeded_rng(5, "k")))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert any(not np.array_equal(a[k], before[k]) for k in a), "the defense changed nothing"


@pytest.mark.parametrize("name, params", [("subsample", {"keep": 0.5}), ("descriptor-noise", {"sigma": 8.0})])
def test_keys_come_from_the_rng(sift: SiftSet, name: str, params: dict[str, Any]) -> None:
    a = arrays(defense(name, **params).protect(sift, seeded_rng(1, "k")))
    b = arrays(defense(name, **params).protect(sift, seeded_rng(2, "k")))
    assert any(not np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", NEW)
def test_contract_kit_passes(name: str, builtin_contract) -> None:
    results = builtin_contract(name, "defenses")
    failed = [(check, detail) for check, ok, detail in results if not ok]
    assert results and not failed, failed
    assert any(check.startswith("utility") and "match-rate" in detail for check, _, detail in results)


# ------------------------------------------------------------------------------------------------ each defense
def test_drop_descriptors_zeroes_descriptors_and_keeps_keypoints(sift: SiftSet) -> None:
    assert sift.descriptors.any()
    out = defense("drop-descriptors").protect(sift, seeded_rng(0, "k"))
    assert out.descriptors.shape == sift.descriptors.shape and out.descriptors.dtype == np.uint8
    assert not out.descriptors.any()
    assert out.flags["has_descriptors"] is False
    assert np.array_equal(out.keypoints, sift.keypoints) and np.array_equal(out.offsets, sift.offsets)


def _row_bytes(fs: SiftSet, i: int) -> list[bytes]:
    kp, desc = fs.keypoints_of(i), fs.descriptors_of(i)
    return [kp[j].tobytes() + desc[j].tobytes() for j in range(len(kp))]


def test_subsample_keeps_a_rounded_share_in_order(sift: SiftSet) -> None:
    out = defense("subsample", keep=0.25).protect(sift, seeded_rng(0, "victim-keys"))
    counts, kept = sift.counts(), out.counts()
    assert np.array_equal(kept, np.floor(counts * 0.25 + 0.5).astype(np.int64))
    assert 0.2 < kept.sum() / counts.sum() < 0.3
    not_prefix = 0
    for i in range(len(sift)):
        original = _row_bytes(sift, i)
        where = {row: j for j, row in enumerate(original)}
        src = np.array([where[row] for row in _row_bytes(out, i)], dtype=np.int64)  # KeyError: not a subset
        assert np.all(np.diff(src) > 0), f"image {i}: rows not in their original order"
        not_prefix += int(not np.array_equal(src, np.arange(len(src))))
    assert not_prefix >= len(sift) // 2, "the kept rows are not a random choice"


def test_subsample_edge_cases(sift: SiftSet) -> None:
    same = defense("subsample", keep=1.0).protect(sift, seeded_rng(0, "k"))
    assert all(np.array_equal(v, arrays(same)[k]) for k, v in arrays(sift).items())
    fs = constant_set(7, [0, 1, 2, 5, 0])
    out = defense("subsample", keep=0.5).protect(fs, seeded_rng(0, "k"))
    assert out.counts().tolist() == [0, 1, 1, 3, 0]  # half up: 0.5 -> 1, 1 -> 1, 2.5 -> 3
    for bad in ("0", "-0.1", "1.5"):
        with pytest.raises(BenchError, match="keep"):
            defense("subsample", keep=bad)


def test_descriptor_noise_zero_is_identity(sift: SiftSet) -> None:
    out = defense("descriptor-noise", sigma=0.0).protect(sift, seeded_rng(0, "k"))
    assert np.array_equal(out.descriptors, sift.descriptors) and np.array_equal(out.keypoints, sift.keypoints)


def test_descriptor_noise_has_the_declared_std() -> None:
    fs = constant_set(128, [300, 200])  # mid-range values: clipping at 0 or 255 is 6 sigma away
    out = defense("descriptor-noise", sigma=20.0).protect(fs, seeded_rng(0, "k"))
    diff = out.descriptors.astype(np.float64) - 128.0
    assert abs(diff.mean()) < 0.3
    assert abs(diff.std() - 20.0) < 0.4  # rounding adds 1/12 to the variance: std 20.002
    assert np.array_equal(out.keypoints, fs.keypoints) and np.array_equal(out.offsets, fs.offsets)


def test_descriptor_noise_on_real_features_is_clipped(sift: SiftSet) -> None:
    out = defense("descriptor-noise", sigma=20.0).protect(sift, seeded_rng(0, "k"))
    assert out.descriptors.dtype == np.uint8
    diff = out.descriptors.astype(np.int64) - sift.descriptors.astype(np.int64)
    mid = (sift.descriptors >= 80) & (sift.descriptors <= 175)
    assert mid.sum() > 1000
    assert abs(diff[mid].std() - 20.0) < 1.5
    # values at 0 cannot go below it: their change is never negative
    assert (diff[sift.descriptors == 0] >= 0).all()


def test_descriptor_quantize_bits8_is_identity(sift: SiftSet) -> None:
    out = defense("descriptor-quantize", bits=8).protect(sift, seeded_rng(0, "k"))
    assert np.array_equal(out.descriptors, sift.descriptors)


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_descriptor_quantize_values_lie_on_the_centred_grid(sift: SiftSet, bits: int) -> None:
    out = defense("descriptor-quantize", bits=bits).protect(sift, seeded_rng(0, "k"))
    shift = 8 - bits
    grid = {(b << shift) + (1 << (shift - 1)) for b in range(1 << bits)}
    assert set(np.unique(out.descriptors).tolist()) <= grid
    assert len(np.unique(out.descriptors)) <= 1 << bits
    assert np.array_equal(out.descriptors >> shift, sift.descriptors >> shift)  # top bits kept
    err = out.descriptors.astype(np.int64) - sift.descriptors.astype(np.int64)
    assert np.abs(err).max() <= 1 << (shift - 1)
    assert np.array_equal(out.keypoints, sift.keypoints)


def test_defense_arguments_are_validated() -> None:
    for name, bad in [("descriptor-noise", {"sigma": "-1"}), ("descriptor-quantize", {"bits": "0"}),
                      ("descriptor-quantize", {"bits": "9"}), ("descriptor-quantize", {"bits": "2.5"})]:
        with pytest.raises(BenchError, match=next(iter(bad))):
            defense(name, **bad)
    with pytest.raises(BenchError, match="no parameter"):
        defense("drop-descriptors", keep=0.5)


# ------------------------------------------------------------------------------------------------ utility figure
def test_ratio_test_agrees_with_opencv() -> None:
    rng = np.random.default_rng(0)
    train = rng.integers(0, 120, size=(90, 128)).astype(np.float32)
    query = train[rng.integers(0, 90, size=60)] + rng.normal(0, 25, size=(60, 128)).astype(np.float32)
    offsets = np.array([0, 30, 31, 31, 90], dtype=np.int64)  # a one-row and an empty segment never pass
    passed, index = ratio_test(query, train, offsets, want_index=True)
    bf = cv2.BFMatcher(cv2.NORM_L2)
    for s in range(len(offsets) - 1):
        lo, hi = offsets[s], offsets[s + 1]
        if hi - lo < 2:
            assert not passed[:, s].any() and (index[:, s] == -1).all()
            continue
        knn = bf.knnMatch(query, train[lo:hi], k=2)
        ok = np.array([m.distance < 0.8 * n.distance for m, n in knn])
        best = np.array([m.trainIdx + lo for m, _ in knn])
        assert np.array_equal(passed[:, s], ok)
        assert np.array_equal(index[:, s], best)
    assert passed.any() and not passed.all()


@pytest.fixture(scope="module")
def utility_ctx() -> UtilityContext:
    """24 synthetic faces at 96 px with their SIFT features and the victim extractor."""
    ds = registry.datasets.get("synthetic-faces").obj()
    images = ds.load(ds.item_ids()[:24], 96)
    ext = registry.extractors.get("sift").obj()
    return UtilityContext(images=images, features=ext.extract(images, progress=False), extractor=ext, seed=0)


@pytest.fixture(scope="module")
def figures(utility_ctx: UtilityContext) -> dict[str, dict[str, float]]:
    configs = {"keep1": ("subsample", {"keep": 1.0}), "keep.25": ("subsample", {"keep": 0.25}),
               "drop-desc": ("drop-descriptors", {}), "noise60": ("descriptor-noise", {"sigma": 60.0}),
               "drop-coords": ("drop-coordinates", {})}
    return {k: defense(n, **p).utility(utility_ctx) for k, (n, p) in configs.items()}


def test_utility_figures_are_in_range(figures: dict[str, dict[str, float]]) -> None:
    for fig in figures.values():
        assert set(fig) == {"match-rate", "retrieval@1"}
        assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in fig.values())


def test_full_release_is_useful_and_dropping_descriptors_is_not(figures: dict[str, dict[str, float]]) -> None:
    full, none = figures["keep1"], figures["drop-desc"]
    assert full["match-rate"] > 0.3 and full["retrieval@1"] > 0.8
    assert none == {"match-rate": 0.0, "retrieval@1": 0.0}


def test_noise_and_subsampling_cost_utility(figures: dict[str, dict[str, float]]) -> None:
    full = figures["keep1"]
    assert figures["noise60"]["match-rate"] < 0.5 * full["match-rate"]
    share = figures["keep.25"]["match-rate"] / full["match-rate"]
    assert 0.15 < share < 0.4  # a quarter of the keypoints: about a quarter of the correct matches


def test_drop_coordinates_is_verified_through_true_positions(figures: dict[str, dict[str, float]]) -> None:
    # Rows are shuffled and x, y blanked: only tracing each row to its source keypoint finds the correct matches.
    assert figures["drop-coords"]["match-rate"] == pytest.approx(figures["keep1"]["match-rate"], abs=0.02)


def test_utility_is_reproducible(utility_ctx: UtilityContext) -> None:
    d = defense("subsample", keep=0.5)
    assert d.utility(utility_ctx) == d.utility(utility_ctx)


def test_utility_of_images_without_keypoints_is_zero(utility_ctx: UtilityContext) -> None:
    import torch

    from bench.plugins import ImageSet

    blank = ImageSet(ids=["a", "b", "c"], images=torch.full((3, 3, 64, 64), 0.5))
    feats = utility_ctx.extractor.extract(blank, progress=False)
    assert feats.counts().sum() == 0
    ctx = UtilityContext(images=blank, features=feats, extractor=utility_ctx.extractor, seed=0)
    for name in NEW:
        assert defense(name).utility(ctx) == {"match-rate": 0.0, "retrieval@1": 0.0}


# ------------------------------------------------------------------------------------------------ end to end
def test_bench_run_with_subsample_reports_utility(tmp_path: Path) -> None:
    out = CliRunner().invoke(main, ["run", "--attack", "mean-image", "--defense", "subsample", "--defense-arg",
                                    "keep=0.25", "--profile", "smoke", "--quiet", "--n-train", "8", "--n-test", "4",
                                    "--results", str(tmp_path / "results")])
    assert out.exit_code == 0, out.output
    lines = [line for line in out.output.splitlines() if line.startswith("utility")]
    assert any("match-rate" in line for line in lines) and any("retrieval@1" in line for line in lines), out.output
    assert "subsample" in out.output
