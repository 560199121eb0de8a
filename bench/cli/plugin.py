"""`bench plugin new | check | submit` for plugin authors, and `bench leaderboard import BUNDLE` for maintainers."""

from __future__ import annotations

from pathlib import Path

import click

from bench.cli.common import user_errors
from bench.errors import BenchError

_KIND_NAMES = {"attack": "attacks", "defense": "defenses", "metric": "metrics"}


@click.group("plugin")
def plugin_group() -> None:
    """Tools for plugin authors: scaffold a package, run the contract kit, bundle results for the leaderboard."""


@plugin_group.command("new")
@click.argument("name")
@click.option("--kind", type=click.Choice(list(_KIND_NAMES)), required=True, help="What the plugin is.")
@click.option("--dir", "directory", type=click.Path(path_type=Path), default=Path("."), show_default=True,
              help="Folder in which the package folder (leakbench-NAME) is created.")
@user_errors
def plugin_new(name: str, kind: str, directory: Path) -> None:
    """Scaffold an installable package for a new attack, defense or metric that passes the contract kit."""
    from bench.plugin_kit import names_for, scaffold

    root = scaffold(name, kind, directory)
    n = names_for(name)
    click.echo(f"wrote {root}/ ({n.distribution}: {n.module}/plugin.py, pyproject.toml, README.md, tests/)")
    click.echo("next:")
    click.echo(f"  pip install -e {root}")
    click.echo(f"  bench plugin check {name}")
    click.echo(f"  bench run --attack {name} --profile smoke" if kind == "attack"
               else f"  bench run --attack mean-image --defense {name} --profile smoke" if kind == "defense"
               else f"  bench run --attack mean-image --metrics {name} --profile smoke")


@plugin_group.command("check")
@click.argument("names", nargs=-1, required=True)
@click.option("--kind", type=click.Choice(["attacks", "defenses", "metrics"]), default=None,
              help="Which registry the names are in (found automatically when unique).")
@user_errors
def plugin_check(names: tuple[str, ...], kind: str | None) -> None:
    """Run the contract test kit on registered attacks, defenses or metrics (built-in or installed)."""
    from bench.contract import check_plugin

    failed = []
    for name in names:
        failures = 0
        if len(names) > 1:
            click.echo(name)
        for check, ok, detail in check_plugin(name, kind):
            failures += not ok
            click.echo(f"  {'PASS' if ok else 'FAIL'}  {check}" + (f": {detail}" if detail else ""))
        if failures:
            failed.append(f"{name}: {failures} contract check(s) failed")
        else:
            click.echo(f"{name}: all contract checks passed")
    if failed:
        raise BenchError("; ".join(failed))


@plugin_group.command("submit")
@click.argument("name")
@click.option("--results", type=click.Path(path_type=Path), default=Path("bench-results"), show_default=True,
              help="Results folder holding the plugin's finished runs.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Bundle to write: a folder, or NAME.tar.gz for an archive [RESULTS/submissions/NAME.tar.gz].")
@click.option("--kind", type=click.Choice(["attacks", "defenses", "metrics"]), default=None,
              help="Which registry NAME is in (found automatically when unique).")
@user_errors
def plugin_submit(name: str, results: Path, out: Path | None, kind: str | None) -> None:
    """Bundle every finished run of plugin NAME (specs, per-sample and set rows, grids, environment, re-run commands)."""
    from bench.submission import write_bundle

    path = write_bundle(name, results, out or results / "submissions" / f"{name}.tar.gz", kind)
    click.echo(f"wrote {path}")
    click.echo(f"check it as the maintainers will: bench leaderboard import {path} --results FRESH_FOLDER")


@click.command("import")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--results", type=click.Path(path_type=Path), default=Path("bench-results"), show_default=True,
              help="Results folder whose store receives the runs.")
@click.option("--max-size", "max_size", type=click.FloatRange(min=0, min_open=True), default=256, show_default=True,
              metavar="MIB", help="Refuse an archive whose members declare more than this many MiB in all (checked "
                                  "before anything is extracted).")
@user_errors
def leaderboard_import(bundle: Path, results: Path, max_size: float) -> None:
    """Verify a submission bundle (hashes, run ids, complete rows, known conventions) and add its runs, marked with
    their source; importing a bundle twice adds nothing."""
    from bench.submission import import_bundle

    report = import_bundle(bundle, results, max_size)
    click.echo(f"source: {report.source}")
    click.echo(f"imported {len(report.imported)} run(s)" +
               (f"; {len(report.already)} already in the store, unchanged" if report.already else ""))
    for command in report.commands:
        click.echo(f"  re-run: {command} --results DIR")
    for path in report.leaderboards:
        click.echo(str(path))
