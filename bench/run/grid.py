"""A grid of runs: attacks × defenses × datasets × seeds, computed locally or on Dask, written by one coordinator.

The coordinator plans every run first (an unknown name or a bad value stops the grid before any work; a pairing the
attack cannot consume is listed as skipped), marks each run as started in the store, and hands `compute(request)` to
the executor: `local` runs them one after another in this process, `dask` sends them to a Dask cluster (a local one
with one-thread worker processes by default, or any scheduler address). Workers compute and write only files; as
each outcome arrives the coordinator writes it to SQLite, so the store has exactly one writer. A run that raises is
recorded as failed with its error and the grid goes on. Runs already done with every requested metric are not sent
again, so a killed grid started again resumes; the others resume from the stage cache. A stored value of another
version than the metric would record now (`Metric.expected_version`: a fixed metric, or semsim once a checkpoint
is trained for the results folder) makes its run count as not done: it is scored again from its saved
reconstructions. So does an accuracy utility stored under an older convention than bench/run/utility_split.py's
(e.g. measured on the private images): the run is computed again, only its utility stage doing new work.

Here: the coordinator and its report. The grid file and its fields: grid_spec.py; expanding and planning the runs:
grid_plan.py; the executors: grid_executors.py.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from bench.errors import BenchError
from bench.run import grid_executors
from bench.run.grid_executors import error_text
from bench.run.grid_plan import PlannedRun, Skipped, plan_grid
from bench.run.grid_spec import GridSpec


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


def _already_complete(store: Any, run: PlannedRun) -> bool:
    """Done in the store with a set-level value for every requested metric, each of the version the metric would
    record now (so semsim, stored `unavailable` before `bench semsim train` bound a checkpoint to the folder or
    scored with an older checkpoint, is scored again; the run reuses its saved reconstructions)."""
    row = store.run(run.run_id)
    if not row or row.get("status") != "done":
        return False
    stored = store.set_metrics(run.run_id)
    if not set(run.metrics) <= set(stored):
        return False
    if not all(stored[n].get("version") == v for n, v in run.versions.items() if n in stored):
        return False
    return _utility_current(store, run)


def _utility_current(store: Any, run: PlannedRun) -> bool:
    """Whether the run's accuracy utilities were measured under the current convention (bench/run/utility_split.py):
    a run done before it (measured on its private images, no detail stored) counts as not done, and is computed
    again from its caches and saved reconstructions, so only the utility stage does new work."""
    if run.utility_tag is None:
        return True
    stored = store.utility(run.run_id)
    return bool(stored) and all(str(u.get("detail") or "").startswith(run.utility_tag) for u in stored.values())


def dry_run_states(grid: GridSpec, planned: list[PlannedRun]) -> dict[str, str]:
    """Per planned run, what a start of the grid would do with it (`bench grid --dry-run`): "done" (not sent
    again), "to compute", or "done, to re-score" when it finished but a metric or the utility is out of date."""
    from bench.store import Store

    db = Path(grid.results) / "bench.sqlite"
    if not db.is_file():
        return {r.run_id: "to compute" for r in planned}
    out: dict[str, str] = {}
    with Store(db) as store:
        for run in planned:
            row = store.run(run.run_id)
            if _already_complete(store, run):
                out[run.run_id] = "done"
            elif row and row.get("status") == "done":
                why = "utility" if not _utility_current(store, run) else "metrics"
                out[run.run_id] = f"done, to re-score ({why})"
            else:
                out[run.run_id] = "to compute"
    return out


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
    if executor not in grid_executors.EXECUTORS:
        raise BenchError(f"--executor {executor!r}: choose one of {', '.join(grid_executors.EXECUTORS)}")
    if executor == "dask" and not grid_executors.dask_available():
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
                    error = error_text(exc)
            if error is None:
                st.status = "done"
            else:
                st.status, st.error = "failed", error
                store.fail_run(run.run_id, error)
            bar.advance(error is None)

        try:
            if executor == "local":
                grid_executors.run_local(todo, record, threads)
            else:
                grid_executors.run_dask(todo, record, threads, workers, scheduler)
        except BaseException as exc:  # interrupted: runs still pending are marked failed (a rerun resumes them)
            for run in todo:
                if statuses[run.run_id].status == "pending":
                    statuses[run.run_id].status = "failed"
                    statuses[run.run_id].error = f"interrupted ({error_text(exc)})"
                    store.fail_run(run.run_id, statuses[run.run_id].error)
            raise
        finally:
            bar.close()
    boards = refresh_all(results) if any(s.status == "done" for s in statuses.values()) else []
    return GridReport([statuses[r.run_id] for r in planned], skipped, round(time.perf_counter() - start, 3),
                      executor, list(boards))
