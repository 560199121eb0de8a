"""Pairing a per-batch release's reconstructions with the originals it covers, before they are saved and scored.

A batch attack rebuilds the B images of a record in no particular order; scoring image j against reconstruction j
would then measure the attack's ordering, not its leakage. For an attack that declares `matching` (a similarity
name), each record's reconstructions are reordered by an optimal assignment on that similarity
(`bench.matching.match`) to the originals of the same record only; the assignment is recorded.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

from bench.matching import match


def pair_records(recon: torch.Tensor, originals: torch.Tensor, record_sizes: Sequence[int], similarity: str,
                 attributes: Mapping[str, np.ndarray] | None = None
                 ) -> tuple[torch.Tensor, dict[str, np.ndarray], list[list[int]]]:
    """Reorder `recon` (record after record, `record_sizes` images each) to follow `originals` within each record.

    Returns the reordered images, the attributes reordered with them (a predicted label stays with its image) and,
    per record, `assignment[j]`: the position (within the record, in the attack's output order) of the
    reconstruction paired with the record's j-th original.
    """
    if sum(record_sizes) != len(recon) or len(recon) != len(originals):
        raise ValueError(f"pair_records: {len(recon)} reconstructions, {len(originals)} originals, records of "
                         f"{sum(record_sizes)} images")
    order: list[int] = []
    assignment: list[list[int]] = []
    start = 0
    for size in record_sizes:
        perm = match(recon[start:start + size], originals[start:start + size], similarity).tolist() \
            if size > 1 else [0] * size
        assignment.append([int(i) for i in perm])
        order += [start + int(i) for i in perm]
        start += size
    index = torch.as_tensor(order, dtype=torch.long)
    attrs = {k: np.asarray(v)[np.asarray(order, dtype=np.int64)] for k, v in (attributes or {}).items()}
    return recon[index], attrs, assignment


__all__ = ["pair_records"]
