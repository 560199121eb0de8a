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
from bench.errors import BenchError
from bench.features import FeatureSet, FeatureSpec, Requirement
from bench.hyper import split_given
from bench.params import Param, resolve_params


def seeded_rng(seed: int, stream: str) -> np.random.Generator:
    """A numpy generator determined by (seed, stream name) alone, independent across stream names."""
    digest = int.from_bytes(hashlib.sha256(stream.encode()).digest()[:8], "little")
    return np.random.default_rng([int(seed), digest])


def _summary(cls: type) -> str:
    doc = (cls.__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""


class Plugin:
    """What every plugin carries: a name, a code version and declared parameters.

    `version` is part of every cache key and stored metric row that depends on the plugin: bump it when a fix
    changes the plugin's output, so that no stale checkpoint, feature file or metric value is reused.
    """

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    params: ClassVar[Mapping[str, Param]] = {}

    @classmethod
    def registry_meta(cls) -> dict[str, Any]:
        """Registry metadata read from class attributes (the same for built-ins and entry points)."""
        return {"summary": _summary(cls), "version": cls.version,
                "params": {k: p.describe() for k, p in sorted(cls.params.items())}}


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


class Dataset(Plugin, ABC):
    """A source of images: lists stable item ids, loads them at a requested square size."""

    needs_root: ClassVar[bool] = True
    note: ClassVar[str] = ""  # shown in every output, e.g. "demo set: synthetic faces"
    keys_by_content: ClassVar[bool] = False  # True: content_keys are content digests, comparable across datasets
    # Real face photographs: any image attack on them reports identity leakage by default (bench/run/metric_defaults).
    faces: ClassVar[bool] = False
    # Images that are not faces (e.g. CIFAR objects): face-descriptor metrics (FACE_IMAGE_METRICS) are meaningless on
    # them and are not scored by default.
    not_faces: ClassVar[bool] = False
    # The labels `load` gives (e.g. ("age", "gender", "race")); None: not declared, so an attribute attack's need
    # for a label is found only when it trains. A declared list lets a run refuse, and a grid skip, up front.
    label_names: ClassVar[tuple[str, ...] | None] = None
    # The square size the images come in (CIFAR 32, UTKFace 200); None: generated at any size, or sizes vary. A
    # profile scales from it (bench.profiles.resolve_resolution): small native datasets are never upscaled.
    native_size: ClassVar[int | None] = None

    def __init__(self, root: Path | None = None) -> None:
        self.root = root

    @abstractmethod
    def item_ids(self) -> list[str]:
        """All item ids, sorted; ids are stable (file names relative to the root, or generated names)."""

    @abstractmethod
    def load(self, ids: Sequence[str], size: int) -> ImageSet:
        """Load `ids` resized to size×size RGB; unreadable files are skipped and listed in `skipped`."""

    def content_keys(self, ids: Sequence[str]) -> list[str]:
        """What orders items in splits and tells equal images apart: the ids themselves by default (generated
        sets); folder datasets return each file's sha256 (and set `keys_by_content`)."""
        return list(ids)

    def official_splits(self) -> dict[str, list[str]] | None:
        """{"train": ids, "test": ids} for a dataset released with a fixed split (CIFAR), else None.

        A run on such a dataset draws its private split from "test" and the attacker's auxiliary split from
        "train" (victim classifiers train there too); other datasets are split by a seeded hash of their ids.
        """
        return None

    def fingerprint(self) -> dict[str, Any]:
        """What identifies this dataset's content for cache keys (name, root, and anything else relevant)."""
        return {"name": self.name, "version": self.version, "root": str(self.root.resolve()) if self.root else None}

    @classmethod
    def registry_meta(cls) -> dict[str, Any]:
        return {**super().registry_meta(), "needs_root": cls.needs_root, "note": cls.note, "faces": cls.faces,
                "labels": None if cls.label_names is None else list(cls.label_names), "native_size": cls.native_size}


def register_dataset(cls: type[Dataset]) -> type[Dataset]:
    """Class decorator: add a built-in dataset to the registry under `cls.name`."""
    registry.datasets.register(cls.name, cls, **cls.registry_meta())
    return cls


# ------------------------------------------------------------------------------------------------- extractors
@dataclass
class Victim:
    """The white-box handle on the victim: its model and its training state, as the attacker is granted them.

    `state` holds plain facts about the model's training (e.g. {"trained": False, "steps": 0, "accuracy": 0.1});
    it is recorded in run.json. Attacks get a copy: nothing they do to it reaches the victim's own model.
    """

    model: torch.nn.Module
    state: dict[str, Any] = field(default_factory=dict)


@dataclass
class VictimData:
    """What a white-box extractor may train its victim on: the run's attacker/train split (never a private image),
    at the size the run extracts at, with the run's profile and seed (bench.run.plan fixes it before the spec)."""

    dataset: Dataset
    ids: list[str]
    size: int
    profile: str
    seed: int


class Extractor(Plugin, ABC):
    """The victim system's feature extractor: images in, a FeatureSet of kind `produces` out.

    A white-box extractor whose victim is trained first (federated learning on a trained model) implements
    `bind`, `victim_training`, `train_victim` and `load_victim`: the engine trains it once in the cached stage
    `victims` (bench.run.stages.trained_victim) before any feature is extracted.
    """

    produces: ClassVar[FeatureSpec]
    # Threat model: True when the attacker knows the victim's model and weights (federated learning, where the
    # server sends the model to every client); only then may an attack that declares `needs_victim` run on it.
    white_box: ClassVar[bool] = False
    # Set by the runner before `victim()`: the square size this run extracts at (None outside a run).
    extract_size: int | None = None
    # The victim models a white-box extractor can grant (its choices, shown by `bench list`); () for the others.
    victim_models: ClassVar[tuple[str, ...]] = ()
    # Fields of `config()` that the run seed alone determines, as dotted paths (e.g. "training.seed"): hashed into
    # the run id, kept out of the configuration id, so that the seeds of one configuration share a leaderboard row
    # (bench.spec.config_id reads them through the registry).
    seed_derived: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **params: Any) -> None:
        self.params = dict(params)

    def config(self) -> dict[str, Any]:
        """Everything that changes the output; part of the feature cache key and of the threat model."""
        return {"name": self.name, "version": self.version, **self.params, **self.library_versions()}

    def library_versions(self) -> dict[str, str]:
        """Versions of outside libraries whose behaviour changes the features (e.g. OpenCV for SIFT)."""
        return {}

    @classmethod
    def registry_meta(cls) -> dict[str, Any]:
        return {**super().registry_meta(), "produces": cls.produces.describe(), "white_box": cls.white_box,
                "victims": list(cls.victim_models)}

    def preflight(self) -> None:
        """Raise a BenchError before any work if something the extractor needs is missing (e.g. weights)."""

    def victim(self) -> Victim:
        """The victim model and its training state (white-box extractors only)."""
        raise NotImplementedError(f"extractor {self.name!r} is not white-box: it grants no victim model")

    def bind(self, data: VictimData) -> None:
        """Called by the planner once the splits are fixed, before `config()` enters the run spec: an extractor
        whose victim is trained records what that training depends on (its config then names it)."""

    def victim_training(self) -> dict[str, Any] | None:
        """What training the victim depends on (part of `config()`), or None when the victim is not trained."""
        return None

    def train_victim(self, images: ImageSet, progress: bool = True) -> dict[str, Any]:
        """Train the victim on `images` (the bound attacker/train split); returns its state (tensors, numbers,
        strings: loads with weights_only=True), which `load_victim` restores."""
        raise NotImplementedError(f"extractor {self.name!r} trains no victim")

    def load_victim(self, state: Mapping[str, Any]) -> None:
        """Restore the victim that `train_victim` returned (also when it comes from the stage cache)."""
        raise NotImplementedError(f"extractor {self.name!r} trains no victim")

    def victim_accuracy(self, images: ImageSet) -> dict[str, Any]:
        """The victim classifier's accuracy on `images` (the private images, drawn from the test split) as
        {"test_accuracy": float, "n": int, ...}; {} when the extractor has no classifier to report on."""
        return {}

    @abstractmethod
    def extract(self, images: ImageSet, progress: bool = True) -> FeatureSet:
        """Features for every image of `images`, in order."""


