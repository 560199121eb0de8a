"""The SIFT victim extractor: grey image -> OpenCV SIFT keypoints and uint8 descriptors (a SiftSet)."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
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

    def extract(self, images: ImageSet, progress: bool = True) -> SiftSet:
        """SIFT features of every image (in order); images without keypoints get zero rows."""
        imgs = images.images
        if imgs.dim() != 4 or imgs.shape[1] != 3:
            raise BenchError(f"SIFT extraction needs N×3×H×W images, got shape {tuple(imgs.shape)}")
        if imgs.shape[2] != imgs.shape[3]:
            raise BenchError(f"SIFT extraction needs square images, got {imgs.shape[2]}×{imgs.shape[3]}")
        sift = self.detector()
        kps, descs = [], []
        counts = np.zeros(len(imgs), dtype=np.int64)
        for i in tqdm(range(len(imgs)), desc="SIFT", disable=not progress, unit="img"):
            found, desc = sift.detectAndCompute(to_grey_uint8(imgs[i]), None)
            counts[i] = len(found)
            kps.append(keypoint_rows(found))
            descs.append(descriptor_rows(desc, len(found)))
        offsets = np.zeros(len(imgs) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        keypoints = np.concatenate(kps) if kps else np.zeros((0, len(KEYPOINT_FIELDS)), np.float32)
        descriptors = np.concatenate(descs) if descs else np.zeros((0, DESCRIPTOR_DIM), np.uint8)
        meta = {"image_size": int(imgs.shape[2]), "extractor": self.config(), "opencv": cv2.__version__}
        return SiftSet(keypoints, descriptors, offsets, dict(self.produces.flags), meta)
