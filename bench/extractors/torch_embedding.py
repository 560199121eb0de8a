"""Base class for victim extractors that are torch models with manifest weights (e.g. an ArcFace network).

A subclass names its weights manifest entry (`weights`, registered in bench/weights.py with a pinned sha256),
builds the network (`build`), and says how images are prepared (`input_size`, `mean`, `std`). The base verifies the
weights file by its digest, loads it with torch.load(weights_only=True), runs the network in batches without
gradients and releases `embeddings` (N×D float32). When the weights are missing, `preflight` (run before any work
by `bench run`) and `extract` raise the project's WeightsMissingError naming `bench weights pull NAME` and
`bench weights import FILE`; `available()` says so without raising, and `bench list extractors` shows it.

No concrete ArcFace extractor ships yet: none of the public ArcFace checkpoints has a publicly attested sha256 that
could be pinned in the manifest (the project never pins a digest it computed from an unverified download). A user
with a trusted checkpoint registers a manifest entry with its digest and a subclass of this class.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from bench import weights
from bench.errors import BenchError, WeightsMissingError
from bench.features import FeatureSpec
from bench.features.embeddings import EmbeddingSet
from bench.plugins import Extractor, ImageSet


class TorchEmbeddingExtractor(Extractor):
    """Base: a torch network with manifest weights maps N×3×H×W images in [0, 1] to N×D float32 embeddings."""

    produces: ClassVar[FeatureSpec] = FeatureSpec("embeddings", {"float": True})
    weights: ClassVar[str] = ""  # the weights manifest entry
    input_size: ClassVar[int] = 112  # images are resized (bilinear, antialiased) to input_size×input_size
    mean: ClassVar[tuple[float, float, float]] = (0.5, 0.5, 0.5)  # per-channel normalisation after resizing
    std: ClassVar[tuple[float, float, float]] = (0.5, 0.5, 0.5)
    batch_size: ClassVar[int] = 32

    def __init__(self, device: torch.device | str = "cpu") -> None:
        super().__init__()
        self.device = torch.device(device)
        self._net: nn.Module | None = None

    @abstractmethod
    def build(self) -> nn.Module:
        """The network with random weights (its state dict must match the manifest file's keys and shapes)."""

    @classmethod
    def available(cls) -> bool:
        """Whether the weights are in the cache (or shipped with their package) and verify."""
        return weights.is_available(cls.weights)

    @classmethod
    def registry_meta(cls) -> dict[str, Any]:
        meta = super().registry_meta()
        meta["weights"] = cls.weights
        return meta

    def library_versions(self) -> dict[str, str]:
        """The weights entry and its pinned digest (the file's identity), and torch's version."""
        wf = weights.entry(self.weights)
        return {"weights": wf.name, "weights_sha256": wf.expected_digest, "torch": torch.__version__.split("+")[0]}

    def preflight(self) -> None:
        """Raise WeightsMissingError (naming `bench weights pull|import`) before any work when the weights are missing."""
        weights.require(self.weights)

    def model(self) -> nn.Module:
        """The network with the verified manifest weights, loaded once (torch.load(weights_only=True))."""
        if self._net is None:
            state = weights.load_state_dict(self.weights)  # verifies the digest first
            net = self.build()
            try:
                net.load_state_dict(state)
            except RuntimeError as exc:
                raise BenchError(f"extractor {self.name!r}: weights {self.weights!r} do not fit its network: "
                                 f"{str(exc).splitlines()[0]}") from None
            self._net = net.to(self.device).eval()
        return self._net

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Resize to input_size and normalise with (mean, std)."""
        s = int(self.input_size)
        x = images.float()
        if x.shape[-1] != s or x.shape[-2] != s:
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
        mean = torch.tensor(self.mean, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype).view(1, 3, 1, 1)
        return (x - mean) / std

    def extract(self, images: ImageSet, progress: bool = True) -> EmbeddingSet:
        imgs = images.images
        if imgs.dim() != 4 or imgs.shape[1] != 3:
            raise BenchError(f"extractor {self.name!r} needs N×3×H×W images, got shape {tuple(imgs.shape)}")
        net = self.model()
        parts = []
        with torch.no_grad():
            for start in tqdm(range(0, len(imgs), self.batch_size), desc=self.name, disable=not progress,
                              unit="batch"):
                x = self.prepare(imgs[start:start + self.batch_size]).to(self.device)
                parts.append(net(x).float().cpu().reshape(len(x), -1))
        dim = parts[0].shape[1] if parts else 0
        vectors = torch.cat(parts).numpy() if parts else np.zeros((0, dim), dtype=np.float32)
        meta = {"image_size": int(imgs.shape[-1]), "extractor": self.config()}
        return EmbeddingSet(np.ascontiguousarray(vectors, dtype=np.float32), dict(self.produces.flags), meta)


__all__ = ["TorchEmbeddingExtractor", "WeightsMissingError"]
