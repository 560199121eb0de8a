"""`bench list`: the registered plugins of every kind, one line each; `--verbose` adds versions and parameters."""

from __future__ import annotations

from typing import Any

import click

from bench import registry
from bench.cli.common import user_errors
from bench.metric_conventions import default_mark

KINDS = ("attacks", "defenses", "metrics", "datasets", "extractors")


def _extra(kind: str, name: str, meta: dict[str, Any]) -> str:
    """The bracketed hint after a plugin's summary (what it consumes, its direction, its note)."""
    if kind == "attacks":
        return f"  [consumes {meta.get('consumes', '?')}; profiles {', '.join(meta.get('profiles', []))}]"
    if kind == "metrics" and "higher_is_better" in meta:
        mark = default_mark(name)  # the row's default list in the convention table
        if meta.get("inputs") == "attributes" and meta.get("attribute"):
            mark = f"default: attacks that predict {meta['attribute']}"
        return f"  [{'higher' if meta['higher_is_better'] else 'lower'} is better{'; ' + mark if mark else ''}]"
    if kind == "datasets" and meta.get("note"):
        return f"  [{meta['note']}]"
    if kind == "extractors" and meta.get("produces"):
        white = f"; white-box, victims {', '.join(meta['victims'])}" if meta.get("victims") else \
            ("; white-box" if meta.get("white_box") else "")
        return f"  [produces {meta['produces']}{white}]"
    return ""


def _details(kind: str, entry: registry.Entry[Any]) -> list[str]:
    """The lines `--verbose` prints under a plugin: code version, kind-specific facts, declared parameters."""
    meta = entry.meta
    facts = [f"version {meta.get('version', '?')}"]
    if kind == "attacks":
        outputs = meta.get("outputs", "images")
        if outputs == "attributes" and meta.get("attributes"):
            outputs += f" ({', '.join(meta['attributes'])})"
        facts += [f"outputs {outputs}", f"default extractor {meta.get('default_extractor') or 'none'}"]
        if meta.get("reconstructs_faces"):
            facts.append("reconstructs faces (identity metrics by default)")
    elif kind == "datasets":
        if meta.get("faces"):
            facts.append("faces (identity metrics by default)")
        if meta.get("labels") is not None:
            facts.append(f"labels {', '.join(meta['labels']) or 'none'}")
        if "native_size" in meta:
            facts.append(f"native size {meta['native_size']} px" if meta["native_size"] else "native size: any")
    elif kind == "defenses" and meta.get("accepts"):
        facts.append(f"accepts {', '.join(meta['accepts'])}")
    elif kind == "extractors" and meta.get("produces"):
        facts.append(f"produces {meta['produces']}")
    if entry.source != "builtin":
        facts.append(f"from {entry.source}")
    lines = ["; ".join(facts)]
    params: dict[str, str] = meta.get("params") or {}
    if not params:
        lines.append("parameters: none")
    else:
        lines.append("parameters:")
        lines += [f"  {key}: {text}" for key, text in sorted(params.items())]
    return lines


@click.command("list")
@click.argument("kind", required=False, type=click.Choice(KINDS))
@click.option("--verbose", "-v", is_flag=True, help="Also show each plugin's version and declared parameters.")
@user_errors
def list_cmd(kind: str | None, verbose: bool) -> None:
    """List registered plugins (all kinds, or one) with a one-line description."""
    for k in [kind] if kind else KINDS:
        reg = registry.REGISTRIES[k]
        click.echo(f"{k}:")
        for entry in reg:
            click.echo(f"  {entry.name:<20} {entry.summary}{_extra(k, entry.name, entry.meta)}")
            if verbose:
                for line in _details(k, entry):
                    click.echo(f"      {line}")
        if verbose:
            for name, why in sorted(reg.failed.items()):
                click.echo(f"  warning: {k[:-1]} plugin {name!r} failed to load and is not listed ({why})")
        if not kind:
            click.echo("")
