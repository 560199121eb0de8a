"""ShuffleBits benchmark: the vectorised bit permutation vs a plain per-element Python loop (target >= 1000x).

    python benchmarks/shufflebits_bench.py [--rows 4096] [--dim 128] [--repeats 7] [--threads 1] [--cpu-time]

Both modes are timed (fixed: one permutation for all values; one-time-pad: one per vector) on N×D float32 values.
The loop runs on a small sample of rows and is scaled per element (ns per value). Two loops are timed:

- `plain`: the obvious per-element code (read u[r, c] as an int, set its 32 output bits, write out[r, c]);
- `tight`: the same bit loop on Python ints from `.tolist()` (no numpy element access), the fastest plain loop.

One-time-pad is timed for each implementation present: `numpy` (bit planes, always) and `numba` (the compiled
kernel, when the `fast` extra is installed). Rounds are interleaved (both loops, then every implementation under
every thread setting), and each ratio is loop / vectorised within one round, reported as min and median over the
rounds, so that load from other processes hits both sides alike. Thread settings are applied through
bench.threads and threadpoolctl when installed (numpy's elementwise code and the kernel are single-threaded).
Every implementation is checked bit-exact against the loop first.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from contextlib import nullcontext
from typing import Any, Callable

import numpy as np

from bench.defenses.shufflebits import _permute_per_row, permute_bits, shufflebits_keys, shufflebits_kernel
from bench.threads import apply_threads, available_cores


def plain_loop(u: np.ndarray, perms: np.ndarray) -> np.ndarray:
    """Output bit j = input bit perm[j], one element and one bit at a time (numpy element access)."""
    out = np.zeros_like(u)
    per_row = perms.ndim == 2
    for r in range(u.shape[0]):
        p = perms[r] if per_row else perms
        for c in range(u.shape[1]):
            v = int(u[r, c])
            o = 0
            for j in range(32):
                o |= ((v >> int(p[j])) & 1) << j
            out[r, c] = o
    return out


def tight_loop(u: np.ndarray, perms: np.ndarray) -> np.ndarray:
    """The same per-element bit loop on Python ints (rows via .tolist()): the fastest plain-Python version."""
    per_row = perms.ndim == 2
    rows = []
    for r, values in enumerate(u.tolist()):
        p = (perms[r] if per_row else perms).tolist()
        row = []
        for v in values:
            o = 0
            for j in range(32):
                o |= ((v >> p[j]) & 1) << j
            row.append(o)
        rows.append(row)
    return np.array(rows, dtype=np.uint32).reshape(u.shape)


_CLOCK = time.perf_counter  # wall clock; --cpu-time switches to this process's CPU time


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = _CLOCK()
    result = fn()
    return _CLOCK() - start, result


def _thread_limit(n: int) -> Any:
    apply_threads(n)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return nullcontext()
    return threadpool_limits(n)


def _implementations(mode: str) -> dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]]:
    """The vectorised implementations to time: `permute_bits` as dispatched here, and for one-time-pad each kernel."""
    if mode == "fixed":
        return {"numpy": permute_bits}
    impls = {"numpy": _permute_per_row}
    if shufflebits_kernel() == "numba":
        from bench.defenses.shufflebits_numba import permute_rows

        impls["numba"] = permute_rows
    return impls


def measure(rows: int = 4096, dim: int = 128, loop_rows: int = 8, repeats: int = 7,
            threads: tuple[int, ...] | None = None) -> list[dict[str, Any]]:
    """One record per (mode, implementation, thread setting): ns per value and per-round ratios against both loops.

    Each round times the plain loop, the tight loop and then every implementation under every thread setting, so
    that load from other processes hits all of them alike; a ratio is loop / vectorised within one round.
    """
    rng = np.random.default_rng(0)
    values = rng.standard_normal((rows, dim)).astype(np.float32)
    u = values.view(np.uint32)
    sample = np.ascontiguousarray(u[:loop_rows])
    threads = threads or tuple(sorted({1, available_cores()}))
    records = []
    for mode in ("fixed", "one-time-pad"):
        perms = shufflebits_keys(rng, rows, mode)
        sample_perms = perms if mode == "fixed" else perms[:loop_rows]
        impls = _implementations(mode)
        expected = plain_loop(sample, sample_perms)
        for name, fn in impls.items():  # warm-up (a compiled kernel compiles or loads here) and exactness
            if not np.array_equal(fn(u, perms)[:loop_rows], expected):
                raise AssertionError(f"{mode} {name}: vectorised result differs from the loop")
        loop_ns: dict[str, list[float]] = {"plain": [], "tight": []}
        fast_ns: dict[tuple[str, int], list[float]] = {(name, n): [] for name in impls for n in threads}
        for _ in range(max(1, repeats)):
            for name, loop in (("plain", plain_loop), ("tight", tight_loop)):
                t, got = _timed(lambda: loop(sample, sample_perms))
                loop_ns[name].append(t / sample.size * 1e9)
            for (name, n), times in fast_ns.items():
                with _thread_limit(n):
                    t, got = _timed(lambda: impls[name](u, perms))
                times.append(t / u.size * 1e9)
        for (name, n), fast in fast_ns.items():
            record = {"mode": mode, "impl": name, "threads": n, "values": int(u.size),
                      "loop_values": int(sample.size), "rounds": len(fast),
                      "vector_ns_min": min(fast), "vector_ns_median": statistics.median(fast)}
            for loop_name, ns in loop_ns.items():
                ratios = [lp / f for lp, f in zip(ns, fast)]
                record[f"{loop_name}_ns_median"] = statistics.median(ns)
                record[f"{loop_name}_ratio_min"] = min(ratios)
                record[f"{loop_name}_ratio_median"] = statistics.median(ratios)
            records.append(record)
    apply_threads(None)
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--loop-rows", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", default=None, help="comma-separated thread settings (default: 1 and all cores)")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time with this process's CPU time (time.process_time) instead of the wall clock: on a "
                             "machine other jobs load, wall time counts the time the scheduler kept the process waiting")
    args = parser.parse_args()
    global _CLOCK
    if args.cpu_time:
        _CLOCK = time.process_time
    threads = tuple(int(v) for v in args.threads.split(",") if v.strip()) if args.threads else None
    records = measure(args.rows, args.dim, args.loop_rows, args.repeats, threads)
    r0 = records[0]
    print(f"clock: {'CPU time of this process' if args.cpu_time else 'wall'}; OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', '(unset)')}, cores visible {os.cpu_count()}")
    print(f"ShuffleBits: {r0['values']:,} float32 values ({args.rows}×{args.dim}); loops on {r0['loop_values']:,} "
          f"values, scaled per value; {r0['rounds']} interleaved rounds; ratio = loop / vectorised within a round "
          f"(min and median over rounds)")
    print(f"{'mode':<13}{'impl':>6}{'threads':>8}{'vector ns/val':>15}{'plain ns/val':>14}{'tight ns/val':>14}"
          f"{'plain ratio min/median':>25}{'tight ratio min/median':>25}")
    for r in records:
        print(f"{r['mode']:<13}{r['impl']:>6}{r['threads']:>8}{r['vector_ns_median']:>15.2f}"
              f"{r['plain_ns_median']:>14.0f}{r['tight_ns_median']:>14.0f}"
              f"{r['plain_ratio_min']:>15.0f}x /{r['plain_ratio_median']:>6.0f}x"
              f"{r['tight_ratio_min']:>15.0f}x /{r['tight_ratio_median']:>6.0f}x")
    print("target: >= 1000x against the plain per-element loop")


if __name__ == "__main__":
    main()
