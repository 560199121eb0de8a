"""The SIFT victim extractor: grey image -> OpenCV SIFT keypoints and uint8 descriptors (a SiftSet)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

import cv2
import numpy as np
import torch
from tqdm import tqdm

from bench.errors import BenchError
from bench.features import FeatureSpec
from bench.images import to_grey_uint8
from bench.plugins import Extractor, ImageSet, register_extractor
from bench.features.sift import DESCRIPTOR_DIM, KEYPOINT_FIELDS, SiftSet


def keypoint_rows(keypoints: Any) -> np.ndarray:
    """K×6 float32 rows (x, y, size, angle, response, raw octave) from a sequence of cv2.KeyPoint."""
    rows = [(k.pt[0], k.pt[1], k.size, k.angle, k.response, k.octave) for k in keypoints]
    return np.asarray(rows, dtype=np.float32).reshape(-1, len(KEYPOINT_FIELDS))


def descriptor_rows(descriptors: np.ndarray | None, count: int) -> np.ndarray:
    """OpenCV's float32 descriptors (integers 0..255) as K×128 uint8, rounded and clipped; None -> zero rows."""
    if descriptors is None or count == 0:
        return np.zeros((0, DESCRIPTOR_DIM), dtype=np.uint8)
    return np.clip(np.rint(descriptors), 0, 255).astype(np.uint8).reshape(count, DESCRIPTOR_DIM)


@register_extractor
class SiftExtractor(Extractor):
    """OpenCV SIFT on the grey image (contrast threshold 0.03, other OpenCV defaults), as in the published attacks."""

    name = "sift"
    produces = FeatureSpec("sift", {"has_coordinates": True, "has_descriptors": True})

    def __init__(
        self,
        contrast_threshold: float = 0.03,
        n_features: int = 0,
        n_octave_layers: int = 3,
        edge_threshold: float = 10.0,
        sigma: float = 1.6,
    ) -> None:
        super().__init__(
            contrast_threshold=float(contrast_threshold),
            n_features=int(n_features),
            n_octave_layers=int(n_octave_layers),
            edge_threshold=float(edge_threshold),
            sigma=float(sigma),
        )

    def library_versions(self) -> dict[str, str]:
        """OpenCV's version: a different OpenCV can find other keypoints, so it is part of the feature key."""
        return {"opencv": cv2.__version__}

    def detector(self) -> Any:
        """A cv2.SIFT object with this extractor's parameters."""
        p = self.params
        return cv2.SIFT_create(
            nfeatures=p["n_features"],
            nOctaveLayers=p["n_octave_layers"],
            contrastThreshold=p["contrast_threshold"],
            edgeThreshold=p["edge_threshold"],
            sigma=p["sigma"],
        )

    def extract(self, images: ImageSet, progress: bool = True, workers: int | None = None) -> SiftSet:
        """SIFT features of every image (in order); images without keypoints get zero rows.

        A large split is cut into contiguous chunks that `workers` threads (default: this process's thread budget,
        bench.threads.current_threads) extract, each with its own cv2.SIFT object; OpenCV releases the GIL in
        detectAndCompute, and its own threads are held at one meanwhile so that the cores are not oversubscribed.
        The result is bitwise identical to sequential extraction whatever the worker count.
        """
        imgs = images.images
        if imgs.dim() != 4 or imgs.shape[1] != 3:
            raise BenchError(f"SIFT extraction needs N×3×H×W images, got shape {tuple(imgs.shape)}")
        if imgs.shape[2] != imgs.shape[3]:
            raise BenchError(f"SIFT extraction needs square images, got {imgs.shape[2]}×{imgs.shape[3]}")
        n = len(imgs)
        rows: list[tuple[np.ndarray, np.ndarray] | None] = [None] * n
        chunks = _chunks(n, _worker_count(workers, n))
        with tqdm(total=n, desc="SIFT", disable=not progress, unit="img") as bar:
            if len(chunks) <= 1:
                self._extract_chunk(imgs, range(n), rows, self.detector(), bar.update)
            else:
                self._extract_parallel(imgs, chunks, rows, _worker_count(workers, n), bar.update)
        counts = np.array([len(k) for k, _ in rows], dtype=np.int64)  # type: ignore[misc]
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        keypoints = (np.concatenate([k for k, _ in rows]) if n  # type: ignore[misc]
                     else np.zeros((0, len(KEYPOINT_FIELDS)), np.float32))
        descriptors = (np.concatenate([d for _, d in rows]) if n  # type: ignore[misc]
                       else np.zeros((0, DESCRIPTOR_DIM), np.uint8))
        meta = {"image_size": int(imgs.shape[2]), "extractor": self.config(), "opencv": cv2.__version__}
        return SiftSet(keypoints, descriptors, offsets, dict(self.produces.flags), meta)

    @staticmethod
    def _extract_chunk(imgs: Any, indices: range, rows: list[Any], sift: Any, advance: Any) -> None:
        """Keypoint and descriptor rows of `imgs[indices]` (a contiguous range) into `rows` (one slot per image)."""
        for start in range(indices.start, indices.stop, _GREY_BATCH):
            stop = min(start + _GREY_BATCH, indices.stop)
            greys = to_grey_uint8(imgs[start:stop])  # elementwise: bitwise the same as image by image
            for i in range(start, stop):
                found, desc = sift.detectAndCompute(greys[i - start], None)
                rows[i] = (keypoint_rows(found), descriptor_rows(desc, len(found)))
                if advance is not None:
                    advance(1)

    def _extract_parallel(self, imgs: Any, chunks: list[range], rows: list[Any], workers: int,
                          advance: Any) -> None:
        """Chunks on a pool of `workers` threads, one cv2.SIFT per thread; progress advances as chunks finish."""
        local = threading.local()

        def work(indices: range) -> int:
            sift = getattr(local, "sift", None)
            if sift is None:
                sift = local.sift = self.detector()
            self._extract_chunk(imgs, indices, rows, sift, None)
            return len(indices)

        # Our threads are the parallelism: OpenCV's and torch's own pools (torch converts each image to grey) are
        # held at one thread meanwhile, else they oversubscribe the cores and spin against each other.
        saved_cv, saved_torch = cv2.getNumThreads(), torch.get_num_threads()
        cv2.setNumThreads(1)
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sift") as pool:
                futures = [pool.submit(work, c) for c in chunks]
                try:
                    for future in as_completed(futures):
                        advance(future.result())
                except BaseException:
                    for f in futures:
                        f.cancel()
                    raise
        finally:
            cv2.setNumThreads(saved_cv)
            torch.set_num_threads(saved_torch)


_GREY_BATCH = 32  # images converted to grey in one vectorised call (bounded memory for large images)


def _worker_count(workers: int | None, n: int) -> int:
    """Threads for `n` images: the given count or this process's thread budget, never more than the images."""
    if workers is None:
        from bench.threads import current_threads

        workers = current_threads()
    return max(1, min(int(workers), n))


def _chunks(n: int, workers: int) -> list[range]:
    """Contiguous index ranges covering 0..n: one with one worker, else about 4 per worker (at most 64 images
    each), so that threads stay balanced and the progress bar moves."""
    if n == 0:
        return []
    if workers <= 1:
        return [range(n)]
    size = max(1, min(64, -(-n // (4 * workers))))
    return [range(i, min(i + size, n)) for i in range(0, n, size)]
