"""FID and KID: parity with torch-fidelity's formulas, streaming, one shared feature pass, the reference-side cache,
the Inception embedder's wiring (on stand-in weights made here) and the unavailable path.

The real Inception weights cannot be downloaded here, so the metrics run on a stand-in embedder (a fixed random
integer projection of 8×8 block sums, exact in float32) registered under the same name; the embedder itself is
checked against torch-fidelity's own extractor on a random-weight file of the same architecture.
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from bench import embedders, weights
from bench.cli import main
from bench.embedders import Embedder, ReferenceCache, to_uint8
from bench.metrics import distribution
from bench.metrics.distribution import FID, KID, frechet_distance, frechet_from_statistics, gaussian_statistics, kid
from bench.plugins import EvalBatch, EvalContext, MetricUnavailable
from bench.run.plan import RunRequest
from bench.run.runner import execute
from bench.store import Store

tf_fid = pytest.importorskip("torch_fidelity.metric_fid")
tf_kid = pytest.importorskip("torch_fidelity.metric_kid")


class StandIn(Embedder):
    """A cheap deterministic stand-in for Inception: uint8-quantised images, 8×8 block sums, fixed projection.

    Its arithmetic is exact: block sums of uint8 pixels and their products with a projection of small integers are
    integers below 16·255·192·8 < 2^24, so every float32 feature is exact whatever the summation order that the
    batch shape, thread count or CPU vector units pick. A test that compares features embedded in batches of
    different sizes can therefore ask for equality (a float32 network would need a tolerance instead)."""

    name = "inception"
    version = "stand-in"
    dim = 24

    def __init__(self) -> None:
        self.proj = np.random.default_rng(7).integers(-8, 9, size=(3 * 8 * 8, self.dim)).astype(np.int64)
        self.calls = 0
        self.images = 0

    def embed(self, images: torch.Tensor) -> dict[str, np.ndarray]:
        self.calls += 1
        self.images += len(images)
        u8 = to_uint8(images).to(torch.int64)
        n, c, h, w = u8.shape
        assert h % 8 == 0 and w % 8 == 0, "the stand-in sums 8×8 equal blocks"
        sums = u8.reshape(n, c, 8, h // 8, 8, w // 8).sum(dim=(3, 5)).reshape(n, -1).numpy()  # exact int64
        # scaled by a power of two (exact): values of order 1e1 like the float features they stand in for
        return {"features": ((sums @ self.proj).astype(np.float32) * np.float32(2.0**-12))}


@pytest.fixture()
def stand_in(monkeypatch: pytest.MonkeyPatch) -> StandIn:
    emb = StandIn()
    monkeypatch.setitem(embedders.FACTORIES, "inception", lambda device: emb)
    return emb


def _features(n: int, d: int, shift: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((d, d)) / np.sqrt(d)
    return rng.standard_normal((n, d)) @ mix + shift


def _images(n: int, seed: int, size: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 4, 4, generator=g)
    return F.interpolate(low, size=size, mode="bilinear", align_corners=False).clamp(0, 1)


def _ctx(cache_dir: Path, key: str = "split-a") -> EvalContext:
    return EvalContext(labels={}, ids=[], aux_images=torch.zeros(0, 3, 8, 8), aux_labels={},
                       device=torch.device("cpu"), seed=0, image_size=32, cache_dir=cache_dir, reference_key=key)


def _batches(n: int, size: int) -> list[list[int]]:
    return [list(range(s, min(s + size, n))) for s in range(0, n, size)]


# ----------------------------------------------------------------------------------------- formula parity
def _scipy_fid(a: np.ndarray, b: np.ndarray) -> float:
    mu1, s1 = a.mean(0), np.cov(a, rowvar=False)
    mu2, s2 = b.mean(0), np.cov(b, rowvar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns that a singular product may have no accurate root
        covmean = scipy.linalg.sqrtm(s1 @ s2)
    return float((mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean).real)


def _torch_fidelity_fid(a: np.ndarray, b: np.ndarray) -> float:
    s1 = tf_fid.fid_features_to_statistics(torch.from_numpy(a))
    s2 = tf_fid.fid_features_to_statistics(torch.from_numpy(b))
    return tf_fid.fid_statistics_to_metric(s1, s2, False)[tf_fid.KEY_METRIC_FID]


@pytest.mark.parametrize("n1, n2, d", [(300, 260, 32), (40, 30, 64)], ids=["full-rank", "rank-deficient"])
def test_frechet_distance_equals_torch_fidelity_and_scipy(n1: int, n2: int, d: int) -> None:
    a, b = _features(n1, d, 0.0, 1), _features(n2, d, 0.3, 2) * 1.2
    ours = frechet_distance(a, b)
    assert ours == pytest.approx(_torch_fidelity_fid(a, b), rel=1e-7)
    assert ours == pytest.approx(_scipy_fid(a, b), rel=1e-7)
    # the statistics form is torch-fidelity's own formula, digit for digit
    assert frechet_from_statistics(*gaussian_statistics(a), *gaussian_statistics(b)) == \
        pytest.approx(_torch_fidelity_fid(a, b), rel=1e-12)
    # float32 features (what the embedders return) give the same value to float32 precision
    assert frechet_distance(a.astype(np.float32), b.astype(np.float32)) == pytest.approx(ours, rel=1e-5)


def test_frechet_distance_edge_cases() -> None:
    a = _features(50, 16, 0.0, 3)
    assert abs(frechet_distance(a, a)) < 1e-9  # a set against itself
    assert frechet_distance(a, a + 2.0) == pytest.approx(16 * 4.0, rel=1e-9)  # a pure shift: |mu1 - mu2|^2
    assert np.isnan(frechet_distance(a[:1], a))  # one image has no covariance
    bad = a.copy()
    bad[3, 2] = np.nan
    assert np.isnan(frechet_distance(bad, a))  # non-finite features: undefined, not a crash
    with pytest.raises(ValueError):
        frechet_distance(a, a[:, :8])


@pytest.mark.parametrize("n1, n2, size", [(60, 50, 40), (30, 45, 1000), (25, 25, 1000)],
                         ids=["subsets", "capped-at-n", "whole-sets"])
def test_kid_equals_torch_fidelity(n1: int, n2: int, size: int) -> None:
    a, b = _features(n1, 32, 0.0, 4), _features(n2, 32, 0.2, 5)
    mean, std, m = kid(a, b, subset_size=size)
    assert m == min(size, n1, n2)
    ref = tf_kid.kid_features_to_metric(torch.from_numpy(a), torch.from_numpy(b), kid_subsets=100,
                                        kid_subset_size=m, rng_seed=2020, verbose=False)
    assert mean == pytest.approx(ref[tf_kid.KEY_METRIC_KID_MEAN], rel=1e-9, abs=1e-12)
    assert std == pytest.approx(ref[tf_kid.KEY_METRIC_KID_STD], rel=1e-7, abs=1e-12)
    # through the metric (subset size capped at the smaller set), the same number
    assert KID().aggregate({"recon": a.astype(np.float32), "ref": b.astype(np.float32)}) == \
        pytest.approx(kid(a.astype(np.float32), b.astype(np.float32), subset_size=1000)[0], rel=1e-12)


def test_kid_kernel_matrix_shortcut_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = _features(70, 16, 0.0, 6), _features(80, 16, 0.1, 7)
    whole = kid(a, b, subset_size=30)
    monkeypatch.setattr(distribution, "_KERNEL_CACHE_MAX", 0)  # force the per-subset kernels
    assert kid(a, b, subset_size=30) == pytest.approx(whole, rel=1e-10)
    assert np.isnan(kid(a[:1], b)[0])


# ------------------------------------------------------------------------------- streaming and sharing
def test_streaming_over_batches_equals_the_whole_set(stand_in: StandIn) -> None:
    """Embedding in batches of 8 and concatenating gives the whole set's features (exactly: the stand-in's
    arithmetic is exact, see StandIn) and so the whole set's value (float64 from identical features)."""
    recon, ref = _images(21, 1), _images(21, 2)
    for metric in (FID(), KID()):
        parts = [metric.embed(recon[idx], ref[idx], EvalBatch(idx, [f"s{i}" for i in idx]))
                 for idx in _batches(21, 8)]
        merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        whole = metric.embed(recon, ref, EvalBatch(list(range(21)), [f"s{i}" for i in range(21)]))
        np.testing.assert_array_equal(merged["recon"], whole["recon"])
        np.testing.assert_array_equal(merged["ref"], whole["ref"])
        assert metric.aggregate(merged) == metric.aggregate(whole)


