"""Markdown leaderboards (for READMEs): one pipe table per defense, arrows in the headers, the best value in bold
under the rule of bench/report/tables.py, and the notes (samples, conventions, provenance, command) below it."""

from __future__ import annotations

import pandas as pd

from bench.report.tables import BEST_RULE, EXTRA_MEANING, Board, by_defense, cell, layout, merge_parts, notes


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
    """A Markdown document: per defense a heading, its table, what its cells lack and its provenance; then the notes
    every table shares (cell format, conventions, caveats, data), said once."""
    out = [f"# Leaderboard: {escape(board.dataset)}", ""]
    conventions: dict[str, list[str]] = {}
    caveats: dict[str, list[str]] = {}
    data: list[str] = []
    extra: list[str] = []
    for defense, sub in by_defense(board):
        n = notes(sub, command)
        out += [f"## {escape(board.dataset)} — defense {escape(defense)}", ""]
        if n.samples:
            out += [escape(n.samples) + ".", ""]
        out += table(sub)
        if n.absent:
            out += ["", "No value in any row: " + "; ".join(f"`{m}` ({escape(d)})" for m, d in n.absent) + "."]
        for metric, detail in n.missing:
            out += ["", f"Missing `{metric}`: {escape(detail)}."]
        for label, source in n.sources:
            out += ["", f"† {escape(label)}: imported from a submitted bundle ({escape(source)})."]
        for m, c in n.conventions:
            conventions.setdefault(m, []).append(c)
        for m, d in n.caveats:
            caveats.setdefault(m, []).append(d)
        data.append(n.dataset_note)
        extra += [c for c in layout(sub).settings if c in EXTRA_MEANING]
        out += ["", "Provenance (row: configuration id; run ids):", ""]
        out += [f"- {escape(label)}: `{cid}`; `{runs}`" for label, cid, runs in n.provenance]
        out += ["", f"Regenerate: `{command}`", ""]
    if board.frame.empty:
        out += ["No finished runs.", "", f"Regenerate: `{command}`", ""]
        return "\n".join(out)
    out += ["### Notes on every table above", "",
            "Mean ± sample standard deviation over seeds; ↑ higher is better, ↓ lower is better; "
            + escape(BEST_RULE) + "."]
    for p in dict.fromkeys(str(v) for v in board.frame.get("profile_note", []) if str(v) not in ("", "nan")):
        out += ["", escape(p) + "."]
    for d in dict.fromkeys(d for d in data if d):
        out += ["", f"Data: {escape(d)}."]
    for col in dict.fromkeys(extra):
        out += ["", escape(EXTRA_MEANING[col]) + "."]
    for metric, texts in caveats.items():
        merged = merge_parts(texts)
        out += ["", f"Caveat on `{metric}`" + (" (a–b: the range over the rows)" if "–" in merged else "")
                + f": {escape(merged)}."]
    if board.origin_note:
        out += ["", escape(board.origin_note[0].upper() + board.origin_note[1:]) + "."]
    if conventions:
        out += ["", "Conventions:", ""]
        out += [f"- `{m}`: {escape(' | '.join(dict.fromkeys(c)))}" for m, c in conventions.items()]
    return "\n".join(out + [""])
