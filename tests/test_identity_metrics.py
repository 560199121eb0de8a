"""Identity metrics (id-cosine, rsr@fmr=…, gender-accuracy) on dlib face descriptors.

Threshold logic is checked against plain numpy on constructed scores; the values on real faces use
../shared/data/faces (LFW pairs, UTKFace; skipped when absent). About 55 s of CPU, most of it dlib passes; the
LFW descriptors come from the session fixture `lfw_dlib` (tests/conftest.py), shared with tests/test_dlib_face.py.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from bench import registry
from bench.install_hint import extra_install_command
from bench.logistic_regression import LogisticRegression
from bench.metrics import identity
from bench.plugins import EvalBatch, EvalContext, MetricUnavailable

METRICS = ["id-cosine", "rsr@fmr=0.1%", "rsr@fmr=1%", "gender-accuracy"]
N_PEOPLE = 20


def _faces_installed() -> bool:
    try:
        from bench.embedders import dlib_face

        import dlib  # noqa: F401
    except ImportError:
        return False
    return dlib_face.models_dir() is not None


needs_faces = pytest.mark.skipif(not _faces_installed(), reason="pip install leakbench[faces]")


def _metric(name: str):
    return registry.metrics.get(name).obj()


def _batch(n: int, labels: dict[str, np.ndarray] | None = None) -> EvalBatch:
    return EvalBatch(list(range(n)), [f"s{i}" for i in range(n)], labels=dict(labels or {}))


def _set_value(m, recon: torch.Tensor, ref: torch.Tensor, batch: EvalBatch) -> float:
    return m.aggregate({k: np.asarray(v) for k, v in m.embed(recon, ref, batch).items()})


# ------------------------------------------------------------------------------------------ threshold logic
def test_fmr_rank_is_exact() -> None:
    assert identity.fmr_rank(0.01, 300) == 3  # 0.01 * 300 in floating point is 3.0000000000000004 or 2.99..
    assert identity.fmr_rank(0.001, 999) == 0 and identity.fmr_rank(0.001, 1000) == 1
    assert identity.fmr_rank(0.01, 120) == 1


@pytest.mark.parametrize("fmr", [0.001, 0.01, 0.1])
def test_threshold_matches_plain_numpy(fmr: float) -> None:
    rng = np.random.default_rng(0)
    for m in (1, 5, 99, 100, 1000, 4321):
        scores = rng.normal(size=m)
        k = int(np.floor(fmr * m + 1e-9))
        expected = np.sort(scores)[::-1][k]  # the (k+1)-th highest
        t = identity.threshold_at_fmr(scores, fmr)
        assert t == expected
        assert np.sum(scores > t) <= k <= fmr * m  # strictly above: at most fmr of the impostors match
    ties = np.array([0.9, 0.9, 0.9, 0.1] + [0.0] * 96)  # k = 1: the 2nd highest is 0.9, and nothing lies above it
    assert identity.threshold_at_fmr(ties, 0.01) == 0.9 and np.sum(ties > 0.9) == 0
    assert np.isnan(identity.threshold_at_fmr(np.zeros(0), 0.01))


@pytest.mark.parametrize("with_identity", [False, True])
def test_impostor_threshold_streams_like_numpy(monkeypatch: pytest.MonkeyPatch, with_identity: bool) -> None:
    monkeypatch.setattr(identity, "_CHUNK", 7)  # many chunks
    monkeypatch.setattr(identity, "_BUFFER", 10)  # and the buffer cut down to the k+1 highest many times
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(60, 16)).astype(np.float32)
    ident = rng.integers(-1, 12, size=60) if with_identity else None
    u = ref.astype(np.float64) / np.linalg.norm(ref.astype(np.float64), axis=1, keepdims=True)
    s = u @ u.T
    i, j = np.triu_indices(60, k=1)
    keep = np.ones(len(i), bool) if ident is None else ~((ident[i] == ident[j]) & (ident[i] >= 0))
    scores = s[i, j][keep]
    for fmr in (0.001, 0.01, 0.1):
        t, m, k = identity.impostor_threshold(ref, fmr, ident)
        assert m == len(scores) and k == int(np.floor(fmr * m + 1e-9))
        assert t == pytest.approx(np.sort(scores)[::-1][k], abs=1e-12)


def test_rsr_and_id_cosine_on_constructed_features() -> None:
    rng = np.random.default_rng(2)
    ref = rng.normal(size=(50, 128)).astype(np.float32)
    m = _metric("rsr@fmr=1%")
    parts = {"recon": ref.copy(), "ref": ref, "recon_miss": np.zeros(50, bool), "ref_miss": np.zeros(50, bool)}
    assert m.aggregate(parts) == 1.0
    note = m.value_note(50)
    assert "1225 impostor pairs" in note and "13th highest" in note  # k = floor(0.01 * 1225) = 12
    t, _, _ = identity.impostor_threshold(ref, 0.01)
    u = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    # reconstructions tuned to land just below / just above the threshold in cosine
    genuine = np.array([t - 0.01] * 25 + [t + 0.01] * 25)
    noise = rng.normal(size=ref.shape)
    noise -= np.sum(noise * u, axis=1, keepdims=True) * u
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    recon = genuine[:, None] * u + np.sqrt(1 - genuine[:, None] ** 2) * noise
    assert np.allclose(identity.cosine_rows(recon, ref), genuine)
    assert m.aggregate({**parts, "recon": recon.astype(np.float64)}) == 0.5
    assert np.isnan(m.aggregate({"recon": ref[:1], "ref": ref[:1]}))  # no impostor pair: undefined
    assert identity.mean_impostor_cosine(np.eye(3)) == 0.0


def test_balanced_accuracy_and_classifier() -> None:
    assert identity.balanced_accuracy(np.array([0, 0, 0, 1, -1]), np.array([0, 0, 0, 0, 1])) == 0.5
    assert identity.balanced_accuracy(np.array([0, 1, 1, 1]), np.array([0, 1, 1, 0])) == pytest.approx(5 / 6)
    rng = np.random.default_rng(3)
    y = (rng.random(200) < 0.2).astype(int)  # unbalanced classes
    x = rng.normal(size=(200, 8)) + 1.5 * y[:, None]
    clf = LogisticRegression().fit(x, y)  # the engine's classifier, shared with attribute-inference
    assert identity.balanced_accuracy(y, clf.predict(x)) > 0.9


def test_dlib_missing_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.embedders import dlib_face

    monkeypatch.setattr(dlib_face, "models_dir", lambda: None)
    labels = {"gender": np.array([0, 1, 0, 1])}
    with tempfile.TemporaryDirectory() as tmp:
        ctx = EvalContext(labels=labels, ids=list("abcd"), aux_images=torch.rand(4, 3, 32, 32), aux_labels=labels,
                          device=torch.device("cpu"), seed=0, image_size=32, cache_dir=Path(tmp), reference_key="k")
        for name in METRICS:
            with pytest.raises(MetricUnavailable) as exc:
                _metric(name).prepare(ctx)
            assert exc.value.fix == extra_install_command("faces")


def test_gender_accuracy_needs_gender_labels() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ctx = EvalContext(labels={"identity": np.arange(4)}, ids=list("abcd"), aux_images=torch.rand(4, 3, 32, 32),
                          aux_labels={"identity": np.arange(4)}, device=torch.device("cpu"), seed=0, image_size=32,
                          cache_dir=Path(tmp), reference_key="k")
        with pytest.raises(MetricUnavailable, match="needs gender labels.*--dataset utkface"):
            _metric("gender-accuracy").prepare(ctx)


def test_registry_metadata_and_score_paths() -> None:
    from bench.run.evaluate import _score_path

    for name in METRICS:
        meta = registry.metrics.get(name).meta
        assert meta["higher_is_better"] is True and "dlib" in meta["convention"]
        assert _score_path(Path("r"), name, 0).parent.name == name  # '@', '%' and '=' are kept
    assert registry.metrics.get("id-cosine").meta["range"] == [-1.0, 1.0]
    assert registry.metrics.get("rsr@fmr=1%").meta["level"] == "set"


# ------------------------------------------------------------------------------------------------ real faces
@pytest.fixture(scope="module")
def lfw(lfw_dlib: dict) -> dict:
    """First and second photo of N_PEOPLE LFW people (at their own size): the first photos and both photos'
    descriptors, embedded once per session by the conftest fixture `lfw_dlib` (tests/test_dlib_face.py uses them
    too)."""
    n = N_PEOPLE
    miss = lfw_dlib["miss"]
    assert len(lfw_dlib["first"]) == n
    return {"first": lfw_dlib["first_images"],
            "f_first": {"features": lfw_dlib["first"], "detector_miss": miss[:n]},
            "f_second": {"features": lfw_dlib["second"], "detector_miss": miss[n:2 * n]}}


def _shared(n: int, ref: dict, recon: dict | None = None) -> EvalBatch:
    """A batch whose descriptors were already computed (as another metric of the batch would have left them)."""
    b = _batch(n)
    b.shared["dlib-face:ref"] = ref
    if recon is not None:
        b.shared["dlib-face:recon"] = recon
    return b


def _rolled(f: dict) -> dict:
    return {k: np.roll(v, 1, axis=0) for k, v in f.items()}


@needs_faces
def test_id_cosine_and_rsr_on_lfw(lfw: dict) -> None:
    first, f1, f2 = lfw["first"], lfw["f_first"], lfw["f_second"]
    n = len(first)
    cos = _metric("id-cosine")
    batch = _shared(n, f1)  # the reconstructions (= the originals) are embedded here, then shared by every metric
    # (a batch with descriptors already in `shared` ignores the images passed for that side)
    same = cos.score_batch(first, first, batch)
    assert np.allclose(same, 1.0, atol=1e-6)
    other = cos.score_batch(first, first, _shared(n, f1, _rolled(f1)))  # reconstructions of the wrong person
    genuine = cos.score_batch(first, first, _shared(n, f1, f2))  # another photo of the same person
    assert other.max() < 0.999 and genuine.mean() > other.mean()
    cos.aggregate(cos.embed(first, first, _shared(n, f1, _rolled(f1))))
    assert "baseline: mean cosine between originals" in cos.value_note(n)
    for name in ("rsr@fmr=0.1%", "rsr@fmr=1%"):
        m = _metric(name)
        assert _set_value(m, first, first, batch) == 1.0
        shuffled = _set_value(m, first, first, _shared(n, f1, _rolled(f1)))
        assert shuffled <= 0.1, (name, shuffled)  # impostors pass about as often as the fmr (n = 20: one at most)
        assert "190 impostor pairs" in m.value_note(n)
        assert _set_value(m, first, first, _shared(n, f1, f2)) > shuffled  # another photo of the same person
    assert "dlib-face:ref" in batch.shared and "dlib-face:recon" in batch.shared


@pytest.fixture(scope="module")
def utkface(shared_data: Path):
    root = shared_data / "faces" / "utkface"
    if not root.is_dir():
        pytest.skip(f"no UTKFace at {root}")
    return root


@needs_faces
def test_gender_accuracy_on_utkface(utkface: Path, tmp_path: Path) -> None:
    ds = registry.datasets.get("utkface").obj(root=utkface)
    ids = ds.item_ids()
    picked = ids[:: max(1, len(ids) // 100)][:100]  # spread over ages and file names
    faces = ds.load(picked, 64)
    g = faces.labels["gender"]
    aux, test = slice(0, 60), slice(60, 100)
    ctx = EvalContext(labels={"gender": g[test]}, ids=faces.ids[test], aux_images=faces.images[aux],
                      aux_labels={"gender": g[aux]}, device=torch.device("cpu"), seed=0, image_size=64,
                      cache_dir=tmp_path, reference_key="utk-test")
    m = _metric("gender-accuracy")
    m.prepare(ctx)
    originals = faces.images[test]
    batch = EvalBatch(list(range(40)), faces.ids[test], labels={"gender": g[test]})
    batch.shared["dlib-face:ref"] = batch.shared["dlib-face:recon"] = m._get_embedder().embed(originals)
    value = _set_value(m, originals, originals, batch)
    assert value > 0.7, value
    assert "60 auxiliary originals" in m.value_note(40)
    flat = torch.full_like(originals[:8], 0.5)  # a reconstruction with no face: one constant prediction -> chance
    one = m._get_embedder().embed(flat[:1])
    const = EvalBatch(list(range(40)), faces.ids[test], labels={"gender": g[test]})
    const.shared["dlib-face:ref"] = batch.shared["dlib-face:ref"]
    const.shared["dlib-face:recon"] = {k: np.repeat(v, 40, axis=0) for k, v in one.items()}
    assert _set_value(m, originals, originals, const) == 0.5


@needs_faces
def test_end_to_end_run(utkface: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from bench.cli import main

    result = CliRunner().invoke(main, [
        "run", "--attack", "mean-image", "--dataset", "utkface", "--data-root", str(utkface), "--profile", "smoke",
        "--n-train", "24", "--n-test", "16", "--metrics", "id-cosine,rsr@fmr=1%,gender-accuracy,psnr", "--quiet",
        "--results", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines() if line.strip()}
    for name in ("id-cosine", "rsr@fmr=1%", "gender-accuracy"):
        assert name in lines and "unavailable" not in lines[name] and "failed" not in lines[name], result.output
    run = json.loads(next(tmp_path.glob("runs/*/run.json")).read_text())
    text = json.dumps(run)
    assert "rsr@fmr=1%" in text and "threshold" in text
    # the mean image carries no one's identity: it matches hardly anyone and predicts one gender (chance)
    rsr = float(lines["rsr@fmr=1%"].split()[1])
    gender = float(lines["gender-accuracy"].split()[1])
    assert rsr <= 0.25 and gender <= 0.6, result.output


@needs_faces
def test_contract_kit_passes(builtin_contract) -> None:
    for name in METRICS:
        results = builtin_contract(name, "metrics")
        failed = [(check, detail) for check, ok, detail in results if not ok]
        assert results and not failed, (name, failed)
        if name == "gender-accuracy":  # synthetic faces have no gender labels: reported unavailable, a pass
            assert dict((c, d) for c, _, d in results)["prepare"].startswith("unavailable: needs gender labels")