def test_fid_and_kid_share_one_pass_per_batch_and_reuse_reference_features(stand_in: StandIn,
                                                                           tmp_path: Path) -> None:
    recon, ref = _images(20, 3), _images(20, 4)
    ids = [f"img{i:02d}" for i in range(20)]

    def score(recon: torch.Tensor) -> tuple[dict[str, float], int]:
        fid, kid_m = FID(), KID()
        for m in (fid, kid_m):
            m.prepare(_ctx(tmp_path))
        calls0 = stand_in.calls
        parts: dict[str, list] = {"fid": [], "kid": []}
        for idx in _batches(20, 8):
            batch = EvalBatch(idx, [ids[i] for i in idx])  # one EvalBatch per batch, as the runner makes
            parts["fid"].append(fid.embed(recon[idx], ref[idx], batch))
            parts["kid"].append(kid_m.embed(recon[idx], ref[idx], batch))
            assert set(batch.shared) == {"inception:recon", "inception:ref"}
        merged = {n: {k: np.concatenate([p[k] for p in ps]) for k in ps[0]} for n, ps in parts.items()}
        return {"fid": fid.aggregate(merged["fid"]), "kid": kid_m.aggregate(merged["kid"])}, stand_in.calls - calls0

    first, calls = score(recon)
    assert calls == 2 * 3  # 3 batches × (reconstructions + originals), shared by fid and kid
    other = (recon + 0.05).clamp(0, 1)  # "a second attack on the same split"
    second, calls = score(other)
    assert calls == 3  # only the reconstructions: the originals' features come from the split's cache
    third, calls = score(recon)
    assert calls == 3 and third == pytest.approx(first, rel=1e-12)  # cached reference features are the same
    assert first["fid"] > 0 and second["fid"] != first["fid"]


