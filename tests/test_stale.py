"""Stale results are never reused: a replaced image, or a fixed bug in an attack or a metric, recomputes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from bench import registry
from bench.run.plan import RunRequest
from bench.run.runner import execute


def _folder(root: Path, n: int) -> Path:
    root.mkdir()
    rng = np.random.default_rng(3)
    for i in range(n):
        base = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
        Image.fromarray(base).resize((64, 64), Image.BILINEAR).save(root / f"{i:03d}.png")
    return root


def _request(root: Path, results: Path, metrics=("mse",)) -> RunRequest:
    return RunRequest(attack="mean-image", dataset="folder", data_root=root, profile="smoke", n_train=10, n_test=4,
                      results=results, metrics=metrics, progress=False)


def test_replaced_private_image_is_not_scored_from_old_files(tmp_path: Path) -> None:
    root = _folder(tmp_path / "imgs", 14)
    first = execute(_request(root, tmp_path / "r"))
    private = sorted((first.run_dir / "reconstructions").iterdir())
    victim = private[0].stem.split("_", 1)[1]  # the first private image's file name
    path = root / victim
    stat = path.stat()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(path)  # a different picture under the same name
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    second = execute(_request(root, tmp_path / "r"))
    assert second.run_id != first.run_id  # the dataset's content is part of the spec
    fresh = execute(_request(root, tmp_path / "fresh"))
    assert second.set_metrics["mse"]["value"] == fresh.set_metrics["mse"]["value"]
    assert second.set_metrics["mse"]["value"] != first.set_metrics["mse"]["value"]


def test_fixed_metric_recomputes_its_rows(tmp_path: Path, monkeypatch) -> None:
    root = _folder(tmp_path / "imgs", 14)
    execute(_request(root, tmp_path / "r"))
    mse = registry.metrics.get("mse").obj
    calls = []
    original = mse.per_sample

    def counting(self, recon, ref):
        calls.append(len(recon))
        return original(self, recon, ref)

    monkeypatch.setattr(mse, "per_sample", counting)
    execute(_request(root, tmp_path / "r"))
    assert calls == []  # unchanged metric: its stored values are reused
    monkeypatch.setattr(mse, "version", "fixed")
    again = execute(_request(root, tmp_path / "r"))
    assert sum(calls) == 4  # a new metric version rescored every sample
    assert again.set_metrics["mse"]["version"] == "fixed"


def test_fixed_attack_retrains(tmp_path: Path, monkeypatch) -> None:
    root = _folder(tmp_path / "imgs", 14)
    first = execute(_request(root, tmp_path / "r"))
    attack = registry.attacks.get("mean-image").obj
    monkeypatch.setattr(attack, "version", "fixed")
    second = execute(_request(root, tmp_path / "r"))
    assert second.run_id != first.run_id and second.record["cache"]["attack"] is False
    assert second.record["cache"]["features"] is True  # the extractor did not change
