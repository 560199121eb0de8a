"""The thread policy: how many threads torch and OpenCV use in this process, set explicitly and recorded.

Oversubscribed cores run many times slower than one thread: on a 2-core machine with another process busy, torch's
default thread count ran 2.5x slower (median) than one thread. So a process states its budget once
(`apply_threads(n)`; a grid worker uses 1, `bench run` the cores it may use) and every parallel stage (SIFT
extraction, torch ops) reads it back through `current_threads()` instead of guessing.
"""

from __future__ import annotations

import os
from typing import Any

_policy: int | None = None  # the value last applied in this process; None until apply_threads runs


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS reports it, else the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS and Windows have no sched_getaffinity
        return max(1, os.cpu_count() or 1)


def apply_threads(n: int | None) -> int:
    """Set torch's and OpenCV's thread counts to `n` (None: the available cores); remember and return it."""
    global _policy
    if n is None:
        n = available_cores()
    n = int(n)
    if n < 1:
        raise ValueError(f"thread count must be >= 1, got {n}")
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    try:
        import cv2
    except ImportError:  # pragma: no cover - OpenCV is a dependency; stay usable without it
        pass
    else:
        cv2.setNumThreads(n)
    _policy = n
    return n


def current_threads() -> int:
    """The thread budget of this process: the applied policy, else the available cores."""
    return _policy if _policy is not None else available_cores()


def thread_record() -> dict[str, Any]:
    """What run.json records about threads: torch's and OpenCV's actual counts, the policy and the cores."""
    import torch

    try:
        import cv2

        opencv: int | None = int(cv2.getNumThreads())
    except ImportError:  # pragma: no cover
        opencv = None
    return {
        "torch_threads": int(torch.get_num_threads()),
        "torch_interop_threads": int(torch.get_num_interop_threads()),
        "opencv_threads": opencv,
        "policy": _policy,
        "cores_available": available_cores(),
    }


__all__ = ["apply_threads", "available_cores", "current_threads", "thread_record"]
