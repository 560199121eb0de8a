"""Planning a run: resolve plugin names, check the attack/defense pairing, fix the frozen spec and the splits.

Nothing here touches data beyond listing item ids; every mistake a user can make is caught here, before any work.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from bench import registry
from bench.compat import make_attack
from bench.devices import resolve_device
from bench.errors import BenchError, IncompatibleError
from bench.features import FeatureSpec
from bench.params import resolve_params
from bench.plugins import Attack, Dataset, Defense, Extractor, Metric, VictimData
from bench.profiles import Resolution, RunProfile, get_profile, resolve_resolution
from bench.run.labels import check_attribute_labels
from bench.run.metric_defaults import default_metrics
from bench.run.spec import RunSpec
from bench.run.splits import split_cross, split_ids

MAX_SEED = 2**32 - 1  # numpy and torch seeds must fit in 32 bits


@dataclass
class RunRequest:
    """What the user asked for (CLI options); `plan` turns it into a frozen RunSpec."""

    attack: str
    defense: str = "none"
    dataset: str = "synthetic-faces"
    data_root: Path | None = None
    profile: str = "cpu"
    seed: int = 0
    n_train: int | None = None
    n_test: int | None = None
    results: Path = Path("bench-results")
    device: str = "cpu"
    extractor: str | None = None
    aux_dataset: str | None = None
    aux_data_root: Path | None = None
    metrics: Sequence[str] | None = None  # None: what the attack leaks (bench/run/metric_defaults.py)
    progress: bool = True
    attack_params: dict[str, Any] = field(default_factory=dict)  # raw KEY=VALUE values, validated by plan()
    defense_params: dict[str, Any] = field(default_factory=dict)
    extractor_params: dict[str, Any] = field(default_factory=dict)  # raw KEY=VALUE, checked against declarations
    threads: int | None = None  # torch and OpenCV threads; None: the cores this process may use
    image_size: int | None = None  # reconstruct-and-score size; None: from the profile and the native size
    extract_size: int | None = None  # the victim's input size; None: from the profile and the native size


@dataclass
class Plan:
    """Resolved plugins and the frozen spec of one run."""

    spec: RunSpec
    profile: RunProfile
    dataset: Dataset
    aux_dataset: Dataset
    extractor: Extractor
    defense: Defense
    attack: Attack
    metrics: dict[str, Metric]
    train_ids: list[str]
    test_ids: list[str]
    released: FeatureSpec
    resolution: Resolution | None = None  # the sizes and the rule that gave them (None: plans made by hand)


def fault_point(name: str) -> None:
    """Kill this process (SIGKILL, no clean-up) when BENCH_FAULT_INJECT names this point; for resume tests."""
    if os.environ.get("BENCH_FAULT_INJECT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


def compatible_attacks(released: FeatureSpec) -> list[str]:
    return [e.name for e in registry.attacks if e.obj.consumes.accepts(released)]


def default_extractor(attack_cls: type[Attack]) -> str:
    """The victim extractor the attack declares as its default (the engine itself names no feature kind).

    An attack that declares none (plugin interface v1) gets the one registered extractor that produces a kind it
    consumes; when several do, the choice is the user's, and the error names them.
    """
    if attack_cls.default_extractor:
        return attack_cls.default_extractor
    fits = [e.name for e in registry.extractors if attack_cls.consumes.admits_kind(e.obj.produces.kind)]
    if len(fits) == 1:
        return fits[0]
    raise BenchError(f"attack {attack_cls.name!r} declares no default extractor (`default_extractor`, plugin "
                     f"interface v2) and {'several' if fits else 'no'} registered extractors produce what it "
                     f"consumes; pass --extractor NAME ({', '.join(fits) or 'none'})")


# Datasets already opened by earlier plans of one batch (a grid), keyed by name and resolved root: a dataset
# instance lists its folder once and keeps the listing, so a grid of many runs on one large folder lists it once.
DatasetCache = dict[tuple[str, str | None], Dataset]


def _dataset(name: str, root: Path | None, option: str = "--data-root",
             cache: DatasetCache | None = None) -> Dataset:
    cls = registry.datasets.get(name).obj
    if cls.needs_root and root is None:
        raise BenchError(f"dataset {name!r} needs {option} PATH (a folder of its images)")
    if root is not None and not Path(root).is_dir():
        raise BenchError(f"{option} {root}: not a folder")
    if cache is None:
        return cls(root=Path(root) if root is not None else None)
    key = (name, str(Path(root).resolve()) if root is not None else None)
    if key not in cache:
        cache[key] = cls(root=Path(root) if root is not None else None)
    return cache[key]


def _check_sizes(req: RunRequest, n_train: int, n_test: int) -> None:
    if not 0 <= req.seed <= MAX_SEED:
        raise BenchError(f"--seed must be between 0 and {MAX_SEED} (got {req.seed})")
    if n_train < 1 or n_test < 1:
        raise BenchError(f"--n-train and --n-test must be >= 1 (got {n_train} and {n_test})")


def _same_files(a: Dataset, b: Dataset) -> bool:
    """Whether two datasets can share image files (same root folder, or the same generated set)."""
    ra = a.root.resolve() if a.root else None
    rb = b.root.resolve() if b.root else None
    if ra is None or rb is None:
        return type(a) is type(b) and ra == rb
    return ra == rb or ra in rb.parents or rb in ra.parents


def _file_key(ds: Dataset) -> Callable[[str], str]:
    """The resolved file of an item (datasets with a root), else its id: to compare a content-keyed side with one
    that is not (e.g. an outside folder plugin reading the same files)."""
    if ds.root is None:
        return str
    root = ds.root.resolve()
    return lambda item: str((root / item).resolve())


def _key_of(ds: Dataset, ids: Sequence[str]) -> Callable[[str], str]:
    """Each item's content key (its file's sha256 for folder datasets, its id for generated sets)."""
    return dict(zip(ids, ds.content_keys(ids))).__getitem__


def plan(req: RunRequest, datasets: DatasetCache | None = None) -> Plan:
    """Resolve names, check that the attack can consume what the defense releases, fix the spec and splits.

    `datasets`: a cache shared by the plans of one batch (bench.run.grid_plan): a dataset named with the same root
    is opened, and its folder listed, once for all of them; None opens it afresh."""
    profile = get_profile(req.profile)
    attack_cls = registry.attacks.get(req.attack).obj
    defense_cls = registry.defenses.get(req.defense).obj
    extractor_name = req.extractor or default_extractor(attack_cls)
    extractor_cls = registry.extractors.get(extractor_name).obj
    resolve_params(f"extractor {extractor_name!r}", extractor_cls.params, req.extractor_params)  # unknown: refused
    extractor: Extractor = extractor_cls(**dict(req.extractor_params))
    defense: Defense = defense_cls(**dict(req.defense_params))
    if not defense.can_protect(extractor.produces):
        raise IncompatibleError(f"defense {req.defense!r} cannot protect {extractor.produces.kind!r} features "
                                f"(it protects: {', '.join(defense.accepts)})")
    if defense.client_side and not type(extractor).white_box:
        raise IncompatibleError(f"defense {req.defense!r} acts on the client before the release (it needs the victim "
                                f"model and the client's images) but extractor {extractor_name!r} grants no victim "
                                "model; use a white-box extractor")
    if attack_cls.needs_victim and not type(extractor).white_box:
        raise IncompatibleError(f"attack {req.attack!r} is white-box (it needs the victim model) but extractor "
                                f"{extractor_name!r} grants no victim model; use a white-box extractor")
    released = defense.released_spec(extractor.produces)
    if not attack_cls.consumes.accepts(released):
        fits = [n for n in compatible_attacks(released) if n != req.attack]
        raise IncompatibleError(
            f"attack {req.attack!r} needs {attack_cls.consumes.describe()} but defense {req.defense!r} releases "
            f"{released.describe()}; attacks that can consume it: {', '.join(fits) or 'none'}")
    dataset_cls = registry.datasets.get(req.dataset).obj
    labelled = {"private": dataset_cls}
    if req.aux_dataset:
        labelled["auxiliary"] = registry.datasets.get(req.aux_dataset).obj
    check_attribute_labels(attack_cls, labelled)
    if req.metrics is None:
        names = default_metrics(attack_cls, dataset_cls)
    elif not req.metrics:
        raise BenchError("no metric given; name at least one (see `bench list metrics`)")
    else:
        names = registry.metrics.names() if tuple(req.metrics) == ("all",) else dict.fromkeys(req.metrics)
    metrics = {name: registry.metrics.get(name).obj() for name in names}
    device = resolve_device(req.device)
    n_train = profile.n_train if req.n_train is None else req.n_train
    n_test = profile.n_test if req.n_test is None else req.n_test
    _check_sizes(req, n_train, n_test)
    # The private dataset's native size sets the run's sizes (it is what is reconstructed and scored).
    resolution = resolve_resolution(profile, registry.datasets.get(req.dataset).obj.native_size,
                                    req.image_size, req.extract_size)
    attack: Attack = make_attack(attack_cls, profile.name, resolution.image_size, device, req.seed,
                                 dict(req.attack_params))
    attack.preflight()
    extractor.preflight()

    dataset = _dataset(req.dataset, req.data_root, cache=datasets)
    if req.aux_dataset:
        aux_cls = registry.datasets.get(req.aux_dataset).obj
        if aux_cls.needs_root and req.aux_data_root is None:
            raise BenchError(f"--aux-dataset {req.aux_dataset} needs --aux-data-root PATH (the attacker's images; "
                             "it never falls back to --data-root)")
        aux = _dataset(req.aux_dataset, req.aux_data_root, "--aux-data-root", cache=datasets)
        private_ids = dataset.item_ids()
        aux_ids = aux.item_ids()
        # The attacker must never train on a private image: the private split is drawn first and every auxiliary
        # candidate with the same content (a copy, a renamed copy or a symlink: equal sha256) is removed. Generated
        # sets are keyed by id, so they are compared only when both sides can share items.
        shared = (aux.keys_by_content and dataset.keys_by_content) or _same_files(aux, dataset) \
            or bool(set(aux_ids) & set(private_ids))  # generated sets: comparable only when they can share items
        by_content = aux.keys_by_content and dataset.keys_by_content
        train_ids, test_ids = split_cross(aux_ids, private_ids, req.seed, n_train, n_test,
                                          req.aux_dataset, req.dataset, exclude_private=shared,
                                          aux_key=_key_of(aux, aux_ids), private_key=_key_of(dataset, private_ids),
                                          match=None if by_content else (_file_key(aux), _file_key(dataset)))
    else:
        aux = dataset
        ids = dataset.item_ids()
        official = dataset.official_splits()
        if official is not None:  # private images from the official test split, the attacker's from train
            # (a train image with the same content as a drawn private image never reaches the attacker)
            train_ids, test_ids = split_cross(official["train"], official["test"], req.seed, n_train, n_test,
                                              f"{req.dataset}'s train split", f"{req.dataset}'s test split",
                                              exclude_private=True, aux_key=_key_of(dataset, ids),
                                              private_key=_key_of(dataset, ids))
        else:
            train_ids, test_ids = split_ids(ids, req.seed, n_train, n_test, req.dataset, key=_key_of(dataset, ids))

    # A trained victim learns from the attacker/train split (never a private image); the extractor's config, in the
    # spec, then names that training (an untrained victim's config, and run id, are unchanged).
    extractor.bind(VictimData(aux, list(train_ids), resolution.extract_size, profile.name, req.seed))
    attack.check_extractor(extractor)  # attack-specific limits of what it can attack, before any work
    spec = RunSpec(
        attack=req.attack, defense=req.defense, dataset=req.dataset,
        data_root=str(Path(req.data_root).resolve()) if req.data_root else None,
        profile=profile.name, seed=req.seed, n_train=n_train, n_test=n_test,
        extract_size=resolution.extract_size, image_size=resolution.image_size,
        extractor=extractor.config(), defense_params=defense.config(), attack_config=attack.config(),
        aux_dataset=req.aux_dataset,
        aux_data_root=str(Path(req.aux_data_root).resolve()) if req.aux_data_root else None,
        dataset_fingerprint={"private": dataset.fingerprint(), "aux": aux.fingerprint()},
    )
    return Plan(spec, profile, dataset, aux, extractor, defense, attack, metrics, train_ids, test_ids, released,
                resolution)
