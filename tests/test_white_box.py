"""The white-box threat model end to end through `bench run`: a toy victim model, a per-batch release, toy attacks.

The victim is a seeded linear classifier; its release is the gradient of its cross-entropy loss over a batch of two
images (a federated client's update). For a linear layer, row c of the weight gradient divided by the bias gradient's
entry c is a convex combination of the batch's images, and exactly the image when the batch holds one — so the
attack below, which needs the victim's weight shape, rebuilds the lone image of the last batch and blurs the others.
"""

from __future__ import annotations

import json
from pathlib import Path
import shutil
from typing import Any, Sequence

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from bench import registry
from bench.cli import main
from bench.features import FeatureSet, FeatureSpec, Requirement, feature_kinds, register_feature_kind
from bench.images import resize
from bench.plugins import (Attack, Extractor, FitContext, ImageSet, Victim, register_attack, register_extractor)

BATCH = 2
SEEN: dict[str, Any] = {}  # what the toy attacks saw, by attack name


class BatchGradients(FeatureSet):
    """Toy per-batch release: one flattened gradient per batch of images."""

    kind = "toy-batch-gradient"
    granularity = "batch"

    def __init__(self, grads: np.ndarray, cover: list[list[int]], flags: Any = None, meta: Any = None) -> None:
        super().__init__(flags, meta)
        self.grads = np.asarray(grads, dtype=np.float64)
        self.cover = [[int(i) for i in c] for c in cover]

    def __len__(self) -> int:
        return len(self.grads)

    def covers(self) -> list[list[int]]:
        return [list(c) for c in self.cover]

    def subset(self, indices: Sequence[int]) -> "BatchGradients":
        return BatchGradients(self.grads[list(indices)], [self.cover[i] for i in indices], self.flags, self.meta)

    def _save_arrays(self) -> dict[str, np.ndarray]:
        return {"grads": self.grads, "cover_flat": np.array([i for c in self.cover for i in c], dtype=np.int64),
                "cover_sizes": np.array([len(c) for c in self.cover], dtype=np.int64)}

    @classmethod
    def _from_arrays(cls, arrays, flags, meta) -> "BatchGradients":
        flat, sizes = arrays["cover_flat"].tolist(), arrays["cover_sizes"].tolist()
        starts = np.cumsum([0] + sizes[:-1]).tolist()
        return cls(np.array(arrays["grads"]), [flat[s:s + n] for s, n in zip(starts, sizes)], flags, meta)


class GradientVictim(Extractor):
    """Toy white-box victim: a seeded linear classifier; releases its loss gradient per batch of two images (of
    the images in the order 0, 2, 4, ..., 1, 3, ...)."""

    name = "toy-gradient-victim"
    produces = FeatureSpec("toy-batch-gradient")
    white_box = True

    def _model(self, size: int) -> torch.nn.Linear:
        gen = torch.Generator().manual_seed(0)
        model = torch.nn.Linear(3 * size * size, 2).double()
        with torch.no_grad():
            model.weight.copy_(torch.randn(model.weight.shape, generator=gen, dtype=torch.float64) * 1e-3)
            model.bias.zero_()
        return model

    def victim(self) -> Victim:
        self.size = getattr(self, "size", 64)
        return Victim(self._model(self.size), {"trained": False, "steps": 0})

    def extract(self, images: ImageSet, progress: bool = True) -> BatchGradients:
        self.size = int(images.images.shape[-1])
        model = self._model(self.size)
        grads, cover = [], []
        n = len(images)
        order = list(range(0, n, 2)) + list(range(1, n, 2))  # batches that are not runs of consecutive images
        for start in range(0, n, BATCH):
            idx = order[start:start + BATCH]
            x = images.images[idx].double().flatten(1)
            model.zero_grad()
            F.cross_entropy(model(x), torch.zeros(len(idx), dtype=torch.long)).backward()
            grads.append(torch.cat([model.weight.grad.flatten(), model.bias.grad]).numpy().copy())
            cover.append(idx)
        return BatchGradients(np.stack(grads), cover)


class GradientInversion(Attack):
    """Toy white-box attack: divides the weight gradient by the bias gradient (needs the victim's layer shape)."""

    name = "toy-gi"
    paper = "toy: a linear layer's gradient divided by its bias gradient"
    consumes = Requirement("toy-batch-gradient")
    default_extractor = "toy-gradient-victim"
    profiles = ("smoke",)
    needs_victim = True

    def fit(self, features: FeatureSet, images: torch.Tensor, ctx: FitContext) -> None:
        SEEN[self.name] = {"fit_victim": ctx.victim is not None}

    def reconstruct(self, features: FeatureSet, progress: bool = True) -> torch.Tensor:
        assert self.victim is not None, "the engine attaches the victim before reconstructing"
        classes, dim = self.victim.model.weight.shape
        side = int(round((dim / 3) ** 0.5))
        out = []
        for g, cover in zip(features.grads, features.covers()):
            dw, db = g[:classes * dim].reshape(classes, dim), g[classes * dim:]
            c = int(np.argmax(np.abs(db)))
            with np.errstate(invalid="ignore", divide="ignore"):  # a blank record (contract kit): no image
                x = torch.from_numpy(dw[c] / db[c]).float().reshape(1, 3, side, side).clamp(0, 1)
            out += [resize(x, self.image_size)[0]] * len(cover)
        SEEN.setdefault(self.name, {})["reconstructed"] = True
        return torch.stack(out) if out else torch.zeros((0, 3, self.image_size, self.image_size))