def register_extractor(cls: type[Extractor]) -> type[Extractor]:
    """Class decorator: add an extractor to the registry under `cls.name`."""
    registry.extractors.register(cls.name, cls, **cls.registry_meta())
    return cls


# --------------------------------------------------------------------------------------------------- defenses
@dataclass
class UtilityContext:
    """What a defense's utility figure may use: the private split's images, extracted features, labels, extractor."""

    images: ImageSet
    features: FeatureSet
    extractor: Extractor
    seed: int
    training: "UtilityTraining | None" = None  # set when the defense's `utility_source` is "training"
    # The utility evaluation split's images (test split, disjoint from the private ones; bench/run/utility_split.py):
    # set with `training`, what a trained victim's accuracy is measured on
    evaluation: "ImageSet | None" = None

    def rng(self, stream: str) -> np.random.Generator:
        return seeded_rng(self.seed, stream)


@dataclass
class UtilityTraining:
    """A defense's utility that trains the victim under the defense: the attacker/train split's images to train on
    (never a private image), the run's profile (the training budget) and the white-box victim (its architecture)."""

    images: ImageSet
    profile: str
    victim: Victim


@dataclass
class ClientData:
    """What a client-side defense acts on before the release: the client's images (the split's images at the
    extraction size, in the order of the extracted records' covers), the white-box victim model the client computes
    its update with, and the size of the attacker/train split and the profile (so the defense can also account for
    its utility training, e.g. DP-SGD's epsilon)."""

    images: ImageSet
    victim: Victim
    profile: str = ""
    n_train: int = 0


