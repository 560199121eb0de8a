"""Datasets read from a folder the user points at (--data-root): any image tree, UTKFace, CelebA-HQ, FFHQ, LFW.

The tool ships none of these images; each class only knows how its folder is laid out and which labels its
file names or folders carry. Images are known by their content (sha256 of the file, `bench.datasets.digests`), so a
copy of a folder is the same dataset with the same splits. Files that cannot be read at all (a dangling symlink) are
left out when listing (`FolderDataset.listing_skipped`); files that do not decode are skipped at load
(`ImageSet.skipped`). Both are reported in run.json; the runner refuses a split in which no file loads.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar, Sequence

import numpy as np
import torch
from PIL import UnidentifiedImageError

from bench.datasets.digests import folder_digests
from bench.errors import BenchError
from bench.images import IMAGE_SUFFIXES, ImageReadError, read_image
from bench.plugins import Dataset, ImageSet, register_dataset

_SUFFIXES = frozenset(s.lower() for s in IMAGE_SUFFIXES)


def list_images(root: Path) -> list[str]:
    """Relative POSIX paths of the image files under `root` (recursive, case-insensitive suffix), sorted.

    Hidden files and folders (names starting with '.') are left out: they are typically editor or macOS
    metadata files ('._x.jpg') that are not images.
    """
    found: list[str] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        rel = Path(folder).relative_to(root)
        for name in files:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in _SUFFIXES:
                found.append((rel / name).as_posix())
    return sorted(found)


def _reason(path: Path, exc: ImageReadError) -> str:
    """One short line saying why a file could not be read, without repeating its path (the caller names it)."""
    cause = exc.__cause__
    try:
        if path.stat().st_size == 0:
            return "empty file"
    except OSError:
        pass
    if isinstance(cause, UnidentifiedImageError):
        return "not a recognised image format"
    if isinstance(cause, PermissionError):
        return "permission denied"
    text = (str(cause) or type(cause).__name__) if cause is not None else str(exc)
    for noise in (f"'{path}'", str(path)):
        text = text.replace(noise, "").strip(" :")
    text = text.strip().splitlines()[0].strip() if text.strip() else ""
    return text or (type(cause).__name__ if cause is not None else "unreadable image")


class FolderDataset(Dataset):
    """Base class: images found under a root folder, ids = their relative POSIX paths, labels from the names."""

    needs_root = True
    keys_by_content: ClassVar[bool] = True

    def __init__(self, root: Path | str | None = None) -> None:
        super().__init__(Path(root).expanduser() if root is not None else None)
        self._ids: list[str] | None = None
        self._known: frozenset[str] = frozenset()
        self._digests: dict[str, str] = {}
        self.listing_skipped: list[tuple[str, str]] = []  # (file, reason) of listed files that cannot be read
        self._fingerprint: dict[str, Any] | None = None  # of the listing kept above (a grid's plans share it)

    def _checked_root(self) -> Path:
        hint = f"dataset {self.name!r} needs --data-root PATH (a folder of images)"
        if self.root is None:
            raise BenchError(hint)
        if not self.root.exists():
            raise BenchError(f"{hint}; '{self.root}' does not exist")
        if not self.root.is_dir():
            raise BenchError(f"{hint}; '{self.root}' is not a folder")
        return self.root

    def item_ids(self) -> list[str]:
        """Every readable image under the root as a relative POSIX path, sorted; a BenchError when there are none.

        Listing digests every file (cached, see `bench.datasets.digests`); a file that cannot be read (a dangling
        symlink, no permission) is left out and recorded in `listing_skipped` with the reason.
        """
        if self._ids is None:
            root = self._checked_root()
            listed = list_images(root)
            if not listed:
                raise BenchError(f"dataset {self.name!r}: no images ({', '.join(sorted(_SUFFIXES))}) under '{root}'")
            found = folder_digests(root, listed)
            ids = [i for i in listed if i in found.digests]
            if not ids:
                raise BenchError(f"dataset {self.name!r}: none of the {len(listed)} image files under '{root}' can "
                                 f"be read, e.g. {found.skipped[0][0]} ({found.skipped[0][1]})")
            self._ids, self._known, self._digests = ids, frozenset(ids), found.digests
            self.listing_skipped = found.skipped
        return list(self._ids)

    def content_keys(self, ids: Sequence[str]) -> list[str]:
        """The sha256 of each file: equal keys mean byte-identical images, whatever their names or folders."""
        self.item_ids()
        return [self._digests[i] for i in ids]

    def labels_for(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Int label arrays aligned with `ids` (none by default); subclasses parse names or folders."""
        return {}

    def load(self, ids: Sequence[str], size: int) -> ImageSet:
        """Read `ids` at size×size RGB; files that fail to decode are skipped and listed with the reason."""
        self.item_ids()
        unknown = [i for i in ids if i not in self._known]
        if unknown:
            more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
            raise BenchError(f"{unknown[0]!r}{more} is not an image of dataset {self.name!r} under '{self.root}'")
        kept: list[str] = []
        tensors: list[torch.Tensor] = []
        skipped: list[tuple[str, str]] = []
        assert self.root is not None
        for item in ids:
            try:
                tensors.append(read_image(self.root / item, int(size)))
                kept.append(item)
            except ImageReadError as exc:
                skipped.append((item, _reason(self.root / item, exc)))
        if tensors:
            images = torch.stack(tensors)
        else:
            images = torch.zeros((0, 3, int(size), int(size)), dtype=torch.float32)
        return ImageSet(ids=kept, images=images, labels=self.labels_for(kept), skipped=skipped)

    def fingerprint(self) -> dict[str, Any]:
        """Name, version, number of files and one sha256 over every (relative path, content sha256), sorted.

        No folder path and no modification time: a copy of the folder elsewhere is the same dataset (same cache
        keys, run and configuration ids), while a picture replaced under the same name, or a renamed file (names
        carry labels and are the sample ids), is a different one. `keys: sha256` marks content-keyed splits.
        """
        if self._fingerprint is None:
            ids = self.item_ids()
            h = hashlib.sha256()
            for item in ids:
                h.update(f"{item}\0{self._digests[item]}\n".encode())
            self._fingerprint = {"name": self.name, "version": self.version, "files": len(ids),
                                 "content": h.hexdigest(), "keys": "sha256"}
        return dict(self._fingerprint)