def test_reference_cache_is_verified(tmp_path: Path) -> None:
    cache = ReferenceCache(tmp_path, StandIn(), "split-x")
    arrays = {"features": np.arange(12, dtype=np.float32).reshape(3, 4)}
    cache.save(["a", "b", "c"], arrays)
    np.testing.assert_array_equal(cache.load(["a", "b", "c"])["features"], arrays["features"])
    assert cache.load(["a", "b"]) is None and cache.load(["c", "b", "a"]) is None  # other ids: a miss
    (path,) = list(cache.folder.glob("*.npz"))
    np.savez(path, features=np.zeros((3, 4), dtype=np.float32))  # tampered: digest no longer matches
    assert cache.load(["a", "b", "c"]) is None
    other = ReferenceCache(tmp_path, type("V2", (StandIn,), {"version": "stand-in-2"})(), "split-x")
    assert other.folder != cache.folder  # a changed embedder never reads the old features


def test_runner_shares_one_pass_and_reuses_reference_features(stand_in: StandIn, bench_home: Path,
                                                              tmp_path: Path) -> None:
    req = dict(attack="mean-image", profile="smoke", n_train=6, n_test=12, results=tmp_path / "results",
               metrics=("fid", "kid", "psnr"), progress=False, threads=1)
    res = execute(RunRequest(**req))
    assert stand_in.calls == 2 * 2  # smoke evaluates in batches of 8: two batches × two sides, fid and kid share
    sm = res.set_metrics
    assert sm["fid"]["status"] == "ok" and sm["kid"]["status"] == "ok" and sm["fid"]["n"] == 12
    assert sm["fid"]["detail"] == "biased: computed on 12 < 2048 images; prefer kid"
    assert sm["kid"]["detail"].startswith("100 subsets of 12")
    assert len(list((res.run_dir / "scores" / "fid").glob("b*.npz"))) == 2
    stand_in.calls = 0
    again = execute(RunRequest(**req, defense="subsample"))  # another attack configuration, same private split
    assert again.run_id != res.run_id and again.set_metrics["fid"]["status"] == "ok"
    assert stand_in.calls == 2  # reconstructions only: the originals' features came from the split's cache


