"""Feature containers released by a victim system: the base class, specs, requirements, kind registry."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from bench.registry import Registry

# Feature kinds (container classes) by name, so that cached features load back into the right class.
feature_kinds: Registry[type["FeatureSet"]] = Registry("feature_kinds")


def register_feature_kind(cls: type["FeatureSet"]) -> type["FeatureSet"]:
    """Class decorator: make a FeatureSet subclass loadable from the cache by its `kind`."""
    feature_kinds.register(cls.kind, cls, summary=(cls.__doc__ or "").strip().split("\n")[0])
    return cls


@dataclass(frozen=True)
class FeatureSpec:
    """What a stage releases: the feature kind and its capability flags (e.g. has_coordinates)."""

    kind: str
    flags: Mapping[str, bool] = field(default_factory=dict)

    def with_flags(self, **changes: bool) -> "FeatureSpec":
        return FeatureSpec(self.kind, {**dict(self.flags), **changes})

    def describe(self) -> str:
        on = [k for k, v in sorted(self.flags.items()) if v]
        off = [k for k, v in sorted(self.flags.items()) if not v]
        parts = [self.kind]
        if on:
            parts.append("+" + ",+".join(on))
        if off:
            parts.append("-" + ",-".join(off))
        return " ".join(parts)


@dataclass(frozen=True)
class Requirement:
    """What an attack consumes: a feature kind ('*' for any), or a tuple of accepted kinds, and flags that must be
    true (or false).

    A tuple names alternatives: ``Requirement(("embeddings", "bit-patterns"))`` takes either kind (an attack that
    reads float vectors as numbers and bit patterns as bits); the flags apply to whichever kind is released.
    """

    kind: str | tuple[str, ...]
    flags: Mapping[str, bool] = field(default_factory=dict)

    @property
    def kinds(self) -> tuple[str, ...]:
        """The accepted kinds as a tuple (('*',) for any)."""
        return (self.kind,) if isinstance(self.kind, str) else tuple(self.kind)

    def admits_kind(self, kind: str) -> bool:
        """Whether features of `kind` can reach the attack at all (flags aside)."""
        return "*" in self.kinds or kind in self.kinds

    def accepts(self, spec: FeatureSpec) -> bool:
        if not self.admits_kind(spec.kind):
            return False
        return all(spec.flags.get(k, False) == v for k, v in self.flags.items())

    def describe(self) -> str:
        kind = " or ".join(self.kinds)
        if not self.flags:
            return kind
        return kind + " with " + ", ".join(f"{k}={v}" for k, v in sorted(self.flags.items()))


class FeatureSet(ABC):
    """N per-image feature records of one kind, with capability flags; saved to and loaded from a folder."""

    kind: ClassVar[str] = ""
    default_flags: ClassVar[Mapping[str, bool]] = {}
    # "sample": record i is released for image i. "batch": each record covers several images (a federated client's
    # gradient of a batch); `covers()` says which, and the attack returns one image per covered image.
    granularity: ClassVar[str] = "sample"
    # Where the utility of releasing this kind unprotected comes from, for the `none` defense: None (no figure), or
    # a `Defense.utility_source` value such as "training" (gradient releases: the victim trained by plain fedSGD),
    # measured by `undefended_utility`. The kind knows its family's baseline; the generic `none` defense does not.
    undefended_utility_source: ClassVar[str | None] = None

    def __init__(self, flags: Mapping[str, bool] | None = None, meta: Mapping[str, Any] | None = None) -> None:
        self.flags: dict[str, bool] = {**dict(self.default_flags), **dict(flags or {})}
        self.meta: dict[str, Any] = dict(meta or {})

    @property
    def spec(self) -> FeatureSpec:
        return FeatureSpec(self.kind, dict(self.flags))

    @abstractmethod
    def __len__(self) -> int:
        """Number of images the set describes."""

    @abstractmethod
    def subset(self, indices: Sequence[int]) -> "FeatureSet":
        """A new set holding the records at `indices`, in that order (flags and meta kept)."""

    @abstractmethod
    def _save_arrays(self) -> dict[str, np.ndarray]:
        """The arrays that hold the set; each is written as NAME.npy."""

    @classmethod
    @abstractmethod
    def _from_arrays(cls, arrays: dict[str, np.ndarray], flags: dict[str, bool], meta: dict[str, Any]) -> "FeatureSet":
        """Rebuild a set from the arrays `_save_arrays` returned."""

    def covers(self) -> list[list[int]]:
        """For each record, the indices of the images it covers (positions in the image set given to the extractor).

        Per-sample kinds cover one image each; per-batch kinds override this (and keep the indices through
        `subset`, save and load). The records of one split cover every image exactly once.
        """
        return [[i] for i in range(len(self))]

    @classmethod
    def undefended_utility(cls, ctx: Any) -> dict[str, float]:
        """The utility figure of an unprotected release of this kind (ctx: a `bench.plugins.UtilityContext`); kinds
        that declare `undefended_utility_source` override it."""
        raise NotImplementedError(f"feature kind {cls.kind!r} declares no undefended utility")

    def empty_records(self) -> int:
        """How many records hold no features at all (e.g. images without SIFT keypoints); 0 when not applicable."""
        return 0

    def picture(self, index: int, size: int) -> np.ndarray:
        """A size×size×3 uint8 picture of what record `index` releases, drawn from the record alone (never from the
        private image it was computed from): a run's grid shows it in its "released features" column.

        Each kind draws its own (keypoints, a heat map of a vector, a grid of bits); this default says in words that
        the kind has no picture."""
        from bench.features.pictures import message

        return message(size, [f"{self.kind}:", "released, no", "picture drawn", "for this kind"])

    def save(self, directory: Path) -> list[Path]:
        """Write arrays (.npy, memory-mappable) and meta.json into `directory`; returns the files written."""
        directory.mkdir(parents=True, exist_ok=True)
        files = []
        for name, arr in self._save_arrays().items():
            path = directory / f"{name}.npy"
            np.save(path, np.ascontiguousarray(arr), allow_pickle=False)
            files.append(path)
        info = {"kind": self.kind, "flags": self.flags, "meta": self.meta}  # granularity: a class attribute
        meta_path = directory / "features.json"
        meta_path.write_text(json.dumps(info, sort_keys=True, indent=1))
        files.append(meta_path)
        return files

    @staticmethod
    def load(directory: Path, mmap: bool = True) -> "FeatureSet":
        """Load any registered kind from a folder written by `save` (arrays memory-mapped by default)."""
        info = json.loads((directory / "features.json").read_text())
        cls = feature_kinds.get(info["kind"]).obj
        arrays = {
            p.stem: np.load(p, mmap_mode="r" if mmap else None, allow_pickle=False)
            for p in sorted(directory.glob("*.npy"))
        }
        return cls._from_arrays(arrays, dict(info["flags"]), dict(info["meta"]))


def check_coverage(features: FeatureSet, n_images: int, producer: str) -> list[int]:
    """The image order of `features` (its records' covered indices, concatenated); a RuntimeError unless the records
    cover each of the `n_images` images exactly once."""
    order = [int(i) for c in features.covers() for i in c]
    if features.granularity == "sample" and len(features) != n_images:
        raise RuntimeError(f"{producer} returned {len(features)} records for {n_images} images")
    if sorted(order) != list(range(n_images)):
        raise RuntimeError(f"{producer}: the {len(features)} {features.granularity} records cover images "
                           f"{sorted(order)[:8]}..., not each of the {n_images} images exactly once")
    return order