class Defense(Plugin, ABC):
    """Protects released features; `accepts` lists the feature kinds it can protect ('*' for any)."""

    accepts: ClassVar[tuple[str, ...]] = ("*",)
    # Threat model. False: the attacker knows the algorithm but not the keys, so it trains on its own simulation of
    # the defense (keys of its own). True: the protection runs inside the victim's inference API (ShuffleBits as a
    # plug-in layer), so the attacker's own queries come back protected with the victim's secret key; what they
    # return is `protect_queries`.
    api_deployed: ClassVar[bool] = False
    # True: the defense acts on the client, before the release (DP-SGD on per-example gradients, ATSPrivacy's
    # transformations on the client's images): the engine calls `protect_client` with the client's images and the
    # white-box victim instead of `protect`, and refuses extractors that grant no victim model before any work.
    client_side: ClassVar[bool] = False

    def __init__(self, **params: Any) -> None:
        # The class attribute `params` declares; the instance attribute holds the resolved values.
        self.params = resolve_params(f"defense {self.name!r}", type(self).params, params)

    def config(self) -> dict[str, Any]:
        """The public parameters (the attacker knows them); secret keys are drawn from the rng, never stored here."""
        return {"name": self.name, "version": self.version, "params": dict(self.params)}

    def can_protect(self, spec: FeatureSpec) -> bool:
        return "*" in self.accepts or spec.kind in self.accepts

    @abstractmethod
    def released_spec(self, spec: FeatureSpec) -> FeatureSpec:
        """What is released when features of `spec` are protected (kind and flags), without doing any work."""

    @abstractmethod
    def protect(self, features: FeatureSet, rng: np.random.Generator) -> FeatureSet:
        """Protected copy of `features`; secret keys come from `rng` (the run seed, or the attacker's own)."""

    def protect_queries(self, features: FeatureSet, victim_rng: np.random.Generator,
                        query_rng: np.random.Generator) -> FeatureSet:
        """What the attacker's own queries to the victim's protected API return (`api_deployed` defenses): secret
        keys come from `victim_rng` (the victim's), per-query randomness from `query_rng`; by default every key is
        the victim's."""
        return self.protect(features, victim_rng)

    def protect_client(self, features: FeatureSet, client: ClientData, rng: np.random.Generator) -> FeatureSet:
        """The release the client makes under the defense (`client_side` defenses): `features` is what it would
        release without the defense (its covers and meta), `client` its images and victim; randomness from `rng`."""
        raise NotImplementedError(f"defense {self.name!r} does not act on the client")

    def utility_source(self, spec: FeatureSpec) -> str | None:
        """Where the utility figure of a release of `spec` comes from: "private" (`utility` reads the private split,
        the default when `utility` is implemented), "training" (it trains the victim under the defense: the context
        also carries `training`, and the cache key names the train split and profile) or None (no figure)."""
        return "private" if type(self).utility is not Defense.utility else None

    def utility(self, ctx: UtilityContext) -> dict[str, float]:
        """Utility figures that the protected features still offer (e.g. verification accuracy); none by default.

        Computed once per (data, extractor, defense parameters, seed), stored, and shown beside leakage.
        Names are short and higher is better (e.g. {"match-rate": 0.8}).
        """
        return {}

    @classmethod
    def registry_meta(cls) -> dict[str, Any]:
        return {**super().registry_meta(), "accepts": list(cls.accepts), "api_deployed": cls.api_deployed,
                "client_side": cls.client_side}


