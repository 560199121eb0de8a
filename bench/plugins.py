"""The plugin interfaces (dataset, extractor, defense, attack, metric) and their registering decorators.

Every stage of a run talks to the next through one of these small interfaces, so that a new feature kind,
defense, attack or metric plugs in without touching the runner, the store or the CLI.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np
import torch

from bench import registry
from bench.features import FeatureSet, FeatureSpec, Requirement


def seeded_rng(seed: int, stream: str) -> np.random.Generator:
    """A numpy generator determined by (seed, stream name) alone, independent across stream names."""
    digest = int.from_bytes(hashlib.sha256(stream.encode()).digest()[:8], "little")
    return np.random.default_rng([int(seed), digest])


def _summary(cls: type) -> str:
    doc = (cls.__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""


# --------------------------------------------------------------------------------------------------- datasets
@dataclass
class ImageSet:
    """Images (N×3×H×W float32 in [0, 1], RGB) with their stable ids, optional labels and load problems."""

    ids: list[str]
    images: torch.Tensor
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file name, reason) of unreadable files

    def __len__(self) -> int:
        return len(self.ids)


class Dataset(ABC):
    """A source of images: lists stable item ids, loads them at a requested square size."""

    name: ClassVar[str] = ""
    needs_root: ClassVar[bool] = True
    note: ClassVar[str] = ""  # shown in every output, e.g. "demo set: synthetic faces"

    def __init__(self, root: Path | None = None) -> None:
        self.root = root

    @abstractmethod
    def item_ids(self) -> list[str]:
        """All item ids, sorted; ids are stable (file names relative to the root, or generated names)."""

    @abstractmethod
    def load(self, ids: Sequence[str], size: int) -> ImageSet:
        """Load `ids` resized to size×size RGB; unreadable files are skipped and listed in `skipped`."""

    def fingerprint(self) -> dict[str, Any]:
        """What identifies this dataset's content for cache keys (name, root, and anything else relevant)."""
        return {"name": self.name, "root": str(self.root.resolve()) if self.root else None}


def register_dataset(cls: type[Dataset]) -> type[Dataset]:
    """Class decorator: add a built-in dataset to the registry under `cls.name`."""
    registry.datasets.register(cls.name, cls, **plugin_meta("datasets", cls))
    return cls


# ------------------------------------------------------------------------------------------------- extractors
class Extractor(ABC):
    """The victim system's feature extractor: images in, a FeatureSet of kind `produces` out."""

    name: ClassVar[str] = ""
    produces: ClassVar[FeatureSpec]

    def __init__(self, **params: Any) -> None:
        self.params = dict(params)

    def config(self) -> dict[str, Any]:
        """Everything that changes the output; part of the feature cache key and of the threat model."""
        return {"name": self.name, **self.params}

    @abstractmethod
    def extract(self, images: ImageSet, progress: bool = True) -> FeatureSet:
        """Features for every image of `images`, in order."""


def register_extractor(cls: type[Extractor]) -> type[Extractor]:
    """Class decorator: add an extractor to the registry under `cls.name`."""
    registry.extractors.register(cls.name, cls, **plugin_meta("extractors", cls))
    return cls


# --------------------------------------------------------------------------------------------------- defenses
class Defense(ABC):
    """Protects released features; `accepts` lists the feature kinds it can protect ('*' for any)."""

    name: ClassVar[str] = ""
    accepts: ClassVar[tuple[str, ...]] = ("*",)

    def __init__(self, **params: Any) -> None:
        self.params = dict(params)

    def config(self) -> dict[str, Any]:
        """The public parameters (the attacker knows them); secret keys are drawn from the rng, never stored here."""
        return {"name": self.name, **self.params}

    def can_protect(self, spec: FeatureSpec) -> bool:
        return "*" in self.accepts or spec.kind in self.accepts

    @abstractmethod
    def released_spec(self, spec: FeatureSpec) -> FeatureSpec:
        """What is released when features of `spec` are protected (kind and flags), without doing any work."""

    @abstractmethod
    def protect(self, features: FeatureSet, rng: np.random.Generator) -> FeatureSet:
        """Protected copy of `features`; secret keys come from `rng` (the run seed, or the attacker's own)."""


def register_defense(cls: type[Defense]) -> type[Defense]:
    """Class decorator: add a defense to the registry under `cls.name`."""
    registry.defenses.register(cls.name, cls, **plugin_meta("defenses", cls))
    return cls


