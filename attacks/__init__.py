"""Built-in attacks; each module registers its plugin on import."""

from bench.attacks import cfgan  # noqa: F401  (registers "cfgan")
from bench.attacks import mean_image  # noqa: F401  (registers "mean-image", the trivial floor)
