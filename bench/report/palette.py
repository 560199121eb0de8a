"""Colours for figures: 16 that stay apart on white paper, one per attack (or defense), stable across figures.

The list starts with the eight colours of Okabe & Ito's colour-blind-safe set and adds eight more, each chosen so
that every pair is at least 25 CIELAB units apart (CIE76 ΔE; tests/test_figures.py recomputes it from sRGB): the
built-in grid has 13 attacks, so no two attacks of one figure share a colour. Past 16 names the figure code also
varies hatching, so a name is still told apart by colour and pattern.
"""

from __future__ import annotations

from typing import Iterable

PALETTE: tuple[str, ...] = (
    "#000000",  # black
    "#E69F00",  # orange
    "#56B4E9",  # sky blue
    "#009E73",  # bluish green
    "#F0E442",  # yellow
    "#0072B2",  # blue
    "#D55E00",  # vermillion
    "#CC79A7",  # reddish purple
    "#882255",  # wine
    "#999933",  # olive
    "#661100",  # dark brown
    "#888888",  # grey
    "#332288",  # indigo
    "#9ACD32",  # yellow green
    "#00CCCC",  # cyan
    "#B07AE0",  # lavender
)

HATCHES: tuple[str, ...] = ("", "//", "..", "xx")


def colour_map(names: Iterable[str]) -> dict[str, str]:
    """One colour per distinct name, in the order given (the caller sorts for stability across figures)."""
    out: dict[str, str] = {}
    for name in names:
        if name not in out:
            out[name] = PALETTE[len(out) % len(PALETTE)]
    return out


def hatch_map(names: Iterable[str]) -> dict[str, str]:
    """A hatch per name: empty for the first len(PALETTE) names, then a new pattern each time the colours wrap."""
    out: dict[str, str] = {}
    for name in names:
        if name not in out:
            out[name] = HATCHES[(len(out) // len(PALETTE)) % len(HATCHES)]
    return out
