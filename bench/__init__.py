"""Privacy-leakage benchmark: rebuild private images from released features and score the result."""

import os as _os

__version__ = "0.1.0"

# Idle OpenMP threads sleep instead of spinning on cores that other processes need (read when torch loads its
# OpenMP runtime, so set before any torch import; a user's own setting wins). See bench/threads.py.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
