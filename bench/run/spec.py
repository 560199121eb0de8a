"""The frozen run spec: everything that determines a run's numbers; its canonical JSON hashes to the run id."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

# Bump when a change makes old cached results incomparable (changes every run id and cache key).
SPEC_VERSION = 1


def canonical_json(obj: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace, floats in repr form."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=True)


def digest(obj: Any, length: int = 16) -> str:
    """Short sha256 hex digest of the canonical JSON of `obj` (cache keys and run ids)."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:length]


@dataclass(frozen=True)
class RunSpec:
    """One run: dataset and splits, victim extractor, defense, attack, profile, seed, metric conventions."""

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
    extractor: dict[str, Any]
    defense_params: dict[str, Any]
    attack_config: dict[str, Any]
    aux_dataset: str | None = None
    aux_data_root: str | None = None
    metrics: dict[str, str] = field(default_factory=dict)  # metric name -> pinned convention
    dataset_fingerprint: dict[str, Any] = field(default_factory=dict)
    version: int = SPEC_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def run_id(self) -> str:
        return digest(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunSpec":
        return cls(**data)
