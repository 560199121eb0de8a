"""CIFAR-10 and CIFAR-100 (Krizhevsky, 2009): 32×32 colour images in 10 / 100 classes, from a folder the user has.

Two layouts are read, whichever the root holds:

- the image-folder layout `ROOT/{train,test}/<class name>/NNNN.jpg` (as in the project's shared data); ids are the
  relative paths, the label is the class folder's index in the declared class list;
- the official binary releases (`cifar-10-binary`: `data_batch_1..5.bin`, `test_batch.bin`, records of one label
  byte and 3,072 pixel bytes; `cifar-100-binary`: `train.bin`, `test.bin`, records of a coarse-label byte, a
  fine-label byte and 3,072 pixel bytes; pixels are the 1,024 red, then green, then blue values of the rows). The
  root may be the extracted release folder or the folder holding it. Ids are `train/NNNNN` / `test/NNNNN`, the
  record's index in the split (train batches concatenated in order). The bytes are read with numpy: the Python
  releases are pickles, which the project never loads.

Class names are the dataset's label declaration (`class_names`, with `label_names` the labels `load` gives), beside
the images; a release's own name file
(`batches.meta.txt`, `fine_class_names.txt`, `coarse_class_names.txt`), when present, must agree with it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar, Sequence

import numpy as np
import torch

from bench.datasets.folders import FolderDataset
from bench.errors import BenchError
from bench.images import resize
from bench.plugins import ImageSet, register_dataset

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

CIFAR100_FINE = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle", "bowl", "boy",
    "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle", "chair", "chimpanzee", "clock",
    "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish",
    "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom", "oak_tree", "orange",
    "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree", "plain", "plate", "poppy", "porcupine",
    "possum", "rabbit", "raccoon", "ray", "road", "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk",
    "skyscraper", "snail", "snake", "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank",
    "telephone", "television", "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale",
    "willow_tree", "wolf", "woman", "worm")

CIFAR100_COARSE = (
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables", "household_electrical_devices",
    "household_furniture", "insects", "large_carnivores", "large_man-made_outdoor_things",
    "large_natural_outdoor_scenes", "large_omnivores_and_herbivores", "medium_mammals", "non-insect_invertebrates",
    "people", "reptiles", "small_mammals", "trees", "vehicles_1", "vehicles_2")

PIXELS = 32 * 32 * 3
SPLITS = ("train", "test")


def read_records(path: Path, label_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """(labels N×label_bytes uint8, images N×3×32×32 uint8) of one binary release file, memory-mapped.

    A file whose size is not a whole number of records is refused: it is truncated or of another release.
    """
    record = label_bytes + PIXELS
    size = path.stat().st_size
    if size == 0 or size % record:
        raise BenchError(f"'{path}' holds {size} bytes, not a whole number of {record}-byte CIFAR records "
                         f"({label_bytes} label byte(s) + {PIXELS} pixel bytes): truncated, or another release?")
    raw = np.memmap(path, dtype=np.uint8, mode="r").reshape(-1, record)
    return raw[:, :label_bytes], raw[:, label_bytes:].reshape(-1, 3, 32, 32)


class _Cifar(FolderDataset):
    """Shared reading of both layouts; subclasses declare their files, record layout and class names."""

    native_size = 32
    not_faces = True  # objects: no face-descriptor metric by default (bench/run/metric_defaults)
    release_dir: ClassVar[str] = ""  # the folder name the official binary tarball extracts to
    files: ClassVar[dict[str, tuple[str, ...]]] = {}  # split -> binary files, in order
    label_fields: ClassVar[tuple[str, ...]] = ("label",)  # the label bytes of a record, in order ('label': class)
    class_names: ClassVar[dict[str, tuple[str, ...]]] = {}  # label field -> class names (index = label value)
    label_names = ("label",)  # in both layouts (CIFAR-100's binary release adds "coarse")
    name_files: ClassVar[dict[str, str]] = {}  # label field -> the release's own class-name file

    def __init__(self, root: Path | str | None = None) -> None:
        super().__init__(root)
        self._binary: Path | None = None
        self._records: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # split -> (labels, records per file)
        self._maps: dict[str, list[np.ndarray]] = {}  # split -> each file's memory-mapped images
        self._record_digests: dict[str, str] = {}  # binary release: id -> sha256 of its pixel bytes
        self._binary_fingerprint: dict[str, Any] | None = None

    # -------------------------------------------------------------------------------------------- layout
    def _binary_dir(self) -> Path | None:
        """The folder holding the binary release (the root or its extracted subfolder), or None (folder layout)."""
        root = self._checked_root()
        for folder in (root, root / self.release_dir):
            if all((folder / f).is_file() for split in SPLITS for f in self.files[split]):
                return folder
        for folder in (root, root / self.release_dir):
            present = [f for split in SPLITS for f in self.files[split] if (folder / f).is_file()]
            if present:
                missing = [f for split in SPLITS for f in self.files[split] if f not in present]
                raise BenchError(f"dataset {self.name!r}: '{folder}' holds part of the binary release; missing "
                                 f"{', '.join(missing)}")
        return None

    def _check_names(self, folder: Path) -> None:
        """A release's own class-name file must list the declared names (blank lines ignored)."""
        for field, file in self.name_files.items():
            path = folder / file
            if path.is_file():
                names = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
                if names != self.class_names[field]:
                    raise BenchError(f"dataset {self.name!r}: '{path}' lists other class names than the "
                                     f"declared {field} names ({', '.join(self.class_names[field][:3])}, ...)")

    def _split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        if split not in self._records:
            assert self._binary is not None
            parts = [read_records(self._binary / f, len(self.label_fields)) for f in self.files[split]]
            labels = parts[0][0] if len(parts) == 1 else np.concatenate([p[0] for p in parts])
            # One memory map per file; images are gathered per file in `load`, so nothing large is copied here.
            self._records[split] = (labels, np.array([len(p[1]) for p in parts], dtype=np.int64))
            self._maps[split] = [p[1] for p in parts]
        return self._records[split]

    def item_ids(self) -> list[str]:
        """`train/NNNNN` and `test/NNNNN` (binary release) or `{train,test}/<class>/<file>` (folder layout)."""
        if self._ids is not None:
            return list(self._ids)
        self._binary = self._binary_dir()
        if self._binary is not None:
            self._check_names(self._binary)
            ids = [f"{split}/{i:05d}" for split in SPLITS for i in range(int(self._split(split)[1].sum()))]
        else:
            try:
                found = super().item_ids()
            except BenchError:
                found = []
            ids = [i for i in found if len(PurePosixPath(i).parts) == 3 and i.split("/")[0] in SPLITS]
            if not ids:
                root = self._checked_root()
                pickles = any((folder / "test_batch").is_file() or (folder / "test").is_file()
                              for folder in [root, *[d for d in root.iterdir() if d.is_dir()]])
                hint = ("; the Python release found there is a pickle, which is never loaded: use the binary "
                        "release") if pickles else ""
                raise BenchError(f"dataset {self.name!r}: '{self.root}' holds neither the binary release "
                                 f"({', '.join(self.files['test'])}, ...) nor images under train/<class>/ or "
                                 f"test/<class>/{hint}")
            classes = self.class_names["label"]
            unknown = sorted({PurePosixPath(i).parts[1] for i in ids} - set(classes))
            if unknown:
                raise BenchError(f"dataset {self.name!r}: class folder(s) {', '.join(unknown[:5])} under "
                                 f"'{self.root}' are not {self.name} classes ({', '.join(classes[:3])}, ...)")
        self._ids, self._known = ids, frozenset(ids)
        return list(ids)

    def split_of(self, item: str) -> str:
        """'train' or 'test': the official split an id belongs to (victims train on train/, attacks use test/)."""
        return item.split("/", 1)[0]

    def official_splits(self) -> dict[str, list[str]]:
        """The release's own split: runs attack images of test/ and give the attacker images of train/."""
        ids = self.item_ids()
        return {split: [i for i in ids if self.split_of(i) == split] for split in SPLITS}

    # ------------------------------------------------------------------------------------------- reading
    def labels_for(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Int labels aligned with `ids`: 'label' (the class; CIFAR-100: fine) and, from CIFAR-100's binary
        release, 'coarse' (the superclass). The folder layout carries only the class of its folder."""
        if self._binary is None:
            classes = {n: k for k, n in enumerate(self.class_names["label"])}
            return {"label": np.array([classes[PurePosixPath(i).parts[1]] for i in ids], dtype=np.int64)}
        out = {f: np.empty(len(ids), dtype=np.int64) for f in self.label_fields}
        for k, item in enumerate(ids):
            split, index = item.split("/")
            labels = self._split(split)[0][int(index)]
            for j, f in enumerate(self.label_fields):
                out[f][k] = int(labels[j])
        return out

    def load(self, ids: Sequence[str], size: int) -> ImageSet:
        """Read `ids` at size×size RGB (32 px is the native size: no resampling)."""
        self.item_ids()
        if self._binary is None:
            return super().load(ids, size)
        unknown = [i for i in ids if i not in self._known]
        if unknown:
            raise BenchError(f"{unknown[0]!r} is not an image of dataset {self.name!r} under '{self.root}'")
        pixels = np.empty((len(ids), 3, 32, 32), dtype=np.uint8)
        for k, item in enumerate(ids):
            split, index = item.split("/")
            counts = self._split(split)[1]
            i = int(index)
            part = int(np.searchsorted(np.cumsum(counts), i, side="right"))
            pixels[k] = self._maps[split][part][i - int(counts[:part].sum())]
        images = torch.from_numpy(pixels).float().div_(255.0)
        if int(size) != 32:
            images = resize(images, int(size))
        return ImageSet(ids=list(ids), images=images, labels=self.labels_for(ids))

    def content_keys(self, ids: Sequence[str]) -> list[str]:
        """The sha256 of each image's content: of its file (folder layout) or of its record's 3,072 pixel bytes."""
        self.item_ids()
        if self._binary is None:
            return super().content_keys(ids)
        if not self._record_digests:
            for split in SPLITS:
                self._split(split)
                n = 0
                for images in self._maps[split]:
                    for row in images.reshape(len(images), -1):
                        self._record_digests[f"{split}/{n:05d}"] = hashlib.sha256(row.tobytes()).hexdigest()
                        n += 1
        return [self._record_digests[i] for i in ids]

    def fingerprint(self) -> dict[str, Any]:
        """The folder layout's content fingerprint, or one sha256 over every (id, label bytes, pixel sha256) of the
        binary release: no path and no modification time, so a copy elsewhere is the same dataset."""
        self.item_ids()
        if self._binary is None:
            return {**super().fingerprint(), "layout": "folder", "split": "official"}
        if self._binary_fingerprint is None:  # computed once per instance (a grid's plans share the instance)
            ids = list(self._ids or [])
            h = hashlib.sha256()
            labels = self.labels_for(ids)
            for k, (item, key) in enumerate(zip(ids, self.content_keys(ids))):
                h.update(f"{item}\0{','.join(str(int(v[k])) for _, v in sorted(labels.items()))}\0{key}\n".encode())
            self._binary_fingerprint = {"name": self.name, "version": self.version, "files": len(ids),
                                        "content": h.hexdigest(), "keys": "sha256", "layout": "binary",
                                        "split": "official"}
        return dict(self._binary_fingerprint)


@register_dataset
class Cifar10(_Cifar):
    """CIFAR-10: 32 px images in 10 classes; folder layout train|test/<class>/ or the official binary release."""

    name = "cifar10"
    release_dir = "cifar-10-batches-bin"
    files = {"train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test": ("test_batch.bin",)}
    label_fields = ("label",)
    class_names = {"label": CIFAR10_CLASSES}
    name_files = {"label": "batches.meta.txt"}


@register_dataset
class Cifar100(_Cifar):
    """CIFAR-100: 32 px images in 100 classes (20 superclasses); folder layout or the official binary release."""

    name = "cifar100"
    release_dir = "cifar-100-binary"
    files = {"train": ("train.bin",), "test": ("test.bin",)}
    label_fields = ("coarse", "label")  # the record's byte order: coarse, then fine (the class)
    class_names = {"coarse": CIFAR100_COARSE, "label": CIFAR100_FINE}
    name_files = {"coarse": "coarse_class_names.txt", "label": "fine_class_names.txt"}
