"""`bench correlate`: how well each metric agrees with the human annotations in a results store."""

from __future__ import annotations

from pathlib import Path

import click

from bench.cli.common import user_errors


@click.command("correlate")
@click.option("--results", type=click.Path(path_type=Path), default=Path("bench-results"), show_default=True,
              help="Results folder whose store holds the runs, their metric values and the annotations.")
@click.option("--level", type=click.Choice(["config", "sample"]), default="config", show_default=True,
              help="config: one point per configuration (attack × defense × dataset; seeds pooled), human score = "
                   "share judged recognisable (SemSim's protocol); sample: one point per reconstruction.")
@click.option("--metrics", multiple=True, metavar="NAME[,NAME...]", help="Metrics to correlate [all with values].")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Folder for the CSVs and plots [RESULTS/correlation].")
@click.option("--resamples", type=click.IntRange(100, 1_000_000), default=2000, show_default=True,
              help="Bootstrap resamples for the 95 % intervals.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap.")
@click.option("--no-plots", is_flag=True, help="Write the CSVs only.")
@user_errors
def correlate_cmd(results: Path, level: str, metrics: tuple[str, ...], out_dir: Path | None, resamples: int,
                  seed: int, no_plots: bool) -> None:
    """Spearman, Pearson and Kendall (p-values, bootstrap 95 % CIs) of each metric against the annotations,
    oriented so that positive means "agrees with humans"; inter-annotator agreement beside them."""
    from bench.report.correlation import correlate, fmt

    names = [m.strip() for value in metrics for m in value.split(",") if m.strip()] or None
    rep = correlate(results, level, names, out_dir, n_resamples=resamples, seed=seed, plots=not no_plots)
    if rep.constructed or any(r["annotations"] != "human" for r in rep.pair_rows):
        click.echo("NOTE: constructed annotations, not human judgements (annotator ids beginning 'constructed')")
    click.echo(f"{len(rep.annotators)} annotator(s): {', '.join(rep.annotators)}")
    ag = rep.agreement
    click.echo(f"agreement: Krippendorff's alpha (nominal) = {ag.alpha:.3f} over {ag.units} item(s) with two or more "
               f"answers" if ag.status == "ok" else f"agreement: {ag.reason}")
    click.echo(f"{level} level; positive = agrees with humans; 95 % percentile bootstrap ({resamples} resamples)")
    click.echo(f"{'metric':<18} {'method':<9} {'n':>4} {'r':>7} {'p':>8}  95 % CI")
    for r in rep.rows:
        head = f"{r['metric']:<18} {r['method']:<9} {r['n']:>4} "
        if r["status"] == "ok":
            click.echo(head + f"{fmt(r['r']):>7} {fmt(r['p']):>8}  [{fmt(r['ci_low'])}, {fmt(r['ci_high'])}]"
                       + (f"  ({r['note']})" if r["note"] else ""))
        else:
            click.echo(head + f"{'undefined':>7}  ({r['note']})")
    if rep.pair_rows:
        first = rep.pair_rows[0]
        click.echo(f"pairs (two-alternative forced choice): {first['annotators']} annotator(s); "
                   + (f"agreement: Krippendorff's alpha (nominal) = {first['agreement_alpha']:.3f}"
                      if first["agreement_alpha"] != "undefined" else first["agreement_note"]))
        click.echo(f"{'metric':<18} {'answers':>7} {'agrees':>7} {'p':>8}  95 % CI   (chance = 0.5)")
        for r in rep.pair_rows:
            head = f"{r['metric']:<18} {r['answers']:>7} "
            if r["status"] == "ok":
                click.echo(head + f"{fmt(r['agreement']):>7} {fmt(r['p']):>8}  [{fmt(r['ci_low'])}, "
                           f"{fmt(r['ci_high'])}]" + (f"  ({r['note']})" if r["note"] else ""))
            else:
                click.echo(head + f"{'undefined':>7}  ({r['note']})")
    for note in rep.notes:
        click.echo(f"note: {note}")
    click.echo(f"table:  {rep.csv_path}")
    click.echo(f"points: {rep.points_path}")
    if rep.pairs_path:
        click.echo(f"pairs:  {rep.pairs_path}")
    for p in rep.plots:
        click.echo(f"plot:   {p}")
