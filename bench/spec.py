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


# What the run seed alone determines, inside a spec's parts: a trained victim records the seed of its training and
# the digest of the seed-drawn attacker split it trained on. Both are hashed into the run id, never into the
# configuration id, so the seeds of one configuration share a leaderboard row.
SEED_DERIVED: dict[str, dict[str, tuple[str, ...]]] = {"extractor": {"training": ("seed", "data")}}


def _without_seed(spec: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in _hashed(spec).items() if k != "seed"}
    for part, nested in SEED_DERIVED.items():
        if not isinstance(out.get(part), dict):
            continue
        section = dict(out[part])
        for key, fields in nested.items():
            if isinstance(section.get(key), dict):
                section[key] = {k: v for k, v in section[key].items() if k not in fields}
        out[part] = section
    return out


def config_id(spec: dict[str, Any]) -> str:
    """Configuration id of a spec dict: everything but the seed, what the seed alone determines (SEED_DERIVED) and
    the folder paths."""
    return digest(_without_seed(spec))
