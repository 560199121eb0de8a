"""Built-in plugins of this kind register themselves on import."""

from bench.extractors.sift import SiftExtractor

__all__ = ["SiftExtractor"]
