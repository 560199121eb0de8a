"""The SIFT-inversion attack family: dense SIFT maps, the family's losses, and its attacks (CFGAN, ...)."""

from bench.attacks.sift_inversion import cfgan  # noqa: F401  (registers "cfgan")
from bench.attacks.sift_inversion import nearest  # noqa: F401  (registers "nearest-neighbour", the retrieval floor)
from bench.attacks.sift_inversion import ivr  # noqa: F401  (registers "ivr", Dosovitskiy & Brox)
from bench.attacks.sift_inversion import sli  # noqa: F401  (registers "sli", "sli-b", "sli-r")
from bench.attacks.sift_inversion import inv  # noqa: F401  (registers "inv", Pittaluga et al.)
from bench.attacks.sift_inversion import sli_l  # noqa: F401  (registers "sli-l", landmark-template placement)
