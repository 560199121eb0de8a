"""Torch-model extractors with manifest weights (bench/extractors/torch_embedding.py), on a stand-in network.

No real checkpoint is pinned (no publicly attested digest for an ArcFace file), so the test makes its own tiny
weights file, registers a manifest entry with that file's digest and a test-only extractor, and checks: a clear
error naming `bench weights pull|import` when the file is missing (library call and CLI), embeddings equal to the
network's own output once imported, and refusal of a file whose digest differs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from bench import registry, weights
from bench.cli import main
from bench.errors import WeightsMissingError
from bench.extractors.torch_embedding import TorchEmbeddingExtractor
from bench.plugins import ImageSet, register_extractor

ENTRY = "toy-embedder-weights"


def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(16, 8))


class ToyTorchEmbedder(TorchEmbeddingExtractor):
    """Test-only torch extractor: a tiny conv net whose weights come from the manifest entry ENTRY."""

    name = "toy-torch-embedder"
    weights = ENTRY
    input_size = 24

    def build(self) -> nn.Module:
        return _net()


@pytest.fixture()
def toy(tmp_path: Path, bench_home: Path):
    torch.manual_seed(0)
    source = _net()
    file = tmp_path / "toy-embedder.pt"
    torch.save(source.state_dict(), file)
    digest = hashlib.sha256(file.read_bytes()).hexdigest()
    weights.register_weight(weights.WeightFile(
        name=ENTRY, filename="toy-embedder.pt", url="https://example.invalid/toy-embedder.pt", sha256=digest,
        size=file.stat().st_size, licence="test stand-in", used_by="the toy-torch-embedder test extractor"))
    register_extractor(ToyTorchEmbedder)
    yield source, file
    registry.extractors.unregister(ToyTorchEmbedder.name)
    weights.unregister_weight(ENTRY)
    weights.forget_verifications()


def _images(n: int = 5) -> ImageSet:
    g = torch.Generator().manual_seed(1)
    return ImageSet(ids=[f"i{k}" for k in range(n)], images=torch.rand(n, 3, 32, 32, generator=g))


def test_missing_weights_name_the_fix(toy) -> None:
    ext = ToyTorchEmbedder()
    assert not ToyTorchEmbedder.available()
    for call in (ext.preflight, lambda: ext.extract(_images(), progress=False)):
        with pytest.raises(WeightsMissingError) as err:
            call()
        assert f"bench weights pull {ENTRY}" in str(err.value) and "bench weights import" in str(err.value)


def test_cli_run_refuses_before_work(toy, tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["run", "--attack", "face-cnn", "--extractor", ToyTorchEmbedder.name,
                                    "--profile", "smoke", "--quiet", "--results", str(tmp_path / "res")])
    assert res.exit_code == 2, res.output
    assert res.output.startswith("error: ") and f"bench weights pull {ENTRY}" in res.output, res.output
    assert not (tmp_path / "res" / "runs").exists() or not any((tmp_path / "res" / "runs").iterdir())


def test_imported_weights_give_the_network_output(toy) -> None:
    source, file = toy
    weights.import_file(file)
    assert ToyTorchEmbedder.available()
    imgs = _images()
    out = ToyTorchEmbedder().extract(imgs, progress=False)
    assert out.kind == "embeddings" and out.vectors.dtype == np.float32 and out.vectors.shape == (5, 8)
    # Reference: the source network on images resized and normalised by hand.
    x = torch.nn.functional.interpolate(imgs.images, size=(24, 24), mode="bilinear", align_corners=False,
                                        antialias=True)
    with torch.no_grad():
        expected = source.eval()((x - 0.5) / 0.5).numpy()
    np.testing.assert_allclose(out.vectors, expected, rtol=1e-5, atol=1e-6)
    config = ToyTorchEmbedder().config()
    assert config["weights_sha256"] == weights.entry(ENTRY).sha256


def test_a_file_with_another_digest_is_refused(toy, tmp_path: Path) -> None:
    _, file = toy
    other = tmp_path / "other" / "toy-embedder.pt"
    other.parent.mkdir()
    torch.manual_seed(5)
    torch.save(_net().state_dict(), other)
    weights.weights_dir().mkdir(parents=True, exist_ok=True)
    (weights.weights_dir() / "toy-embedder.pt").write_bytes(other.read_bytes())
    with pytest.raises(WeightsMissingError, match="fail verification"):
        ToyTorchEmbedder().preflight()
