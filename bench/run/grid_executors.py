"""Executing a grid's runs: in this process one after another (`local`) or on a Dask cluster (`dask`); either way
each task applies the thread policy and calls `compute`, and its outcome goes back to the coordinator's `record`."""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

from bench.errors import BenchError
from bench.run.grid_plan import PlannedRun
from bench.run.plan import RunRequest

EXECUTORS = ("local", "dask")


def dask_available() -> bool:
    """Whether dask.distributed can be imported (the `dask` extra)."""
    try:
        import dask.distributed  # noqa: F401
    except ImportError:
        return False
    return True


def compute_task(req: RunRequest, threads: int | None) -> tuple[Any, str | None, float]:
    """What an executor runs for one request: the thread policy (one thread per Dask worker by default), then
    `compute`. Returns (outcome, None, seconds), or (None, "<Type>: message", seconds) when the run raised: the
    error travels as text, so an exception that cannot be pickled still reaches the coordinator."""
    from bench.run.runner import compute
    from bench.threads import apply_threads

    t0 = time.perf_counter()
    try:
        apply_threads(threads)
        return compute(req), None, time.perf_counter() - t0
    except Exception as exc:
        return None, error_text(exc), time.perf_counter() - t0


def error_text(exc: BaseException) -> str:
    """An exception as one line of text (it travels from workers and into the store)."""
    return f"{type(exc).__name__}: {exc}"


def run_local(todo: Sequence[PlannedRun], record: Callable[..., None], threads: int | None) -> None:
    """Compute the runs one after another in this process."""
    for run in todo:
        record(run, compute_task(run.request, threads))


def run_dask(todo: Sequence[PlannedRun], record: Callable[..., None], threads: int | None, workers: int | None,
             scheduler: str | None) -> None:
    """Send the runs to a Dask cluster (a local one of `workers` one-thread processes, or `scheduler`) and record
    each outcome as it arrives."""
    import logging

    from dask.distributed import Client, LocalCluster, as_completed

    if not todo:
        return
    cluster = None
    try:
        if scheduler:
            client = Client(scheduler)
        else:
            cluster = LocalCluster(n_workers=workers or 2, threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=logging.ERROR)
            client = Client(cluster)
    except Exception as exc:
        where = f" at {scheduler}" if scheduler else ""
        raise BenchError(f"--executor dask: cannot start or reach the Dask cluster{where}: {error_text(exc)}") \
            from None
    futures: dict[str, PlannedRun] = {}
    pending = []
    try:
        for run in todo:
            # pure=False and a fresh key: a rerun of the same request is a new task, never a cached result
            fut = client.submit(compute_task, run.request, threads, pure=False,
                                key=f"bench-run-{run.run_id}-{time.time_ns()}")
            futures[fut.key] = run
            pending.append(fut)
        for fut in as_completed(pending):
            run = futures[fut.key]
            try:
                result = fut.result()
            except Exception as exc:  # the worker died or the task could not run at all
                result = (None, error_text(exc), 0.0)
            record(run, result)
            fut.release()
    except BaseException:
        client.cancel(pending)
        raise
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
