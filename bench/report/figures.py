"""Figures for papers, one pair per dataset (PNG and PDF): each defense's leakage (its best attack) against its
utility figures, and per-attack bars of one leakage metric with error bars (sample std over seeds).

Both are drawn for print: at most 7 in wide (PNG at 300 dpi), 6 pt text or larger, facets that wrap so that the
full built-in grid (13 attacks x 10 defenses) fits a page, a colour per attack from `bench.report.palette`, and no
text placed beside data points (a legend instead), so that no label overprints another.

The data behind each figure is a small frame (`leakage_utility_points`, `attack_bars`) so that tests check the
numbers, not pixels. Matplotlib is used through its object API (no pyplot state, no display needed).
"""

from __future__ import annotations

import math
import re
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from bench.errors import BenchError
from bench.report import DEFAULT_FIGURE_METRIC
from bench.report.palette import colour_map, hatch_map
from bench.report.tables import Board, by_defense, distinguishing_columns, varying_settings

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def check_metric(board: Board, metric: str) -> bool:
    """The stored direction of `metric` (True: higher is better), or a BenchError when the figures cannot use it."""
    if metric not in board.metrics:
        raise BenchError(f"metric {metric} has no values on {board.dataset}; it has "
                         f"{', '.join(board.metrics) or 'none'} (choose one with --figure-metric)")
    hib = board.metrics[metric].higher_is_better
    if hib is None:
        raise BenchError(f"the store has no direction for metric {metric} on {board.dataset}; cannot tell its best "
                         f"attack (rerun the metric with this bench, or choose another with --figure-metric)")
    return hib


def _groups(board: Board) -> list[tuple[str, str, pd.DataFrame]]:
    """(defense label, setting label, rows) per defense and per setting that differs across the whole board."""
    settings = varying_settings(board.frame)
    out = []
    for defense, sub_board in by_defense(board):
        sub = sub_board.frame
        keys = sub[settings].astype(str).agg(", ".join, axis=1) if settings else pd.Series([""] * len(sub))
        for key in sorted(set(keys)):
            rows = sub[keys.to_numpy() == key]
            label = ", ".join(v if f == "extractor" else f"{f}={v}"  # as the bars' labels: `sift`, `n_test=200`
                              for f, v in zip(settings, key.split(", "))) if settings else ""
            out.append((defense, label, rows))
    return out


def leakage_utility_points(board: Board, metric: str = DEFAULT_FIGURE_METRIC) -> pd.DataFrame:
    """Per defense (and setting) and per utility figure: the best attack's mean and std of `metric` and the utility.

    Defenses without a utility figure appear once with utility NaN (drawn as reference lines)."""
    hib = check_metric(board, metric)
    rows = []
    for defense, setting, group in _groups(board):
        have = group[group[f"{metric}_k"] > 0]
        if not len(have):
            continue
        best = have.loc[have[metric].astype(float).idxmax() if hib else have[metric].astype(float).idxmin()]
        base = {"defense": defense, "setting": setting, "attack": best["attack"], "leakage": float(best[metric]),
                "leakage_std": float(best[f"{metric}_std"]), "seeds": int(best[f"{metric}_k"])}
        figures = [u for u in board.utilities if group[f"utility:{u}"].notna().any()]
        if not figures:
            rows.append({**base, "utility": "", "utility_value": math.nan, "utility_std": math.nan})
        for u in figures:
            own = best[f"utility:{u}"]
            source = best if not pd.isna(own) else group[group[f"utility:{u}"].notna()].iloc[0]
            rows.append({**base, "utility": u, "utility_value": float(source[f"utility:{u}"]),
                         "utility_std": float(source[f"utility:{u}_std"])})
    return pd.DataFrame(rows, columns=["defense", "setting", "attack", "leakage", "leakage_std", "seeds", "utility",
                                       "utility_value", "utility_std"])


def _compact_labels(frame: pd.DataFrame, fields: list[str]) -> list[str]:
    """`attack [settings]` as in the tables' rows, with the extractor by its name alone (`mean-image [sift]`): a
    name says what it is, a number keeps its field (`n_test=200`)."""
    out = []
    for _, r in frame.iterrows():
        extra = ", ".join(str(r[f]) if f == "extractor" else f"{f}={r[f]}" for f in fields)
        out.append(f"{r['attack']} [{extra}]" if extra else str(r["attack"]))
    return out


