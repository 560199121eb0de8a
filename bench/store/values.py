"""How values and sample rows are kept in SQLite: NaN as NULL (inf kept), a row counted only for the sample it
belongs to."""

from __future__ import annotations

import math
from typing import Any, Sequence


def matches(index: int, sample_id: str, ids: Sequence[str]) -> bool:
    """Whether a row at `index` with `sample_id` belongs to sample `ids[index]` of the split being read."""
    return 0 <= index < len(ids) and str(ids[index]) == sample_id


def real(value: Any) -> float | None:
    """SQLite stores inf as REAL but NaN as NULL; keep inf, map NaN (and None) to NULL explicitly."""
    if value is None:
        return None
    v = float(value)
    return None if math.isnan(v) else v
