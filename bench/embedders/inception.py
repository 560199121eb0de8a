"""The FID Inception embedder: pt_inception-2015-12-05 pool3 features (2048-d) exactly as torch-fidelity computes them.

The network is torch-fidelity's own `FeatureExtractorInceptionV3` (TensorFlow-compatible blocks and TF1.x bilinear
resize to 299 inside), so features equal torch-fidelity's. Its constructor would download the weights when given no
path and unpickles a given path with weights_only=False; so the file comes from the project's weights cache instead
(`bench weights pull|import pt-inception`, sha256-verified), is loaded with torch.load(weights_only=True), and only
the tensors that load produced are handed to the constructor (re-serialised in memory). Nothing is downloaded here.

Input convention: [0, 1] float images are quantised to uint8 0..255 by rounding (the values of the lossless PNG the
runner saves, i.e. what torch-fidelity reads from image files), then given to the extractor as N×3×H×W uint8.
"""

from __future__ import annotations

import io
from typing import Any, Mapping

import numpy as np
import torch

from bench import weights
from bench.embedders import Embedder, to_uint8
from bench.errors import UnknownNameError, WeightsMissingError
from bench.plugins import MetricUnavailable

WEIGHTS = "pt-inception"
FIX = f"bench weights pull {WEIGHTS} (offline: bench weights import pt_inception-2015-12-05-6726825d.pth)"
FEATURE = "2048"  # torch-fidelity's name of the pool3 features (its default layer for FID and KID)
CHUNK = 32  # images per forward pass: bounds memory (299×299 activations) whatever the evaluation batch is


def _extractor_class() -> type:
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    return FeatureExtractorInceptionV3


def build_network(state_dict: Mapping[str, torch.Tensor]) -> torch.nn.Module:
    """torch-fidelity's FeatureExtractorInceptionV3 (pool3 output) holding `state_dict` (already loaded safely)."""
    buf = io.BytesIO()
    torch.save({k: v for k, v in state_dict.items()}, buf)  # only tensors we loaded with weights_only=True
    buf.seek(0)
    return _extractor_class()("inception-v3-compat", [FEATURE], feature_extractor_weights_path=buf)


def random_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict of the same architecture with random weights (benchmarks and tests where the real file is absent).

    Convolutions get He-normal weights so activations keep their scale through the depth (no denormal slow-down);
    batch-norm layers keep their identity statistics; values are fixed by `seed`.
    """
    cls = _extractor_class()

    class _Unloaded(cls):  # type: ignore[misc, valid-type]
        def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
            return None  # the constructor's load is skipped: we only want the module tree and its shapes

    empty = io.BytesIO()
    torch.save({}, empty)
    empty.seek(0)
    net = _Unloaded("inception-v3-shapes", [FEATURE], feature_extractor_weights_path=empty)
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in net.state_dict().items():
        value = value.detach().clone()
        if key.endswith("conv.weight"):
            fan_in = value[0].numel()
            value = torch.randn(value.shape, generator=g) * (2.0 / fan_in) ** 0.5
        elif key == "fc.weight":
            value = torch.randn(value.shape, generator=g) / value.shape[1] ** 0.5
        state[key] = value
    return state


class InceptionEmbedder(Embedder):
    """pt_inception-2015-12-05 pool3 features (N×2048 float32) of [0, 1] images, as torch-fidelity computes them."""

    name = "inception"
    version = "1"
    dim = 2048

    def __init__(self, network: torch.nn.Module, weights_digest: str, device: torch.device | str = "cpu",
                 chunk: int = CHUNK) -> None:
        self.device = torch.device(device)
        self.network = network.to(self.device).eval()
        self.weights_digest = weights_digest
        self.chunk = int(chunk)

    def identity(self) -> dict[str, Any]:
        import torch_fidelity

        return {"name": self.name, "version": self.version, "weights_sha256": self.weights_digest,
                "layer": FEATURE, "torch_fidelity": torch_fidelity.__version__, "input": "uint8-round"}

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> dict[str, np.ndarray]:
        x = to_uint8(images)
        parts = [np.zeros((0, self.dim), dtype=np.float32)]
        for start in range(0, len(x), self.chunk):
            (feats,) = self.network(x[start:start + self.chunk].to(self.device))
            parts.append(feats.float().cpu().numpy())
        return {"features": np.concatenate(parts)}


_LOADED: dict[tuple[str, str, str], InceptionEmbedder] = {}


def load(device: torch.device | str = "cpu") -> InceptionEmbedder:
    """The embedder on the verified cached weights; MetricUnavailable naming the fix when they are missing.

    The network is built once per process (per weights file and device) and shared by FID and KID.
    """
    try:
        path = weights.require(WEIGHTS)
    except UnknownNameError:  # a manifest without the entry: still say which command brings the file
        raise MetricUnavailable(FIX) from None
    except WeightsMissingError:
        # "bench weights pull pt-inception (offline: bench weights import <file>)", plus why a cached copy was refused
        raise MetricUnavailable(weights.missing_fix([WEIGHTS]) or FIX) from None
    digest = weights.cached_digest(path)
    key = (str(path), digest, str(torch.device(device)))
    if key not in _LOADED:
        _LOADED.clear()  # one network (~100 MB) at a time
        _LOADED[key] = InceptionEmbedder(build_network(weights.load_state_dict(WEIGHTS)), digest, device)
    return _LOADED[key]
