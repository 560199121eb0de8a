"""The utility figure of SIFT defenses: what a matching / retrieval service still gets from released features.

A service that receives SIFT features typically matches them against features of another view of the same scene
(localisation) or against a database of images (retrieval). `matching_utility` measures both on the private
images with a known geometric transform, so that every SIFT defense is scored the same way:

1. Up to `MAX_IMAGES` private images are sampled (all of them when there are fewer; otherwise a sorted random
   sample drawn from `ctx.rng("utility-sample")`).
2. Each image is rotated by `ANGLE_DEG` degrees about its centre and scaled by `SCALE` (OpenCV `warpAffine` on the
   8-bit RGB image, bilinear, replicated border, same size); the victim extractor (`ctx.extractor`) extracts the
   copy's SIFT features. The copy is the "query view" and is never protected.
3. The ORIGINAL images' unprotected features (`ctx.features`) are protected with the defense, keys drawn from
   `ctx.rng("utility")`.
4. Matching is brute force on the float32 descriptors with L2 distance and Lowe's ratio test: a query row matches
   its nearest candidate when d1 < `RATIO` · d2 (d1, d2: the two smallest distances to the candidate image's rows;
   an image with fewer than two candidate rows gives no match). Rows that carry no descriptor (the released flag
   `has_descriptors` is false, or the row is all zeros) never match and are never candidates.

Figures (both in [0, 1], higher is better):

- ``match-rate``: released rows of image i are matched against the rows of its copy. A match is correct when the
  matched copy keypoint lies within `TOLERANCE_PX` pixels of the transformed position of the released row's source
  keypoint. That position is the released (x, y) when the defense releases coordinates (so coordinate noise would
  cost utility); when it does not (e.g. drop-coordinates) a service cannot localise at all, and the position used
  is the true one of the original keypoint the released row came from (found, within the image, as the original
  row with identical size, angle, response and octave and the nearest descriptor; a row without such a source is
  unverifiable and counts as incorrect). So without coordinates the figure counts correct descriptor
  correspondences, an upper bound of what the service could do with them. The rate is pooled: correct matches
  over all sampled ORIGINAL keypoints (before protection), so releasing fewer keypoints lowers it.
- ``retrieval@1``: each copy is a query against the released features of every sampled private image; the number
  of its rows that pass the ratio test against an image scores that image. A query counts when its own original
  scores strictly more than every other image (ties, including no matches at all, count as failures).

With `drop-descriptors` no row can match, so both figures are 0: the honest utility for descriptor matching.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from bench.errors import BenchError
from bench.features.sift import SiftSet, gather_rows
from bench.images import resize, to_uint8
from bench.plugins import Defense, ImageSet, UtilityContext

MAX_IMAGES = 50  # private images sampled for the figure
ANGLE_DEG = 15.0  # rotation of the query view (counter-clockwise, about the image centre)
SCALE = 0.8  # scale of the query view
RATIO = 0.8  # Lowe's ratio test threshold
TOLERANCE_PX = 3.0  # a match is correct within this distance of the true transformed position
_CHUNK_ROWS = 1024  # query rows per distance block (bounds memory: rows × candidate rows float32)


# ------------------------------------------------------------------------------------------------- geometry
def view_transform(size: int) -> np.ndarray:
    """The 2×3 affine map (OpenCV convention: pixel centres at integers) from an image to its query view."""
    centre = ((size - 1) / 2.0, (size - 1) / 2.0)
    return cv2.getRotationMatrix2D(centre, ANGLE_DEG, SCALE)


def query_views(images: torch.Tensor, matrix: np.ndarray) -> torch.Tensor:
    """Each N×3×S×S image warped by `matrix` (8-bit RGB, bilinear, replicated border), as float32 in [0, 1]."""
    size = images.shape[-1]
    rgb = to_uint8(images)  # N×S×S×3 uint8
    warped = np.stack([cv2.warpAffine(img, matrix, (size, size), flags=cv2.INTER_LINEAR,
                                      borderMode=cv2.BORDER_REPLICATE) for img in rgb]) if len(rgb) else rgb
    return torch.from_numpy(np.ascontiguousarray(warped)).permute(0, 3, 1, 2).float().div_(255.0)


def apply_transform(matrix: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Points (M×2) mapped by the 2×3 affine `matrix`."""
    return xy @ matrix[:, :2].T + matrix[:, 2]


