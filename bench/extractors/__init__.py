"""Built-in plugins of this kind register themselves on import."""

from bench.extractors.sift import SiftExtractor
from bench.extractors.face import DlibFaceExtractor
from bench.extractors.torch_embedding import TorchEmbeddingExtractor

__all__ = ["SiftExtractor", "DlibFaceExtractor", "TorchEmbeddingExtractor"]
