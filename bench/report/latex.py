"""LaTeX leaderboards (for papers): one booktabs `table` per defense that fits a single-column page, and one notes
block per file.

Each table has a one-line caption and a label; its columns are the attack, whatever tells its rows apart (varying
settings, the data fingerprint or the configuration id, see bench/report/tables.py), the seed count when it varies,
one column per metric with a value in some row (a metric with none is one line under the table) and the utility
figures. Long headers are stacked on two or three lines; a table whose estimated width exceeds the text width by more
than a third is split into stacked parts that repeat the row columns; whatever is left is shrunk to the line width
by `\\resizebox` (never enlarged). Conventions, caveats, missing values, sample counts and the best-value rule are
said once, in the notes block at the end of the file (keep it under the tables or move it to an appendix). The
regenerating command and each row's provenance are comments. Needs `\\usepackage{booktabs,graphicx}`."""

from __future__ import annotations

import re

import pandas as pd

from bench.errors import BenchError
from bench.report.tables import (BEST_RULE, EXTRA_MEANING, Board, by_defense, cell, layout, merge_parts,
                                 notes)

_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
            "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}",
            ">": r"\textgreater{}", "|": r"\textbar{}"}
_UNICODE = {"±": r"$\pm$", "↑": r"$\uparrow$", "↓": r"$\downarrow$", "†": r"$^\dagger$", "×": r"$\times$",
            "—": "---", "–": "--", "≥": r"$\geq$", "≤": r"$\leq$", "σ": r"$\sigma$", "²": r"$^2$", "√": r"$\surd$",
            "≈": r"$\approx$", "→": r"$\rightarrow$", "·": r"$\cdot$", "…": r"\ldots{}", "−": r"$-$",
            "³": r"$^3$", "µ": r"$\mu$", "μ": r"$\mu$"}


def escape(text: object) -> str:
    """Text safe in LaTeX: special characters escaped, the few Unicode signs we print mapped to macros."""
    out = "".join(_SPECIAL.get(ch, ch) for ch in str(text))
    out = out.replace("--", "-{}-").replace("--", "-{}-")  # `--format` stays two hyphens, not an en dash
    for sign, macro in _UNICODE.items():
        out = out.replace(sign, macro)
    return out


def prose(text: object) -> str:
    """Escaped text for a caption or a note: a line may also break after a comma, an opening parenthesis or `=`
    inside a long unspaced token such as `fedsgd(train_steps=100,trained=true,...)`, which LaTeX cannot hyphenate."""
    out = escape(text)
    for sign in (",", "(", "="):
        out = out.replace(sign, sign + r"\allowbreak{}")
    return out


def _comment(text: str) -> str:
    return "% " + " ".join(str(text).split())


TEXT_WIDTH = "6.5in"  # \textwidth of a single-column paper page
TEXT_WIDTH_PT = 469.755  # the same in TeX points (72.27 to the inch)
CHAR_PT = 5.0  # mean width of a digit or lower-case letter at 10 pt
COLSEP_PT = 12.0  # 2 \tabcolsep
MIN_SCALE = 0.75  # a table that would be shrunk more than this is split into stacked parts instead
HEADER_LINE = 11  # characters per line of a stacked column header
NOT_COMPUTED = "--"
FIT = r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%"


_UNITS = {"in": 72.27, "cm": 72.27 / 2.54, "mm": 72.27 / 25.4, "pt": 1.0}


