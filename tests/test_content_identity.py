"""A dataset is known by its content: copies share splits, ids and leaderboard rows; copies of private images never
reach the attacker; the digest cache makes a second listing cheap; dangling symlinks are skipped with a reason."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pytest
import torch
from PIL import Image

from bench import registry
from bench.datasets.digests import cache_path, folder_digests
from bench.datasets.folders import ImageFolder
from bench.features import FeatureSet, FeatureSpec, Requirement, feature_kinds, register_feature_kind
from bench.plugins import Attack, Extractor, FitContext, ImageSet, register_attack, register_extractor
from bench.run.plan import RunRequest, plan
from bench.run.runner import execute
from bench.store import Store


class PixelSet(FeatureSet):
    """Toy released features: every pixel of the image (an identity 'extractor')."""

    kind = "toy-pixels"
    default_flags = {"exact": True}

    def __init__(self, pixels: np.ndarray, flags: Mapping[str, bool] | None = None, meta: Any = None) -> None:
        super().__init__(flags, meta)
        self.pixels = np.asarray(pixels, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.pixels)

    def subset(self, indices: Sequence[int]) -> "PixelSet":
        return PixelSet(self.pixels[list(indices)], self.flags, self.meta)

    def _save_arrays(self) -> dict[str, np.ndarray]:
        return {"pixels": self.pixels}

    @classmethod
    def _from_arrays(cls, arrays, flags, meta) -> "PixelSet":
        return cls(np.array(arrays["pixels"]), flags, meta)


class PixelExtractor(Extractor):
    """Toy victim: releases the image itself."""

    name = "toy-pixels"
    produces = FeatureSpec("toy-pixels", {"exact": True})

    def extract(self, images: ImageSet, progress: bool = True) -> PixelSet:
        return PixelSet(images.images.reshape(len(images), -1).numpy())


class Memoriser(Attack):
    """Toy attack that memorises its training pairs and answers with the nearest one: exact on any image it saw."""

    name = "toy-memoriser"
    consumes = Requirement("toy-pixels")
    default_extractor = "toy-pixels"
    paper = "memorising probe of the content-identity test"

    def fit(self, features: FeatureSet, images: torch.Tensor, ctx: FitContext) -> None:
        self.keys = torch.from_numpy(np.array(features.pixels))
        self.images = images.clone()

    def reconstruct(self, features: FeatureSet, progress: bool = True) -> torch.Tensor:
        query = torch.from_numpy(np.array(features.pixels))
        return self.images[torch.cdist(query, self.keys).argmin(dim=1)]

    def state_dict(self) -> dict[str, Any]:
        return {"keys": self.keys, "images": self.images}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.keys, self.images = state["keys"], state["images"]


@pytest.fixture()
def memoriser():
    register_feature_kind(PixelSet)
    register_extractor(PixelExtractor)
    register_attack(Memoriser)
    yield
    registry.attacks.unregister(Memoriser.name)
    registry.extractors.unregister(PixelExtractor.name)
    feature_kinds.unregister(PixelSet.kind)


def _images(root: Path, n: int, seed: int, prefix: str = "img") -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        path = root / f"{prefix}{i:03d}.png"
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def _copy_with_new_times(src: Path, dst: Path) -> Path:
    """`cp -r` without preserving times: every file gets a new modification time."""
    shutil.copytree(src, dst, copy_function=shutil.copyfile, symlinks=True)
    for path in dst.rglob("*"):
        if path.is_file() and not path.is_symlink():
            st = path.stat()
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 7_000_000_000))
    return dst


def _request(**kw: Any) -> RunRequest:
    base = dict(attack="toy-memoriser", dataset="folder", profile="smoke", metrics=("mse",), progress=False)
    base.update(kw)
    return RunRequest(**base)


def test_copy_of_a_folder_gives_the_same_fingerprint_splits_and_ids(tmp_path: Path, memoriser) -> None:
    src = tmp_path / "a" / "faces"
    _images(src, 20, seed=3)
    copy = _copy_with_new_times(src, tmp_path / "elsewhere" / "faces-copy")
    assert (copy / "img000.png").stat().st_mtime_ns != (src / "img000.png").stat().st_mtime_ns
    assert ImageFolder(root=copy).fingerprint() == ImageFolder(root=src).fingerprint()
    a = plan(_request(data_root=src, seed=0, n_train=10, n_test=5))
    b = plan(_request(data_root=copy, seed=0, n_train=10, n_test=5))
    assert (a.train_ids, a.test_ids) == (b.train_ids, b.test_ids)
    assert a.spec.run_id == b.spec.run_id and a.spec.config_id == b.spec.config_id
    assert a.spec.data_root != b.spec.data_root  # where the data lay is still recorded


def test_splits_follow_content_not_names(tmp_path: Path) -> None:
    """Renaming every file keeps which images are private (the split is ordered by content digest)."""
    src = tmp_path / "faces"
    _images(src, 20, seed=4)
    renamed = tmp_path / "renamed"
    renamed.mkdir()
    for k, path in enumerate(sorted(src.iterdir())):
        shutil.copyfile(path, renamed / f"z{19 - k:02d}-{path.name}")
    a, b = ImageFolder(root=src), ImageFolder(root=renamed)
    from bench.run.splits import split_ids

    def contents(ds: ImageFolder, ids: list[str]) -> set[str]:
        return set(ds.content_keys(ids))

    ia, ib = a.item_ids(), b.item_ids()
    tr_a, te_a = split_ids(ia, 0, 10, 5, key=dict(zip(ia, a.content_keys(ia))).__getitem__)
    tr_b, te_b = split_ids(ib, 0, 10, 5, key=dict(zip(ib, b.content_keys(ib))).__getitem__)
    assert contents(a, te_a) == contents(b, te_b) and contents(a, tr_a) == contents(b, tr_b)


def test_duplicate_of_a_private_image_in_the_same_folder_is_not_trained_on(tmp_path: Path, memoriser) -> None:
    root = tmp_path / "faces"
    originals = _images(root, 12, seed=5)
    for path in originals:  # every image twice, under another name
        shutil.copyfile(path, root / f"dup-{path.name}")
    for seed in range(4):
        p = plan(_request(data_root=root, seed=seed, n_train=12, n_test=6))
        private = set(p.dataset.content_keys(p.test_ids))
        assert not private & set(p.dataset.content_keys(p.train_ids)), f"seed {seed}"


def test_renamed_copies_and_symlinks_of_private_images_never_reach_the_attacker(tmp_path: Path, memoriser) -> None:
    private_root = tmp_path / "private"
    private = _images(private_root, 8, seed=6)
    aux_root = tmp_path / "aux"
    _images(aux_root / "others", 12, seed=7, prefix="other")
    (aux_root / "renamed").mkdir()
    (aux_root / "linked").mkdir()
    for k, path in enumerate(private):
        shutil.copyfile(path, aux_root / "renamed" / f"person{k:02d}.png")
        (aux_root / "linked" / f"face{k:02d}.png").symlink_to(path)
    req = _request(data_root=private_root, aux_dataset="folder", aux_data_root=aux_root, n_train=12, n_test=8,
                   results=tmp_path / "results")
    p = plan(req)
    assert sorted(p.train_ids) == sorted(f"others/other{i:03d}.png" for i in range(12))

    # The probe is able to leak: trained on the private images themselves, it rebuilds every one exactly.
    probe = Memoriser(profile="smoke", image_size=p.spec.image_size, device=torch.device("cpu"), seed=0)
    imgs = p.dataset.load(p.test_ids, p.spec.image_size).images
    feats = PixelExtractor().extract(p.dataset.load(p.test_ids, p.spec.extract_size))
    probe.fit(feats, imgs, FitContext(defense=p.defense, seed=0, device=torch.device("cpu"), progress=False))
    assert float(((probe.reconstruct(feats) - imgs) ** 2).mean()) == 0.0

    res = execute(req)
    with Store(tmp_path / "results" / "bench.sqlite") as store:
        per_image = {r["sample_id"]: r["value"] for r in store.sample_metrics(res.run_id) if r["metric"] == "mse"}
    assert len(per_image) == 8
    rebuilt = sorted(k for k, v in per_image.items() if v < 1e-3)
    assert not rebuilt, f"the attacker rebuilt private images {rebuilt} ({per_image})"


def test_a_copy_pools_seeds_into_one_leaderboard_row(tmp_path: Path, memoriser) -> None:
    src = tmp_path / "faces"
    _images(src, 16, seed=8)
    copy = _copy_with_new_times(src, tmp_path / "node2" / "faces")
    results = tmp_path / "results"
    first = execute(_request(data_root=src, seed=0, n_train=8, n_test=4, results=results))
    second = execute(_request(data_root=copy, seed=1, n_train=8, n_test=4, results=results))
    assert first.record["config_id"] == second.record["config_id"]
    with open(second.leaderboard, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 1 and rows[0]["seeds"] == "2"


def test_digest_cache_reads_each_file_once(tmp_path: Path, bench_home: Path) -> None:
    root = tmp_path / "faces"
    _images(root, 6, seed=9)
    ids = sorted(p.name for p in root.iterdir())
    cold = folder_digests(root, ids)
    warm = folder_digests(root, ids)
    assert cold.computed == 6 and warm.computed == 0 and warm.digests == cold.digests
    assert cache_path().is_file() and cache_path().parent == bench_home
    import hashlib

    assert cold.digests[ids[0]] == hashlib.sha256((root / ids[0]).read_bytes()).hexdigest()
    path = root / ids[0]  # rewritten with new bytes and a new mtime: read again
    st = path.stat()
    Image.fromarray(np.zeros((24, 24, 3), np.uint8)).save(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    again = folder_digests(root, ids)
    assert again.computed == 1 and again.digests[ids[0]] != cold.digests[ids[0]]


def test_dangling_symlink_is_skipped_with_a_reason(tmp_path: Path, memoriser) -> None:
    root = tmp_path / "faces"
    _images(root, 14, seed=10)
    (root / "gone.png").symlink_to(tmp_path / "deleted.png")
    ds = ImageFolder(root=root)
    assert "gone.png" not in ds.item_ids() and len(ds.item_ids()) == 14
    assert ds.listing_skipped[0][0] == "gone.png" and "dangling symlink" in ds.listing_skipped[0][1]
    res = execute(_request(data_root=root, n_train=8, n_test=4, results=tmp_path / "results"))
    record = json.loads((res.run_dir / "run.json").read_text())
    files = record["skipped_files"]["files"]
    assert [f["file"] for f in files] == ["gone.png"] and "dangling symlink" in files[0]["reason"]


def test_a_plugin_dataset_not_keyed_by_content_still_never_shares_private_files(tmp_path: Path, memoriser) -> None:
    """An outside dataset reading the same folder by its own ids: private files are matched by resolved path."""
    from bench.datasets.folders import list_images
    from bench.images import read_image
    from bench.plugins import Dataset, register_dataset

    class PlainFolder(Dataset):
        """Outside-style folder dataset without content keys."""

        name = "toy-plain-folder"

        def item_ids(self) -> list[str]:
            return list_images(self.root)

        def load(self, ids: Sequence[str], size: int) -> ImageSet:
            return ImageSet(list(ids), torch.stack([read_image(self.root / i, size) for i in ids]))

    root = tmp_path / "faces"
    _images(root, 20, seed=11)
    register_dataset(PlainFolder)
    try:
        for seed in range(3):
            p = plan(_request(data_root=root, aux_dataset="toy-plain-folder", aux_data_root=root, seed=seed,
                              n_train=12, n_test=8))
            assert not set(p.train_ids) & set(p.test_ids), f"seed {seed}"
    finally:
        registry.datasets.unregister("toy-plain-folder")


def _digests_in_child(root: str, ids: list[str], home: str) -> dict[str, str]:
    os.environ["BENCH_HOME"] = home
    return folder_digests(Path(root), ids).digests


def test_digest_cache_shared_by_concurrent_processes(tmp_path: Path, bench_home: Path) -> None:
    import multiprocessing

    root = tmp_path / "faces"
    _images(root, 40, seed=12)
    ids = sorted(p.name for p in root.iterdir())
    # fork where there is one: a spawned child imports this module, i.e. torch and bench, again (~4 s of CPU each)
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with multiprocessing.get_context(method).Pool(2) as pool:
        results = pool.starmap(_digests_in_child, [(str(root), ids, str(bench_home))] * 4)
    assert all(r == results[0] for r in results) and len(results[0]) == 40
    assert folder_digests(root, ids).computed == 0  # every entry was written once and is valid


def test_unusable_digest_cache_only_costs_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "faces"
    _images(root, 3, seed=13)
    (tmp_path / "home-is-a-file").write_text("")
    monkeypatch.setenv("BENCH_HOME", str(tmp_path / "home-is-a-file"))
    ids = sorted(p.name for p in root.iterdir())
    with pytest.warns(UserWarning, match="digest cache unavailable"):
        found = folder_digests(root, ids)
    import hashlib

    assert found.digests == {i: hashlib.sha256((root / i).read_bytes()).hexdigest() for i in ids}


def test_the_same_seed_on_a_copy_reuses_the_run_and_its_cached_stages(tmp_path: Path, memoriser) -> None:
    src = tmp_path / "faces"
    _images(src, 16, seed=14)
    copy = _copy_with_new_times(src, tmp_path / "restored" / "faces")
    results = tmp_path / "results"
    first = execute(_request(data_root=src, seed=0, n_train=8, n_test=4, results=results))
    again = execute(_request(data_root=copy, seed=0, n_train=8, n_test=4, results=results))
    assert again.run_id == first.run_id
    assert again.record["cache"]["features"] is True and again.record["training"]["from_cache"] is True
    assert again.record["spec"]["data_root"] == str(copy.resolve())  # the store points at the data now in use