class Peeker(Attack):
    """Toy attack on the same release that does not declare needs_victim: it must never see the victim."""

    name = "toy-peeker"
    paper = "toy: never sees the victim"
    consumes = Requirement("toy-batch-gradient")
    default_extractor = "toy-gradient-victim"
    profiles = ("smoke",)

    def fit(self, features: FeatureSet, images: torch.Tensor, ctx: FitContext) -> None:
        SEEN[self.name] = {"fit_victim": ctx.victim is not None}

    def reconstruct(self, features: FeatureSet, progress: bool = True) -> torch.Tensor:
        SEEN[self.name]["attack_victim"] = self.victim is not None
        n = sum(len(c) for c in features.covers())
        return torch.full((n, 3, self.image_size, self.image_size), 0.5)


@pytest.fixture
def toys():
    register_feature_kind(BatchGradients)
    register_extractor(GradientVictim)
    register_attack(GradientInversion)
    register_attack(Peeker)
    SEEN.clear()
    yield
    feature_kinds.unregister(BatchGradients.kind)
    registry.extractors.unregister(GradientVictim.name)
    registry.attacks.unregister(GradientInversion.name)
    registry.attacks.unregister(Peeker.name)


def _run_dir(results: Path) -> Path:
    return next(d for d in (results / "runs").iterdir() if d.is_dir())


def _run(results: Path, attack: str, *extra: str) -> Any:
    return CliRunner().invoke(main, ["run", "--attack", attack, "--profile", "smoke", "--n-train", "4", "--n-test",
                                     "5", "--metrics", "mse", "--quiet", "--results", str(results), *extra])


def test_white_box_attack_on_per_batch_release(toys, tmp_path: Path) -> None:
    res = _run(tmp_path, "toy-gi")
    assert res.exit_code == 0, res.output
    run_dir = _run_dir(tmp_path)
    record = json.loads((run_dir / "run.json").read_text())
    ids = json.loads((run_dir / "run.json").read_text())["releases"]
    private = pd.read_csv(run_dir / "metrics.csv")["sample_id"].tolist()
    assert ids["granularity"] == "batch" and ids["records"] == 3
    assert sorted(len(c) for c in ids["covers"]) == [1, 2, 2]
    assert sorted(i for c in ids["covers"] for i in c) == sorted(private)  # every private image once
    assert record["threat_model"]["victim"] == {"granted": True, "state": {"trained": False, "steps": 0},
                                                "parameters": 2 * 3 * 64 * 64 + 2}
    assert SEEN["toy-gi"] == {"fit_victim": True, "reconstructed": True}
    mse = pd.read_csv(run_dir / "metrics.csv").set_index("sample_id")["mse"]
    lone = ids["covers"][-1][0]  # the last batch holds one image: the gradient gives it back exactly
    assert private.index(lone) == 3  # of the five images 0, 2 | 4, 1 | 3: scored as image 3, not as the 5th
    assert mse[lone] < 1e-4
    assert all(mse[i] > 10 * max(mse[lone], 1e-6) for c in ids["covers"][:-1] for i in c)

    # The trained attack comes from the cache on a second run: the victim is attached all the same.
    shutil.rmtree(run_dir)
    SEEN.clear()
    res = _run(tmp_path, "toy-gi")
    assert res.exit_code == 0, res.output
    again = json.loads((run_dir / "run.json").read_text())
    assert again["training"]["from_cache"] is True and SEEN["toy-gi"] == {"reconstructed": True}
    assert pd.read_csv(run_dir / "metrics.csv").set_index("sample_id")["mse"].equals(mse)


def test_attack_that_does_not_declare_never_sees_the_victim(toys, tmp_path: Path) -> None:
    res = _run(tmp_path, "toy-peeker")
    assert res.exit_code == 0, res.output
    assert SEEN["toy-peeker"] == {"fit_victim": False, "attack_victim": False}
    record = json.loads(_run_dir(tmp_path).joinpath("run.json").read_text())
    assert "victim" not in record["threat_model"]


def test_white_box_attack_refuses_an_extractor_that_grants_no_victim(toys, tmp_path: Path) -> None:
    class Opaque(GradientVictim):
        """Toy victim that releases gradients but keeps its model to itself."""

        name = "toy-opaque-victim"
        white_box = False

    register_extractor(Opaque)
    try:
        res = _run(tmp_path, "toy-gi", "--extractor", "toy-opaque-victim")
    finally:
        registry.extractors.unregister(Opaque.name)
    assert res.exit_code != 0
    assert "is white-box (it needs the victim model) but extractor 'toy-opaque-victim' grants no victim" in res.output
    assert "Traceback" not in res.output


def test_per_sample_releases_record_their_granularity(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["run", "--attack", "mean-image", "--profile", "smoke", "--n-train", "6",
                                    "--n-test", "4", "--metrics", "mse", "--quiet", "--results", str(tmp_path)])
    assert res.exit_code == 0, res.output
    record = json.loads(_run_dir(tmp_path).joinpath("run.json").read_text())
    assert record["releases"]["granularity"] == "sample" and record["releases"]["records"] == 4


def test_contract_kit_checks_white_box_attacks_on_per_batch_releases(toys) -> None:
    from bench.contract import check_plugin

    results = check_plugin("toy-gi")
    failed = [(name, detail) for name, ok, detail in results if not ok]
    assert not failed, failed
    assert dict((name, detail) for name, _, detail in results)["fit + reconstruct (smoke)"] == "4 images 32px"
    assert SEEN["toy-gi"]["fit_victim"] is True
