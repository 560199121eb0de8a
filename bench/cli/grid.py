"""`bench grid`: run attacks × defenses × datasets × seeds, locally or on Dask, into one results store."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from bench.cli.common import user_errors
from bench.metric_conventions import metrics_help
from bench.profiles import PROFILES, get_profile


def _table(rows: list[list[str]], header: list[str]) -> list[str]:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def print_report(report: Any) -> None:
    """The summary table (one line per run), the counts and the leaderboard paths."""
    rows = [[r.run_id, r.attack, r.defense, r.dataset, str(r.seed),
             r.status + (" (already complete)" if r.reused else ""), r.error or ""] for r in report.runs]
    click.echo("")
    for line in _table(rows, ["run id", "attack", "defense", "dataset", "seed", "status", "error"]):
        click.echo(line)
    click.echo("")
    click.echo(report.summary())
    for path in report.leaderboards:
        click.echo(f"leaderboard: {path}")


@click.command("grid")
@click.option("--attacks", default=None, metavar="A,B",
              help="Comma-separated attacks, each NAME or NAME:KEY=VALUE[:KEY=VALUE] with declared parameters and "
                   "hyper-parameters (`bench list attacks -v`), e.g. cfgan:steps=10 (steps of every stage).")
@click.option("--defenses", default=None, metavar="X,Y:K=V",
              help="Comma-separated defenses, each NAME or NAME:KEY=VALUE[:KEY=VALUE] [none].")
@click.option("--datasets", default=None, metavar="NAME[=ROOT],...",
              help="Comma-separated datasets, each NAME or NAME=ROOT (its image folder) [synthetic-faces].")
@click.option("--seeds", default=None, metavar="0,1,2", help="Comma-separated seeds, or a range such as 0-4 [0].")
@click.option("--attack-arg", "attack_args", multiple=True, metavar="KEY=VALUE",
              help="A parameter given to every attack of the grid (repeatable).")
@click.option("--profile", type=click.Choice(list(PROFILES)), default=None, help="Profile of every run [cpu].")
@click.option("--n-train", type=click.IntRange(min=1), default=None, help="Auxiliary split size [profile default].")
@click.option("--n-test", type=click.IntRange(min=1), default=None, help="Private split size [profile default].")
@click.option("--metrics", "metric_names", default=None,
              help=metrics_help("each run's defaults"))
@click.option("--extractor", default=None, help="Victim feature extractor [each attack's declared default].")
@click.option("--extractor-arg", "extractor_args", multiple=True, metavar="KEY=VALUE",
              help="An extractor parameter of every run, e.g. batch=2 (repeatable); an attack item's own "
                   "`extractor.KEY=VALUE` (`--attacks dlg:extractor.batch=4`) wins.")
@click.option("--results", type=click.Path(path_type=Path), default=None,
              help="Results folder: store, cache, runs, leaderboards [bench-results].")
@click.option("--device", default=None, help="cpu, cuda or cuda:N [cpu].")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="torch and OpenCV threads per run [local: the cores of this process; dask: 1 per worker].")
@click.option("--executor", type=click.Choice(["local", "dask"]), default="local", show_default=True,
              help="local: one run after another in this process; dask: runs in parallel on a Dask cluster.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Worker processes of the local Dask cluster [2] (with --executor dask).")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="Address of a running Dask scheduler, e.g. tcp://host:8786 (with --executor dask).")
@click.option("--grid-file", type=click.Path(path_type=Path), default=None,
              help="TOML (or YAML) file with the grid's keys; options given here override it.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--dry-run", is_flag=True,
              help="Plan only: validate every item, print the runs the grid holds (run id, attack, defense, dataset, "
                   "seed, and whether the results store holds it done or a start would compute it) and the skipped "
                   "pairings, and run nothing.")
@user_errors
def grid_cmd(attacks: str | None, defenses: str | None, datasets: str | None, seeds: str | None,
             attack_args: tuple[str, ...], profile: str | None, n_train: int | None, n_test: int | None,
             metric_names: str | None, extractor: str | None, extractor_args: tuple[str, ...],
             results: Path | None, device: str | None,
             threads: int | None, executor: str, workers: int | None, scheduler: str | None,
             grid_file: Path | None, quiet: bool, dry_run: bool = False) -> None:
    """Run every attack against every defense on every dataset and seed; one store, one leaderboard refresh.

    Pairings an attack cannot consume are listed as skipped; a run that fails is recorded with its error and the
    others go on (exit status 1 at the end). Runs already complete in the store are not run again, so a grid that
    was stopped resumes when started again.
    """
    import os

    from bench.errors import BenchError
    from bench.params import parse_assignments
    from bench.run.grid import run_grid

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise BenchError("bench grid does not run under torchrun (its runs are single-process); train one run on "
                         "several processes with `bench run --launcher torchrun`")
    from bench.run.grid_spec import (GridSpec, load_grid_file, parse_dataset_item, parse_plugin_item, parse_seeds,
                                     split_list)

    if executor == "local" and (workers is not None or scheduler is not None):
        raise BenchError("--workers and --scheduler go with --executor dask")
    fields: dict[str, Any] = load_grid_file(grid_file) if grid_file else {}
    if attacks is not None:
        fields["attacks"] = [parse_plugin_item(a, "--attacks") for a in split_list(attacks)]
    if defenses is not None:
        fields["defenses"] = [parse_plugin_item(d, "--defenses") for d in split_list(defenses)]
    if datasets is not None:
        fields["datasets"] = [parse_dataset_item(d) for d in split_list(datasets)]
    if seeds is not None:
        fields["seeds"] = parse_seeds(seeds)
    if attack_args:
        fields["attack_params"] = {**fields.get("attack_params", {}), **parse_assignments(attack_args, "--attack-arg")}
    if extractor_args:
        fields["extractor_params"] = {**fields.get("extractor_params", {}),
                                      **parse_assignments(extractor_args, "--extractor-arg")}
    if metric_names is not None:
        fields["metrics"] = tuple(split_list(metric_names))
    overrides = {"profile": profile, "n_train": n_train, "n_test": n_test, "extractor": extractor,
                 "results": results, "device": device, "threads": threads}
    fields.update({k: v for k, v in overrides.items() if v is not None})
    if not fields.get("attacks"):
        raise BenchError("no attack given; pass --attacks A,B or a --grid-file with `attacks`")
    grid = GridSpec(**fields)

    def skipped(s: Any) -> None:
        seeds_text = ",".join(map(str, s.seeds))
        click.echo(f"skipped: {s.attack} vs {s.defense} on {s.dataset} (seeds {seeds_text}): {s.reason}")

    if dry_run:
        from bench.run.grid_plan import plan_grid

        from bench.run.grid import dry_run_states

        planned, skips = plan_grid(grid)
        for s in skips:
            skipped(s)
        states = dry_run_states(grid, planned)
        for p in planned:
            click.echo(f"{p.run_id}  {p.attack} vs {p.defense} on {p.dataset}, seed {p.seed}: {states[p.run_id]}")
        click.echo(f"{len(planned)} runs planned, {len(skips)} pairings skipped (dry run: nothing was run)")
        return
    report = run_grid(grid, executor=executor, workers=workers, scheduler=scheduler, progress=not quiet,
                      on_skip=skipped)
    print_report(report)
    caveat = get_profile(grid.profile).caveat
    if caveat:
        click.echo(f"note: {caveat}")
    if report.failed:
        sys.exit(1)


__all__ = ["grid_cmd", "print_report"]
