"""Planning a run: resolve plugin names, check the attack/defense pairing, fix the frozen spec and the splits.

Nothing here touches data beyond listing item ids; every mistake a user can make is caught here, before any work.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from bench import registry
from bench.errors import BenchError, IncompatibleError
from bench.features import FeatureSpec
from bench.plugins import Attack, Dataset, Defense, Extractor, Metric
from bench.profiles import RunProfile, get_profile
from bench.run.spec import RunSpec
from bench.run.splits import split_cross, split_ids

DEFAULT_METRICS = ("mse", "psnr", "ssim", "ssim-sift-compat")
DEFAULT_EXTRACTOR = "sift"


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
    metrics: Sequence[str] = DEFAULT_METRICS
    progress: bool = True


@dataclass
class RunResult:
    """Where a finished run's outputs are and its set-level metric values."""

    run_id: str
    run_dir: Path
    set_metrics: dict[str, dict[str, Any]]
    leaderboard: Path
    record: dict[str, Any] = field(default_factory=dict)


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


def fault_point(name: str) -> None:
    """Kill this process (SIGKILL, no clean-up) when BENCH_FAULT_INJECT names this point; for resume tests."""
    if os.environ.get("BENCH_FAULT_INJECT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


def resolve_device(name: str) -> torch.device:
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise BenchError(f"unknown device {name!r}; use cpu or cuda")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BenchError("--device cuda was asked for but torch sees no CUDA device; use --device cpu")
    return torch.device(name)


def compatible_attacks(released: FeatureSpec) -> list[str]:
    return [e.name for e in registry.attacks if e.obj.consumes.accepts(released)]


def default_extractor(attack_cls: type[Attack]) -> str:
    """The extractor whose output kind the attack consumes (the project's default victim for '*')."""
    if attack_cls.default_extractor:
        return attack_cls.default_extractor
    kind = attack_cls.consumes.kind
    if kind == "*":
        return DEFAULT_EXTRACTOR
    for entry in registry.extractors:
        if entry.obj.produces.kind == kind:
            return entry.name
    raise BenchError(f"no registered extractor produces {kind!r} features, which attack {attack_cls.name!r} needs")


def _dataset(name: str, root: Path | None) -> Dataset:
    cls = registry.datasets.get(name).obj
    if cls.needs_root and root is None:
        raise BenchError(f"dataset {name!r} needs --data-root PATH (a folder of its images)")
    return cls(root=Path(root) if root is not None else None)


def plan(req: RunRequest) -> Plan:
    """Resolve names, check that the attack can consume what the defense releases, fix the spec and splits."""
    profile = get_profile(req.profile)
    attack_cls = registry.attacks.get(req.attack).obj
    defense_cls = registry.defenses.get(req.defense).obj
    extractor_name = req.extractor or default_extractor(attack_cls)
    extractor: Extractor = registry.extractors.get(extractor_name).obj()
    defense: Defense = defense_cls()
    if not defense.can_protect(extractor.produces):
        raise IncompatibleError(f"defense {req.defense!r} cannot protect {extractor.produces.kind!r} features "
                                f"(it protects: {', '.join(defense.accepts)})")
    released = defense.released_spec(extractor.produces)
    if not attack_cls.consumes.accepts(released):
        fits = [n for n in compatible_attacks(released) if n != req.attack]
        raise IncompatibleError(
            f"attack {req.attack!r} needs {attack_cls.consumes.describe()} but defense {req.defense!r} releases "
            f"{released.describe()}; attacks that can consume it: {', '.join(fits) or 'none'}")
    metrics = {name: registry.metrics.get(name).obj() for name in req.metrics}
    device = resolve_device(req.device)
    attack: Attack = attack_cls(profile=profile.name, image_size=profile.image_size, device=device, seed=req.seed)
    attack.preflight()

    n_train = profile.n_train if req.n_train is None else req.n_train
    n_test = profile.n_test if req.n_test is None else req.n_test
    dataset = _dataset(req.dataset, req.data_root)
    if req.aux_dataset:
        aux = _dataset(req.aux_dataset, req.aux_data_root or req.data_root)
        train_ids, test_ids = split_cross(aux.item_ids(), dataset.item_ids(), req.seed, n_train, n_test,
                                          req.aux_dataset, req.dataset)
    else:
        aux = dataset
        train_ids, test_ids = split_ids(dataset.item_ids(), req.seed, n_train, n_test, req.dataset)

    spec = RunSpec(
        attack=req.attack, defense=req.defense, dataset=req.dataset,
        data_root=str(Path(req.data_root).resolve()) if req.data_root else None,
        profile=profile.name, seed=req.seed, n_train=n_train, n_test=n_test,
        extract_size=profile.extract_size, image_size=profile.image_size,
        extractor=extractor.config(), defense_params=defense.config(), attack_config=attack.config(),
        aux_dataset=req.aux_dataset,
        aux_data_root=str(Path(req.aux_data_root).resolve()) if req.aux_data_root else None,
        dataset_fingerprint={"private": dataset.fingerprint(), "aux": aux.fingerprint()},
    )
    return Plan(spec, profile, dataset, aux, extractor, defense, attack, metrics, train_ids, test_ids, released)
