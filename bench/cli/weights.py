"""`bench weights list | pull NAME|all | import PATH`: the pretrained-file manifest and its verified cache."""

from __future__ import annotations

from pathlib import Path

import click

from bench.cli.common import user_errors
from bench.errors import BenchError


def _size(size: int | None) -> str:
    if size is None:
        return "?"
    for unit, div in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= div:
            return f"{size / div:.1f} {unit}"
    return f"{size} B"


@click.group("weights")
def weights_group() -> None:
    """Manage pretrained files (listed in the manifest, cached under $BENCH_HOME, sha256-verified)."""


@weights_group.command("list")
@user_errors
def weights_list() -> None:
    """Show every manifest entry: its state (verified, shipped, refused, missing), size, licence and what it enables."""
    from bench import weights

    click.echo(f"cache: {weights.weights_dir()}")
    rows = weights.status_rows()
    width = max([len(r["name"]) for r in rows] + [4])
    click.echo(f"  {'name':<{width}}  {'state':<9} {'size':>9}  file")
    for row in rows:
        state = row["state"]
        click.echo(f"  {row['name']:<{width}}  {state:<9} {_size(row['size']):>9}  {row['filename']}")
        pad = " " * (width + 4)
        click.echo(f"{pad}enables: {row['used_by']}")
        click.echo(f"{pad}licence: {row['licence']}")
        if state == "shipped":
            click.echo(f"{pad}from:    {row['path']} (verified copy inside the installed package)")
        elif state == "refused":
            click.echo(f"{pad}problem: {row['problem']}")
            click.echo(f"{pad}fix:     delete {row['path']}, then bench weights pull {row['name']} "
                       f"(offline: bench weights import {row['filename']})")
        elif state == "missing":
            click.echo(f"{pad}fix:     bench weights pull {row['name']} (offline: bench weights import "
                       f"{row['filename']})")
    missing = [r["name"] for r in rows if r["state"] in ("missing", "refused")]
    if missing:
        click.echo(f"{len(missing)} of {len(rows)} not usable; `bench weights pull all` fetches them")


@weights_group.command("pull")
@click.argument("name")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@user_errors
def weights_pull(name: str, quiet: bool) -> None:
    """Fetch NAME (or `all`) from its package or URL, verify its sha256, and install it atomically."""
    from bench import weights

    names = [r["name"] for r in weights.status_rows() if r["state"] not in ("verified",)] if name == "all" else [name]
    if name != "all":
        weights.entry(name)  # unknown names fail with suggestions before any work
    failed = []
    for n in names:
        try:
            click.echo(f"{n}: {weights.pull(n, progress=not quiet)}")
        except BenchError as exc:
            if name != "all":
                raise
            failed.append(n)
            click.echo(f"{n}: error: {exc}", err=True)
    if name == "all" and not names:
        click.echo("every manifest file is already verified in the cache")
    if failed:
        raise BenchError(f"{len(failed)} of {len(names)} could not be pulled: {', '.join(failed)}")


@weights_group.command("import")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--name", default=None, help="Manifest entry (found from the file's hash or name when omitted).")
@user_errors
def weights_import(path: Path, name: str | None) -> None:
    """Copy a file, or every recognised file of a folder, into the cache after checking its sha256."""
    from bench import weights

    if name is not None or not path.is_dir():
        click.echo(str(weights.import_file(path, name)))
        return
    report = weights.import_path(path)
    for src, entry_name, dest in report.imported:
        click.echo(f"imported {entry_name}: {src} -> {dest}")
    for src, reason in report.refused:
        click.echo(f"refused  {src}: {reason}", err=True)
    if report.unknown:
        click.echo(f"{len(report.unknown)} file(s) are not in the manifest (left alone):")
        for src in report.unknown:
            click.echo(f"  {src}")
    if report.refused:
        raise BenchError(f"{len(report.refused)} file(s) named like manifest files were refused (see above)")
    if not report.imported:
        click.echo(f"nothing in {path} is a manifest file")
