"""The gradient-inversion plugins through `bench run` on real CIFAR-10 (skipped when ../shared/data/cifar10 is absent)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from bench import registry
from bench.cli import main

from conftest import SHARED_DATA

CIFAR = SHARED_DATA / "cifar10"


def test_plugins_listed() -> None:
    for name in ("dlg", "idlg", "inverting-gradients"):
        assert name in registry.attacks.names()
    assert "fedsgd-lenet-zhu" in registry.extractors.names()


@pytest.mark.parametrize("attack", ["dlg", "idlg", "inverting-gradients"])
def test_smoke_run_on_cifar10(attack: str, tmp_path: Path) -> None:
    if not (CIFAR / "test").is_dir():
        pytest.skip(f"CIFAR-10 not found at {CIFAR}")
    res = CliRunner().invoke(main, ["run", "--attack", attack, "--defense", "none", "--dataset", "cifar10",
                                    "--data-root", str(CIFAR), "--profile", "smoke", "--n-train", "2", "--n-test",
                                    "3", "--metrics", "mse,psnr", "--quiet", "--results", str(tmp_path)])
    assert res.exit_code == 0, res.output
    run_dir = next(d for d in (tmp_path / "runs").iterdir() if d.is_dir())
    record = json.loads((run_dir / "run.json").read_text())
    assert record["threat_model"]["victim"]["granted"] is True
    assert record["threat_model"]["victim"]["parameters"] == 15_826
    assert record["releases"]["granularity"] == "batch" and record["releases"]["records"] == 3
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert len(metrics) == 3 and metrics["mse"].notna().all()


def _cifar_run(tmp_path: Path, *extra: str):
    if not (CIFAR / "test").is_dir():
        pytest.skip(f"CIFAR-10 not found at {CIFAR}")
    return CliRunner().invoke(main, ["run", "--dataset", "cifar10", "--data-root", str(CIFAR), "--profile", "smoke",
                                     "--n-train", "2", "--n-test", "2", "--metrics", "mse", "--quiet", "--results",
                                     str(tmp_path), *extra])


def test_gradient_defenses_run_and_incompatible_pairs_refused(tmp_path: Path) -> None:
    res = _cifar_run(tmp_path / "a", "--attack", "idlg", "--defense", "gradient-pruning", "--defense-arg",
                     "fraction=0.9", "--attack-arg", "iterations=2")
    assert res.exit_code == 0, res.output
    res = _cifar_run(tmp_path / "b", "--attack", "dlg", "--defense", "gradient-noise")
    assert res.exit_code == 0, res.output
    res = _cifar_run(tmp_path / "c", "--attack", "dlg", "--defense", "gaussian-noise")
    assert res.exit_code != 0 and "Traceback" not in res.output


def test_pruning_defense_prunes_each_parameter_tensor() -> None:
    import numpy as np
    import torch

    from bench.attacks.gradinv.plugins import FedSGDLeNetZhu, GradientPruning
    from bench.plugins import ImageSet

    imgs = ImageSet(["a", "b"], torch.rand(2, 3, 32, 32), {"label": np.array([3, 7])})
    rel = FedSGDLeNetZhu().extract(imgs)
    out = GradientPruning(fraction=0.7).protect(rel, np.random.default_rng(0))
    i = 0
    for shape in rel.meta["shapes"]:
        k = int(np.prod(shape))
        kept = (out.grads[:, i:i + k] != 0).sum(1)
        assert (kept == k - int(np.floor(0.7 * k))).all()  # each tensor keeps its largest 30 %
        i += k


@pytest.mark.slow
def test_dlg_batch1_untrained_lenet_recovers_cifar10() -> None:
    """DLG's finding (REFERENCES.md: about 23 dB after 1,200 iterations, label recovered) on one real test image per
    class; DLG fails on some images from a given start (4 of 10 here), so half of them must exceed 18 dB (a margin
    below 23 dB for the JPEG copies)."""
    import math

    import numpy as np
    import torch
    from PIL import Image

    from bench.attacks.gradinv import attacks, releases, victims

    if not (CIFAR / "test").is_dir():
        pytest.skip(f"CIFAR-10 not found at {CIFAR}")
    classes = sorted(p.name for p in (CIFAR / "test").iterdir() if p.is_dir())
    x = torch.stack([torch.from_numpy(np.asarray(Image.open(sorted((CIFAR / "test" / c).glob("*.jpg"))[0])
                                                 .convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)
                     for c in classes])
    y = torch.arange(len(classes))
    model = victims.build_victim("lenet-zhu", seed=0).eval()
    r = attacks.dlg(model, releases.per_sample_gradients(model, x, y), (3, 32, 32), iterations=1200, true_labels=y)
    mse = ((r.images[:, 0].clamp(0, 1) - x) ** 2).mean(dim=(1, 2, 3))
    psnr = sorted(10 * math.log10(1 / max(m, 1e-12)) for m in mse.tolist())
    assert r.label_accuracy == 1.0
    assert sum(p > 18.0 for p in psnr) >= 5, psnr
