"""One metric value, from a plugin to a table cell: the status vocabulary, the set-level record that evaluation
produces and the store keeps, and the one aggregation over a configuration's seeds (mean and sample std) that every
leaderboard renderer shows. It imports nothing of the engine, so the store, the runner and the reports share it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

OK, UNAVAILABLE, UNDEFINED, NOT_APPLICABLE, FAILED = "ok", "unavailable", "undefined", "not-applicable", "failed"
METRIC_STATUSES = (OK, UNAVAILABLE, UNDEFINED, NOT_APPLICABLE, FAILED)
NOT_COMPUTED = "not computed"  # no value and no status at all (a seed that never scored the metric): never stored


@dataclass
class MetricValue:
    """A metric's set-level value with its status and everything a report needs without importing the metric."""

    name: str
    value: float | None
    status: str
    detail: str | None
    n: int
    convention: str
    version: str
    higher_is_better: bool
    value_range: tuple[float, float]

    def row(self) -> dict[str, Any]:
        return {"value": self.value, "status": self.status, "detail": self.detail, "n": self.n,
                "convention": self.convention, "version": self.version, "higher_is_better": self.higher_is_better,
                "range": list(self.value_range)}


def is_ok(entry: Mapping[str, Any] | None) -> bool:
    """Whether a stored entry (a `Store.set_metrics` value) holds a usable number: status ok and a value."""
    return entry is not None and entry.get("status", OK) == OK and entry.get("value") is not None


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1) over seeds: NaN mean without values, NaN std under two values;
    identical values or an infinite mean have no spread (std 0, not float noise such as 1.7e-17, nor inf - inf)."""
    if not len(values):
        return math.nan, math.nan
    mean = float(np.mean(values))
    if len(values) < 2:
        return mean, math.nan
    if math.isinf(mean) or all(v == values[0] for v in values):
        return mean, 0.0
    return mean, float(np.std(values, ddof=1))


@dataclass(frozen=True)
class SeedStats:
    """One metric over the seeds of a leaderboard row: the ok values, their mean and std, and the other entries."""

    entries: tuple[Mapping[str, Any] | None, ...]  # one per seed; None: the seed has no entry for the metric
    values: tuple[float, ...]
    mean: float
    std: float

    @property
    def k(self) -> int:
        """Seeds with an ok value."""
        return len(self.values)

    @property
    def n(self) -> int:
        """Seeds of the row."""
        return len(self.entries)

    @property
    def present(self) -> list[Mapping[str, Any]]:
        """The seeds' entries that exist (whatever their status)."""
        return [e for e in self.entries if e is not None]

    @property
    def not_ok(self) -> list[Mapping[str, Any]]:
        """Existing entries whose status is not ok (unavailable, undefined, not-applicable, failed)."""
        return [e for e in self.present if e.get("status", OK) != OK]


def over_seeds(entries: Sequence[Mapping[str, Any] | None]) -> SeedStats:
    """The one aggregation over seeds that the CSV leaderboard and the Markdown/LaTeX/HTML tables share."""
    values = tuple(float(e["value"]) for e in entries if is_ok(e))
    mean, std = mean_std(values)
    return SeedStats(tuple(entries), values, mean, std)
