"""SiftSet: SIFT keypoints and descriptors of N images in one CSR layout (memory-mappable arrays)."""

from __future__ import annotations

import math
from typing import Any, ClassVar, Mapping, Sequence

import cv2
import numpy as np

from bench.errors import BenchError
from bench.features.base import FeatureSet, register_feature_kind

KEYPOINT_FIELDS: tuple[str, ...] = ("x", "y", "size", "angle", "response", "octave")
DESCRIPTOR_DIM = 128


def gather_rows(offsets: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row numbers of the records `indices` (concatenated, in order) and their new CSR offsets, without a loop."""
    starts = offsets[indices]
    counts = offsets[indices + 1] - starts
    new_offsets = np.zeros(len(indices) + 1, dtype=np.int64)
    np.cumsum(counts, out=new_offsets[1:])
    total = int(new_offsets[-1])
    rows = np.arange(total, dtype=np.int64) + np.repeat(starts - new_offsets[:-1], counts)
    return rows, new_offsets


@register_feature_kind
class SiftSet(FeatureSet):
    """SIFT keypoints (x, y, size, angle, response, octave) and uint8 descriptors per image, CSR layout."""

    kind: ClassVar[str] = "sift"
    default_flags: ClassVar[Mapping[str, bool]] = {"has_coordinates": True, "has_descriptors": True}

    def __init__(
        self,
        keypoints: np.ndarray,
        descriptors: np.ndarray,
        offsets: np.ndarray,
        flags: Mapping[str, bool] | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(flags, meta)
        # np.asarray keeps memory maps as views when the dtype already matches (no copy).
        self.keypoints = np.asarray(keypoints, dtype=np.float32)
        self.descriptors = np.asarray(descriptors)
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self._validate()

    def _validate(self) -> None:
        kp, desc, off = self.keypoints, self.descriptors, self.offsets
        if kp.ndim != 2 or kp.shape[1] != len(KEYPOINT_FIELDS):
            fields = ", ".join(KEYPOINT_FIELDS)
            raise BenchError(f"SIFT keypoints must be M×{len(KEYPOINT_FIELDS)} ({fields}), got shape {kp.shape}")
        if desc.dtype != np.uint8:
            raise BenchError(f"SIFT descriptors must be uint8, got {desc.dtype}")
        if desc.ndim != 2 or desc.shape[0] != kp.shape[0]:
            raise BenchError(f"SIFT descriptors must have one row per keypoint ({kp.shape[0]}), got shape {desc.shape}")
        if self.flags.get("has_descriptors", True) and desc.shape[1] != DESCRIPTOR_DIM:
            raise BenchError(f"SIFT descriptors must be M×{DESCRIPTOR_DIM}, got shape {desc.shape}")
        if off.ndim != 1 or off.shape[0] < 1:
            raise BenchError(f"SIFT offsets must be a 1-D array of N+1 entries, got shape {off.shape}")
        if off[0] != 0 or off[-1] != kp.shape[0]:
            raise BenchError(f"SIFT offsets must start at 0 and end at {kp.shape[0]}, got {off[0]} .. {off[-1]}")
        if off.shape[0] > 1 and bool(np.any(off[1:] < off[:-1])):
            raise BenchError("SIFT offsets must be non-decreasing")

    # ------------------------------------------------------------------------------------------ FeatureSet API
    def __len__(self) -> int:
        return int(self.offsets.shape[0] - 1)

    def _check_indices(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(self)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise BenchError(f"SIFT record index out of range for a set of {n} images: {idx.min()} .. {idx.max()}")
        return np.where(idx < 0, idx + n, idx)

    def subset(self, indices: Sequence[int]) -> "SiftSet":
        """A new set holding the records at `indices`, in that order (flags and meta kept)."""
        idx = self._check_indices(indices)
        rows, new_offsets = gather_rows(self.offsets, idx)
        return SiftSet(self.keypoints[rows], self.descriptors[rows], new_offsets, self.flags, self.meta)

    def _save_arrays(self) -> dict[str, np.ndarray]:
        return {"keypoints": self.keypoints, "descriptors": self.descriptors, "offsets": self.offsets}

    @classmethod
    def _from_arrays(cls, arrays: dict[str, np.ndarray], flags: dict[str, bool], meta: dict[str, Any]) -> "SiftSet":
        missing = {"keypoints", "descriptors", "offsets"} - set(arrays)
        if missing:
            raise BenchError(f"SIFT feature folder lacks {', '.join(sorted(m + '.npy' for m in missing))}")
        return cls(arrays["keypoints"], arrays["descriptors"], arrays["offsets"], flags, meta)

    # ------------------------------------------------------------------------------------------ per-image access
    def keypoints_of(self, i: int) -> np.ndarray:
        """The K×6 keypoint rows of image `i` (a view)."""
        i = int(self._check_indices([i])[0])
        return self.keypoints[self.offsets[i] : self.offsets[i + 1]]

    def descriptors_of(self, i: int) -> np.ndarray:
        """The K×128 uint8 descriptors of image `i` (a view)."""
        i = int(self._check_indices([i])[0])
        return self.descriptors[self.offsets[i] : self.offsets[i + 1]]

    def empty_records(self) -> int:
        """Images without any keypoint."""
        return int((self.counts() == 0).sum())

    def counts(self) -> np.ndarray:
        """Keypoints per image (N,), int64."""
        return np.diff(self.offsets)

    @property
    def image_size(self) -> int:
        """The square size (pixels) the features were extracted at; a BenchError when meta lacks it."""
        if "image_size" not in self.meta:
            raise BenchError("SIFT features lack meta['image_size'] (the size they were extracted at)")
        return int(self.meta["image_size"])

    def picture(self, index: int, size: int) -> np.ndarray:
        """Record `index` as released: its keypoints (circles of their scale, a tick at their orientation) on white
        when coordinates are released; else its descriptors as a heat map (one row per keypoint, 128 bins)."""
        from bench.features import pictures

        kp = self.keypoints_of(index)
        has_xy, has_desc = self.flags.get("has_coordinates", True), self.flags.get("has_descriptors", True)
        if has_xy:
            lines = [f"{len(kp)} keypoints" + ("" if has_desc else ", no desc.")]
            lines = pictures.fit(size, lines)
            body = size - pictures.caption_height(size, lines)
            canvas = np.full((body, size, 3), 255, dtype=np.uint8)
            ox = (size - body) / 2  # the square image area, centred above the caption
            side = float(self.meta.get("image_size", 0) or 0) or max(1.0, float(np.nanmax(kp[:, :2], initial=0)) + 1)
            scale = body / side
            shift = 4  # sub-pixel centres: coordinates carry 4 fractional bits
            for x, y, kp_size, angle in kp[:, :4].astype(np.float64):  # drawing only, never on a hot path
                if not (np.isfinite(x) and np.isfinite(y)):
                    continue
                cx, cy = (x + 0.5) * scale - 0.5 + ox, (y + 0.5) * scale - 0.5
                r = float(np.clip((kp_size if np.isfinite(kp_size) else 0) / 2 * scale, 1.0, body / 4))
                centre = (int(round(cx * (1 << shift))), int(round(cy * (1 << shift))))
                cv2.circle(canvas, centre, int(round(r * (1 << shift))), (0, 90, 180), 1, cv2.LINE_AA, shift)
                if np.isfinite(angle) and angle >= 0:  # OpenCV: degrees, x to the right, y downwards
                    a = math.radians(float(angle))
                    tip = (int(round((cx + r * math.cos(a)) * (1 << shift))),
                           int(round((cy + r * math.sin(a)) * (1 << shift))))
                    cv2.line(canvas, centre, tip, (200, 40, 40), 1, cv2.LINE_AA, shift)
            cv2.rectangle(canvas, (int(ox), 0), (int(ox) + body - 1, body - 1), (190, 190, 190), 1)  # image frame
            return pictures.with_caption(canvas, size, lines)
        if has_desc and len(kp):
            lines = [f"{len(kp)} descriptors", "no coordinates"]
            lines = pictures.fit(size, lines)
            body = size - pictures.caption_height(size, lines)
            return pictures.with_caption(pictures.matrix(self.descriptors_of(index), body, size), size, lines)
        return pictures.message(size, ["nothing drawable", "released" if len(kp) == 0 else "(no coordinates,",
                                       "" if len(kp) == 0 else "no descriptors)"])


def random_siftset(
    n: int,
    image_size: int,
    rng: np.random.Generator | int,
    *,
    counts: tuple[int, int] = (10, 40),
    scales: tuple[float, float] = (1.5, 6.0),
    empty: Sequence[int] = (),
) -> "SiftSet":
    """n records of random keypoints and descriptors "extracted" at `image_size`, for tests and benchmarks that
    need SIFT-shaped input without running SIFT.

    Draws from `rng` (a Generator, or a seed for one) in a fixed order that callers' numbers depend on: per-record
    counts (integers in [counts[0], counts[1])), then x/y (uniform in [0, image_size)), sizes (uniform in `scales`),
    angles (uniform in [0, 360)) and uint8 descriptors. Records at `empty` get no keypoint (set after the counts are
    drawn, so the other records' draws are unchanged). Response and octave are 0."""
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    per_record = rng.integers(counts[0], counts[1], size=n)
    for i in empty:
        per_record[i] = 0
    m = int(per_record.sum())
    kp = np.zeros((m, len(KEYPOINT_FIELDS)), np.float32)
    kp[:, :2] = rng.uniform(0, image_size, size=(m, 2))
    kp[:, 2] = rng.uniform(scales[0], scales[1], size=m)
    kp[:, 3] = rng.uniform(0, 360, size=m)
    desc = rng.integers(0, 256, size=(m, DESCRIPTOR_DIM), dtype=np.uint8)
    offsets = np.concatenate([[0], np.cumsum(per_record)]).astype(np.int64)
    return SiftSet(kp, desc, offsets, meta={"image_size": image_size})