# ------------------------------------------------------------------------------------------------- matching
def _matchable(feats: SiftSet) -> np.ndarray:
    """Rows that carry a descriptor: none when `has_descriptors` is false, else rows that are not all zero."""
    if not feats.flags.get("has_descriptors", True) or feats.descriptors.shape[1] == 0:
        return np.zeros(len(feats.keypoints), dtype=bool)
    return np.asarray(feats.descriptors).any(axis=1)


def _keep_rows(offsets: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """CSR offsets after keeping only the rows where `keep` is true."""
    out = np.zeros_like(offsets)
    np.cumsum(_segment_sums(keep.astype(np.int64), offsets), out=out[1:])
    return out


def _segment_sums(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Sums of `values` (along axis 0) over each CSR segment, empty segments giving 0."""
    cs = np.concatenate([np.zeros((1,) + values.shape[1:], dtype=values.dtype), np.cumsum(values, axis=0)])
    return cs[offsets[1:]] - cs[offsets[:-1]]


def ratio_test(query: np.ndarray, train: np.ndarray, offsets: np.ndarray,
               want_index: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Lowe's ratio test of every query row against every train segment (CSR `offsets` over the train rows).

    Returns `passed` (Q×S bool: the nearest row of segment s is closer than RATIO times the second nearest) and,
    when `want_index`, the nearest train row of each segment (Q×S int64, global row numbers; -1 for segments with
    fewer than two rows, which never pass). Distances are L2 on float32 descriptors, computed in row blocks.
    """
    q = np.asarray(query, dtype=np.float32)
    t = np.asarray(train, dtype=np.float32)
    offsets = np.asarray(offsets, dtype=np.int64)
    counts = np.diff(offsets)
    n_seg = len(counts)
    passed = np.zeros((len(q), n_seg), dtype=bool)
    index = np.full((len(q), n_seg), -1, dtype=np.int64) if want_index else None
    valid = counts >= 2
    if not len(q) or not valid.any():
        return passed, index
    # Reduce over the valid segments only, on the columns they cover: start indices strictly increasing, and
    # each reduction runs to the next start, so columns of other segments are cut out first.
    cols, sub_offsets = gather_rows(offsets, np.flatnonzero(valid))
    sub_counts, starts = counts[valid], sub_offsets[:-1]
    t = t[cols]
    t_norm = np.einsum("ij,ij->i", t, t)
    q_norm = np.einsum("ij,ij->i", q, q)
    local = np.arange(len(cols), dtype=np.int64)
    for lo in range(0, len(q), _CHUNK_ROWS):
        hi = min(lo + _CHUNK_ROWS, len(q))
        d2 = q_norm[lo:hi, None] + t_norm[None, :] - 2.0 * (q[lo:hi] @ t.T)
        np.maximum(d2, 0.0, out=d2)
        best = np.minimum.reduceat(d2, starts, axis=1)
        is_best = d2 == np.repeat(best, sub_counts, axis=1)
        n_best = np.add.reduceat(is_best, starts, axis=1, dtype=np.int64)
        second = np.minimum.reduceat(np.where(is_best, np.inf, d2), starts, axis=1)
        second = np.where(n_best >= 2, best, second)
        passed[lo:hi, valid] = best < (RATIO * RATIO) * second  # the ratio test on squared distances
        if index is not None:
            first = np.minimum.reduceat(np.where(is_best, local[None, :], len(cols)), starts, axis=1)
            index[lo:hi, valid] = cols[first]
    return passed, index


# ------------------------------------------------------------------------------------------------- provenance
def source_positions(original: SiftSet, released: SiftSet) -> np.ndarray:
    """For each released row, the (x, y) of the keypoint it stands for (R×2 float64; NaN where unverifiable).

    Released coordinates are used where they are finite (what the service would use). Rows without coordinates
    are traced to the original row of the same image with identical size, angle, response and octave (the
    fields drop-coordinates keeps), the nearest descriptor among those breaking ties.
    """
    rel_kp = np.asarray(released.keypoints, dtype=np.float64)
    pos = rel_kp[:, :2].copy()
    missing = ~np.all(np.isfinite(pos), axis=1)
    if not missing.any():
        return pos
    pos[missing] = np.nan
    image_of_row = np.repeat(np.arange(len(released)), released.counts())
    for i in np.unique(image_of_row[missing]):  # one vectorised block per image
        rows = np.flatnonzero(missing & (image_of_row == i))
        okp = original.keypoints_of(int(i))
        if not len(okp):
            continue
        same = np.all(rel_kp[rows, None, 2:] == okp[None, :, 2:].astype(np.float64), axis=2)  # R_i × K_i
        rdesc = released.descriptors[rows].astype(np.float32)
        odesc = original.descriptors_of(int(i)).astype(np.float32)
        d2 = (rdesc * rdesc).sum(1)[:, None] + (odesc * odesc).sum(1)[None, :] - 2.0 * rdesc @ odesc.T
        d2 = np.where(same, d2, np.inf)
        src = np.argmin(d2, axis=1)
        found = same.any(axis=1)
        pos[rows[found]] = okp[src[found], :2]
    return pos


# ------------------------------------------------------------------------------------------------- the figure
def matching_utility(defense: Defense, ctx: UtilityContext) -> dict[str, float]:
    """`match-rate` and `retrieval@1` of `defense` on up to MAX_IMAGES private images (see the module docstring)."""
    feats = ctx.features
    if not isinstance(feats, SiftSet):
        raise BenchError(f"the SIFT matching utility needs SIFT features, got {feats.kind!r}")
    if len(ctx.images) != len(feats):
        raise BenchError(f"utility: {len(ctx.images)} images but {len(feats)} feature records")
    n = len(feats)
    if n == 0:
        return {"match-rate": 0.0, "retrieval@1": 0.0}
    if n > MAX_IMAGES:
        sample = np.sort(ctx.rng("utility-sample").choice(n, MAX_IMAGES, replace=False))
    else:
        sample = np.arange(n)
    original = feats.subset(sample)
    images = ctx.images.images[torch.as_tensor(sample)]
    size = int(original.meta.get("image_size", images.shape[-1]))
    images = resize(images, size)  # the features' own resolution (a no-op when it already matches)
    matrix = view_transform(size)
    views = ImageSet(ids=[f"{ctx.images.ids[j]}#view" for j in sample], images=query_views(images, matrix))
    copy = ctx.extractor.extract(views, progress=False)
    if not isinstance(copy, SiftSet) or len(copy) != len(sample):
        raise BenchError("utility: the extractor did not return one SIFT record per query view")
    released = defense.protect(original, ctx.rng("utility"))
    if not isinstance(released, SiftSet) or len(released) != len(original):
        raise BenchError(f"utility: defense {defense.name!r} changed the number of SIFT records")

    total = int(original.counts().sum())
    rel_ok = _matchable(released)
    copy_ok = _matchable(copy)
    rel_off, copy_off = _keep_rows(released.offsets, rel_ok), _keep_rows(copy.offsets, copy_ok)
    rel_desc, copy_desc = released.descriptors[rel_ok], copy.descriptors[copy_ok]

    # match-rate: each image's released rows against its own copy
    positions = source_positions(original, released)[rel_ok]
    copy_xy = np.asarray(copy.keypoints[copy_ok, :2], dtype=np.float64)
    correct = 0
    for i in range(len(sample)):
        q = slice(rel_off[i], rel_off[i + 1])
        if rel_off[i] == rel_off[i + 1] or copy_off[i + 1] - copy_off[i] < 2:
            continue  # nothing released, or a copy with fewer than two rows: no ratio-test match possible
        passed, index = ratio_test(rel_desc[q], copy_desc, copy_off[i:i + 2], want_index=True)
        passed, index = passed[:, 0], index[:, 0]  # type: ignore[index]
        expected = apply_transform(matrix, positions[q])
        hit = copy_xy[np.maximum(index, 0)]
        near = np.linalg.norm(hit - expected, axis=1) <= TOLERANCE_PX  # NaN (unverifiable) compares False
        correct += int(np.count_nonzero(passed & near))
    match_rate = correct / total if total else 0.0

    # retrieval@1: each copy against every released image
    passed, _ = ratio_test(copy_desc, rel_desc, rel_off)
    scores = _segment_sums(passed.astype(np.int64), copy_off)  # copies × private images
    own = np.diag(scores)
    others = np.where(np.eye(len(sample), dtype=bool), 0, scores).max(axis=1)  # floor 0: own needs ≥ 1 match
    retrieval = float(np.mean(own > others))
    return {"match-rate": float(match_rate), "retrieval@1": retrieval}

