"""`bench annotate serve | import | export`: collect human judgements of reconstructions into the results store."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from bench.cli.common import user_errors
from bench.errors import BenchError

_RESULTS = click.option("--results", type=click.Path(path_type=Path), default=Path("bench-results"),
                        show_default=True, help="Results folder whose store holds the runs and the annotations.")


def _runs(values: tuple[str, ...]) -> list[str] | None:
    out = [v.strip() for value in values for v in value.split(",") if v.strip()]
    return out or None


def _open_store(results: Path):  # noqa: ANN202
    from bench.store import Store

    path = Path(results) / "bench.sqlite"
    if not path.is_file():
        raise BenchError(f"no results store at {path}; give --results DIR, a folder `bench run` wrote")
    return Store(path)


@click.group("annotate")
def annotate_group() -> None:
    """Human annotations: a local web page to collect them, CSV and SemSim-layout import, CSV export."""


@annotate_group.command("serve")
@_RESULTS
@click.option("--runs", multiple=True, metavar="ID[,ID...]",
              help="Runs whose reconstructions are annotated (ids or unique prefixes; repeatable) [all finished].")
@click.option("--task", type=click.Choice(["recognisable", "pair"]), default="recognisable", show_default=True,
              help="recognisable: yes/no per reconstruction; pair: which of two reconstructions of the same original "
                   "is closer to it (needs two runs on one dataset).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind (only this machine by default; the token is still required).")
@click.option("--port", type=click.IntRange(0, 65535), default=8750, show_default=True,
              help="Port; 0 picks a free one.")
@user_errors
def serve_cmd(results: Path, runs: tuple[str, ...], task: str, host: str, port: int) -> None:
    """Serve the annotation page until Ctrl-C; open the printed URL (it carries the access token)."""
    from bench.annotations.server import serve

    server = serve(results, _runs(runs), task, host, port)
    cat = server.service.catalogue
    click.echo(f"annotating {len(cat.items)} {task} item(s) from {len(cat.runs)} run(s): {', '.join(cat.runs)}")
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"warning: listening on {host}: other machines that can reach it may open the page (the token "
                   f"is still required; the connection is plain http)", err=True)
    click.echo(f"open: {server.url}")
    click.echo("answers are saved as they are given; Ctrl-C stops the server")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("stopped")
    finally:
        server.httpd.server_close()


@annotate_group.command("import")
@click.argument("path", type=click.Path(path_type=Path))
@_RESULTS
@click.option("--format", "fmt", type=click.Choice(["auto", "csv", "semsim"]), default="auto", show_default=True,
              help="csv (bench annotate export's columns) or semsim (the SemSim release's folder layout); auto: a "
                   "file is csv, a folder is semsim.")
@click.option("--source", default=None, help="semsim: the source name stored instead of a run id "
                                                 "[semsim-release:<folder name>].")
@click.option("--annotator", default="semsim-release", show_default=True,
              help="semsim: the annotator id stored with the layout's labels.")
@user_errors
def import_cmd(path: Path, results: Path, fmt: str, source: str | None, annotator: str) -> None:
    """Import annotations (answers already in the store for the same item and annotator are updated)."""
    from bench.annotations.transfer import import_csv, import_semsim_layout

    if fmt == "auto":
        if not path.exists():
            raise BenchError(f"{path}: no such file or folder")
        fmt = "semsim" if path.is_dir() else "csv"
    with _open_store(results) as store:
        if fmt == "csv":
            counts = import_csv(store, path)
            click.echo(f"imported {counts['recognisable']} recognisable and {counts['pair']} pair answer(s) "
                       f"from {path}")
        else:
            got = import_semsim_layout(store, path, source, annotator)
            click.echo(f"imported {got['rows']} labels ({got['recognisable']} recognisable, {got['unrecognisable']}"
                       f" not) of {got['ids']} originals as source {got['source']} (annotator {annotator})")
            if got["ids_without_original"]:
                click.echo(f"warning: {len(got['ids_without_original'])} id(s) without a *_ori original left out, "
                           f"e.g. {got['ids_without_original'][0]}", err=True)
            if got["others_not_imported"]:
                click.echo(f"note: {got['others_not_imported']} file(s) in others/ belong to no original and were "
                           f"not imported")


@annotate_group.command("export")
@_RESULTS
@click.option("--out", "out", type=click.Path(path_type=Path), default=None,
              help="CSV file to write [standard output].")
@click.option("--runs", multiple=True, metavar="ID[,ID...]", help="Only the answers about these runs [all].")
@user_errors
def export_cmd(results: Path, out: Path | None, runs: tuple[str, ...]) -> None:
    """Write every annotation (both kinds) as CSV, in the format `bench annotate import` reads."""
    from bench.annotations.transfer import export_rows, to_csv

    with _open_store(results) as store:
        rows = export_rows(store, _runs(runs))
    text = to_csv(rows)
    if out is None:
        click.echo(text, nl=False)
        return
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    except OSError as exc:
        raise BenchError(f"cannot write {out}: {exc.strerror or exc}") from None
    click.echo(f"{len(rows)} answer(s) written to {out}", err=True)
