"""The feature-inversion attack family: images from deep feature vectors, also when ShuffleBits shuffles their bits."""

from bench.attacks.feature_inversion import decoder  # noqa: F401  (registers "feature-decoder", "feature-gan")
