"""Deterministic train/test splits from the run seed and the item ids (file names) alone."""

from __future__ import annotations

import hashlib
from typing import Sequence

from bench.errors import BenchError


def _rank(seed: int, item_id: str) -> bytes:
    return hashlib.sha256(f"{seed}\0{item_id}".encode()).digest()


def split_ids(ids: Sequence[str], seed: int, n_train: int, n_test: int, dataset: str = "dataset") -> tuple[list[str], list[str]]:
    """(train, test) id lists: items ordered by a seeded hash of their id; test first, then train.

    Adding or removing other files does not move an item from test to train or back unless it changes the
    item's rank among the first n_test, and the same seed and names always give the same split.
    """
    if n_train < 0 or n_test < 1:
        raise BenchError(f"--n-train must be >= 0 and --n-test >= 1 (got {n_train} and {n_test})")
    if len(set(ids)) != len(ids):
        raise BenchError(f"{dataset}: item ids are not unique")
    need = n_train + n_test
    if len(ids) < need:
        raise BenchError(f"{dataset} has {len(ids)} images but the run needs {need} "
                         f"(--n-train {n_train} + --n-test {n_test}); lower them or add images")
    ordered = sorted(ids, key=lambda i: (_rank(seed, i), i))
    return ordered[n_test:need], ordered[:n_test]


def split_cross(aux_ids: Sequence[str], private_ids: Sequence[str], seed: int, n_train: int, n_test: int,
                aux_name: str, private_name: str) -> tuple[list[str], list[str]]:
    """Cross-dataset split: the auxiliary split from one dataset, the private split from another."""
    if len(aux_ids) < n_train:
        raise BenchError(f"{aux_name} has {len(aux_ids)} images but --n-train is {n_train}")
    if n_test < 1 or len(private_ids) < n_test:
        raise BenchError(f"{private_name} has {len(private_ids)} images but --n-test is {n_test}")
    train = sorted(aux_ids, key=lambda i: (_rank(seed, i), i))[:n_train]
    test = sorted(private_ids, key=lambda i: (_rank(seed, i), i))[:n_test]
    return train, test