# ---------------------------------------------------------------------------------------------------- attacks
@dataclass
class FitContext:
    """What an attack gets besides its training data: the defense to simulate, randomness, device, notes."""

    defense: Defense
    seed: int
    device: torch.device
    progress: bool = True
    notes: list[str] = field(default_factory=list)  # things disabled or changed; copied into run.json

    def rng(self, stream: str) -> np.random.Generator:
        """An independent, reproducible generator for one named purpose (e.g. 'defense-keys')."""
        return seeded_rng(self.seed, stream)


class Attack(ABC):
    """Rebuilds images from released features: fit on the auxiliary split, reconstruct the private split."""

    name: ClassVar[str] = ""
    consumes: ClassVar[Requirement] = Requirement("*")
    paper: ClassVar[str] = ""
    profiles: ClassVar[tuple[str, ...]] = ("smoke", "cpu", "paper")

    def __init__(self, profile: str, image_size: int, device: torch.device | str = "cpu", seed: int = 0) -> None:
        if profile not in self.profiles:
            from bench.errors import BenchError

            raise BenchError(f"attack {self.name!r} has no profile {profile!r}; it has {', '.join(self.profiles)}")
        self.profile = profile
        self.image_size = int(image_size)
        self.device = torch.device(device)
        self.seed = int(seed)

    def config(self) -> dict[str, Any]:
        """Everything that changes what `fit` learns; part of the trained-attack cache key."""
        return {"name": self.name, "profile": self.profile, "image_size": self.image_size}

    def preflight(self) -> None:
        """Raise a BenchError before any work if something the attack needs is missing (e.g. weights)."""

    @abstractmethod
    def fit(self, features: FeatureSet, images: torch.Tensor, ctx: FitContext) -> None:
        """Train on auxiliary features and their images (N×3×S×S, S = image_size)."""

    @abstractmethod
    def reconstruct(self, features: FeatureSet, progress: bool = True) -> torch.Tensor:
        """Images (N×3×S×S in [0, 1], on the CPU) rebuilt from `features`."""

    def state_dict(self) -> dict[str, Any]:
        """Trained state: tensors, numbers, strings, lists and dicts only (loads with weights_only=True)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what `state_dict` returned."""

    def describe(self) -> dict[str, Any]:
        """Architecture figures for `bench describe` (parameter count, FLOPs, ...)."""
        return {}


def register_attack(cls: type[Attack]) -> type[Attack]:
    """Class decorator: add an attack to the registry under `cls.name`."""
    registry.attacks.register(cls.name, cls, **plugin_meta("attacks", cls))
    return cls


# ---------------------------------------------------------------------------------------------------- metrics
class Metric(ABC):
    """Scores reconstructions against originals; per sample (`level='sample'`) or per set (`level='set'`)."""

    name: ClassVar[str] = ""
    higher_is_better: ClassVar[bool] = True
    value_range: ClassVar[tuple[float, float]] = (float("-inf"), float("inf"))
    needs_reference: ClassVar[bool] = True
    needs_weights: ClassVar[bool] = False
    level: ClassVar[str] = "sample"
    convention: ClassVar[str] = ""  # the pinned convention, recorded with every value

    def per_sample(self, recon: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """Values (N,) for N×3×H×W images in [0, 1]; required when level == 'sample'."""
        raise NotImplementedError

    def per_set(self, recon: torch.Tensor, ref: torch.Tensor) -> float:
        """One value for the whole set; the default is the mean of per-sample values."""
        return float(self.per_sample(recon, ref).double().mean())


def register_metric(cls: type[Metric]) -> type[Metric]:
    """Class decorator: add a metric to the registry under `cls.name`."""
    registry.metrics.register(cls.name, cls, **plugin_meta("metrics", cls))
    return cls


def plugin_meta(kind: str, cls: Any) -> dict[str, Any]:
    """Registry metadata of a plugin class, read from its class attributes (built-ins and entry points alike)."""
    meta: dict[str, Any] = {"summary": _summary(cls)}
    if kind == "attacks":
        meta.update(consumes=cls.consumes.describe(), paper=cls.paper, profiles=list(cls.profiles))
    elif kind == "metrics":
        meta.update(higher_is_better=cls.higher_is_better, range=list(cls.value_range),
                    needs_reference=cls.needs_reference, needs_weights=cls.needs_weights, level=cls.level,
                    convention=cls.convention)
    elif kind == "defenses":
        meta.update(accepts=list(cls.accepts))
    elif kind == "extractors":
        meta.update(produces=cls.produces.describe())
    elif kind == "datasets":
        meta.update(needs_root=cls.needs_root, note=cls.note)
    return meta