# ------------------------------------------------------------------------------------ the CLI, end to end
def _cli_run(results: Path, metrics: str) -> "click.testing.Result":  # noqa: F821
    return CliRunner().invoke(main, ["run", "--attack", "mean-image", "--metrics", metrics, "--profile", "smoke",
                                     "--n-train", "6", "--n-test", "4", "--quiet", "--results", str(results)])


def test_missing_weights_are_unavailable_with_the_fix(bench_home: Path, tmp_path: Path) -> None:
    out = _cli_run(tmp_path, "fid,kid,psnr")
    assert out.exit_code == 0, out.output
    lines = {line.split()[0]: line for line in out.output.splitlines() if line.split()}
    for name in ("fid", "kid"):
        assert "unavailable" in lines[name] and "bench weights pull pt-inception" in lines[name]
        assert "bench weights import pt_inception-2015-12-05-6726825d.pth" in lines[name]
    assert "unavailable" not in lines["psnr"]
    with Store(tmp_path / "bench.sqlite") as store:
        (run,) = store.runs(status="done")
        sm = store.set_metrics(run["run_id"])
    assert sm["fid"]["status"] == sm["kid"]["status"] == "unavailable"
    assert sm["fid"]["detail"].startswith("bench weights pull pt-inception")
    assert sm["psnr"]["status"] == "ok"


def test_small_sample_note_reaches_output_store_and_leaderboard(stand_in: StandIn, bench_home: Path,
                                                                tmp_path: Path) -> None:
    out = _cli_run(tmp_path, "fid,kid")
    assert out.exit_code == 0, out.output
    note = "biased: computed on 4 < 2048 images; prefer kid"
    (fid_line,) = [line for line in out.output.splitlines() if line.startswith("fid ")]
    assert note in fid_line and "lower" in fid_line
    with Store(tmp_path / "bench.sqlite") as store:
        (run,) = store.runs(status="done")
        sm = store.set_metrics(run["run_id"])
    assert sm["fid"]["status"] == "ok" and sm["fid"]["detail"] == note and sm["fid"]["n"] == 4
    assert "Fréchet" in sm["fid"]["convention"] and "pt_inception-2015-12-05" in sm["fid"]["convention"]
    (row,) = list(csv.DictReader((tmp_path / "leaderboards" / "synthetic-faces.csv").open()))
    assert row["fid_note"] == note and float(row["fid"]) > 0
    assert row["kid_note"].startswith("100 subsets of 4")


# ------------------------------------------------------------------------------------ the Inception embedder
def test_inception_unavailable_without_weights(bench_home: Path) -> None:
    from bench.embedders import inception

    with pytest.raises(MetricUnavailable) as exc:
        inception.load()
    assert exc.value.fix == "bench weights pull pt-inception (offline: bench weights import " \
                            "pt_inception-2015-12-05-6726825d.pth)"
    bad = weights.path_of("pt-inception")
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"<html>not the checkpoint</html>")
    with pytest.raises(MetricUnavailable) as exc:
        inception.load()
    assert "bench weights pull pt-inception" in exc.value.fix and "refused" in exc.value.fix


def test_inception_embedder_equals_torch_fidelity_extractor(bench_home: Path, tmp_path: Path) -> None:
    """On a random-weight file of the real architecture (made here), the embedder loads it through the weights cache
    (hash-verified, weights_only=True) and its features equal torch-fidelity's own extractor on uint8 input."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    from bench.embedders import inception

    path = weights.path_of("pt-inception")
    path.parent.mkdir(parents=True)
    torch.save(inception.random_state_dict(seed=3), path)
    digest = weights.sha256_of(path)
    with weights.override("pt-inception", sha256=digest, sha256_prefix=digest[:8], size=path.stat().st_size):
        emb = inception.load()
        assert inception.load() is emb  # built once per process, shared by fid and kid
        assert emb.identity()["weights_sha256"] == digest
        images = _images(3, 9, size=40)
        ours = emb.embed(images)["features"]
    assert ours.shape == (3, 2048) and ours.dtype == np.float32
    reference = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(path))
    with torch.no_grad():
        (theirs,) = reference((images * 255).round().to(torch.uint8))
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-5, atol=1e-6)
    assert np.std(ours) > 0
