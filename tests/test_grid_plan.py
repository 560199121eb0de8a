"""Planning a grid opens each dataset folder once: the listing (a walk of the whole folder and a digest look-up per
file, slow on CIFAR-10's 55,000 images) is shared by every planned run, and the plan is that of planning each run
on its own."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.datasets import folders
from bench.run.grid_plan import plan_grid
from bench.run.grid_spec import DatasetItem, GridSpec
from bench.run.plan import plan


def test_a_grid_lists_each_dataset_folder_once(tmp_path: Path, bench_home: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    roots = [tmp_path / "a", tmp_path / "b"]
    for root in roots:
        root.mkdir()
        for i in range(16):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(root / f"{i:02d}.png")
    listed: list[Path] = []
    real = folders.list_images

    def counting(root: Path) -> list[str]:
        listed.append(Path(root).resolve())
        return real(root)

    monkeypatch.setattr(folders, "list_images", counting)
    # the first folder named twice (once through another spelling of its path): still one dataset, one listing
    datasets = [DatasetItem("folder", roots[0]), DatasetItem("folder", roots[1]),
                DatasetItem("folder", tmp_path / "b" / ".." / "a")]
    grid = GridSpec(attacks=["mean-image"], defenses=["none", "drop-coordinates"], datasets=datasets, seeds=[0, 1, 2],
                    profile="smoke", n_train=6, n_test=4, results=tmp_path / "res", threads=1)
    planned, skipped = plan_grid(grid)
    assert not skipped and len(planned) == 2 * 2 * 3  # the repeated folder plans the same runs: kept once
    assert sorted(listed) == sorted(r.resolve() for r in roots)

    listed.clear()
    for p in planned:  # each run planned on its own, its dataset opened afresh: the same ids
        alone = plan(p.request).spec
        assert (alone.run_id, alone.config_id, alone.to_dict()) == (p.run_id, p.config_id, p.spec)
    assert len(listed) == len(planned)
