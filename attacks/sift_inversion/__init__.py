"""The SIFT-inversion attack family: dense SIFT maps, the family's losses, and its attacks (CFGAN, ...)."""

from bench.attacks.sift_inversion import cfgan  # noqa: F401  (registers "cfgan")
