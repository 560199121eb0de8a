"""Built-in metrics; importing this package registers them (pixel metrics and SSIM)."""

from bench.metrics import pixel, ssim  # noqa: F401  (imported for their registering side effect)
