"""Built-in defenses; each module registers its plugin on import."""

from bench.defenses import coordinates  # noqa: F401  (registers "drop-coordinates")
from bench.defenses import descriptors  # noqa: F401  (drop-descriptors, descriptor-noise, descriptor-quantize)
from bench.defenses import none  # noqa: F401  (registers "none")
from bench.defenses import subsample  # noqa: F401  (registers "subsample")
from bench.defenses import embedding  # noqa: F401  (registers "gaussian-noise" and "quantize")
from bench.defenses import pe_miu  # noqa: F401  (registers "pe-miu")
from bench.defenses import shufflebits  # noqa: F401  (registers "shufflebits")