def attacker_training_features(defense: Defense, features: FeatureSet, seed: int) -> FeatureSet:
    """The auxiliary features as the attacker gets them under the run's threat model.

    Usually the attacker simulates the defense with keys of its own ('attacker-keys'); for a defense deployed inside
    the victim's API it queries that API, so the victim's key stream ('victim-keys') and fresh per-query randomness
    ('api-queries') apply (`Defense.protect_queries`).
    """
    if defense.api_deployed:
        return defense.protect_queries(features, seeded_rng(seed, "victim-keys"), seeded_rng(seed, "api-queries"))
    return defense.protect(features, seeded_rng(seed, "attacker-keys"))


def register_defense(cls: type[Defense]) -> type[Defense]:
    """Class decorator: add a defense to the registry under `cls.name`."""
    registry.defenses.register(cls.name, cls, **cls.registry_meta())
    return cls


# ---------------------------------------------------------------------------------------------------- attacks
@dataclass
class FitContext:
    """What an attack gets besides its training data: the defense to simulate, labels, randomness, device, notes.

    `labels` are the auxiliary split's labels (e.g. {"gender": array}); the private split's labels never reach an
    attack.
    """

    defense: Defense
    seed: int
    device: torch.device
    progress: bool = True
    notes: list[str] = field(default_factory=list)  # things disabled or changed; copied into run.json
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    ids: list[str] = field(default_factory=list)
    # The victim model (a copy), only for an attack that declares `needs_victim` under a white-box extractor.
    victim: Victim | None = None

    def rng(self, stream: str) -> np.random.Generator:
        """An independent, reproducible generator for one named purpose (e.g. 'defense-keys')."""
        return seeded_rng(self.seed, stream)


