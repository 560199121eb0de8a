"""Expanding a grid into its runs: the cross product of attacks, defenses, datasets and seeds, each planned (an
unknown name or bad value is one error before any work), with the pairings the attack cannot consume set aside as
skipped."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from bench.errors import BenchError, IncompatibleError
from bench.run import utility_split
from bench.run.grid_spec import GridSpec, load_grid_file, split_item_params
from bench.run.plan import DatasetCache, RunRequest, plan
from bench.run.stages import needs_evaluation_split


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
    # metric name -> the version a run would record now (Metric.expected_version): a stored value of another
    # version (a fixed metric, or semsim after a new checkpoint was trained for the folder) is computed again
    versions: dict[str, str] = field(default_factory=dict)
    # the utility convention tag (bench/run/utility_split.TAG) that the run's accuracy utilities must carry, None
    # when it measures none: a finished run whose stored utilities carry another (or none) has them measured again
    utility_tag: str | None = None


def _requests(grid: GridSpec, threads: int | None) -> Iterable[tuple[tuple[int, int, int], RunRequest]]:
    threads = grid.threads if threads is None else threads
    for ai, attack in enumerate(grid.attacks):
        attack_params, extractor_params = split_item_params(attack)
        for di, defense in enumerate(grid.defenses):
            for si, ds in enumerate(grid.datasets):
                for seed in grid.seeds:
                    yield (ai, di, si), RunRequest(
                        attack=attack.name, defense=defense.name, dataset=ds.name, data_root=ds.data_root,
                        profile=grid.profile, seed=seed, n_train=grid.n_train, n_test=grid.n_test,
                        results=grid.results, device=grid.device, extractor=grid.extractor,
                        metrics=None if grid.metrics is None else tuple(grid.metrics), progress=False,
                        attack_params={**dict(grid.attack_params), **attack_params},
                        defense_params=dict(defense.params), threads=threads,
                        extractor_params={**dict(grid.extractor_params), **extractor_params})


def plan_grid(grid: GridSpec, threads: int | None = None) -> tuple[list[PlannedRun], list[Skipped]]:
    """Plan every run of the grid: incompatible pairings are skipped (once per combination, all its seeds); any
    other mistake (unknown name, bad parameter, missing folder) is one BenchError before any work. `threads`
    (default: the grid's) goes into every request. Each dataset folder is listed once for all the grid's plans."""
    runs: list[PlannedRun] = []
    skipped: dict[tuple[int, int, int], Skipped] = {}
    seen: set[str] = set()
    datasets: DatasetCache = {}  # each dataset (name, root) is opened and listed once for the whole grid
    for combo, req in _requests(grid, threads):
        attack, defense, ds = grid.attacks[combo[0]], grid.defenses[combo[1]], grid.datasets[combo[2]]
        if combo in skipped:
            skipped[combo].seeds.append(req.seed)
            continue
        try:
            p = plan(req, datasets)
        except IncompatibleError as exc:
            skipped[combo] = Skipped(attack.label, defense.label, ds.name, [req.seed], str(exc))
            continue
        except BenchError as exc:
            raise BenchError(f"grid run {attack.label} vs {defense.label} on {ds.name} (seed {req.seed}): {exc}") \
                from None
        if p.spec.run_id in seen:  # the same run named twice (e.g. a dataset listed twice)
            continue
        seen.add(p.spec.run_id)
        versions = {n: m.expected_version(Path(req.results)) for n, m in p.metrics.items()}
        tag = utility_split.TAG if needs_evaluation_split(p) else None
        runs.append(PlannedRun(req, p.spec.run_id, p.spec.config_id, p.spec.to_dict(), attack.label, defense.label,
                               ds.name, req.seed, tuple(p.metrics), versions, tag))
        del p
    return runs, list(skipped.values())


def expand(grid: GridSpec, threads: int | None = None) -> tuple[list[RunRequest], list[Skipped]]:
    """The grid's cross product as RunRequests (planned and checked), and the skipped incompatible pairings."""
    runs, skipped = plan_grid(grid, threads)
    return [r.request for r in runs], skipped


def planned_run_ids(grid_file: Path) -> set[str]:
    """The run ids that `grid_file` plans (as `bench grid --grid-file F --dry-run` lists them)."""
    fields = load_grid_file(Path(grid_file))
    if not fields.get("attacks"):
        raise BenchError(f"grid file {grid_file} has no `attacks`: it plans no runs")
    planned, _ = plan_grid(GridSpec(**fields))
    return {p.run_id for p in planned}
