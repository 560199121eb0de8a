"""CIFAR-10 / CIFAR-100: the official binary record layouts (files written here byte by byte) and the folder layout."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from bench import registry
from bench.datasets.cifar import CIFAR10_CLASSES, CIFAR100_COARSE, CIFAR100_FINE, Cifar10, Cifar100
from bench.errors import BenchError
from bench.run.plan import RunRequest, plan


def _record(labels: list[int], seed: int) -> tuple[bytes, np.ndarray]:
    """One record as the release lays it out: label bytes, then 1,024 red, 1,024 green, 1,024 blue row-major bytes."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)  # H×W×RGB, as one would picture it
    planes = b"".join(img[:, :, c].tobytes(order="C") for c in range(3))
    return bytes(labels) + planes, img


def _write(path: Path, records: list[bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(records))


@pytest.fixture
def cifar10_bin(tmp_path: Path) -> tuple[Path, dict[str, tuple[int, np.ndarray]]]:
    """A miniature cifar-10-binary release: 2 records per train batch, 3 test records."""
    root = tmp_path / "cifar-10-batches-bin"
    truth: dict[str, tuple[int, np.ndarray]] = {}
    n = 0
    for b in range(1, 6):
        recs = []
        for r in range(2):
            label = (b * 3 + r) % 10
            raw, img = _record([label], seed=100 * b + r)
            recs.append(raw)
            truth[f"train/{n:05d}"] = (label, img)
            n += 1
        _write(root / f"data_batch_{b}.bin", recs)
    recs = []
    for r in range(3):
        raw, img = _record([9 - r], seed=900 + r)
        recs.append(raw)
        truth[f"test/{r:05d}"] = (9 - r, img)
    _write(root / "test_batch.bin", recs)
    return tmp_path, truth


def test_cifar10_binary_records_are_read_byte_exactly(cifar10_bin, monkeypatch: pytest.MonkeyPatch) -> None:
    root, truth = cifar10_bin
    monkeypatch.setattr(pickle, "load", lambda *a, **k: pytest.fail("unpickled"))
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("unpickled"))
    ds = Cifar10(root=root)  # the folder holding the extracted release
    ids = ds.item_ids()
    assert ids == sorted(truth, key=lambda i: (i.split("/")[0] != "train", i))
    s = ds.load(["train/00002", "test/00001", "train/00009"], 32)  # across batch files, out of order
    for k, item in enumerate(s.ids):
        label, img = truth[item]
        expected = torch.from_numpy(img.astype(np.float32) / 255.0).permute(2, 0, 1)
        assert torch.equal(s.images[k], expected)
        assert s.labels["label"][k] == label
    assert ds.split_of("test/00001") == "test" and ds.split_of("train/00002") == "train"
    assert ds.load(["test/00000"], 16).images.shape == (1, 3, 16, 16)
    fp = ds.fingerprint()
    assert fp["layout"] == "binary" and fp["files"] == 13


def test_cifar10_release_name_file_must_agree(cifar10_bin) -> None:
    root, _ = cifar10_bin
    names = root / "cifar-10-batches-bin" / "batches.meta.txt"
    names.write_text("\n".join(CIFAR10_CLASSES) + "\n\n")
    assert len(Cifar10(root=root).item_ids()) == 13
    names.write_text("\n".join(reversed(CIFAR10_CLASSES)))
    with pytest.raises(BenchError, match="other class names"):
        Cifar10(root=root).item_ids()


def test_truncated_or_partial_release_is_refused(cifar10_bin) -> None:
    root, _ = cifar10_bin
    release = root / "cifar-10-batches-bin"
    data = (release / "test_batch.bin").read_bytes()
    (release / "test_batch.bin").write_bytes(data[:-5])
    with pytest.raises(BenchError, match="not a whole number of 3073-byte CIFAR records"):
        Cifar10(root=root).item_ids()
    (release / "data_batch_3.bin").unlink()
    with pytest.raises(BenchError, match="missing data_batch_3.bin"):
        Cifar10(root=root).item_ids()


def test_python_pickle_release_is_never_read(tmp_path: Path) -> None:
    (tmp_path / "cifar-10-batches-py").mkdir()
    for name in ("data_batch_1", "test_batch", "batches.meta"):
        (tmp_path / "cifar-10-batches-py" / name).write_bytes(pickle.dumps({"data": 1}))
    with pytest.raises(BenchError, match="neither the binary release.*pickle, which is never loaded"):
        Cifar10(root=tmp_path).item_ids()


