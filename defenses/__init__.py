"""Built-in defenses; each module registers its plugin on import."""

from bench.defenses import coordinates  # noqa: F401  (registers "drop-coordinates")
from bench.defenses import descriptors  # noqa: F401  (drop-descriptors, descriptor-noise, descriptor-quantize)
from bench.defenses import none  # noqa: F401  (registers "none")
from bench.defenses import subsample  # noqa: F401  (registers "subsample")
