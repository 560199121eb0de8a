"""The `bench` command line: list plugins, run an attack against a defense, describe, leaderboards, weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from bench import registry
from bench.cli.common import show_plugin_warnings_as_lines, user_errors
from bench.profiles import DEFAULT_PROFILE, PROFILES



@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="leakbench", prog_name="bench")
def main() -> None:
    """Privacy-leakage benchmark: how much of a private image can an attacker rebuild from released features?"""
    show_plugin_warnings_as_lines()


# --------------------------------------------------------------------------------------------------- describe
@main.command("describe")
@click.option("--attack", required=True, help="Attack to describe.")
@click.option("--profile", type=click.Choice(list(PROFILES)), default=DEFAULT_PROFILE, show_default=True)
@user_errors
def describe_cmd(attack: str, profile: str) -> None:
    """Print an attack's architecture figures (parameters, FLOPs) beside the paper's."""
    from bench.compat import make_attack
    from bench.profiles import get_profile

    entry = registry.attacks.get(attack)
    prof = get_profile(profile)
    obj = make_attack(entry.obj, profile, prof.image_size, "cpu", 0)
    click.echo(f"{attack} ({entry.meta['paper'] or 'no paper'}), profile {profile}")
    click.echo(f"consumes: {entry.meta['consumes']}")
    figures = obj.describe()
    if not figures:
        click.echo("(this attack reports no architecture figures)")
    for key, value in figures.items():
        click.echo(f"  {key:<34} {_fmt(value)}")
    published = getattr(entry.obj, "paper_figures", {})
    if published and profile != "paper":
        click.echo(f"the paper's figures ({', '.join(published)}) are compared at --profile paper "
                   f"(the {profile} profile is scaled down)")
    elif published:
        from bench.paper_parity import compare, report_lines

        click.echo("against the paper:")
        for line in report_lines(compare(figures, published)):
            click.echo(line)


def _fmt(value: Any) -> str:
    if isinstance(value, float) and abs(value) >= 1e4:
        return f"{value:,.0f} ({value / 1e9:.2f} G)" if value >= 1e9 else f"{value:,.0f} ({value / 1e6:.2f} M)"
    if isinstance(value, int) and abs(value) >= 1e4:
        return f"{value:,} ({value / 1e9:.2f} G)" if value >= 1e9 else f"{value:,} ({value / 1e6:.2f} M)"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items())
    return str(value)



# Command modules register last: they import `main`'s helpers from this package.
from bench.cli.annotate import annotate_group  # noqa: E402
from bench.cli.correlate import correlate_cmd  # noqa: E402
from bench.cli.grid import grid_cmd  # noqa: E402
from bench.cli.leaderboard import leaderboard_cmd  # noqa: E402
from bench.cli.lists import list_cmd  # noqa: E402
from bench.cli.plugin import leaderboard_import, plugin_group  # noqa: E402
from bench.cli.run import run_cmd  # noqa: E402
from bench.cli.semsim import semsim_group  # noqa: E402
from bench.cli.weights import weights_group  # noqa: E402

main.add_command(list_cmd, "list")
main.add_command(run_cmd, "run")
main.add_command(grid_cmd, "grid")
main.add_command(leaderboard_cmd, "leaderboard")
main.add_command(weights_group, "weights")
main.add_command(semsim_group, "semsim")
main.add_command(annotate_group, "annotate")
main.add_command(correlate_cmd, "correlate")
main.add_command(plugin_group, "plugin")
leaderboard_cmd.add_command(leaderboard_import, "import")

if __name__ == "__main__":  # pragma: no cover
    main()
