"""Feature containers released by a victim system: the base types (here) and one module per feature kind."""

from bench.features.base import (FeatureSet, FeatureSpec, Requirement, check_coverage,  # noqa: F401
                                 feature_kinds, register_feature_kind)
from bench.features import sift  # noqa: F401,E402  (registers the "sift" kind)
from bench.features import embeddings  # noqa: F401,E402  (registers "embeddings" and "bit-patterns")
