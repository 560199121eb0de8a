"""The `bench` command line: list plugins, run an attack against a defense, describe, leaderboards, weights."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any, Callable

import click

from bench import registry
from bench.errors import BenchError
from bench.profiles import DEFAULT_PROFILE, PROFILES

KINDS = ("attacks", "defenses", "metrics", "datasets", "extractors")


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a BenchError into one clear line on stderr and exit status 2, without a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BenchError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="leakbench", prog_name="bench")
def main() -> None:
    """Privacy-leakage benchmark: how much of a private image can an attacker rebuild from released features?"""


# ------------------------------------------------------------------------------------------------------- list
@main.command("list")
@click.argument("kind", required=False, type=click.Choice(KINDS))
@user_errors
def list_cmd(kind: str | None) -> None:
    """List registered plugins (all kinds, or one) with a one-line description."""
    for k in [kind] if kind else KINDS:
        click.echo(f"{k}:")
        for entry in registry.REGISTRIES[k]:
            extra = ""
            if k == "attacks":
                extra = f"  [consumes {entry.meta['consumes']}; profiles {', '.join(entry.meta['profiles'])}]"
            elif k == "metrics":
                arrow = "higher is better" if entry.meta["higher_is_better"] else "lower is better"
                extra = f"  [{arrow}]"
            elif k == "datasets" and entry.meta.get("note"):
                extra = f"  [{entry.meta['note']}]"
            click.echo(f"  {entry.name:<20} {entry.summary}{extra}")
        if not kind:
            click.echo("")


# -------------------------------------------------------------------------------------------------------- run
@main.command("run")
@click.option("--attack", required=True, help="Attack to run (see `bench list attacks`).")
@click.option("--defense", default="none", show_default=True, help="Defense applied to the released features.")
@click.option("--dataset", default="synthetic-faces", show_default=True,
              help="Dataset (see `bench list datasets`); the default is the embedded synthetic demo set.")
@click.option("--data-root", type=click.Path(path_type=Path), default=None,
              help="Folder holding the dataset's images (datasets other than synthetic-faces).")
@click.option("--aux-dataset", default=None, help="Train the attack on this dataset instead (cross-dataset attack).")
@click.option("--aux-data-root", type=click.Path(path_type=Path), default=None,
              help="Folder of the auxiliary dataset (default: --data-root).")
@click.option("--profile", type=click.Choice(list(PROFILES)), default=DEFAULT_PROFILE, show_default=True,
              help="smoke: seconds (tests); cpu: minutes on a laptop; paper: the published configuration (GPU).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for splits, keys, training.")
@click.option("--n-train", type=int, default=None, help="Auxiliary (attacker) split size [profile default].")
@click.option("--n-test", type=int, default=None, help="Private split size [profile default].")
@click.option("--results", type=click.Path(path_type=Path), default=Path("bench-results"), show_default=True,
              help="Results folder: store, cache, runs, leaderboards.")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda.")
@click.option("--extractor", default=None, help="Victim feature extractor [the one the attack consumes].")
@click.option("--metrics", "metric_names", default=None,
              help="Comma-separated metrics [mse,psnr,ssim,ssim-sift-compat].")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@user_errors
def run_cmd(attack: str, defense: str, dataset: str, data_root: Path | None, aux_dataset: str | None,
            aux_data_root: Path | None, profile: str, seed: int, n_train: int | None, n_test: int | None,
            results: Path, device: str, extractor: str | None, metric_names: str | None, quiet: bool) -> None:
    """Train ATTACK on the auxiliary split, reconstruct the private split, score it, store and tabulate."""
    from bench.run.plan import DEFAULT_METRICS, RunRequest
    from bench.run.runner import execute

    metrics = tuple(m.strip() for m in metric_names.split(",") if m.strip()) if metric_names else DEFAULT_METRICS
    req = RunRequest(attack=attack, defense=defense, dataset=dataset, data_root=data_root, profile=profile,
                     seed=seed, n_train=n_train, n_test=n_test, results=results, device=device,
                     extractor=extractor, aux_dataset=aux_dataset, aux_data_root=aux_data_root, metrics=metrics,
                     progress=not quiet)
    result = execute(req)
    record = result.record
    click.echo("")
    note = f"  [{record['dataset_note']}]" if record.get("dataset_note") else ""
    click.echo(f"{attack} vs {defense} on {dataset}{note}: profile {profile}, "
               f"{record['n_train_loaded']} auxiliary / {record['n_test_loaded']} private images, "
               f"extracted at {record['resolutions']['extract']}px, scored at "
               f"{record['resolutions']['reconstruct_and_score']}px")
    click.echo(f"{'metric':<20}{'mean':>12}  better")
    for name, row in sorted(result.set_metrics.items()):
        entry = registry.metrics.get(name)
        arrow = "higher" if entry.meta["higher_is_better"] else "lower"
        value = row["value"]
        shown = "nan" if value is None else f"{value:.4f}"
        click.echo(f"{name:<20}{shown:>12}  {arrow}")
    for line in record.get("notes", []):
        click.echo(f"note: {line}")
    skipped = record["skipped_files"]
    if skipped["count"]:
        names = ", ".join(f["file"] for f in skipped["files"][:5]) + (", ..." if skipped["count"] > 5 else "")
        click.echo(f"warning: {skipped['count']} unreadable image file(s) skipped: {names} (listed in run.json)")
    click.echo(f"wall time: {sum(record['timings_s'].values()):.1f} s")
    click.echo(f"run folder:  {result.run_dir}  (run.json, metrics.csv, grid.png, reconstructions/)")
    click.echo(f"leaderboard: {result.leaderboard}")


# --------------------------------------------------------------------------------------------------- describe
@main.command("describe")
@click.option("--attack", required=True, help="Attack to describe.")
@click.option("--profile", type=click.Choice(list(PROFILES)), default=DEFAULT_PROFILE, show_default=True)
@user_errors
def describe_cmd(attack: str, profile: str) -> None:
    """Print an attack's architecture figures (parameters, FLOPs) beside the paper's."""
    from bench.profiles import get_profile

    entry = registry.attacks.get(attack)
    prof = get_profile(profile)
    obj = entry.obj(profile=profile, image_size=prof.image_size, device="cpu", seed=0)
    click.echo(f"{attack} ({entry.meta['paper'] or 'no paper'}), profile {profile}")
    click.echo(f"consumes: {entry.meta['consumes']}")
    figures = obj.describe()
    if not figures:
        click.echo("(this attack reports no architecture figures)")
    for key, value in figures.items():
        click.echo(f"  {key:<34} {_fmt(value)}")


def _fmt(value: Any) -> str:
    if isinstance(value, float) and abs(value) >= 1e4:
        return f"{value:,.0f} ({value / 1e9:.2f} G)" if value >= 1e9 else f"{value:,.0f} ({value / 1e6:.2f} M)"
    if isinstance(value, int) and abs(value) >= 1e4:
        return f"{value:,} ({value / 1e9:.2f} G)" if value >= 1e9 else f"{value:,} ({value / 1e6:.2f} M)"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items())
    return str(value)


# ------------------------------------------------------------------------------------------------ leaderboard
@main.command("leaderboard")
@click.option("--results", type=click.Path(path_type=Path), default=Path("bench-results"), show_default=True,
              help="Results folder whose store is read.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Where to write the tables [RESULTS/leaderboards].")
@user_errors
def leaderboard_cmd(results: Path, out_dir: Path | None) -> None:
    """Regenerate the leaderboard CSVs (one per dataset) from the results store."""
    from bench.report.leaderboard import refresh_all

    paths = refresh_all(results, out_dir)
    if not paths:
        click.echo("no finished runs in the store yet")
    for path in paths:
        click.echo(str(path))


# ---------------------------------------------------------------------------------------------------- weights
@main.group("weights")
def weights_group() -> None:
    """Manage pretrained files (listed in the manifest, cached under $BENCH_HOME, sha256-verified)."""


@weights_group.command("list")
@user_errors
def weights_list() -> None:
    """Show every manifest entry and whether it is present and verified."""
    from bench import weights

    click.echo(f"cache: {weights.weights_dir()}")
    for row in weights.status_rows():
        state = "ok" if row.get("verified") else ("present, NOT verified" if row.get("present") else "missing")
        click.echo(f"  {row['name']:<12} {state:<22} {row['filename']}  ({row['used_by']}; {row['licence']})")


@weights_group.command("pull")
@click.argument("name")
@user_errors
def weights_pull(name: str) -> None:
    """Download NAME from its manifest URL and verify it (needs internet)."""
    from bench import weights

    click.echo(str(weights.pull(name)))


@weights_group.command("import")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--name", default=None, help="Manifest entry (found from the file's hash or name when omitted).")
@user_errors
def weights_import(path: Path, name: str | None) -> None:
    """Copy a file obtained by hand into the cache, after checking its sha256 against the manifest."""
    from bench import weights

    click.echo(str(weights.import_file(path, name)))


# ----------------------------------------------------------------------------------------------------- plugin
@main.group("plugin")
def plugin_group() -> None:
    """Tools for plugin authors."""


@plugin_group.command("check")
@click.argument("name")
@click.option("--kind", type=click.Choice(["attacks", "defenses", "metrics"]), default=None,
              help="Which registry NAME is in (found automatically when unique).")
@user_errors
def plugin_check(name: str, kind: str | None) -> None:
    """Run the contract test kit on a registered attack, defense or metric (built-in or installed)."""
    from bench.contract import check_plugin

    failures = 0
    for check, ok, detail in check_plugin(name, kind):
        failures += not ok
        click.echo(f"  {'PASS' if ok else 'FAIL'}  {check}" + (f": {detail}" if detail else ""))
    if failures:
        raise BenchError(f"{name}: {failures} contract check(s) failed")
    click.echo(f"{name}: all contract checks passed")


if __name__ == "__main__":  # pragma: no cover
    main()
