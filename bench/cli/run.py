"""`bench run`: train an attack on the auxiliary split, attack the private split's released features, score."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from bench import registry
from bench.cli.common import user_errors
from bench.metric_conventions import metrics_help
from bench.params import parse_assignments
from bench.profiles import DEFAULT_PROFILE, PROFILES


def print_summary(result: Any, attack: str, defense: str, dataset: str, profile: str) -> None:
    """The run's header, one line per metric (value or status with its fix), notes and where things are."""
    record = result.record
    note = f"  [{record['dataset_note']}]" if record.get("dataset_note") else ""
    click.echo("")
    click.echo(f"{attack} vs {defense} on {dataset}{note}: profile {profile}, "
               f"{record['n_train_loaded']} auxiliary / {record['n_test_loaded']} private images, "
               f"extracted at {record['resolutions']['extract']}px, scored at "
               f"{record['resolutions']['reconstruct_and_score']}px")
    click.echo(f"{'metric':<20}{'mean':>12}  better")
    for name, row in sorted(result.set_metrics.items()):
        arrow = "higher" if row.get("higher_is_better", True) else "lower"
        if row.get("status", "ok") == "ok":
            value = row["value"]
            note = f"  ({row['detail']})" if row.get("detail") else ""
            click.echo(f"{name:<20}{'nan' if value is None else f'{value:.4f}':>12}  {arrow}{note}")
        else:
            click.echo(f"{name:<20}{row['status']:>12}  {row.get('detail') or ''}")
    for name, value in sorted(record.get("utility", {}).items()):
        click.echo(f"utility {name:<12}{value:>12.4f}  (what the protected features still offer)")
    for line in record.get("notes", []):
        click.echo(f"note: {line}")
    skipped = record["skipped_files"]
    if skipped["count"]:
        names = ", ".join(f["file"] for f in skipped["files"][:5]) + (", ..." if skipped["count"] > 5 else "")
        click.echo(f"warning: {skipped['count']} unreadable image file(s) skipped: {names} (listed in run.json)")
    training = record.get("training", {})
    if training.get("from_cache"):
        click.echo(f"attack reused from the cache (trained in {training.get('train_s', '?')} s on "
                   f"{training.get('device', '?')})")
    click.echo(f"wall time: {sum(record['timings_s'].values()):.1f} s")
    click.echo(f"run folder:  {result.run_dir}  (run.json, metrics.csv, grid.png, reconstructions/)")
    if result.leaderboard:
        click.echo(f"leaderboard: {result.leaderboard}")


@click.command("run")
@click.option("--attack", required=True, help="Attack to run (see `bench list attacks`).")
@click.option("--defense", default="none", show_default=True, help="Defense applied to the released features.")
@click.option("--attack-arg", "attack_args", multiple=True, metavar="KEY=VALUE",
              help="An attack parameter (repeatable; `bench list attacks -v` shows them).")
@click.option("--defense-arg", "defense_args", multiple=True, metavar="KEY=VALUE",
              help="A defense parameter, e.g. keep=0.25 (repeatable; `bench list defenses -v` shows them).")
@click.option("--dataset", default="synthetic-faces", show_default=True,
              help="Dataset (see `bench list datasets`); the default is the embedded synthetic demo set.")
@click.option("--data-root", type=click.Path(path_type=Path), default=None,
              help="Folder holding the dataset's images (datasets other than synthetic-faces).")
@click.option("--aux-dataset", default=None, help="Train the attack on this dataset instead (cross-dataset attack).")
@click.option("--aux-data-root", type=click.Path(path_type=Path), default=None,
              help="Folder of the auxiliary dataset (required with --aux-dataset for folder datasets).")
@click.option("--profile", type=click.Choice(list(PROFILES)), default=DEFAULT_PROFILE, show_default=True,
              help="smoke: seconds (tests); cpu: minutes on a laptop; paper: the published configuration (GPU).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for splits, keys, training (0..2^32-1).")
