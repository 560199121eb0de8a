"""Named embedders: feature extractors that several metrics share, one pass per batch and side, and a cache of the
reference side.

An embedder maps N×3×H×W images in [0, 1] to named arrays (always `features`, N×D float32; e.g. the dlib face
embedder adds `detector_miss`, N bools). Metrics never build one themselves: `get_embedder(name, device)` loads it
(raising MetricUnavailable with the fix when its weights or packages are missing), `batch_features` computes it at
most once per batch and side (the result is kept in `EvalBatch.shared` under "<name>:<side>", so FID and KID run
one Inception pass), and `ReferenceCache` keeps the originals' features per dataset split, so a second attack on the
same split reuses them.

Built-in embedders: `inception` (torch-fidelity's pt_inception-2015-12-05, 2048-d pool3; bench/embedders/inception.py)
and `dlib-face` (dlib's ResNet face descriptor, 128-d; bench/embedders/dlib_face.py). Their modules are imported only
when first used, so importing the metrics never imports torch-fidelity's network or dlib.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import uuid
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence, Union

import numpy as np
import torch

from bench.hashing import arrays_sha256
from bench.plugins import EvalBatch

Factory = Callable[[torch.device], "Embedder"]

# name -> "module:function" (imported on first use) or a callable; a test may put a stand-in here (monkeypatch).
FACTORIES: dict[str, Union[str, Factory]] = {
    "inception": "bench.embedders.inception:load",
    "dlib-face": "bench.embedders.dlib_face:load",
}


class Embedder(ABC):
    """A named feature extractor: images in, arrays out (`features` N×D float32, plus optional per-image extras)."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"  # bump when a fix changes the output: it is part of the reference cache key
    dim: int = 0

    def identity(self) -> dict[str, Any]:
        """Everything that changes the output (name, version, weights digest, library versions); a cache key."""
        return {"name": self.name, "version": self.version}

    @abstractmethod
    def embed(self, images: torch.Tensor) -> dict[str, np.ndarray]:
        """Arrays for N×3×H×W images in [0, 1]: `features` (N×D float32) and any per-image extras (N, ...)."""


def register_embedder(name: str, factory: Union[str, Factory]) -> None:
    """Add (or replace) a named embedder: a callable(device) -> Embedder, or its "module:function" path."""
    FACTORIES[name] = factory


def get_embedder(name: str, device: torch.device | str = "cpu") -> Embedder:
    """The embedder `name` on `device`; raises MetricUnavailable (from its loader) when it cannot be built."""
    try:
        factory = FACTORIES[name]
    except KeyError:
        raise KeyError(f"no embedder named {name!r}; known: {', '.join(sorted(FACTORIES))}") from None
    if isinstance(factory, str):
        module, _, func = factory.partition(":")
        factory = getattr(importlib.import_module(module), func)
    return factory(torch.device(device))


def batch_features(embedder: Embedder, side: str, images: torch.Tensor, batch: EvalBatch,
                   cache: "ReferenceCache | None" = None) -> dict[str, np.ndarray]:
    """The embedder's arrays for one batch side ("recon" or "ref"), computed at most once per batch.

    Looks in `batch.shared` (another metric of this batch may have computed them), then in `cache` (reference
    side only), and computes them otherwise; what it computed is shared and, with a cache, saved.
    """
    key = f"{embedder.name}:{side}"
    hit = batch.shared.get(key)
    if hit is not None:
        return hit
    arrays = cache.load(batch.ids) if cache is not None else None
    if arrays is None:
        arrays = {k: np.asarray(v) for k, v in embedder.embed(images).items()}
        n = len(images)
        for k, v in arrays.items():
            if len(v) != n:
                raise RuntimeError(f"embedder {embedder.name!r} returned {len(v)} rows of {k!r} for {n} images")
        if cache is not None:
            cache.save(batch.ids, arrays)
    batch.shared[key] = arrays
    return arrays


def _digest(obj: Any, n: int = 24) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


class ReferenceCache:
    """Reference-side (original images') embeddings of one private split, one file per evaluation batch.

    Folder: <cache_dir>/<embedder name>/<reference_key>/<digest of the embedder's identity>/; file: the digest of
    the batch's ids. `reference_key` names the split's content and scoring size (EvalContext), so the same
    originals always map to the same file, whichever attack or run asks. A hit is verified (ids and the arrays'
    sha256 recorded beside them); a missing, corrupt or foreign file is a miss and is recomputed. Writes are atomic
    and best effort: a read-only cache only costs recomputation.
    """

    def __init__(self, cache_dir: Path, embedder: Embedder, reference_key: str) -> None:
        self.folder = Path(cache_dir) / embedder.name / reference_key / _digest(embedder.identity(), 16)
        self.hits = 0
        self.misses = 0

    def _path(self, ids: Sequence[str]) -> Path:
        return self.folder / f"{_digest(list(ids))}.npz"

    def load(self, ids: Sequence[str]) -> dict[str, np.ndarray] | None:
        """The arrays saved for exactly these ids, verified; None on a miss."""
        path = self._path(ids)
        try:
            meta = json.loads(path.with_suffix(".json").read_text())
            with np.load(path, allow_pickle=False) as npz:
                arrays = {k: np.array(npz[k]) for k in npz.files}
        except (OSError, ValueError, KeyError):
            self.misses += 1
            return None
        if meta.get("ids") != list(ids) or meta.get("sha") != arrays_sha256(arrays) or \
                any(len(v) != len(ids) for v in arrays.values()):
            self.misses += 1
            return None
        self.hits += 1
        return arrays

    def save(self, ids: Sequence[str], arrays: dict[str, np.ndarray]) -> None:
        path = self._path(ids)
        tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp_npz = path.with_name(f".{path.stem}.{tag}.npz")
        tmp_json = path.with_name(f".{path.stem}.{tag}.json")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            np.savez(tmp_npz, **arrays)
            tmp_json.write_text(json.dumps({"ids": list(ids), "sha": arrays_sha256(arrays)}))
            os.replace(tmp_npz, path)  # the npz first: a reader pairing a new json with an old npz sees a miss
            os.replace(tmp_json, path.with_suffix(".json"))
        except OSError:
            pass
        finally:
            tmp_npz.unlink(missing_ok=True)
            tmp_json.unlink(missing_ok=True)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] float images -> uint8 0..255 with rounding: the values a lossless 8-bit PNG of them holds (NaN -> 0)."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"expected N×3×H×W images in [0, 1], got {shape}")
    if images.dtype == torch.uint8:
        return images
    x = torch.nan_to_num(images.detach().float(), nan=0.0)  # a NaN pixel counts as black: defined, never a crash
    return x.clamp(0, 1).mul(255).round().to(torch.uint8)
