"""The thread policy: how many threads torch and OpenCV use in this process, set explicitly and recorded.

Oversubscribed cores run many times slower than one thread: on a 2-core machine with another process busy, torch's
default thread count ran 2.5x slower (median) than one thread, and with five busy processes a CFGAN step 38x slower
than on a quiet machine (torch's parallel regions wait for a thread that the scheduler has parked). So a process
states its budget once (`apply_threads(n)`; a grid worker uses 1) and every parallel stage (SIFT extraction, torch
ops) reads it back through `current_threads()` instead of guessing.

The default (`apply_threads(None)`, what `bench run` uses without --threads) is load-aware: the cores this process
may use minus the cores other processes keep busy when the run starts (its CPUs sampled from /proc/stat over
`LOAD_SAMPLE_S`; the 1-minute load average where /proc/stat is missing), rounded, at least 1. On a quiet machine
that is every core, as before. `bench/__init__.py` also sets OMP_WAIT_POLICY=PASSIVE unless the user set it, so
idle OpenMP threads sleep instead of spinning on cores other processes need. `benchmarks/thread_contention.py`
measures this default against 1 thread and all cores under 0, 1 and 3 busy processes.
"""

from __future__ import annotations

import os
import time
from typing import Any

_policy: int | None = None  # the value last applied in this process; None until apply_threads runs
_decision: dict[str, Any] = {}  # how the last default (apply_threads(None)) was chosen, for run.json
LOAD_SAMPLE_S = 0.2  # how long the other processes' CPU use is sampled when a default is chosen


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS reports it, else the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS and Windows have no sched_getaffinity
        return max(1, os.cpu_count() or 1)


def _allowed_cpus() -> set[int] | None:
    """The CPU numbers this process may run on, or None where the OS does not say."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def _cpu_times(cpus: set[int] | None) -> tuple[int, int, int] | None:
    """(busy, total jiffies, CPUs counted) over `cpus` (all CPUs when None) from /proc/stat; None if unreadable."""
    busy = total = count = 0
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            for line in fh:
                name, _, rest = line.partition(" ")
                if not name.startswith("cpu") or name == "cpu":
                    continue
                if cpus is not None and int(name[3:]) not in cpus:
                    continue
                fields = [int(v) for v in rest.split()]
                idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
                t = sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest is inside user)
                busy, total, count = busy + t - idle, total + t, count + 1
    except (OSError, ValueError, IndexError):
        return None
    return (busy, total, count) if count else None


def other_load(interval: float | None = None) -> tuple[float, str]:
    """Cores kept busy by other processes now, and how it was measured ('proc-stat', 'loadavg' or 'unknown').

    The CPUs this process may use are sampled in /proc/stat over `interval` seconds while this process sleeps, so
    its own use does not count: their busy fraction times their number. Where /proc/stat is missing (macOS), the
    1-minute load average stands in (machine-wide, lags by about a minute and may include this process).
    """
    interval = LOAD_SAMPLE_S if interval is None else interval
    cpus = _allowed_cpus()
    first = _cpu_times(cpus)
    if first is not None:
        time.sleep(interval)
        second = _cpu_times(cpus)
        if second is not None and second[1] > first[1] and second[2] == first[2]:
            busy = (second[0] - first[0]) / (second[1] - first[1])
            return max(0.0, busy * first[2]), "proc-stat"
    try:
        return max(0.0, os.getloadavg()[0]), "loadavg"
    except (AttributeError, OSError):
        return 0.0, "unknown"


def default_threads() -> int:
    """The load-aware default: available cores minus the cores others keep busy (rounded), at least 1.

    Records how it decided (`thread_record()['default']`): cores available, the load measured and its source.
    """
    cores = available_cores()
    load, source = other_load()
    n = max(1, min(cores, cores - int(load + 0.5)))
    _decision.clear()
    _decision.update({"rule": "available cores - busy cores of other processes (rounded), >= 1",
                      "cores_available": cores, "other_load": round(load, 2), "load_source": source,
                      "chosen": n})
    return n


def apply_threads(n: int | None) -> int:
    """Set torch's and OpenCV's thread counts to `n` (None: the load-aware `default_threads()`); remember it."""
    global _policy
    if n is None:
        n = default_threads()
    else:
        _decision.clear()
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
        "default": dict(_decision) or None,  # how apply_threads(None) chose; None when a count was given
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }


__all__ = ["apply_threads", "available_cores", "current_threads", "default_threads", "other_load", "thread_record"]
