"""The frozen run spec: everything that determines a run's reconstructions; its canonical JSON hashes to the run id.

Metrics are not part of the spec: values for one reconstruction set accumulate (adding a metric to a finished
run scores the existing reconstructions). The configuration id is the hash of everything but the seed: one
leaderboard row is one configuration, with its seeds counted. Neither id holds a folder path: `data_root` and
`aux_data_root` are recorded (to find the originals again) but hashed as None, and the datasets enter through their
content fingerprints, so a copy of the data elsewhere gives the same run and configuration ids.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from bench.hashing import canonical_json, digest  # noqa: F401  (re-exported: run ids and keys)

# Bump when a change makes old cached results incomparable: it is part of every run id and every cache key.
SPEC_VERSION = 2


@dataclass(frozen=True)
class RunSpec:
    """One run: dataset and splits, victim extractor, defense and attack with their parameters, profile, seed."""

    attack: str
    defense: str
    dataset: str
    data_root: str | None
    profile: str
    seed: int
    n_train: int
    n_test: int
    extract_size: int
    image_size: int
    extractor: dict[str, Any]  # the extractor's config (name, version, parameters, library versions)
    defense_params: dict[str, Any]  # the defense's config (name, version, declared parameters)
    attack_config: dict[str, Any]  # the attack's config (name, version, profile, parameters, hyper-parameters)
    aux_dataset: str | None = None
    aux_data_root: str | None = None
    dataset_fingerprint: dict[str, Any] = field(default_factory=dict)
    version: int = SPEC_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def run_id(self) -> str:
        return run_id(self.to_dict())

    @property
    def config_id(self) -> str:
        """The hash of everything but the seed: runs that differ only in their seed share it."""
        return config_id(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunSpec":
        return cls(**data)


# Where the data lay when the run was made: recorded, never hashed (None in the hashed form, so ids of runs on
# generated sets, whose roots are None, are unchanged).
PATH_FIELDS = ("data_root", "aux_data_root")


def _hashed(spec: dict[str, Any]) -> dict[str, Any]:
    return {**spec, **{k: None for k in PATH_FIELDS if k in spec}}


def run_id(spec: dict[str, Any]) -> str:
    """Run id of a spec dict: the hash of everything but the folder paths."""
    return digest(_hashed(spec))


def seed_derived_fields(extractor: str) -> tuple[str, ...]:
    """The dotted config paths that extractor `extractor` declares seed-derived (`Extractor.seed_derived`: e.g. a
    trained victim's training seed), read through the registry; () for an extractor that is not registered."""
    from bench import registry
    from bench.errors import UnknownNameError

    try:
        entry = registry.extractors.get(extractor)
    except UnknownNameError:
        return ()
    return tuple(getattr(entry.obj, "seed_derived", ()))


def _drop(section: dict[str, Any], path: list[str]) -> dict[str, Any]:
    """A copy of `section` without the field at `path` (sections along the way copied, never modified)."""
    head, rest = path[0], path[1:]
    if not rest:
        return {k: v for k, v in section.items() if k != head}
    if not isinstance(section.get(head), dict):
        return section
    return {**section, head: _drop(section[head], rest)}


def _without_seed(spec: dict[str, Any]) -> dict[str, Any]:
    """The hashed form of a configuration: no seed, no folder path, none of the extractor's seed-derived fields
    (hashed into the run id, never into the configuration id, so the seeds of one configuration share a row)."""
    out = {k: v for k, v in _hashed(spec).items() if k != "seed"}
    extractor = out.get("extractor")
    if isinstance(extractor, dict):
        for path in seed_derived_fields(str(extractor.get("name", ""))):
            extractor = _drop(extractor, path.split("."))
        out["extractor"] = extractor
    return out


def config_id(spec: dict[str, Any]) -> str:
    """Configuration id of a spec dict: everything but the seed, what the seed alone determines (the extractor's
    declared `seed_derived` fields) and the folder paths."""
    return digest(_without_seed(spec))