def attack_bars(board: Board, metric: str = DEFAULT_FIGURE_METRIC) -> pd.DataFrame:
    """Per defense and row (attack and the settings that tell that defense's rows apart): mean and std of `metric`
    over seeds."""
    check_metric(board, metric)
    rows = []
    for defense, sub_board in by_defense(board):
        sub = sub_board.frame
        labels = _compact_labels(sub, distinguishing_columns(sub))  # what tells this defense's rows apart
        for label, (_, r) in zip(labels, sub.iterrows()):
            if int(r[f"{metric}_k"]) > 0:
                rows.append({"defense": defense, "attack": str(r["attack"]), "row": label, "mean": float(r[metric]),
                             "std": float(r[f"{metric}_std"]), "seeds": int(r[f"{metric}_k"])})
    return pd.DataFrame(rows, columns=["defense", "attack", "row", "mean", "std", "seeds"])


PRINT_WIDTH_IN = 7.0  # a two-column paper's full text width (and more than a single-column one's): never wider
PRINT_DPI = 300
MAX_HEIGHT_IN = 9.0  # a page's text height: the full built-in grid fits on one page
_FONT = 6  # points: the smallest size a printed figure stays readable at
_ROW_IN = 0.12  # inches per bar row (a 6 pt label and its gap)


def _axis_label(board: Board, metric: str) -> str:
    info = board.metrics[metric]
    return f"{metric} {info.arrow} (leakage; {'higher' if info.higher_is_better else 'lower'} = more leaked)"


def _wrap(text: str, width: int) -> str:
    return "\n".join(textwrap.wrap(text, width, break_on_hyphens=False, break_long_words=True)) or text


def _wrap_label(text: str, width: int) -> str:
    """Lines of at most `width` characters, broken after a space, comma or opening parenthesis (plugin labels such
    as `pe-miu(block_size=16,moved=-1)` have no spaces), inside a word only when a part has no such break."""
    parts = re.findall(r"[^ ,(]*[ ,(]|[^ ,(]+$", text) or [text]
    lines, line = [], ""
    for part in parts:
        if line and len(line) + len(part.rstrip()) > width:
            lines.append(line.rstrip())
            line = ""
        while len(part) > width:
            lines.append(part[:width])
            part = part[width:]
        line += part
    if line.strip():
        lines.append(line.rstrip())
    return "\n".join(lines)


def _save(fig, stem: Path) -> list[Path]:
    """PNG at print resolution and PDF, both at the figure's own size (no bbox growth past the print width)."""
    paths = [stem.parent / f"{stem.name}.png", stem.parent / f"{stem.name}.pdf"]
    fig.savefig(paths[0], dpi=PRINT_DPI, metadata={"Software": None})
    fig.savefig(paths[1], metadata={"CreationDate": None, "Producer": None, "Creator": None})
    return paths


def _columns(n: int) -> int:
    """Facet columns at the print width: 1 or 2 facets side by side, then 2, 3 per row."""
    return n if n <= 2 else 2 if n <= 4 else 3


def leakage_utility_figure(board: Board, metric: str, stem: Path) -> list[Path]:
    """`<stem>.png/.pdf`: the figure of `leakage_utility_plot`."""
    return _save(leakage_utility_plot(board, metric), stem)


