"""Per-record training inputs built once instead of every step: what the shared trainer's speed-ups keep.

A learned attack builds the same input for a training record every time a batch draws it: a SIFT map (thousands of
cells, almost all zero, from a few dozen keypoints), or a fixed target's features. Both depend only on the record,
never on the batch around it, so they can be kept:

- `SparseRecordCache`: B×C×H×W maps kept as their non-zero cells (cell index, C values), rebuilt per batch by one
  scatter into a zeroed tensor of the layout the builder returns (contiguous or channels-last): the same values,
  bit for bit, at a fraction of the memory of the dense maps (CFGAN's cpu profile: ~50 KB instead of 2 MB a record);
- `DenseRecordCache`: per-record tensors kept whole, within a memory budget (past it, records are built per batch).

Both build lazily, the records of a batch that are not kept yet in one call of the builder, so a short run pays
only for the records it draws.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

Builder = Callable[[np.ndarray], torch.Tensor]


def _indices(indices: np.ndarray | list[int]) -> np.ndarray:
    return np.asarray(indices, dtype=np.int64).reshape(-1)


class SparseRecordCache:
    """`build(indices) -> B×C×H×W` CPU float maps, kept per record as their non-zero cells."""

    def __init__(self, build: Builder, n: int) -> None:
        self.build, self.n = build, int(n)
        self.cells: list[np.ndarray | None] = [None] * self.n  # per record: flat cell indices (H·W grid)
        self.values: list[np.ndarray | None] = [None] * self.n  # per record: K×C values of those cells
        self.shape: tuple[int, int, int] | None = None  # (C, H, W)
        self.channels_last = False
        self.dtype: torch.dtype | None = None

    def _keep(self, indices: np.ndarray) -> None:
        maps = self.build(indices)
        if maps.dim() != 4 or maps.shape[0] != len(indices) or maps.device.type != "cpu":
            raise ValueError(f"record cache: the builder returned {tuple(maps.shape)} on {maps.device} for "
                             f"{len(indices)} records (expected B×C×H×W on the CPU)")
        c, h, w = (int(x) for x in maps.shape[1:])
        if self.shape is None:
            self.shape, self.dtype = (c, h, w), maps.dtype
            # channels-last memory (B×H×W×C permuted), else contiguous B×C×H×W: the output copies the builder's
            # strides exactly (with one channel both are "contiguous", yet convolutions pick their kernels by strides)
            self.channels_last = h * w > 1 and maps.stride(1) == 1
            if maps.stride() != self._strides(len(indices)):
                raise ValueError(f"record cache: maps with strides {maps.stride()}, neither contiguous nor "
                                 "channels-last")
        elif (c, h, w) != self.shape or maps.dtype != self.dtype:
            raise ValueError(f"record cache: maps of shape {(c, h, w)} {maps.dtype} after {self.shape} {self.dtype}")
        rows = maps.detach().permute(0, 2, 3, 1).reshape(len(indices), h * w, c).numpy()  # (record, cell, channel)
        bits = rows.view(f"u{rows.dtype.itemsize}")  # a cell is empty when every value is +0.0 (-0.0 is kept)
        for j, i in enumerate(indices):
            occupied = np.flatnonzero(np.any(bits[j] != 0, axis=1))
            self.cells[i] = occupied.astype(np.int64)
            self.values[i] = rows[j, occupied].copy()

    def __call__(self, indices: np.ndarray | list[int]) -> torch.Tensor:
        """The maps of `indices` (B×C×H×W, the builder's layout and values)."""
        idx = _indices(indices)
        missing = np.array([i for i in dict.fromkeys(idx.tolist()) if self.cells[i] is None], dtype=np.int64)
        if missing.size:
            self._keep(missing)
        assert self.shape is not None and self.dtype is not None
        c, h, w = self.shape
        b = len(idx)
        counts = [len(self.cells[i]) for i in idx]  # type: ignore[arg-type]
        dtype = torch.empty((), dtype=self.dtype).numpy().dtype
        arr = np.zeros((b, h * w, c) if self.channels_last else (b, c, h * w), dtype=dtype)
        if sum(counts):
            slot = np.repeat(np.arange(b), counts)
            cells = np.concatenate([self.cells[i] for i in idx])  # type: ignore[misc]
            values = np.concatenate([self.values[i] for i in idx])  # type: ignore[misc]
            if self.channels_last:
                arr[slot, cells] = values
            else:
                arr[slot, :, cells] = values  # advanced indices around a slice: K×C, as `values`
        if self.channels_last:
            out = torch.from_numpy(arr).view(b, h, w, c).permute(0, 3, 1, 2)
        else:
            out = torch.from_numpy(arr).view(b, c, h, w)
        assert out.stride() == self._strides(b)
        return out

    def _strides(self, b: int) -> tuple[int, ...]:
        assert self.shape is not None
        c, h, w = self.shape
        return (h * w * c, 1, w * c, c) if self.channels_last else (c * h * w, h * w, w, 1)

    def kept(self) -> int:
        """How many records are kept."""
        return sum(c is not None for c in self.cells)

    def nbytes(self) -> int:
        """Memory held by the kept records."""
        return sum(c.nbytes + v.nbytes for c, v in zip(self.cells, self.values) if c is not None and v is not None)


class DenseRecordCache:
    """`build(indices) -> B×...` per-record tensors kept whole while they fit in `max_bytes` (then built per call)."""

    def __init__(self, build: Builder, n: int, max_bytes: int = 512 << 20) -> None:
        self.build, self.n, self.max_bytes = build, int(n), int(max_bytes)
        self.rows: list[torch.Tensor | None] = [None] * self.n
        self.held = 0
        self.full = False  # the budget is spent: records not kept are built per call

    def __call__(self, indices: np.ndarray | list[int]) -> torch.Tensor:
        """The tensors of `indices`, stacked (B×...), the same values as `build(indices)`."""
        idx = _indices(indices)
        missing = np.array([i for i in dict.fromkeys(idx.tolist()) if self.rows[i] is None], dtype=np.int64)
        if missing.size and self.full:
            return self.build(idx) if len(missing) == len(idx) else self._mixed(idx)
        if missing.size:
            built = self.build(missing)
            for j, i in enumerate(missing.tolist()):
                row = built[j].clone()
                if self.held + row.nbytes > self.max_bytes:
                    self.full = True
                    break
                self.rows[i] = row
                self.held += row.nbytes
            if self.full:
                return self._mixed(idx, built, missing)
        return torch.stack([self.rows[i] for i in idx])  # type: ignore[misc]

    def _mixed(self, idx: np.ndarray, built: torch.Tensor | None = None, which: np.ndarray | None = None
               ) -> torch.Tensor:
        """Kept records from the cache, the others built now."""
        if built is None:
            which = np.array([i for i in dict.fromkeys(idx.tolist()) if self.rows[i] is None], dtype=np.int64)
            built = self.build(which)
        pos = {int(i): j for j, i in enumerate(which)}  # type: ignore[arg-type]
        return torch.stack([self.rows[i] if self.rows[i] is not None else built[pos[int(i)]] for i in idx])
