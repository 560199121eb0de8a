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