def length_pt(text: str) -> float:
    """A TeX length such as `6.5in`, `3.5in`, `252pt` or `8.9cm`, in points (what `--tex-width` takes)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(in|cm|mm|pt)\s*", str(text))
    if not m or float(m.group(1)) <= 0:
        raise BenchError(f"--tex-width {text!r}: give a positive length in in, cm, mm or pt, such as 6.5in or 3.5in")
    return float(m.group(1)) * _UNITS[m.group(2)]


def _header_lines(text: str) -> list[str]:
    """A column header cut after hyphens, colons and spaces into lines of about HEADER_LINE characters."""
    pieces = re.findall(r"[^-: ]+(?:[-:]+ ?| |$)", text) or [text]
    lines = [""]
    for piece in pieces:
        if lines[-1] and len(lines[-1]) + len(piece.rstrip()) > HEADER_LINE:
            lines.append("")
        lines[-1] += piece
    return [line.strip() for line in lines if line.strip()]


def _header_cell(text: str, arrow: str = "") -> str:
    lines = [escape(line) for line in _header_lines(text)]
    if arrow:
        lines[-1] += " " + escape(arrow)
    if len(lines) == 1:
        return lines[0]
    return r"\begin{tabular}[b]{@{}c@{}}" + r"\\".join(lines) + r"\end{tabular}"


def _width(header: str, cells: list[str]) -> float:
    """Estimated natural width (pt) of a column from its plain header lines and cell texts."""
    longest = max([len(line) + 2 for line in _header_lines(header)] + [len(c) for c in cells] + [1])
    return longest * CHAR_PT + COLSEP_PT


def _fill(values: list[float], cap: float) -> list[list[int]]:
    """Consecutive columns packed into groups of at most `cap` (a column wider than `cap` is a group alone)."""
    groups: list[list[int]] = [[]]
    used = 0.0
    for i, w in enumerate(values):
        if groups[-1] and used + w > cap:
            groups.append([])
            used = 0.0
        groups[-1].append(i)
        used += w
    return groups


def _parts(keys: list[float], values: list[float], limit: float) -> list[list[int]]:
    """Indices of the value columns per stacked part: one part when the table fits under `limit`, else the fewest
    parts that do, as even in width as consecutive columns allow (each part repeats the row columns `keys`)."""
    row_width = sum(keys)
    if row_width + sum(values) <= limit or len(values) < 2:
        return [list(range(len(values)))]
    fewest = len(_fill(values, max(limit - row_width, 0.0)))
    caps = sorted({sum(values[a:b]) for a in range(len(values)) for b in range(a + 1, len(values) + 1)})
    return next(g for cap in caps if len(g := _fill(values, cap)) <= fewest)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", str(text)).strip("-").lower() or "x"


def table(board: Board, caption: str, label: str = "", text_width_pt: float = TEXT_WIDTH_PT) -> list[str]:
    """One booktabs table environment for one defense's board: stacked parts when it is far too wide, each shrunk
    to the line width only when it is wider, and one line under it for the metrics without a value in any row."""
    frame = board.frame
    lay = layout(board)
    settings, src, places, wins = lay.settings, lay.sources, lay.places, lay.wins
    show_seeds = frame["seeds"].astype(int).nunique() > 1 if len(frame) else False
    key_heads = ["attack", *settings] + (["seeds"] if show_seeds else [])
    key_cells: list[list[str]] = [[], *[[] for _ in settings]] + ([[]] if show_seeds else [])
    val_heads: list[tuple[str, str]] = [(m, info.arrow) for m, info in board.metrics.items()]
    val_heads += [(f"utility: {u}", "") for u in board.utilities]
    val_plain: list[list[str]] = [[] for _ in val_heads]
    val_tex: list[list[str]] = [[] for _ in val_heads]
    for i, (_, row) in enumerate(frame.iterrows()):
        key_cells[0].append(escape(row["attack"]) + (r"$^\dagger$" if src[i] else ""))
        for j, s in enumerate(settings):
            key_cells[1 + j].append(escape(row[s]))
        if show_seeds:
            key_cells[-1].append(str(int(row["seeds"])))
        for j, m in enumerate(board.metrics):
            text = cell(row, m, places[m])
            tex = NOT_COMPUTED if text == "not computed" else escape(text)  # `--` is an en dash here
            val_plain[j].append("-" if text == "not computed" else text)
            val_tex[j].append(r"\textbf{" + tex + "}" if wins[m] == i else tex)
        for j, u in enumerate(board.utilities, start=len(board.metrics)):
            value = row.get(f"utility:{u}")
            text = "" if value is None or pd.isna(value) else f"{float(value):.4g}"
            val_plain[j].append(text)
            val_tex[j].append(text)
    key_w = [_width(h, [re.sub(r"\\.|[{}$^]", "", c) for c in cells]) for h, cells in zip(key_heads, key_cells)]
    val_w = [_width(h, cells) for (h, _), cells in zip(val_heads, val_plain)]
    parts = _parts(key_w, val_w, text_width_pt / MIN_SCALE)
    lines = [r"\begin{table}[t]", r"\centering",
             r"\caption{" + caption + "}" + (rf"\label{{{label}}}" if label else ""), FIT]
    if len(parts) > 1:  # stacked parts in one box: one scale for all of them
        lines.append(r"\begin{tabular}{@{}c@{}}")
    for k, part in enumerate(parts):
        spec = "l" * (1 + len(settings)) + "r" * (len(key_heads) - 1 - len(settings) + len(part))
        heads = [_header_cell(h) for h in key_heads] + [_header_cell(*val_heads[j]) for j in part]
        lines += [r"\begin{tabular}{" + spec + "}", r"\toprule", " & ".join(heads) + r" \\", r"\midrule"]
        for i in range(len(frame)):
            lines.append(" & ".join([c[i] for c in key_cells] + [val_tex[j][i] for j in part]) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}" + (r"\\ \noalign{\vskip 2ex}" if k < len(parts) - 1 else "")]
    lines.append(r"\end{tabular}}" if len(parts) > 1 else "}")
    if board.absent:
        text = "; ".join(f"{m} ({'; '.join(i.details) or 'not computed'})" for m, i in board.absent.items())
        lines.append(r"\par\smallskip{\footnotesize No value in any row: " + escape(text) + r".\par}")
    lines.append(r"\end{table}")
    return lines


def _once(items: list[str]) -> list[str]:
    return list(dict.fromkeys(i for i in items if i))


def render(board: Board, command: str, text_width_pt: float = TEXT_WIDTH_PT) -> str:
    """A LaTeX fragment: per defense a table with a one-line caption, then one notes block for all of them."""
    out = [_comment(f"Leaderboard {board.dataset}: generated by bench, do not edit."), _comment(f"Regenerate: {command}"),
           _comment("Needs \\usepackage{booktabs,graphicx}. The notes block at the end belongs to every table here."),
           ""]
    tables = by_defense(board)
    all_notes = [notes(sub, command) for _, sub in tables]
    samples = _once([n.samples for n in all_notes])
    shared_samples = samples[0] if len(samples) == 1 and all(n.samples for n in all_notes) else ""
    labels, used_dash, extra_cols = [], False, []
    conventions: dict[str, list[str]] = {}
    missing: dict[str, list[str]] = {}
    caveats: dict[str, list[str]] = {}
    for k, ((defense, sub), n) in enumerate(zip(tables, all_notes)):
        label = f"tab:{_slug(board.dataset)}-{_slug(defense)}"
        label = label if label not in labels else f"{label}-{k}"
        labels.append(label)
        seeds = sorted({int(v) for v in sub.frame["seeds"]}) if len(sub.frame) else []
        caption = f"{prose(board.dataset)}, defense {prose(defense)}"
        if len(seeds) == 1:
            caption += f" ({seeds[0]} seed{'s' if seeds[0] != 1 else ''} per row)"
        if n.samples and not shared_samples:
            caption += f"; {prose(n.samples)}"
        out += table(sub, caption + ".", label, text_width_pt)
        out += [_comment(f"row {lab}: config_id {cid}; run_ids {runs}") for lab, cid, runs in n.provenance]
        out.append("")
        used_dash = used_dash or any(cell(r, m, 2) == "not computed" for _, r in sub.frame.iterrows()
                                     for m in sub.metrics)
        extra_cols += [c for c in layout(sub).settings if c in EXTRA_MEANING]
        for m, c in n.conventions:
            conventions.setdefault(m, []).append(c)
        for m, d in n.missing:
            missing.setdefault(m, []).append(d)
        for m, d in n.caveats:
            caveats.setdefault(m, []).append(d)
    if board.frame.empty:
        out += [_comment("No finished runs."), ""]
        return "\n".join(out)
    items = [f"Cells: mean $\\pm$ sample standard deviation over the seeds of a row (one seed: no $\\pm$); "
             f"$\\uparrow$ higher / $\\downarrow$ lower is better; {prose(BEST_RULE)}."]
    if shared_samples:
        items.append(f"Every row: {prose(shared_samples)}.")
    items += [f"{prose(p)}." for p in _once([str(v) for v in board.frame.get("profile_note", [])
                                                       if str(v) not in ("", "nan")])]
    items += [f"Data: {prose(d)}." for d in _once([n.dataset_note for n in all_notes])]
    items += [prose(EXTRA_MEANING[c]) + "." for c in _once(extra_cols)]
    if used_dash:
        items.append(f"{NOT_COMPUTED}: no run of that row computed the metric.")
    items += [f"$^\\dagger${prose(lab)}: imported from a submitted bundle ({prose(s)})."
              for lab, s in dict.fromkeys((lab, s) for n in all_notes for lab, s in n.sources)]
    items += [f"Missing {prose(m)}: {prose(merge_parts(d))}." for m, d in missing.items()]
    items += [f"Caveat on {prose(m)} (a--b: the range over the rows): {prose(merge_parts(d))}." if "–" in
              merge_parts(d) else f"Caveat on {prose(m)}: {prose(merge_parts(d))}." for m, d in caveats.items()]
    if board.origin_note:
        items.append(prose(board.origin_note[0].upper() + board.origin_note[1:]) + ".")
    items += [f"{prose(m)}: {prose(' | '.join(_once(c)))}." for m, c in conventions.items()]
    ref = (rf"Table~\ref{{{labels[0]}}}" if len(labels) == 1
           else rf"Tables~\ref{{{labels[0]}}}--\ref{{{labels[-1]}}}")
    out += [_comment("Notes on every table above (once per file): keep them under the tables or move them to an "
                     "appendix."),
            r"\begingroup\footnotesize\sloppy",
            r"\par\medskip\noindent\textbf{Notes on " + ref + " (" + escape(board.dataset) + r").}",
            r"\begin{itemize}\setlength{\itemsep}{0pt}\setlength{\parskip}{0pt}"]
    out += [r"\item " + item for item in items]
    out += [r"\end{itemize}", r"\endgroup", ""]
    return "\n".join(out)