def leakage_utility_plot(board: Board, metric: str) -> "Figure":
    """One panel per utility figure; x the defense's utility, y its best attack's `metric`.

    Each defense (and setting) has a colour and a marker, named once in the legend under the panels with its best
    attack: no label is written beside a point, so none can overprint another."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    points = leakage_utility_points(board, metric)
    figures = sorted(u for u in set(points["utility"]) if u)
    panels = figures or ["(no defense reports a utility figure)"]
    keys = list(dict.fromkeys(zip(points["defense"], points["setting"], points["attack"])))
    colours = colour_map(keys)
    markers = {k: _MARKERS[i % len(_MARKERS)] for i, k in enumerate(keys)}
    ref_keys = list(dict.fromkeys(zip(points.loc[points["utility"] == "", "defense"],
                                      points.loc[points["utility"] == "", "setting"],
                                      points.loc[points["utility"] == "", "attack"])))
    dashes = {k: _DASHES[i % len(_DASHES)] for i, k in enumerate(ref_keys)}  # equal lines stay told apart
    ncols = _columns(len(panels))
    nrows = math.ceil(len(panels) / ncols)
    legend_rows = math.ceil(len(keys) / 2)
    height = min(MAX_HEIGHT_IN, 0.6 + 2.6 * nrows + 0.16 * legend_rows)
    fig = Figure(figsize=(PRINT_WIDTH_IN if ncols > 1 else 4.5, height), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[len(panels):]:
        ax.remove()
    refs = points[points["utility"] == ""]
    for ax, u in zip(axes, panels):
        for _, p in points[points["utility"] == u].iterrows():
            key = (p["defense"], p["setting"], p["attack"])
            yerr = None if math.isnan(p["leakage_std"]) else p["leakage_std"]
            xerr = None if math.isnan(p["utility_std"]) else p["utility_std"]
            ax.errorbar(p["utility_value"], p["leakage"], yerr=yerr, xerr=xerr, fmt=markers[key], capsize=2,
                        color=colours[key], markersize=5, markeredgecolor="black", markeredgewidth=0.4)
        for _, r in refs.iterrows():
            key = (r["defense"], r["setting"], r["attack"])
            ax.axhline(r["leakage"], linestyle=dashes[key], color=colours[key], linewidth=1)
        ax.set_xlabel(_wrap(f"utility: {u} (the defense's own figure)" if figures else u, 60), fontsize=_FONT + 1)
        ax.set_ylabel(_wrap(_axis_label(board, metric), 40), fontsize=_FONT + 1)
        ax.tick_params(labelsize=_FONT)
        ax.grid(alpha=0.3)
    handles = []
    for key in keys:
        defense, setting, attack = key
        label = f"{defense}" + (f" [{setting}]" if setting else "") + f" — best attack: {attack}"
        is_ref = key in dashes
        if is_ref:
            label += " (no utility figure: the horizontal line)"
        handles.append(Line2D([], [], color=colours[key], linestyle=dashes[key] if is_ref else "none",
                              marker=None if is_ref else markers[key], markeredgecolor="black",
                              markeredgewidth=0.4, label=_wrap(label, 52 if ncols > 1 else 70)))
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncol=2 if ncols > 1 else 1, fontsize=_FONT,
                   frameon=False)
    unknown = points[(points["seeds"] > 1) & points["utility"].astype(bool) & points["utility_std"].isna()]
    note = "; no std of utility recorded for points of several seeds" if len(unknown) else ""
    fig.suptitle(_wrap(f"{board.dataset}: leakage of each defense's best attack vs. its utility "
                       f"(error bars: std over seeds{note})", 110), fontsize=_FONT + 2)
    return fig


_DASHES = ((0, (5, 2)), (0, (1, 1.5)), (0, (6, 2, 1, 2)), (0, (2, 3)), (0, (8, 2, 1, 2, 1, 2)))
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "p", "h", "*")


def attack_bars_figure(board: Board, metric: str, stem: Path) -> list[Path]:
    """`<stem>.png/.pdf`: the figure of `attack_bars_plot`."""
    return _save(attack_bars_plot(board, metric), stem)


def _inches(text: str, points: float) -> float:
    """About how wide `text` is in inches at `points` (0.6 em per character: DejaVu Sans, matplotlib's default)."""
    return max((len(line) for line in text.split("\n")), default=0) * 0.6 * points / 72


def _row_label(label: str, width: int = 34) -> str:
    """A bar's label on two lines (attack, then its bracketed settings) when it is longer than `width` characters."""
    return label.replace(" [", "\n[", 1) if len(label) > width and " [" in label else label


def attack_bars_plot(board: Board, metric: str) -> "Figure":
    """One facet per defense, wrapped, a horizontal bar of `metric` per attack row with std-over-seeds error bars;
    one colour per attack in every facet and a shared x axis, so that facets compare at a glance.

    Columns: as many as fit 7 in with bars at least 1.1 in wide beside their labels (at most 4); when every facet
    has the same rows, only the first column names them."""
    from matplotlib.figure import Figure

    bars = attack_bars(board, metric)
    defenses = list(dict.fromkeys(bars["defense"])) or ["(no values)"]
    attacks = sorted(set(bars["attack"]))
    colours, hatches = colour_map(attacks), hatch_map(attacks)
    labels = {d: [_row_label(r) for r in bars[bars["defense"] == d]["row"]] for d in defenses}
    shared = len({tuple(v) for v in labels.values()}) == 1
    label_in = max((_inches(r, _FONT) for v in labels.values() for r in v), default=0.0) + 0.15
    n, min_bars = len(defenses), 1.1
    if shared:
        fit = int((PRINT_WIDTH_IN - label_in) // (min_bars + 0.15))
    else:
        fit = int(PRINT_WIDTH_IN // (label_in + min_bars + 0.15))
    ncols = max(1, min(n, 4, fit, 2 if n <= 4 else 4))
    nrows = math.ceil(n / ncols)
    pitch = _ROW_IN * (1.8 if any("\n" in r for v in labels.values() for r in v) else 1.0)
    per_facet = [len(labels[d]) for d in defenses]
    row_heights = [0.42 + pitch * max([1] + per_facet[r * ncols:(r + 1) * ncols]) for r in range(nrows)]
    fig = Figure(figsize=(PRINT_WIDTH_IN if ncols > 1 else 4.5, 0.75 + sum(row_heights)), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=shared,
                        gridspec_kw={"height_ratios": row_heights}).ravel()
    for ax in axes[n:]:
        ax.remove()
    facet_in = (PRINT_WIDTH_IN - (label_in if shared else ncols * label_in)) / ncols - 0.1
    title_chars = max(12, int(facet_in / (0.6 * (_FONT + 1) / 72)))
    seeds = sorted(set(bars["seeds"]))
    uniform = len(seeds) <= 1
    ends = bars["mean"].to_numpy(dtype=float) + np.nan_to_num(bars["std"].to_numpy(dtype=float))
    lo = min(0.0, float(np.nanmin(bars["mean"]))) if len(bars) else 0.0
    hi = max(0.0, float(np.nanmax(ends))) if len(bars) else 1.0
    span = (hi - lo) or 1.0
    for k, (ax, d) in enumerate(zip(axes, defenses)):
        sel = bars[bars["defense"] == d].iloc[::-1]  # first row on top
        y = np.arange(len(sel), dtype=float)
        yerr = sel["std"].to_numpy(dtype=float)  # NaN (one seed): no error bar drawn, rather than a bar of 0
        drawn = ax.barh(y, sel["mean"].to_numpy(dtype=float), height=0.75, xerr=yerr, capsize=1.5,
                        color=[colours[a] for a in sel["attack"]], edgecolor="black", linewidth=0.3,
                        error_kw={"elinewidth": 0.6, "capthick": 0.6})
        for patch, attack in zip(drawn.patches, sel["attack"]):  # per patch: a hatch list needs matplotlib 3.10
            patch.set_hatch(hatches[attack] or None)
        if not uniform:
            for yy, end, seeds_k in zip(y, sel["mean"].to_numpy(dtype=float) + np.nan_to_num(yerr), sel["seeds"]):
                ax.text(end + 0.02 * span, yy, f"n={seeds_k}", va="center", fontsize=_FONT - 1)
        ax.set_yticks(y, labels[d][::-1], fontsize=_FONT)
        if shared and k % ncols:
            ax.tick_params(axis="y", labelleft=False)
        ax.set_ylim(-0.6, max(len(sel), 1) - 0.4)
        ax.set_title(_wrap_label(d, title_chars), fontsize=_FONT + 1)
        ax.tick_params(axis="x", labelsize=_FONT, labelbottom=True)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_xlim(lo - 0.02 * span, hi + (0.05 if uniform else 0.22) * span)
    fig.supxlabel(_axis_label(board, metric), fontsize=_FONT + 1)
    seeds_note = (f"{seeds[0]} seed(s) per bar" if len(seeds) == 1 else "n = seeds per bar")
    fig.suptitle(_wrap(f"{board.dataset}: {metric} per attack, one panel per defense (error bars: std over seeds, "
                       f"none for one seed; {seeds_note})", 110), fontsize=_FONT + 2)
    return fig


def write_figures(board: Board, metric: str, out_dir: Path) -> list[Path]:
    """Both figures of one dataset under `out_dir`: <dataset>-leakage-utility.* and <dataset>-attacks.*"""
    out_dir = Path(out_dir)
    return (leakage_utility_figure(board, metric, out_dir / f"{board.dataset}-leakage-utility")
            + attack_bars_figure(board, metric, out_dir / f"{board.dataset}-attacks"))
