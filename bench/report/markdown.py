"""Markdown leaderboards (for READMEs): one pipe table per defense, arrows in the headers, the best value in bold
under the rule of bench/report/tables.py, and the notes (samples, conventions, provenance, command) below it."""

from __future__ import annotations

import pandas as pd

from bench.report.tables import BEST_RULE, EXTRA_MEANING, Board, by_defense, cell, layout, notes


def escape(text: str) -> str:
    """Text safe inside a pipe-table cell or a line of prose (pipes, emphasis and code marks, HTML brackets)."""
    out = str(text).replace("\\", "\\\\")
    for ch in "|*_`<>[]":
        out = out.replace(ch, "\\" + ch)
    return out.replace("\n", " ")


def table(board: Board) -> list[str]:
    """The pipe table of one defense's board (attacks as rows)."""
    frame = board.frame
    lay = layout(board)
    settings, src, header, places, wins = lay.settings, lay.sources, lay.header, lay.places, lay.wins
    lines = ["| " + " | ".join(escape(h) for h in header) + " |",
             "|" + "|".join([":--"] * (1 + len(settings)) + ["--:"] * (len(header) - 1 - len(settings))) + "|"]
    for i, (_, row) in enumerate(frame.iterrows()):
        cells = [escape(row["attack"]) + (" †" if src[i] else "")]
        cells += [escape(row[s]) for s in settings]
        cells.append(str(int(row["seeds"])))
        for m in board.metrics:
            text = escape(cell(row, m, places[m]))
            cells.append(f"**{text}**" if wins[m] == i else text)
        for u in board.utilities:
            value = row.get(f"utility:{u}")
            cells.append("" if value is None or pd.isna(value) else f"{float(value):.4g}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def render(board: Board, command: str) -> str:
    """A Markdown document: per defense a heading, its table and its notes."""
    out = [f"# Leaderboard: {escape(board.dataset)}", ""]
    for defense, sub in by_defense(board):
        n = notes(sub, command)
        out += [f"## {escape(board.dataset)} — defense {escape(defense)}", ""]
        if n.samples:
            out += [escape(n.samples) + ".", ""]
        out += table(sub)
        if n.absent:
            out += ["", "No value in any row: " + "; ".join(f"`{m}` ({escape(d)})" for m, d in n.absent) + "."]
        out += ["", "Mean ± sample standard deviation over seeds; ↑ higher is better, ↓ lower is better; "
                    + escape(BEST_RULE) + "."]
        if n.dataset_note:
            out += ["", f"Data: {escape(n.dataset_note)}."]
        for metric, detail in n.missing:
            out += ["", f"Missing `{metric}`: {escape(detail)}."]
        for metric, detail in n.caveats:
            out += ["", f"Caveat on `{metric}`: {escape(detail)}."]
        for col in (c for c in layout(sub).settings if c in EXTRA_MEANING):
            out += ["", escape(EXTRA_MEANING[col]) + "."]
        for label, source in n.sources:
            out += ["", f"† {escape(label)}: imported from a submitted bundle ({escape(source)})."]
        if n.conventions:
            out += ["", "Conventions:", ""]
            out += [f"- `{m}`: {escape(c)}" for m, c in n.conventions]
        if sub.origin_note:
            out += ["", escape(sub.origin_note[0].upper() + sub.origin_note[1:]) + "."]
        out += ["", "Provenance (row: configuration id; run ids):", ""]
        out += [f"- {escape(label)}: `{cid}`; `{runs}`" for label, cid, runs in n.provenance]
        out += ["", f"Regenerate: `{command}`", ""]
    if board.frame.empty:
        out += ["No finished runs.", "", f"Regenerate: `{command}`", ""]
    return "\n".join(out)