def test_cifar100_binary_has_coarse_and_fine_labels(tmp_path: Path) -> None:
    release = tmp_path / "cifar-100-binary"
    truth = {}
    for split, n in (("train", 4), ("test", 2)):
        recs = []
        for r in range(n):
            coarse, fine = (7 * r + 3) % 20, (13 * r + 50) % 100
            raw, img = _record([coarse, fine], seed=r + (0 if split == "train" else 50))
            recs.append(raw)
            truth[f"{split}/{r:05d}"] = (coarse, fine, img)
        _write(release / f"{split}.bin", recs)
    (release / "fine_label_names.txt").write_text("\n".join(CIFAR100_FINE))
    (release / "coarse_label_names.txt").write_text("\n".join(CIFAR100_COARSE))
    ds = Cifar100(root=release)  # the release folder itself
    s = ds.load(ds.item_ids(), 32)
    assert len(s) == 6
    for k, item in enumerate(s.ids):
        coarse, fine, img = truth[item]
        assert (s.labels["coarse"][k], s.labels["label"][k]) == (coarse, fine)
        assert np.array_equal((s.images[k].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), img)


def test_cifar_folder_layout_and_planned_native_size(tmp_path: Path) -> None:
    from PIL import Image

    for split, count in (("train", 6), ("test", 4)):
        for k in range(count):
            cls = CIFAR10_CLASSES[k % 3]
            path = tmp_path / split / cls / f"{k:04d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((32, 32, 3), 20 * k, dtype=np.uint8)).save(path)
    (tmp_path / "README.txt").write_text("not an image")
    ds = Cifar10(root=tmp_path)
    s = ds.load(["test/bird/0002.png", "train/airplane/0003.png"], 32)
    assert list(s.labels["label"]) == [2, 0] and float(s.images[0].max()) == pytest.approx(40 / 255)
    assert ds.fingerprint()["layout"] == "folder"
    p = plan(RunRequest(attack="mean-image", dataset="cifar10", data_root=tmp_path, profile="cpu", n_train=4,
                        n_test=2))
    assert (p.spec.extract_size, p.spec.image_size) == (32, 32) and p.resolution.rule == "native"
    assert all(i.startswith("test/") for i in p.test_ids) and all(i.startswith("train/") for i in p.train_ids)
    with pytest.raises(BenchError, match="cifar10's test split has 4 images but --n-test is 5"):
        plan(RunRequest(attack="mean-image", dataset="cifar10", data_root=tmp_path, profile="cpu", n_train=4,
                        n_test=5))
    (tmp_path / "test" / "unicorn").mkdir()
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(tmp_path / "test" / "unicorn" / "0.png")
    with pytest.raises(BenchError, match="unicorn"):
        Cifar10(root=tmp_path).item_ids()


def test_listed() -> None:
    for name in ("cifar10", "cifar100"):
        assert registry.datasets.get(name).meta["native_size"] == 32


def test_real_cifar10_folder(shared_data: Path) -> None:
    root = shared_data / "cifar10"
    if not (root / "test").is_dir():
        pytest.skip(f"CIFAR-10 images not found at {root}")
    ds = Cifar10(root=root)
    ids = ds.item_ids()
    assert len(ids) == 55000 and sum(ds.split_of(i) == "test" for i in ids) == 5000
    s = ds.load(["test/cat/0000.jpg", "train/truck/0001.jpg"], 32)
    assert s.images.shape == (2, 3, 32, 32) and list(s.labels["label"]) == [3, 9] and not s.skipped


def test_binary_release_is_known_by_content(cifar10_bin, tmp_path: Path) -> None:
    import shutil

    root, truth = cifar10_bin
    copy = tmp_path / "elsewhere"
    shutil.copytree(root / "cifar-10-batches-bin", copy / "cifar-10-batches-bin")
    a, b = Cifar10(root=root), Cifar10(root=copy)
    assert a.fingerprint() == b.fingerprint()  # no path, no modification time
    _, img = truth["test/00000"]
    expected = __import__("hashlib").sha256(img.transpose(2, 0, 1).tobytes()).hexdigest()
    assert a.content_keys(["test/00000"]) == [expected]  # the record's pixel bytes
    raw = bytearray((copy / "cifar-10-batches-bin" / "test_batch.bin").read_bytes())
    raw[100] ^= 1
    (copy / "cifar-10-batches-bin" / "test_batch.bin").write_bytes(bytes(raw))
    assert Cifar10(root=copy).fingerprint() != a.fingerprint()


def test_a_train_record_equal_to_a_private_one_never_reaches_the_attacker(tmp_path: Path) -> None:
    release = tmp_path / "cifar-10-batches-bin"
    test_rec, _ = _record([1], seed=7)
    for b in range(1, 6):
        recs = [_record([0], seed=10 * b + r)[0] for r in range(2)]
        if b == 3:
            recs[1] = bytes([4]) + test_rec[1:]  # the private image again, under another label
        _write(release / f"data_batch_{b}.bin", recs)
    _write(release / "test_batch.bin", [test_rec])
    p = plan(RunRequest(attack="mean-image", dataset="cifar10", data_root=tmp_path, profile="smoke", n_train=9,
                        n_test=1))
    assert p.test_ids == ["test/00000"] and "train/00005" not in p.train_ids and len(p.train_ids) == 9