class Attack(Plugin, ABC):
    """Rebuilds images (or infers attributes) from released features: fit on the auxiliary split, apply to the
    private split.

    `outputs` is "images" (implement `reconstruct`) or "attributes" (implement `predict` and list the predicted
    attribute names in `attributes`); image metrics are recorded as not applicable for attribute attacks. An image
    attack may also declare `attributes` and return them from `reconstruct_with_attributes` (stored beside the images).
    """

    consumes: ClassVar[Requirement] = Requirement("*")
    paper: ClassVar[str] = ""
    profiles: ClassVar[tuple[str, ...]] = ("smoke", "cpu", "paper")
    outputs: ClassVar[str] = "images"
    attributes: ClassVar[tuple[str, ...]] = ()
    default_extractor: ClassVar[str | None] = None  # the victim extractor used when --extractor is not given
    # False for an attack whose output does not depend on the released features (the mean-image floor): a split
    # without any feature (blank images, a dataset without keypoints) is then no reason to refuse it.
    uses_features: ClassVar[bool] = True
    # False for an attack that learns nothing from the attacker's split (gradient inversion optimises each release on
    # its own): the runner then neither extracts, defends nor loads that split (a white-box gradient release of a
    # wide victim is megabytes per image), and `fit` receives an empty feature set and no images.
    uses_auxiliary: ClassVar[bool] = True
    # Its reconstructions are faces (e.g. face-cnn, feature-decoder): identity leakage is among its default metrics.
    reconstructs_faces: ClassVar[bool] = False
    # Figures its paper publishes for the paper profile, by `describe()` key, in that key's unit (e.g.
    # {"params_generators": 78e6, "gmacs": 96}); `bench describe --profile paper` flags those off by > 25 %.
    paper_figures: ClassVar[Mapping[str, float]] = {}
    # True for a white-box attack (gradient inversion): the engine then refuses extractors that are not white-box,
    # passes the victim in `FitContext.victim` and calls `attach_victim` before reconstructing (also when the trained
    # attack comes from the cache). Attacks that do not declare it never see the victim.
    needs_victim: ClassVar[bool] = False
    victim: Victim | None = None
    # Per-batch releases: the similarity (a name in bench.matching.SIMILARITIES, e.g. "negative-mse") on which the
    # runner pairs each record's reconstructions with the originals it covers (an optimal assignment) before saving
    # and scoring them; None: the order `reconstruct` returns is taken as given.
    matching: ClassVar[str | None] = None
    # Plain parameters an attack had before they became declared hyper-parameters, at the value every default run
    # recorded (gradient inversion's iterations=0, "the profile's"): kept under `params` in `config()`, so that runs
    # with every default keep their run ids.
    legacy_params: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, profile: str, image_size: int, device: torch.device | str = "cpu", seed: int = 0,
                 params: Mapping[str, Any] | None = None) -> None:
        if profile not in self.profiles:
            raise BenchError(f"attack {self.name!r} has no profile {profile!r}; it has {', '.join(self.profiles)}")
        self.profile = profile
        self.image_size = int(image_size)
        self.device = torch.device(device)
        self.seed = int(seed)
        # Declared hyper-parameters (bench.hyper) given away from their profile default land in `overrides`; the
        # attack reads `hyper.apply(PROFILES[profile], self.overrides)`. Plain parameters are resolved as always.
        self.params, self.overrides = split_given(f"attack {self.name!r}", type(self).params, params, profile)

    def config(self) -> dict[str, Any]:
        """Everything that changes what `fit` learns; part of the trained-attack cache key.

        `overrides` (hyper-parameters away from their profile default) is present only when there are any, so a run
        with every default keeps the run id it had before hyper-parameters were declared.
        """
        out = {"name": self.name, "version": self.version, "profile": self.profile, "image_size": self.image_size,
               "params": {**dict(type(self).legacy_params), **dict(self.params)}}
        if self.overrides:
            out["overrides"] = dict(self.overrides)
        return out

    def preflight(self) -> None:
        """Raise a BenchError before any work if something the attack needs is missing (e.g. weights)."""

    def check_extractor(self, extractor: Extractor) -> None:
        """Raise an IncompatibleError (one line) before any work when the attack cannot attack what `extractor`,
        bound to the run's data, releases (e.g. a label recovery that needs fewer images per release than the
        victim has classes); the kind of release is checked by the engine from `consumes`."""

    @abstractmethod
    def fit(self, features: FeatureSet, images: torch.Tensor, ctx: FitContext) -> None:
        """Train on auxiliary features and their images (N×3×S×S, S = image_size)."""

    def attach_victim(self, victim: Victim) -> None:
        """Receive the victim handle before `reconstruct` / `predict` (attacks that declare `needs_victim`)."""
        self.victim = victim

    def reconstruct(self, features: FeatureSet, progress: bool = True) -> torch.Tensor:
        """Images (N×3×S×S in [0, 1], on the CPU) rebuilt from `features` (attacks whose outputs are images).

        N is the number of images the records cover: one per record for per-sample releases, and for per-batch
        releases the images of each record's `covers()`, record after record, in that order.
        """
        raise NotImplementedError(f"attack {self.name!r} outputs {self.outputs}, not images")

    def reconstruct_with_attributes(self, features: FeatureSet,
                                    progress: bool = True) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
        """`reconstruct`'s images and, for an image attack that also declares `attributes` (e.g. gradient inversion
        recovering each image's class label), those attributes per image {name: (N,) array}, in the images' order."""
        return self.reconstruct(features, progress), {}

    def predict(self, features: FeatureSet, progress: bool = True) -> dict[str, np.ndarray]:
        """Per-sample predicted attributes {name: (N,) array} (attacks whose outputs are attributes)."""
        raise NotImplementedError(f"attack {self.name!r} outputs {self.outputs}, not attributes")

    def state_dict(self) -> dict[str, Any]:
        """Trained state: tensors, numbers, strings, lists and dicts only (loads with weights_only=True)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what `state_dict` returned."""

    def describe(self) -> dict[str, Any]:
        """Architecture figures for `bench describe` (parameter count, FLOPs, ...)."""
        return {}

    @classmethod
    def registry_meta(cls) -> dict[str, Any]:
        return {**super().registry_meta(), "consumes": cls.consumes.describe(), "paper": cls.paper,
                "profiles": list(cls.profiles), "outputs": cls.outputs, "attributes": list(cls.attributes),
                "default_extractor": cls.default_extractor, "reconstructs_faces": cls.reconstructs_faces,
                "needs_victim": cls.needs_victim}


