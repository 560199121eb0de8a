"""An attack's counted size beside its paper's published figures, with the figures that are off by more than 25 %.

An attack declares the figures its paper publishes (`Attack.paper_figures`: a `describe()` key and the published
value in the same unit, for the paper profile). `bench describe --profile paper` prints each pair with the relative
difference and says which are off by more than `TOLERANCE`: a reader comparing sizes sees at once that, e.g., SLI's
counted compute is 73 % below its paper's Table II while its parameter count matches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

TOLERANCE = 0.25  # relative difference beyond which a figure is reported as off the paper's


@dataclass(frozen=True)
class Deviation:
    """One counted figure against the published one: relative = ours / paper − 1 (None when not counted)."""

    key: str
    ours: float | None
    paper: float

    @property
    def relative(self) -> float | None:
        return None if self.ours is None or not self.paper else self.ours / self.paper - 1.0

    @property
    def off(self) -> bool:
        """Whether the figure differs from the paper's by more than TOLERANCE (or was not counted at all)."""
        return self.relative is None or abs(self.relative) > TOLERANCE


def compare(figures: Mapping[str, Any], published: Mapping[str, float]) -> list[Deviation]:
    """Each published figure beside the counted one of the same `describe()` key, in the declared order."""
    out = []
    for key, paper in published.items():
        ours = figures.get(key)
        out.append(Deviation(key, float(ours) if isinstance(ours, (int, float)) else None, float(paper)))
    return out


def percent(relative: float) -> str:
    """-0.727 -> "-72.7 %"."""
    return f"{100 * relative:+.1f} %"


def _number(value: float) -> str:
    if abs(value) >= 1e6:
        return f"{value / 1e6:.2f} M"
    return f"{value:g}"


def report_lines(deviations: list[Deviation]) -> list[str]:
    """One line per figure, then one verdict line naming the figures off by more than TOLERANCE."""
    lines = []
    for d in deviations:
        if d.relative is None:
            lines.append(f"  {d.key:<34} not counted; paper {_number(d.paper)}")
            continue
        flag = f"  <- off by more than {100 * TOLERANCE:.0f} %" if d.off else ""
        lines.append(f"  {d.key:<34} {_number(d.ours or 0.0)} vs paper {_number(d.paper)}: {percent(d.relative)}{flag}")
    off = [d for d in deviations if d.off]
    if off:
        named = ", ".join(f"{d.key} ({'not counted' if d.relative is None else percent(d.relative)})" for d in off)
        lines.append(f"off the paper's figures by more than {100 * TOLERANCE:.0f} %: {named}")
    else:
        lines.append(f"every published figure is within {100 * TOLERANCE:.0f} % of the paper's")
    return lines


__all__ = ["TOLERANCE", "Deviation", "compare", "percent", "report_lines"]
