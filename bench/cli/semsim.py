"""`bench semsim train | list`: fit SemSim's embedding on human annotations; list the trained checkpoints."""

from __future__ import annotations

from pathlib import Path

import click

from bench.cli.common import user_errors


@click.group("semsim")
def semsim_group() -> None:
    """SemSim: train the semantic-similarity metric's network on human annotations (metric `semsim`)."""


@semsim_group.command("train")
@click.option("--annotations", "source", required=True, metavar="SOURCE",
              help="`store` (the 'recognisable' annotations of --results DIR/bench.sqlite) or a folder in the SemSim "
                   "release layout (<id>/ with *_ori.png and recognisable reconstructions, -<id>/, others/).")
@click.option("--results", type=click.Path(path_type=Path), default=Path("bench-results"), show_default=True,
              help="Results folder the checkpoint is bound to (written to DIR/semsim; its runs are scored with it) "
                   "and, for SOURCE = store, whose store holds the annotations.")
@click.option("--allow-demo", is_flag=True,
              help="Train on a set below the minimum (2 human annotators, 100 reconstructions, 10 originals) or "
                   "with constructed annotators; the checkpoint and every value scored with it are marked DEMO.")
@click.option("--epochs", type=int, default=20, show_default=True)
@click.option("--batch-size", type=int, default=32, show_default=True, help="Triplets per step.")
@click.option("--lr", type=float, default=1e-3, show_default=True, help="Adam learning rate.")
@click.option("--margin", type=float, default=1.0, show_default=True, help="Triplet margin (p=2).")
@click.option("--size", type=int, default=32, show_default=True,
              help="Input size of the network (the paper: 32); stored in the checkpoint.")
@click.option("--seed", type=int, default=0, show_default=True, help="Initialisation and triplet sampling.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@user_errors
def semsim_train(source: str, results: Path, allow_demo: bool, epochs: int, batch_size: int, lr: float,
                 margin: float, size: int, seed: int, device: str, quiet: bool) -> None:
    """Train SemSim's ResNet-18 with a triplet margin loss and bind the checkpoint to the results folder."""
    from bench import semsim_checkpoint as ckpt
    from bench.annotations import semsim_save as save
    from bench.annotations import semsim_sets as sets
    from bench.annotations import semsim_training as training
    from bench.errors import BenchError

    settings = training.TrainSettings(epochs=epochs, batch_size=batch_size, lr=lr, margin=margin, size=size,
                                      seed=seed, device=device)
    settings.check()
    ann = sets.load_annotations(source, results, size)
    d = ann.description
    click.echo(f"annotation set {d['hash'][:12]} ({d['source']}: {d['ids']} ids, {d['positives']} recognisable, "
               f"{d['negatives']} unrecognisable, {d['extra_negatives']} extra negatives)")
    click.echo(f"provenance: {ckpt.provenance_text(d['provenance'])}")
    skipped = d.get("skipped") or d.get("problems")
    if skipped:
        click.echo(f"warning: {len(skipped)} item(s) left out, e.g. {skipped[0]}", err=True)
    short = sets.shortfalls(d["provenance"])
    if short and not allow_demo:
        raise BenchError("annotation set below the minimum for reported SemSim values: " + "; ".join(short)
                         + ". Annotate more (bench annotate serve), or add --allow-demo to train a checkpoint "
                           "whose every value is marked DEMO")
    if short:
        click.echo(f"WARNING: {ckpt.DEMO_MARK}: " + "; ".join(short), err=True)
    result = training.train(ann, settings, progress=not quiet)
    entry = save.save_checkpoint(ann, settings, result, results, demo=bool(short))
    click.echo(f"final training loss: {result.final_loss:.4f} ({settings.epochs} epochs, "
               f"{result.triplets_per_epoch} triplets per epoch, {result.wall_s:.1f} s)")
    click.echo(f"checkpoint: {entry['path']}{'  (DEMO: not for publication)' if entry['demo'] else ''}")
    click.echo(f"sha256:     {entry['sha256']}")
    click.echo(f"manifest:   {ckpt.manifest_path(results)}")
    click.echo(f"runs in {results} now score semsim with it (the newest checkpoint of {ckpt.semsim_dir(results)}): "
               f"bench run --attack ATTACK --results {results} ... --metrics semsim")


@semsim_group.command("list")
@click.option("--results", type=click.Path(path_type=Path), default=Path("bench-results"), show_default=True,
              help="Results folder whose checkpoints (DIR/semsim) to list.")
@user_errors
def semsim_list(results: Path) -> None:
    """Show the SemSim checkpoints bound to a results folder (the newest is the one its runs use)."""
    from bench import semsim_checkpoint as ckpt

    entries = ckpt.read_manifest(results)
    click.echo(f"folder: {ckpt.semsim_dir(results)}")
    if not entries:
        click.echo(f"no trained checkpoint; train one with {ckpt.TRAIN_FIX} --results {results}")
        return
    for i, e in enumerate(entries):
        a, t = e["annotations"], e["training"]
        mark = "* " if i == len(entries) - 1 else "  "
        demo = "  DEMO (not for publication)" if e.get("demo") else ""
        click.echo(f"{mark}{e['file']}  {e.get('created', '?')}  loss {e.get('final_loss', float('nan')):.4f}{demo}")
        prov = ckpt.provenance_text(a["provenance"]) if a.get("provenance") else "provenance not recorded"
        click.echo(f"    annotations: {a.get('source')} {a['hash'][:12]} ({prov}); epochs {t.get('epochs')}, "
                   f"size {t.get('size')}, seed {t.get('seed')}")
    click.echo(f"* used by the metric semsim for runs in {results}")


@semsim_group.command("bind")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--results", type=click.Path(path_type=Path), default=Path("bench-results"), show_default=True,
              help="Results folder whose runs will use the checkpoint (copied to DIR/semsim).")
@user_errors
def semsim_bind(checkpoint: Path, results: Path) -> None:
    """Bind a checkpoint trained for another results folder (OTHER/semsim/FILE.pt) to this one, e.g. to score
    held-out originals; its provenance and DEMO mark travel with it."""
    from bench import semsim_checkpoint as ckpt
    from bench.annotations import semsim_save as save

    entry = save.bind_checkpoint(checkpoint, results)
    prov = entry["annotations"].get("provenance")
    click.echo(f"bound: {entry['path']}{'  (DEMO: not for publication)' if entry.get('demo') else ''}")
    click.echo(f"provenance: {ckpt.provenance_text(prov) if prov else 'not recorded'}")
    click.echo(f"runs in {results} now score semsim with it (the newest checkpoint of {ckpt.semsim_dir(results)})")