def register_attack(cls: type[Attack]) -> type[Attack]:
    """Class decorator: add an attack to the registry under `cls.name`."""
    registry.attacks.register(cls.name, cls, **cls.registry_meta())
    return cls


# ---------------------------------------------------------------------------------------------------- metrics
class MetricUnavailable(Exception):
    """Raised by `Metric.prepare` when something the metric needs is missing; `fix` is the command that fixes it."""

    def __init__(self, fix: str) -> None:
        super().__init__(fix)
        self.fix = fix


@dataclass
class EvalContext:
    """What a metric may prepare from once per run: the private split's labels, auxiliary images, device, cache.

    `cache_dir` is a folder of the stage cache that a metric may use for reference-side features (keyed by
    `reference_key`, which names the private split's content and the scoring size). `results` and `dataset` are
    None outside a run (e.g. in the contract kit).
    """

    labels: dict[str, np.ndarray]
    ids: list[str]
    aux_images: torch.Tensor
    aux_labels: dict[str, np.ndarray]
    device: torch.device
    seed: int
    image_size: int
    cache_dir: Path
    reference_key: str
    progress: bool = False
    results: Path | None = None  # the run's results folder (what a metric bound to it, e.g. semsim, reads)
    dataset: str | None = None  # the private split's dataset as dataset_label() names it


def dataset_label(name: str, root: str | Path | None) -> str:
    """A dataset as `name` or `name@/resolved/root`: how provenance names the originals an image came from."""
    return f"{name}@{Path(root).resolve()}" if root else str(name)


@dataclass
class EvalBatch:
    """One evaluation batch: sample indices and ids, their labels, and predicted attributes (attribute attacks)."""

    indices: list[int]
    ids: list[str]
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    attributes: dict[str, np.ndarray] = field(default_factory=dict)
    # Features that several metrics of one batch share (e.g. one Inception pass for FID and KID): a metric stores
    # what it computed under a key naming the feature extractor and input side, and the next one reuses it.
    shared: dict[str, Any] = field(default_factory=dict)


