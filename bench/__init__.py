"""Privacy-leakage benchmark: rebuild private images from released features and score the result."""

__version__ = "0.1.0"
