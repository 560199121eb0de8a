"""`bench leaderboard`: regenerate leaderboard tables (CSV, Markdown, LaTeX, HTML) and figures from the store."""

from __future__ import annotations

from pathlib import Path

import click

from bench.cli.common import user_errors
from bench.report import DEFAULT_FIGURE_METRIC


def _split(values: tuple[str, ...]) -> list[str]:
    """Repeatable options that also take comma-separated lists, in order, without duplicates."""
    out: list[str] = []
    for value in values:
        for part in value.split(","):
            if part.strip() and part.strip() not in out:
                out.append(part.strip())
    return out


# A group that still runs on its own: `bench leaderboard [options]` regenerates the tables, and
# `bench leaderboard import BUNDLE` (bench/cli/plugin.py) adds a verified submission bundle.
@click.group("leaderboard", invoke_without_command=True)
@click.option("--results", type=click.Path(path_type=Path), default=Path("bench-results"), show_default=True,
              help="Results folder whose store is read (and whose runs/<id>/grid.png the HTML page embeds).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Where to write the tables [RESULTS/leaderboards].")
@click.option("--format", "formats", multiple=True, metavar="csv|md|tex|html",
              help="Formats to write, repeatable or comma-separated [csv]: <dataset>.csv (one row per "
                   "configuration), .md and .tex (one table per defense), .html (one sortable page).")
@click.option("--dataset", "datasets", multiple=True, help="Only these datasets (repeatable) [every dataset].")
@click.option("--defense", "defenses", multiple=True,
              help="Only these defenses, by name or full label such as subsample(keep=0.25) (repeatable; labels "
                   "hold commas, so give one per option).")
@click.option("--metrics", "metrics", multiple=True, help="Only these metric columns, comma-separated, in order.")
@click.option("--figures", is_flag=True, default=False,
              help="Also write <dataset>-leakage-utility.png/.pdf and <dataset>-attacks.png/.pdf.")
@click.option("--figure-metric", default=DEFAULT_FIGURE_METRIC, show_default=True,
              help="The leakage metric the figures plot (the best attack per defense is chosen by its direction).")
@click.option("--tex-width", default="6.5in", show_default=True,
              help="Text width the LaTeX tables are laid out for (e.g. 3.5in for a two-column paper's column): "
                   "wider tables are split into stacked parts, then shrunk to the line width.")
@click.option("--from-csv", "from_csv", type=click.Path(path_type=Path), default=None,
              help="Render this CSV leaderboard as md/tex/html [md,tex] (and --figures) without the store (e.g. a "
                   "committed one); files go beside it as <CSV stem>.<format> unless --out; --dataset names it.")
@click.option("--grid-file", type=click.Path(path_type=Path, dir_okay=False, exists=True), default=None,
              help="Only the runs this grid file plans (as `bench grid --grid-file F --dry-run` lists them), so a "
                   "table holds one grid's rows even when its results folder holds other runs.")
@click.pass_context
@user_errors
def leaderboard_cmd(ctx: click.Context, results: Path, out_dir: Path | None, formats: tuple[str, ...], datasets: tuple[str, ...],
                    defenses: tuple[str, ...], metrics: tuple[str, ...], figures: bool, figure_metric: str,
                    tex_width: str, from_csv: Path | None, grid_file: Path | None) -> None:
    """Regenerate leaderboard tables and figures from the results store (CSV by default, one file per dataset);
    `import BUNDLE` adds a verified submission."""
    if ctx.invoked_subcommand is not None:
        return
    from bench.report.publish import publish, publish_from_csv

    chosen_defenses = list(dict.fromkeys(d.strip() for d in defenses if d.strip()))
    if from_csv is not None:
        if grid_file is not None:
            raise click.UsageError("--grid-file selects runs of the store; --from-csv reads no store")
        if len(_split(datasets)) > 1:
            raise click.UsageError("--from-csv renders one CSV's tables and figures: at most one --dataset")
        for path in publish_from_csv(from_csv, out_dir, _split(formats) or ["md", "tex"],
                                     (_split(datasets) or [None])[0], chosen_defenses, _split(metrics), tex_width,
                                     figures, figure_metric):
            click.echo(str(path))
        return
    from bench.run.grid_plan import planned_run_ids

    run_ids = planned_run_ids(grid_file) if grid_file is not None else None
    paths = publish(results, out_dir, _split(formats) or ["csv"], _split(datasets), chosen_defenses, _split(metrics),
                    figures, figure_metric, tex_width, run_ids, grid_file)
    if not paths:
        click.echo("no finished runs in the store yet")
    for path in paths:
        click.echo(str(path))
