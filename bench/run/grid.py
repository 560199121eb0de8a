"""A grid of runs: attacks × defenses × datasets × seeds, computed locally or on Dask, written by one coordinator.

The coordinator plans every run first (an unknown name or a bad value stops the grid before any work; a pairing the
attack cannot consume is listed as skipped), marks each run as started in the store, and hands `compute(request)` to
the executor: `local` runs them one after another in this process, `dask` sends them to a Dask cluster (a local one
with one-thread worker processes by default, or any scheduler address). Workers compute and write only files; as
each outcome arrives the coordinator writes it to SQLite, so the store has exactly one writer. A run that raises is
recorded as failed with its error and the grid goes on. Runs already done with every requested metric are not sent
again, so a killed grid started again resumes; the others resume from the stage cache.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from bench.errors import BenchError, IncompatibleError
from bench.run.grid_spec import (GRID_FILE_KEYS, DatasetItem, GridSpec, PluginItem, grid_fields,  # noqa: F401
                                 load_grid_file, parse_dataset_item, parse_plugin_item, parse_seeds, split_list)
from bench.run.plan import RunRequest, plan

EXECUTORS = ("local", "dask")


# ------------------------------------------------------------------------------------------------------ expand
@dataclass
class Skipped:
    """A combination that is not run because the attack cannot consume what the defense releases."""

    attack: str
    defense: str
    dataset: str
    seeds: list[int]
    reason: str


@dataclass
class PlannedRun:
    """A request with the identity `plan` fixed for it (the plan itself is dropped: it holds models)."""

    request: RunRequest
    run_id: str
    config_id: str
    spec: dict[str, Any]
    attack: str
    defense: str
    dataset: str
    seed: int
    metrics: tuple[str, ...] = ()  # the metric names `plan` resolved (defaults or `all` expanded)


def _requests(grid: GridSpec, threads: int | None) -> Iterable[tuple[tuple[int, int, int], RunRequest]]:
    threads = grid.threads if threads is None else threads
    for ai, attack in enumerate(grid.attacks):
        for di, defense in enumerate(grid.defenses):
            for si, ds in enumerate(grid.datasets):
                for seed in grid.seeds:
                    yield (ai, di, si), RunRequest(
                        attack=attack.name, defense=defense.name, dataset=ds.name, data_root=ds.data_root,
                        profile=grid.profile, seed=seed, n_train=grid.n_train, n_test=grid.n_test,
                        results=grid.results, device=grid.device, extractor=grid.extractor,
                        metrics=None if grid.metrics is None else tuple(grid.metrics), progress=False,
                        attack_params={**dict(grid.attack_params), **dict(attack.params)},
                        defense_params=dict(defense.params), threads=threads)


def plan_grid(grid: GridSpec, threads: int | None = None) -> tuple[list[PlannedRun], list[Skipped]]:
    """Plan every run of the grid: incompatible pairings are skipped (once per combination, all its seeds); any
    other mistake (unknown name, bad parameter, missing folder) is one BenchError before any work. `threads`
    (default: the grid's) goes into every request."""
    runs: list[PlannedRun] = []
    skipped: dict[tuple[int, int, int], Skipped] = {}
    seen: set[str] = set()
    for combo, req in _requests(grid, threads):
        attack, defense, ds = grid.attacks[combo[0]], grid.defenses[combo[1]], grid.datasets[combo[2]]
        if combo in skipped:
            skipped[combo].seeds.append(req.seed)
            continue
        try:
            p = plan(req)
        except IncompatibleError as exc:
            skipped[combo] = Skipped(attack.label, defense.label, ds.name, [req.seed], str(exc))
            continue
        except BenchError as exc:
            raise BenchError(f"grid run {attack.label} vs {defense.label} on {ds.name} (seed {req.seed}): {exc}") \
                from None
        if p.spec.run_id in seen:  # the same run named twice (e.g. a dataset listed twice)
            continue
        seen.add(p.spec.run_id)
        runs.append(PlannedRun(req, p.spec.run_id, p.spec.config_id, p.spec.to_dict(), attack.label, defense.label,
                               ds.name, req.seed, tuple(p.metrics)))
        del p
    return runs, list(skipped.values())


def expand(grid: GridSpec, threads: int | None = None) -> tuple[list[RunRequest], list[Skipped]]:
    """The grid's cross product as RunRequests (planned and checked), and the skipped incompatible pairings."""
    runs, skipped = plan_grid(grid, threads)
    return [r.request for r in runs], skipped


# ------------------------------------------------------------------------------------------------------ report
@dataclass
class RunStatus:
    """One run of a grid: what it was, whether it finished, its error, how long it took (coordinator's view)."""

    run_id: str
    attack: str
    defense: str
    dataset: str
    seed: int
    status: str = "pending"  # pending -> done | failed; "done" also for runs found complete in the store
    error: str | None = None
    seconds: float | None = None
    reused: bool = False  # complete in the store already: not sent to a worker


@dataclass
class GridReport:
    """The outcome of a grid: per-run status and error, skipped pairings, leaderboards, wall time."""

    runs: list[RunStatus]
    skipped: list[Skipped]
    wall_s: float
    executor: str
    leaderboards: list[Path] = field(default_factory=list)

    @property
    def done(self) -> int:
        return sum(r.status == "done" for r in self.runs)

    @property
    def failed(self) -> int:
        return sum(r.status == "failed" for r in self.runs)

    @property
    def n_skipped(self) -> int:
        return sum(len(s.seeds) for s in self.skipped)

    def summary(self) -> str:
        return (f"{self.done} done, {self.failed} failed, {self.n_skipped} skipped (incompatible) in "
                f"{self.wall_s:.1f} s with the {self.executor} executor")


# --------------------------------------------------------------------------------------------------- executing
def dask_available() -> bool:
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
        return None, _error_text(exc), time.perf_counter() - t0


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _already_complete(store: Any, run: PlannedRun) -> bool:
    """Done in the store with a set-level value for every requested metric."""
    row = store.run(run.run_id)
    if not row or row.get("status") != "done":
        return False
    return set(run.metrics) <= set(store.set_metrics(run.run_id))


class _Progress:
    """A runs-done/failed/left bar (tqdm) that the coordinator advances as outcomes arrive."""

    def __init__(self, total: int, enabled: bool) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc="grid", unit="run", disable=not enabled)
        self.done = self.failed = 0
        self.total = total
        self._post()

    def _post(self) -> None:
        self.bar.set_postfix(done=self.done, failed=self.failed, left=self.total - self.done - self.failed)

    def advance(self, ok: bool) -> None:
        self.done += ok
        self.failed += not ok
        self._post()
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def run_grid(grid: GridSpec, executor: str = "local", workers: int | None = None, scheduler: str | None = None,
             progress: bool = True, on_skip: Callable[[Skipped], None] | None = None) -> GridReport:
    """Plan, compute (locally or on Dask) and store every run of `grid`; refresh the leaderboards once at the end.

    Failures of single runs are recorded (store and report) and the grid goes on; mistakes in the grid itself raise a
    BenchError before any work. `workers` sizes the local Dask cluster (default 2); `scheduler` is the address of
    an existing Dask scheduler instead. `on_skip` is told about each skipped pairing before the runs start.
    """
    from bench.report.leaderboard import refresh_all
    from bench.run.runner import results_folder, write
    from bench.store import Store

    start = time.perf_counter()
    if executor not in EXECUTORS:
        raise BenchError(f"--executor {executor!r}: choose one of {', '.join(EXECUTORS)}")
    if executor == "dask" and not dask_available():
        from bench.install_hint import extra_install_command

        raise BenchError(f"--executor dask needs Dask: {extra_install_command('dask')}")
    if executor == "local" and (workers is not None or scheduler is not None):
        raise BenchError("--workers and --scheduler go with --executor dask")
    if workers is not None and workers < 1:
        raise BenchError(f"--workers must be >= 1 (got {workers})")
    # One thread per Dask worker unless the grid says otherwise; the local executor uses this process's cores.
    threads = grid.threads if grid.threads is not None or executor == "local" else 1
    planned, skipped = plan_grid(grid, threads)
    for s in skipped:
        if on_skip:
            on_skip(s)
    results = results_folder(grid.results)
    statuses = {r.run_id: RunStatus(r.run_id, r.attack, r.defense, r.dataset, r.seed) for r in planned}
    with Store(results / "bench.sqlite") as store:
        todo: list[PlannedRun] = []
        for run in planned:
            if _already_complete(store, run):
                statuses[run.run_id].status, statuses[run.run_id].reused = "done", True
            else:
                store.start_run(run.run_id, run.spec, run.config_id)
                todo.append(run)
        bar = _Progress(len(planned), progress)
        for st in statuses.values():
            if st.reused:
                bar.advance(True)

        def record(run: PlannedRun, result: tuple[Any, str | None, float]) -> None:
            outcome, error, seconds = result
            st = statuses[run.run_id]
            st.seconds = round(seconds, 3)
            if error is None:
                try:
                    write(store, outcome)
                except Exception as exc:  # an outcome the store rejects must not stop the grid either
                    error = _error_text(exc)
            if error is None:
                st.status = "done"
            else:
                st.status, st.error = "failed", error
                store.fail_run(run.run_id, error)
            bar.advance(error is None)

        try:
            if executor == "local":
                _run_local(todo, record, threads)
            else:
                _run_dask(todo, record, threads, workers, scheduler)
        except BaseException as exc:  # interrupted: runs still pending are marked failed (a rerun resumes them)
            for run in todo:
                if statuses[run.run_id].status == "pending":
                    statuses[run.run_id].status = "failed"
                    statuses[run.run_id].error = f"interrupted ({_error_text(exc)})"
                    store.fail_run(run.run_id, statuses[run.run_id].error)
            raise
        finally:
            bar.close()
    boards = refresh_all(results) if any(s.status == "done" for s in statuses.values()) else []
    return GridReport([statuses[r.run_id] for r in planned], skipped, round(time.perf_counter() - start, 3),
                      executor, list(boards))


def _run_local(todo: Sequence[PlannedRun], record: Callable[..., None], threads: int | None) -> None:
    for run in todo:
        record(run, compute_task(run.request, threads))


def _run_dask(todo: Sequence[PlannedRun], record: Callable[..., None], threads: int | None, workers: int | None,
              scheduler: str | None) -> None:
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
        raise BenchError(f"--executor dask: cannot start or reach the Dask cluster{where}: {_error_text(exc)}") \
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
                result = (None, _error_text(exc), 0.0)
            record(run, result)
            fut.release()
    except BaseException:
        client.cancel(pending)
        raise
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
