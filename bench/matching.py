"""Pairing a batch release's reconstructions with its originals before scoring (the order a batch attack returns is
arbitrary): an optimal assignment on a declared similarity.

An engine concept (the runner pairs per-batch records, bench/run/pairing.py; the contract kit checks an attack's
declared `matching` against SIMILARITIES), so it sits below the plugins that declare a similarity by name."""

from __future__ import annotations

from typing import Callable

import torch
from scipy.optimize import linear_sum_assignment


def negative_mse(recon: torch.Tensor, orig: torch.Tensor) -> torch.Tensor:
    """Similarity matrix S[i, j] = -MSE(recon[i], orig[j]) (higher is more similar)."""
    r = recon.reshape(len(recon), -1).double()
    o = orig.reshape(len(orig), -1).double()
    return -torch.cdist(r, o).pow(2) / r.shape[1]


SIMILARITIES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {"negative-mse": negative_mse}


def match(recon: torch.Tensor, orig: torch.Tensor, similarity: str = "negative-mse") -> torch.Tensor:
    """Index `perm` such that recon[perm[j]] is paired with orig[j], maximising the total similarity
    (scipy's linear_sum_assignment; a one-to-one pairing, never two originals to one reconstruction)."""
    if len(recon) != len(orig):
        raise ValueError(f"match: {len(recon)} reconstructions for {len(orig)} originals")
    sim = SIMILARITIES[similarity](recon, orig).numpy()
    rows, cols = linear_sum_assignment(sim, maximize=True)
    perm = torch.empty(len(orig), dtype=torch.long)
    perm[torch.as_tensor(cols)] = torch.as_tensor(rows)
    return perm


def matched(recon: torch.Tensor, orig: torch.Tensor, similarity: str = "negative-mse") -> torch.Tensor:
    """The reconstructions reordered to follow the originals."""
    return recon[match(recon, orig, similarity)]
