"""Embedding feature kinds: `embeddings` (N×D float32 vectors) and `bit-patterns` (N×D uint32 bit patterns).

`embeddings` holds one float32 vector per image (e.g. a 128-d dlib face descriptor). `bit-patterns` holds what
ShuffleBits releases: each float32's 32 bits after a secret permutation, kept as uint32. Shuffled bits are often
NaN or Inf when read as floats and carry no numeric meaning, so they are their own kind: an attack that requires
`embeddings` can never be handed them, and the container refuses float arrays (and `embeddings` refuses integer
arrays), so neither is read as the other by accident.

Per-record meta: a list in `meta` under a name in `PER_RECORD_META` (e.g. `detector_missed`, one bool per image)
is sliced with the records by `subset`, so it stays aligned; every other meta entry is kept as is.
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from bench.errors import BenchError
from bench.features.base import FeatureSet, register_feature_kind

# Meta entries that hold one value per record (a list of length N); `subset` keeps them aligned with the records.
PER_RECORD_META: tuple[str, ...] = ("detector_missed",)


def _indices(indices: Sequence[int] | np.ndarray, n: int, what: str) -> np.ndarray:
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise BenchError(f"{what} record index out of range for a set of {n} records: {idx.min()} .. {idx.max()}")
    return np.where(idx < 0, idx + n, idx)


def _subset_meta(meta: Mapping[str, Any], idx: np.ndarray, n: int) -> dict[str, Any]:
    """Meta for the records `idx`: per-record lists sliced (and the detector-miss count recomputed)."""
    out = dict(meta)
    for key in PER_RECORD_META:
        values = out.get(key)
        if isinstance(values, list) and len(values) == n:
            out[key] = [values[i] for i in idx.tolist()]
    if isinstance(out.get("detector_missed"), list):
        out["detector_missed_count"] = int(sum(bool(v) for v in out["detector_missed"]))
    return out


class _MatrixSet(FeatureSet):
    """Shared code of the two N×D kinds: one 2-D array `data` of a fixed dtype, saved as data.npy."""

    dtype: ClassVar[np.dtype]
    _array_name: ClassVar[str] = "data"

    def __init__(self, data: np.ndarray, flags: Mapping[str, bool] | None = None,
                 meta: Mapping[str, Any] | None = None) -> None:
        super().__init__(flags, meta)
        self._data = self._checked(data)

    @classmethod
    def _checked(cls, data: Any) -> np.ndarray:
        raise NotImplementedError

    def __len__(self) -> int:
        return int(self._data.shape[0])

    @property
    def dim(self) -> int:
        """D, the values per record."""
        return int(self._data.shape[1])

    def subset(self, indices: Sequence[int]) -> "_MatrixSet":
        idx = _indices(indices, len(self), self.kind)
        return type(self)(self._data[idx], self.flags, _subset_meta(self.meta, idx, len(self)))

    def _save_arrays(self) -> dict[str, np.ndarray]:
        return {self._array_name: self._data}

    @classmethod
    def _from_arrays(cls, arrays: dict[str, np.ndarray], flags: dict[str, bool], meta: dict[str, Any]) -> "_MatrixSet":
        if cls._array_name not in arrays:
            raise BenchError(f"{cls.kind} feature folder lacks {cls._array_name}.npy")
        return cls(arrays[cls._array_name], flags, meta)


@register_feature_kind
class EmbeddingSet(_MatrixSet):
    """N×D float32 embedding vectors (e.g. 128-d face descriptors), one per image."""

    kind: ClassVar[str] = "embeddings"
    default_flags: ClassVar[Mapping[str, bool]] = {"float": True}
    dtype = np.dtype(np.float32)
    _array_name = "vectors"

    @classmethod
    def _checked(cls, data: Any) -> np.ndarray:
        arr = np.asarray(data)
        if arr.dtype.kind != "f":
            raise BenchError(f"embeddings must be floating-point vectors, got dtype {arr.dtype} "
                             "(bit patterns are the separate kind 'bit-patterns')")
        if arr.ndim != 2:
            raise BenchError(f"embeddings must be an N×D array, got shape {arr.shape}")
        return np.asarray(arr, dtype=np.float32)  # a float32 memory map stays a view

    @property
    def vectors(self) -> np.ndarray:
        """The N×D float32 vectors (do not modify in place: defenses return new sets)."""
        return self._data

    def picture(self, index: int, size: int) -> np.ndarray:
        """The released vector as a heat map: its D values row by row on a near-square grid, blue (negative) to red
        (positive) scaled by the largest |value|, black where not finite."""
        from bench.features import pictures

        lines = [f"{self.dim}-d vector", "blue - 0 - red"]
        misses = self.detector_misses()
        if misses is not None and bool(misses[index]):
            lines.append("detector missed")
        lines = pictures.fit(size, lines)
        body = size - pictures.caption_height(size, lines)
        return pictures.with_caption(pictures.cells(pictures.diverging(self._data[index]), body, size), size, lines)

    def detector_misses(self) -> np.ndarray | None:
        """The per-record detector-miss mask (N bools) when the extractor recorded one, else None."""
        values = self.meta.get("detector_missed")
        if not isinstance(values, list) or len(values) != len(self):
            return None
        return np.asarray(values, dtype=bool)


@register_feature_kind
class BitPatternSet(_MatrixSet):
    """N×D uint32 bit patterns (float32 bits after ShuffleBits): not numbers, never readable as floats."""

    kind: ClassVar[str] = "bit-patterns"
    default_flags: ClassVar[Mapping[str, bool]] = {"bits": True}
    dtype = np.dtype(np.uint32)
    _array_name = "bits"

    @classmethod
    def _checked(cls, data: Any) -> np.ndarray:
        arr = np.asarray(data)
        if arr.dtype != np.uint32:
            raise BenchError(f"bit patterns must be uint32, got dtype {arr.dtype} "
                             "(a float array is never taken as bit patterns; view it as uint32 explicitly)")
        if arr.ndim != 2:
            raise BenchError(f"bit patterns must be an N×D array, got shape {arr.shape}")
        return arr

    @property
    def bits(self) -> np.ndarray:
        """The N×D uint32 bit patterns."""
        return self._data

    def picture(self, index: int, size: int) -> np.ndarray:
        """The released bits as a near-square grid, most significant bit of each pattern first, row by row: black
        a set bit, white a clear one."""
        from bench.features import pictures

        row = np.asarray(self._data[index], dtype=">u4").view(np.uint8)  # big-endian bytes: MSB first
        bits = np.unpackbits(row)
        colours = np.where(bits[:, None] == 1, 0, 255).astype(np.uint8).repeat(3, axis=1)
        lines = [f"{bits.size} bits ({self.dim}x32)", "black = 1"]
        lines = pictures.fit(size, lines)
        body = size - pictures.caption_height(size, lines)
        return pictures.with_caption(pictures.cells(colours, body, size), size, lines)
