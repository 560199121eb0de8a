"""Deterministic train/test splits from the run seed and each item's key: its content digest for folder datasets
(a copy of a folder, even with renamed files, gives the same split), its id for generated sets."""

from __future__ import annotations

import hashlib
from typing import Callable, Sequence

from bench.errors import BenchError


def _rank(seed: int, item_id: str) -> bytes:
    return hashlib.sha256(f"{seed}\0{item_id}".encode()).digest()


def split_ids(ids: Sequence[str], seed: int, n_train: int, n_test: int, dataset: str = "dataset",
              key: Callable[[str], str] = str) -> tuple[list[str], list[str]]:
    """(train, test) id lists: items ordered by a seeded hash of their key (ties by id); test first, then train.

    Adding or removing other files does not move an item from test to train or back unless it changes the
    item's rank among the first n_test, and the same seed and keys always give the same split. An item whose key
    equals a test item's (the same image under another name) never enters the training split.
    """
    if n_train < 1 or n_test < 1:
        raise BenchError(f"--n-train and --n-test must be >= 1 (got {n_train} and {n_test})")
    if len(set(ids)) != len(ids):
        raise BenchError(f"{dataset}: item ids are not unique")
    need = n_train + n_test
    if len(ids) < need:
        raise BenchError(f"{dataset} has {len(ids)} images but the run needs {need} "
                         f"(--n-train {n_train} + --n-test {n_test}); lower them or add images")
    ordered = sorted(ids, key=lambda i: (_rank(seed, key(i)), i))
    test = ordered[:n_test]
    private = {key(i) for i in test}
    rest = [i for i in ordered[n_test:] if key(i) not in private]
    if len(rest) < n_train:
        raise BenchError(f"{dataset} has {len(ids)} images but only {len(rest)} once copies of the {n_test} private "
                         f"images are excluded; the run needs --n-train {n_train}")
    return rest[:n_train], test


def split_cross(aux_ids: Sequence[str], private_ids: Sequence[str], seed: int, n_train: int, n_test: int,
                aux_name: str, private_name: str, exclude_private: bool = True,
                aux_key: Callable[[str], str] = str, private_key: Callable[[str], str] = str,
                match: tuple[Callable[[str], str], Callable[[str], str]] | None = None,
                ) -> tuple[list[str], list[str]]:
    """Cross-dataset split: the auxiliary split from one dataset, the private split from another.

    The private split is drawn first; with `exclude_private` (the two sides can share files) every auxiliary
    candidate whose `aux_key` equals the `private_key` of a private item (e.g. the same resolved file) is removed,
    so the attacker never trains on a private image. Both sides are ordered by a seeded hash of their key;
    `match` = (aux, private) key functions compares items by other keys than the ordering ones (e.g. resolved
    files when only one side is keyed by content).
    """
    if n_train < 1 or n_test < 1:
        raise BenchError(f"--n-train and --n-test must be >= 1 (got {n_train} and {n_test})")
    if len(private_ids) < n_test:
        raise BenchError(f"{private_name} has {len(private_ids)} images but --n-test is {n_test}")
    test = sorted(private_ids, key=lambda i: (_rank(seed, private_key(i)), i))[:n_test]
    aux_match, private_match = match or (aux_key, private_key)
    private = {private_match(i) for i in test} if exclude_private else set()
    candidates = [i for i in aux_ids if aux_match(i) not in private]
    if len(candidates) < n_train:
        shared = f" once the {len(private)} private ids are excluded" if private else ""
        raise BenchError(f"{aux_name} has {len(candidates)} images{shared} but --n-train is {n_train}")
    train = sorted(candidates, key=lambda i: (_rank(seed, aux_key(i)), i))[:n_train]
    return train, test