@click.option("--n-train", type=int, default=None, help="Auxiliary (attacker) split size [profile default].")
@click.option("--n-test", type=int, default=None, help="Private split size [profile default].")
@click.option("--results", type=click.Path(path_type=Path), default=Path("bench-results"), show_default=True,
              help="Results folder: store, cache, runs, leaderboards.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="torch and OpenCV threads [the cores this process may use].")
@click.option("--extractor", default=None, help="Victim feature extractor [the attack's declared default].")
@click.option("--extractor-arg", "extractor_args", multiple=True, metavar="KEY=VALUE",
              help="An extractor parameter, e.g. batch=2 (repeatable; `bench list extractors -v` shows them).")
@click.option("--metrics", "metric_names", default=None,
              help=metrics_help("default") + " Adding one to a finished run scores its existing reconstructions.")
@click.option("--image-size", type=int, default=None,
              help="Reconstruct-and-score size in px [the profile's, or a small dataset's native size].")
@click.option("--extract-size", type=int, default=None,
              help="Size the victim sees, in px [the profile's, or a small dataset's native size].")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option("--launcher", type=click.Choice(["none", "torchrun"]), default="none", show_default=True,
              help="torchrun: start this run as --nproc data-parallel processes (torch.distributed.run; gloo on "
                   "CPU, nccl with CUDA, one GPU per process); rank 0 alone writes.")
@click.option("--nproc", type=click.IntRange(min=1), default=None,
              help="Processes for --launcher torchrun [2] (must divide the attack's batch size).")
@user_errors
def run_cmd(attack: str, defense: str, attack_args: tuple[str, ...], defense_args: tuple[str, ...], dataset: str,
            data_root: Path | None, aux_dataset: str | None, aux_data_root: Path | None, profile: str, seed: int,
            n_train: int | None, n_test: int | None, results: Path, device: str, threads: int | None,
            extractor: str | None, extractor_args: tuple[str, ...], metric_names: str | None, image_size: int | None, extract_size: int | None,
            quiet: bool, launcher: str, nproc: int | None) -> None:
    """Train ATTACK on the auxiliary split, reconstruct the private split, score it, store and tabulate."""
    import dataclasses
    import sys

    from bench.cli import launch
    from bench.errors import BenchError
    from bench.run.plan import RunRequest
    from bench.run.runner import execute

    if nproc is not None and launcher != "torchrun":
        raise BenchError("--nproc needs --launcher torchrun (or start the run with torchrun --nproc-per-node N)")
    world = 1 if launcher == "torchrun" else launch.join(device)  # under torchrun: this process is one rank of `world`
    quiet = quiet or not _is_main()

    metrics = None  # the defaults for this attack and dataset (bench/run/metric_defaults.py)
    if metric_names is not None:
        metrics = tuple(m.strip() for m in metric_names.split(",") if m.strip())
    req = RunRequest(attack=attack, defense=defense, dataset=dataset, data_root=data_root, profile=profile,
                     seed=seed, n_train=n_train, n_test=n_test, results=results, device=device,
                     extractor=extractor, aux_dataset=aux_dataset, aux_data_root=aux_data_root, metrics=metrics,
                     progress=not quiet, attack_params=parse_assignments(attack_args, "--attack-arg"),
                     defense_params=parse_assignments(defense_args, "--defense-arg"), threads=threads,
                     extractor_params=parse_assignments(extractor_args, "--extractor-arg"),
                     image_size=image_size, extract_size=extract_size)
    if launcher == "torchrun":  # the same request, as `nproc` ranks of `bench run`
        from bench.run.command import request_args

        sys.exit(launch.launch(nproc or 2, request_args(req) + (["--quiet"] if quiet else [])))
    req = dataclasses.replace(req, device=launch.rank_device(device))
    try:
        result = execute(req)
    finally:
        launch.leave()
    if result is not None:  # None: a rank other than 0, which prints nothing
        print_summary(result, attack, defense, dataset, profile)
        if world > 1:
            click.echo(f"trained on {world} processes (torchrun)")


def _is_main() -> bool:
    from bench.nn import distributed

    return distributed.is_main()


__all__ = ["run_cmd", "print_summary", "registry"]
