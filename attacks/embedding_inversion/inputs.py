"""How vector attacks read released embedding features: float vectors as numbers, bit patterns as bits.

`embeddings` (N×D float32) are read as their values. `bit-patterns` (N×D uint32, what ShuffleBits releases) are
never read as floats: each value becomes its 32 bits (bit i = (u >> i) & 1, numbered by value, not by memory
order), so a record is a 32·D vector of 0/1 inputs. Both are then standardised per input with the auxiliary
split's mean and spread (`Standardiser`, saved with the attack), so that either kind reaches a network or a
classifier on the same scale. Non-finite values cannot occur in `embeddings` released by the built-in defenses;
should one appear it is refused with a clear error rather than silently replaced.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from bench.errors import BenchError
from bench.features import FeatureSet, Requirement
from bench.features.embeddings import BitPatternSet, EmbeddingSet

BITS = 32
# What the vector attacks that read bit patterns as bits consume: either embedding kind.
VECTOR_KINDS = Requirement(("embeddings", "bit-patterns"))


def bits_of(patterns: np.ndarray) -> np.ndarray:
    """N×D uint32 -> N×(32·D) float32 of 0/1: value j·32 + i is bit i of pattern j (bit 0 the lowest)."""
    u = np.asarray(patterns)
    if u.dtype != np.uint32 or u.ndim != 2:
        raise BenchError(f"bit patterns must be an N×D uint32 array, got {u.dtype} with shape {u.shape}")
    shifts = np.arange(BITS, dtype=np.uint32)
    return ((u[:, :, None] >> shifts) & np.uint32(1)).astype(np.float32).reshape(len(u), -1)


def raw_inputs(features: FeatureSet, who: str) -> np.ndarray:
    """N×F float32 attack inputs: embedding values, or bit patterns as 32 bits each."""
    if isinstance(features, EmbeddingSet):
        x = np.array(features.vectors, dtype=np.float32)
        if not np.isfinite(x).all():
            raise BenchError(f"{who}: released embeddings hold NaN or Inf values")
        return x
    if isinstance(features, BitPatternSet):
        return bits_of(features.bits)
    raise BenchError(f"{who}: needs 'embeddings' or 'bit-patterns' features, got {features.kind!r}")


def input_width(kind: str, dim: int) -> int:
    """The attack input width F for features of `kind` with D = `dim` values per record."""
    return dim * BITS if kind == BitPatternSet.kind else dim


class Standardiser:
    """Per-input mean and spread of the auxiliary split; inputs that never vary pass through centred (scale 1)."""

    def __init__(self, mean: np.ndarray | None = None, scale: np.ndarray | None = None, kind: str = "") -> None:
        self.mean, self.scale, self.kind = mean, scale, kind

    @classmethod
    def fit(cls, x: np.ndarray, kind: str) -> "Standardiser":
        x64 = np.asarray(x, dtype=np.float64)
        scale = x64.std(axis=0)
        scale[scale < 1e-8] = 1.0
        return cls(x64.mean(axis=0).astype(np.float32), scale.astype(np.float32), kind)

    @property
    def width(self) -> int:
        return 0 if self.mean is None else int(self.mean.shape[0])

    def __call__(self, features: FeatureSet, who: str) -> torch.Tensor:
        """Standardised N×F float32 tensor of `features` (the kind and width fitted on)."""
        if self.mean is None or self.scale is None:
            raise RuntimeError(f"{who}: inputs requested before fit() or load_state_dict()")
        if features.kind != self.kind:
            raise BenchError(f"{who}: trained on {self.kind!r} features, got {features.kind!r}")
        x = raw_inputs(features, who)
        if x.shape[1] != self.width:
            raise BenchError(f"{who}: trained on {self.width} inputs per record, got {x.shape[1]}")
        return torch.from_numpy((x - self.mean) / self.scale)

    def state_dict(self) -> dict[str, Any]:
        return {"mean": torch.from_numpy(np.asarray(self.mean)), "scale": torch.from_numpy(np.asarray(self.scale)),
                "kind": self.kind}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "Standardiser":
        return cls(np.asarray(state["mean"], dtype=np.float32), np.asarray(state["scale"], dtype=np.float32),
                   str(state["kind"]))
