"""Figures for papers, one pair per dataset (PNG and PDF): each defense's leakage (its best attack) against its
utility figures, and per-attack bars of one leakage metric with error bars (sample std over seeds).

The data behind each figure is a small frame (`leakage_utility_points`, `attack_bars`) so that tests check the
numbers, not pixels. Matplotlib is used through its object API (no pyplot state, no display needed).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from bench.errors import BenchError
from bench.report import DEFAULT_FIGURE_METRIC
from bench.report.tables import Board, by_defense, defense_name, row_labels, varying_settings


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
            label = ", ".join(f"{f}={v}" for f, v in zip(settings, key.split(", "))) if settings else ""
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


def attack_bars(board: Board, metric: str = DEFAULT_FIGURE_METRIC) -> pd.DataFrame:
    """Per defense and row (attack and its distinguishing settings): mean and std of `metric` over seeds."""
    check_metric(board, metric)
    rows = []
    for defense, sub_board in by_defense(board):
        sub = sub_board.frame
        labels = row_labels(sub, varying_settings(board.frame))
        for label, (_, r) in zip(labels, sub.iterrows()):
            if int(r[f"{metric}_k"]) > 0:
                rows.append({"defense": defense, "row": label, "mean": float(r[metric]),
                             "std": float(r[f"{metric}_std"]), "seeds": int(r[f"{metric}_k"])})
    return pd.DataFrame(rows, columns=["defense", "row", "mean", "std", "seeds"])


def _axis_label(board: Board, metric: str) -> str:
    arrow = board.metrics[metric].arrow
    return f"{metric} {arrow} (leakage; {'higher' if board.metrics[metric].higher_is_better else 'lower'} = more leaked)"


def _save(fig, stem: Path) -> list[Path]:
    paths = [stem.parent / f"{stem.name}.png", stem.parent / f"{stem.name}.pdf"]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight", metadata={"Software": None})
    fig.savefig(paths[1], bbox_inches="tight", metadata={"CreationDate": None, "Producer": None, "Creator": None})
    return paths


def leakage_utility_figure(board: Board, metric: str, stem: Path) -> list[Path]:
    """`<stem>.png/.pdf`: one panel per utility figure; x the defense's utility, y its best attack's `metric`."""
    from matplotlib.figure import Figure

    points = leakage_utility_points(board, metric)
    figures = sorted(u for u in set(points["utility"]) if u)
    refs = points[points["utility"] == ""]
    panels = figures or ["(no defense reports a utility figure)"]
    fig = Figure(figsize=(4.2 * len(panels), 3.6), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, u in zip(axes, panels):
        pts = points[points["utility"] == u]
        for _, p in pts.iterrows():
            yerr = None if math.isnan(p["leakage_std"]) else p["leakage_std"]
            xerr = None if math.isnan(p["utility_std"]) else p["utility_std"]
            ax.errorbar(p["utility_value"], p["leakage"], yerr=yerr, xerr=xerr, fmt="o", capsize=3)
            text = f"{p['defense']}" + (f" [{p['setting']}]" if p["setting"] else "") + f"\n({p['attack']})"
            ax.annotate(text, (p["utility_value"], p["leakage"]), textcoords="offset points", xytext=(5, 4),
                        fontsize=7)
        for _, r in refs.iterrows():
            ax.axhline(r["leakage"], linestyle="--", color="grey", linewidth=1)
            ax.annotate(f"{r['defense']} ({r['attack']})" + (f" [{r['setting']}]" if r["setting"] else ""),
                        (0.01, r["leakage"]), xycoords=("axes fraction", "data"), fontsize=7, color="grey",
                        xytext=(0, 3), textcoords="offset points")
        ax.set_xlabel(f"utility: {u} (the defense's own figure)" if figures else u)
        ax.set_ylabel(_axis_label(board, metric))
        ax.grid(alpha=0.3)
    fig.suptitle(f"{board.dataset}: leakage of the best attack vs. defense utility (error bars: std over seeds)",
                 fontsize=9)
    return _save(fig, stem)


def attack_bars_figure(board: Board, metric: str, stem: Path) -> list[Path]:
    """`<stem>.png/.pdf`: bars of `metric` per attack, grouped by defense, with std-over-seeds error bars."""
    from matplotlib.figure import Figure

    bars = attack_bars(board, metric)
    defenses = list(dict.fromkeys(bars["defense"]))
    rows = list(dict.fromkeys(bars["row"]))
    fig = Figure(figsize=(max(5.0, 1.2 + 0.9 * max(1, len(defenses)) * max(1, len(rows)) * 0.5), 3.8),
                 layout="constrained")
    ax = fig.subplots()
    width = 0.8 / max(1, len(rows))
    for k, row in enumerate(rows):
        sel = bars[bars["row"] == row]
        x = np.array([defenses.index(d) for d in sel["defense"]], dtype=float) + (k - (len(rows) - 1) / 2) * width
        yerr = sel["std"].to_numpy(dtype=float)  # NaN (one seed): no error bar drawn, rather than a bar of 0
        drawn = ax.bar(x, sel["mean"].to_numpy(), width, yerr=yerr, capsize=3, label=row)
        ax.bar_label(drawn, labels=[f"n={k}" for k in sel["seeds"]], fontsize=6, padding=2)
    ax.set_xticks(range(len(defenses)), [defense_name(d) if len(d) > 24 else d for d in defenses], rotation=20,
                  ha="right", fontsize=8)
    ax.set_ylabel(_axis_label(board, metric))
    ax.set_title(f"{board.dataset}: {metric} per attack and defense (error bars: std over n seeds; none for n=1)",
                 fontsize=9)
    if rows:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, stem)


def write_figures(board: Board, metric: str, out_dir: Path) -> list[Path]:
    """Both figures of one dataset under `out_dir`: <dataset>-leakage-utility.* and <dataset>-attacks.*"""
    out_dir = Path(out_dir)
    return (leakage_utility_figure(board, metric, out_dir / f"{board.dataset}-leakage-utility")
            + attack_bars_figure(board, metric, out_dir / f"{board.dataset}-attacks"))
