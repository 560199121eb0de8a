"""The SemSim release's annotation folder layout, parsed by one rule for both readers: `bench annotate import
--format semsim` (labels into the store) and `bench semsim train --annotations FOLDER` (triplets for training).

The rule (docs/annotations.md):
- `<id>/` holds the original of `id` (the one image whose file stem ends in `_ori`) and the reconstructions humans
  judged recognisable; `-<id>/` holds the ones judged unrecognisable. An original found in `-<id>/` counts as the
  id's original too; more than one original for an id is an error naming them; an id without one is listed in
  `without_original` (its reconstructions have nothing to be compared with).
- `others/` holds extra unrecognisable images tied to no original.
- Every other folder name is an error: an id never begins with `-` (`--x/` or a bare `-/` would be ambiguous).
- Hidden entries (names beginning `.`), files at the top level and files that are not images are ignored.
- Ids are taken in sorted order and, within an id, the files of `<id>/` then those of `-<id>/`, each sorted by
  name, so a folder always reads in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.errors import BenchError
from bench.images import IMAGE_SUFFIXES

OTHERS = "others"
ORIGINAL_SUFFIX = "_ori"
LAYOUT_HELP = "<id>/ with *_ori.png and recognisable reconstructions, -<id>/ with unrecognisable ones, others/"


@dataclass(frozen=True)
class LayoutId:
    """One id of the layout: its original (None when it has none) and its reconstructions by human judgement."""

    ident: str
    original: Path | None
    recognisable: tuple[Path, ...]
    unrecognisable: tuple[Path, ...]


@dataclass(frozen=True)
class SemSimLayout:
    """A parsed release folder: every id in sorted order, the extra negatives and what folders were found."""

    root: Path
    ids: tuple[LayoutId, ...]
    others: tuple[Path, ...]
    id_folders: int  # <id>/ folders
    negative_folders: int  # -<id>/ folders
    has_others: bool

    @property
    def with_original(self) -> list[LayoutId]:
        return [i for i in self.ids if i.original is not None]

    @property
    def without_original(self) -> list[str]:
        return [i.ident for i in self.ids if i.original is None]


def is_layout_image(path: Path) -> bool:
    """A visible file with an image suffix (what the layout counts as an image)."""
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES


def _images(folder: Path | None) -> list[Path]:
    return [] if folder is None else sorted(p for p in folder.iterdir() if is_layout_image(p))


def parse_layout(root: Path) -> SemSimLayout:
    """Read the folder structure of a SemSim release (no image is opened); BenchError on a layout it cannot hold."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise BenchError(f"{root}: no such folder (the SemSim layout: {LAYOUT_HELP})")
    positive: dict[str, Path] = {}
    negative: dict[str, Path] = {}
    others: Path | None = None
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        ident = d.name[1:] if d.name.startswith("-") else d.name
        if d.name == OTHERS:
            others = d
        elif not ident or ident.startswith("-"):
            raise BenchError(f"{d}: not a folder of the SemSim layout (an id folder is <id>/ or -<id>/ with an id "
                             f"that does not begin with '-'; {LAYOUT_HELP})")
        else:
            (negative if d.name.startswith("-") else positive)[ident] = d
    ids = []
    for ident in sorted(set(positive) | set(negative)):
        pos, neg = _images(positive.get(ident)), _images(negative.get(ident))
        originals = [p for p in pos + neg if p.stem.endswith(ORIGINAL_SUFFIX)]
        if len(originals) > 1:
            names = ", ".join(p.relative_to(root).as_posix() for p in originals)
            raise BenchError(f"{root}: id {ident!r} has {len(originals)} originals (*{ORIGINAL_SUFFIX} files: "
                             f"{names}); keep one per id")
        original = originals[0] if originals else None
        ids.append(LayoutId(ident, original, tuple(p for p in pos if p != original),
                            tuple(p for p in neg if p != original)))
    return SemSimLayout(root, tuple(ids), tuple(_images(others)), len(positive), len(negative), others is not None)