@register_dataset
class ImageFolder(FolderDataset):
    """Any folder tree of images (png, jpg, bmp, tif, webp, ppm/pgm), read recursively; no labels."""

    name = "folder"
    label_names = ()


def parse_utkface_name(file_name: str) -> tuple[int, int, int]:
    """(age, gender, race) from 'AGE_GENDER_RACE_DATETIME.jpg.chip.jpg'; -1 for each field that does not parse.

    gender: 0 male, 1 female; race: 0 White, 1 Black, 2 Asian, 3 Indian, 4 Others. A few UTKFace files lack
    a field ('AGE_GENDER_DATETIME...'), so the race is only read when a date part follows it.
    """
    parts = PurePosixPath(file_name).name.split("_")
    age = int(parts[0]) if parts[0].isdigit() and len(parts[0]) <= 3 else -1
    gender = int(parts[1]) if len(parts) >= 3 and parts[1] in ("0", "1") else -1
    race = int(parts[2]) if len(parts) >= 4 and parts[2] in ("0", "1", "2", "3", "4") else -1
    if age < 0:
        return -1, -1, -1
    return age, gender, race


@register_dataset
class UTKFace(FolderDataset):
    """UTKFace aligned face crops; labels age, gender, race from file names (non-commercial research use)."""

    name = "utkface"
    faces = True
    label_names = ("age", "gender", "race")
    native_size = 200

    def labels_for(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        parsed = np.array([parse_utkface_name(i) for i in ids], dtype=np.int64).reshape(-1, 3)
        return {"age": parsed[:, 0].copy(), "gender": parsed[:, 1].copy(), "race": parsed[:, 2].copy()}


@register_dataset
class CelebAHQ(FolderDataset):
    """CelebA-HQ face images from a folder; no labels (non-commercial research use only)."""

    name = "celebahq"
    faces = True
    label_names = ()


@register_dataset
class FFHQ(FolderDataset):
    """FFHQ face images from a folder (RGBA PNGs: alpha dropped); no labels (non-commercial research terms)."""

    name = "ffhq"
    faces = True
    label_names = ()


@register_dataset
class LFW(FolderDataset):
    """Labeled Faces in the Wild, one folder per person; label identity = index of the person's folder."""

    name = "lfw"
    faces = True
    label_names = ("identity",)
    native_size = 250

    def labels_for(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        people = sorted({str(PurePosixPath(i).parent) for i in self.item_ids()} - {"."})
        index = {p: k for k, p in enumerate(people)}
        return {"identity": np.array([index.get(str(PurePosixPath(i).parent), -1) for i in ids], dtype=np.int64)}
