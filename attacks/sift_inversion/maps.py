"""Dense SIFT maps for map-based attacks: descriptors written at their keypoint's cell, optionally 2×-compressed.

A dense map is a C×G×G grid of zeros; each keypoint (x, y), scaled from the extraction size to G, lands on cell
(row ceil(y)-1, column ceil(x)-1), clipped into the grid, and the first keypoint (in keypoint order) on a cell keeps
it; its descriptor is written there scaled to [-1, 1] by d/127.5 - 1.  CFGAN compression turns a 2S×2S dense map
into S×S: every 2×2 block keeps one of its occupied cells, chosen by a seeded priority that depends only on
(seed, image index, keypoint ordinal), so an image's map never depends on the rest of the batch.  `compat=True`
instead maps dense index p to min(ceil(p/2), S-1), first writer (in keypoint order) wins, as the authors' code does.

Everything works on integer cell indices (no Python loop over keypoints or pixels, and the 2S×2S×128 map is never
built when only the compressed one is needed): winners are decided first, then only their descriptors are scattered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from bench.errors import BenchError
from bench.features.sift import DESCRIPTOR_DIM, SiftSet, gather_rows

_MASK64 = (1 << 64) - 1


def splitmix64(z: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser on a uint64 array (wrapping arithmetic): a cheap, well-mixed integer hash."""
    z = np.asarray(z, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def keypoint_priority(seed: int, xy: np.ndarray, ordinal: np.ndarray) -> np.ndarray:
    """uint64 priority of a keypoint under `seed`; the lowest wins a 2×2 block.

    It depends only on the seed, the keypoint's own (x, y) float32 bit patterns and its ordinal within its image,
    never on where the image sits in a set or batch, so an image's map is the same in any subset or batch.
    """
    s = splitmix64(np.array([int(seed) & _MASK64], dtype=np.uint64))
    bits = np.ascontiguousarray(np.asarray(xy, dtype=np.float32).reshape(-1, 2)).view(np.uint32).astype(np.uint64)
    xy_key = (bits[:, 0] << np.uint64(32)) | bits[:, 1]
    kp = np.asarray(ordinal, dtype=np.int64).astype(np.uint64)
    return splitmix64(splitmix64(s ^ xy_key) ^ kp)


def cell_index(coord: np.ndarray, grid_size: int, image_size: int) -> np.ndarray:
    """Grid index ceil(coord * grid / image_size) - 1 of pixel coordinates, clipped into [0, grid - 1]."""
    scaled = np.asarray(coord, dtype=np.float64) * grid_size / image_size
    return np.clip(np.ceil(scaled).astype(np.int64) - 1, 0, grid_size - 1)


@dataclass
class KeptKeypoints:
    """The keypoints that own an output cell: batch slot, output row/column, row in the SiftSet arrays."""

    batch: np.ndarray
    row: np.ndarray
    col: np.ndarray
    source: np.ndarray


def _first_per_key(key: np.ndarray) -> np.ndarray:
    """Positions of the first occurrence of every distinct value of `key` (first writer wins)."""
    _, first = np.unique(key, return_index=True)  # documented: indices of the first occurrences
    return first


def select_keypoints(
    sift: SiftSet,
    indices: Sequence[int],
    map_size: int,
    *,
    compress: bool = True,
    seed: int = 0,
    compat: bool = False,
) -> KeptKeypoints:
    """Decide which keypoint owns each cell of the map_size×map_size output of every image in `indices`."""
    if not sift.flags.get("has_coordinates", True):
        raise BenchError("SIFT maps need keypoint coordinates, but these features were released without them")
    map_size = int(map_size)
    if map_size < 1:
        raise BenchError(f"SIFT map size must be a positive integer, got {map_size}")
    image_size = sift.image_size
    idx = sift._check_indices(indices)
    rows, offsets = gather_rows(sift.offsets, idx)
    counts = np.diff(offsets)
    batch = np.repeat(np.arange(len(idx), dtype=np.int64), counts)
    ordinal = np.arange(rows.size, dtype=np.int64) - np.repeat(offsets[:-1], counts)
    xy = sift.keypoints[rows, :2]
    if not np.all(np.isfinite(xy)):
        raise BenchError("SIFT maps need finite keypoint coordinates; these features hold NaN or inf coordinates")
    grid = 2 * map_size if compress else map_size
    r = cell_index(xy[:, 1], grid, image_size)
    c = cell_index(xy[:, 0], grid, image_size)
    if not compress:
        win = _first_per_key((batch * grid + r) * grid + c)
        return KeptKeypoints(batch[win], r[win], c[win], rows[win])
    if compat:
        # ceil(p/2) for dense index p, clamped; the first keypoint on a half-size cell is also first on its dense cell.
        rr = np.minimum((r + 1) // 2, map_size - 1)
        cc = np.minimum((c + 1) // 2, map_size - 1)
        win = _first_per_key((batch * map_size + rr) * map_size + cc)
        return KeptKeypoints(batch[win], rr[win], cc[win], rows[win])
    dense_win = _first_per_key((batch * grid + r) * grid + c)
    b, r, c, ordn = batch[dense_win], r[dense_win], c[dense_win], ordinal[dense_win]
    block = (b * map_size + r // 2) * map_size + c // 2
    prio = keypoint_priority(seed, xy[dense_win], ordn)
    order = np.lexsort((ordn, prio, block))  # by block, then lowest priority, then keypoint order
    sorted_block = block[order]
    head = np.ones(order.size, dtype=bool)
    head[1:] = sorted_block[1:] != sorted_block[:-1]
    keep = dense_win[order[head]]
    return KeptKeypoints(batch[keep], r[order[head]] // 2, c[order[head]] // 2, rows[keep])


def sift_maps(
    sift: SiftSet,
    indices: Sequence[int],
    map_size: int,
    *,
    compress: bool = True,
    seed: int = 0,
    compat: bool = False,
    binary: bool = False,
    out: torch.Tensor | None = None,
    device: torch.device | str | None = None,
    channels_last: bool = False,
) -> torch.Tensor:
    """B×C×S×S float32 maps (C=128 descriptors in [-1, 1], or C=1 occupancy when `binary`) of images `indices`.

    `out`, a contiguous float32 tensor of that shape, is zeroed and filled instead of allocating a new one (reusing
    one buffer avoids the page faults of a fresh multi-megabyte allocation per call).  With `device` (or an `out` on
    an accelerator) only the kept descriptors travel there and the scatter runs on that device.
    `channels_last` (CPU, no `out`) returns the same values in torch's channels-last memory layout, which is what
    convolutions want and lets each kept descriptor be written as one contiguous row.
    """
    if not binary and not sift.flags.get("has_descriptors", True):
        raise BenchError("SIFT descriptor maps need descriptors, but these features were released without them")
    kept = select_keypoints(sift, indices, map_size, compress=compress, seed=seed, compat=compat)
    n, s = np.asarray(indices).reshape(-1).size, int(map_size)
    channels = 1 if binary else DESCRIPTOR_DIM
    shape = (n, channels, s, s)
    if out is not None:
        if tuple(out.shape) != shape or out.dtype != torch.float32 or not out.is_contiguous():
            raise BenchError(f"sift_maps out= must be a contiguous float32 tensor of shape {shape}")
        if device is not None and out.device != torch.device(device):
            raise BenchError(f"sift_maps out= is on {out.device}, but device={device} was asked for")
        out.zero_()
    elif device is not None:
        out = torch.zeros(shape, dtype=torch.float32, device=device)
    elif channels_last:
        out = torch.from_numpy(np.zeros((n, s, s, channels), dtype=np.float32)).permute(0, 3, 1, 2)
    else:
        out = torch.from_numpy(np.zeros(shape, dtype=np.float32))  # calloc: pages are zeroed once, by the kernel
    pix = kept.row * s + kept.col
    values = None
    if not binary and kept.source.size:
        values = sift.descriptors[kept.source]  # K×128 uint8: only the winners are read
    if device is None and out.device.type == "cpu":
        # One (n, pixel, channel) view serves both memory layouts; each kept keypoint fills one row of it.
        target = out.numpy().transpose(0, 2, 3, 1).reshape(n, s * s, channels)
        if target.size and not np.shares_memory(target, out.numpy()):
            raise AssertionError("sift_maps: the scatter view must alias the output")
        if binary:
            target[kept.batch, pix, 0] = 1.0
        elif values is not None:
            target[kept.batch, pix] = (values.astype(np.float64) / 127.5 - 1.0).astype(np.float32)
        return out
    rows = torch.from_numpy(kept.batch).to(out.device)
    cells = torch.from_numpy(pix).to(out.device)
    flat_t = out.view(n, channels, s * s)
    if binary:
        flat_t[rows, 0, cells] = 1.0
    elif values is not None:
        scaled_t = (torch.from_numpy(values).to(out.device, torch.float64) / 127.5 - 1.0).float()
        flat_t.permute(0, 2, 1)[rows, cells] = scaled_t
    return out


def dense_map(sift: SiftSet, index: int, grid_size: int) -> np.ndarray:
    """The 128×G×G float32 first-wins dense descriptor map of image `index` (no compression)."""
    return sift_maps(sift, [index], grid_size, compress=False)[0].numpy()