class Metric(Plugin):
    """Scores an attack's outputs against the private split; per sample (`level='sample'`) or per set.

    Image metrics (`inputs='images'`) see reconstructions and originals; attribute metrics (`inputs='attributes'`)
    see predicted attributes and the true labels in the batch. A set metric streams: `embed` runs on each batch
    (its arrays are saved with the batch, so a resumed run skips it) and `aggregate` scores the concatenated arrays.
    """

    higher_is_better: ClassVar[bool] = True
    value_range: ClassVar[tuple[float, float]] = (float("-inf"), float("inf"))
    needs_reference: ClassVar[bool] = True
    needs_weights: ClassVar[bool] = False
    level: ClassVar[str] = "sample"
    inputs: ClassVar[str] = "images"
    # The predicted attribute an attribute metric scores (e.g. "gender"); an attack predicting it defaults to it.
    attribute: ClassVar[str | None] = None
    convention: ClassVar[str] = ""  # the pinned convention, recorded with every value

    def prepare(self, ctx: EvalContext) -> None:
        """Once per run, before scoring; raise MetricUnavailable(fix) when weights or models are missing."""

    def expected_version(self, results: Path) -> str:
        """The version a run in the results folder `results` would record for this metric now, found without
        loading anything; a grid scores a finished run again when its stored version differs. Default: `version`
        (a metric whose value depends on files of the results folder, e.g. semsim's checkpoint, overrides it)."""
        return self.version

    def per_sample(self, recon: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """Values (N,) for N×3×H×W images in [0, 1]; NaN marks an undefined value (e.g. constant input)."""
        raise NotImplementedError

    def score_batch(self, recon: torch.Tensor | None, ref: torch.Tensor, batch: EvalBatch) -> np.ndarray:
        """Per-sample values (N,) for one batch; image metrics default to `per_sample`."""
        return np.asarray(self.per_sample(recon, ref).double().cpu().numpy(), dtype=np.float64)

    def embed(self, recon: torch.Tensor | None, ref: torch.Tensor, batch: EvalBatch) -> dict[str, np.ndarray]:
        """Arrays of one batch that `aggregate` needs (set metrics); the default keeps per-sample values."""
        return {"values": self.score_batch(recon, ref, batch)}

    def aggregate(self, parts: dict[str, np.ndarray]) -> float:
        """The set value from the batches' `embed` arrays concatenated along axis 0; default: the mean of values."""
        values = np.asarray(parts["values"], dtype=np.float64)
        return float(values.mean()) if len(values) else float("nan")

    def value_note(self, n: int) -> str | None:
        """A caveat recorded with an ok value computed on `n` samples (e.g. FID is biased below 2,048); none."""
        return None

    @classmethod
    def registry_meta(cls) -> dict[str, Any]:
        return {**super().registry_meta(), "higher_is_better": cls.higher_is_better, "range": list(cls.value_range),
                "needs_reference": cls.needs_reference, "needs_weights": cls.needs_weights, "level": cls.level,
                "inputs": cls.inputs, "attribute": cls.attribute, "convention": cls.convention}


def register_metric(cls: type[Metric], summary: str | None = None) -> type[Metric]:
    """Class decorator: add a metric to the registry under `cls.name` (with `summary` as its one-line help instead
    of its docstring's first line, as the convention table gives it)."""
    meta = cls.registry_meta()
    if summary:
        meta["summary"] = summary
    registry.metrics.register(cls.name, cls, **meta)
    return cls


def plugin_meta(kind: str, cls: Any) -> dict[str, Any]:
    """Registry metadata of a plugin class (kept for callers that name the kind; `cls.registry_meta()` is the source)."""
    return cls.registry_meta() if hasattr(cls, "registry_meta") else {"summary": _summary(cls)}
