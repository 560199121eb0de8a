"""An HTML leaderboard: one self-contained page per dataset (inline CSS and JavaScript, each row's reconstruction
grids embedded as PNG data URIs), one table per defense whose columns sort when their header is clicked (metric
columns sort numerically on the mean; rows without a value go last)."""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path

import pandas as pd

from bench.report.tables import BEST_RULE, Board, by_defense, cell, layout, notes, row_labels

_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1em}
th,td{padding:.3em .6em;border-bottom:1px solid #ddd;vertical-align:top}
th{cursor:pointer;user-select:none;background:#f4f4f4;white-space:nowrap}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.best{font-weight:bold}
td.grid img{height:180px;margin-right:4px;cursor:zoom-in}
td.grid img.big{height:auto;max-width:90vw;cursor:zoom-out}
.notes{font-size:.9em;color:#444;max-width:70em}
code{background:#f4f4f4;padding:0 .2em}
"""

# Click a header: sort that table's body rows by the cell's data-sort (numbers when the column is numeric),
# ascending first, then descending; empty values always last. Click a grid: toggle its full size.
_JS = """
document.querySelectorAll('table.board').forEach(function(table){
  table.querySelectorAll('th').forEach(function(th, col){
    th.addEventListener('click', function(){
      var asc = th.getAttribute('aria-sort') !== 'ascending';
      table.querySelectorAll('th').forEach(function(h){h.removeAttribute('aria-sort');});
      th.setAttribute('aria-sort', asc ? 'ascending' : 'descending');
      var numeric = th.dataset.type === 'num';
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function(a, b){
        var x = a.cells[col].dataset.sort, y = b.cells[col].dataset.sort;
        var ex = x === undefined || x === '', ey = y === undefined || y === '';
        if (ex || ey) return ex - ey;
        var c = numeric ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
        return asc ? c : -c;
      });
      rows.forEach(function(r){body.appendChild(r);});
    });
  });
});
document.querySelectorAll('td.grid img').forEach(function(img){
  img.addEventListener('click', function(){img.classList.toggle('big');});
});
"""


def _data_uri(path: Path) -> str | None:
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return None
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _num_sort(value: object) -> str:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""
    if math.isnan(v):
        return ""
    return repr(v) if math.isfinite(v) else ("1e308" if v > 0 else "-1e308")


def table(board: Board, table_id: str) -> str:
    """One sortable table of one defense's board, with the grids of each row's runs beside its name."""
    e = html.escape
    frame = board.frame
    lay = layout(board)
    settings, src, places, wins = lay.settings, lay.sources, lay.places, lay.wins
    labels = row_labels(frame)
    head = ["<th data-type=text>attack</th>"]
    head += [f"<th data-type={'num' if s in ('n_train', 'n_test') else 'text'}>{e(s)}</th>" for s in settings]
    head.append("<th data-type=text title=\"per run: original | released features | reconstruction\">grids</th>")
    head.append("<th data-type=num>seeds</th>")
    for m, info in board.metrics.items():
        direction = {True: "higher is better", False: "lower is better"}.get(info.higher_is_better, "direction not recorded")  # type: ignore[arg-type]
        head.append(f"<th data-type=num data-metric=\"{e(m)}\" title=\"{e(direction)}\">{e(m)} {info.arrow}</th>")
    head += [f"<th data-type=num>utility: {e(u)}</th>" for u in board.utilities]
    rows = []
    for i, (_, row) in enumerate(frame.iterrows()):
        cells = [f"<td data-sort=\"{e(str(row['attack']))}\">{e(str(row['attack']))}"
                 + (f" <span title=\"{e(src[i])}\">†</span>" if src[i] else "") + "</td>"]
        for s in settings:
            sort = _num_sort(row[s]) if s in ("n_train", "n_test") else str(row[s])
            cells.append(f"<td data-sort=\"{e(sort)}\">{e(str(row[s]))}</td>")
        imgs = []
        run_ids = str(row["run_ids"]).split()
        for k, path in enumerate(row.get("grids") or ()):
            uri = _data_uri(Path(path))
            rid = run_ids[k] if k < len(run_ids) else ""
            imgs.append(f"<img src=\"{uri}\" alt=\"grid of run {e(rid)}\" title=\"run {e(rid)}\">" if uri
                        else f"<span>no grid for run {e(rid)}</span>")
        cells.append("<td class=grid>" + "".join(imgs) + "</td>")
        cells.append(f"<td class=num data-sort=\"{int(row['seeds'])}\">{int(row['seeds'])}</td>")
        for m in board.metrics:
            sort = _num_sort(row[m]) if int(row[f"{m}_k"]) > 0 else ""
            cls = "num best" if wins[m] == i else "num"
            cells.append(f"<td class=\"{cls}\" data-sort=\"{sort}\">{e(cell(row, m, places[m]))}</td>")
        for u in board.utilities:
            value = row.get(f"utility:{u}")
            text = "" if value is None or pd.isna(value) else f"{float(value):.4g}"
            cells.append(f"<td class=num data-sort=\"{_num_sort(value)}\">{text}</td>")
        rows.append(f"<tr title=\"{e(labels[i])}\">" + "".join(cells) + "</tr>")
    return (f"<table class=board id=\"{e(table_id)}\"><thead><tr>{''.join(head)}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def render(board: Board, command: str) -> str:
    """The whole page: every defense's table with its notes; no external resource."""
    e = html.escape
    parts = ["<!DOCTYPE html>", "<html lang=en><head><meta charset=utf-8>",
             f"<title>Leaderboard: {e(board.dataset)}</title><style>{_CSS}</style></head><body>",
             f"<h1>Leaderboard: {e(board.dataset)}</h1>",
             "<p class=notes>Mean ± sample standard deviation over seeds; ↑ higher is better, ↓ lower is better; "
             f"{e(BEST_RULE)}. Click a column header to sort; click a grid to enlarge it.</p>"]
    for k, (defense, sub) in enumerate(by_defense(board)):
        n = notes(sub, command)
        parts.append(f"<h2>defense {e(defense)}</h2>")
        if n.samples:
            parts.append(f"<p class=notes>{e(n.samples)}.</p>")
        parts.append(table(sub, f"board-{k}"))
        items = []
        if n.dataset_note:
            items.append(f"Data: {e(n.dataset_note)}.")
        items += [f"No value in any row: <code>{e(m)}</code> ({e(d)})." for m, d in n.absent]
        items += [f"Missing <code>{e(m)}</code>: {e(d)}." for m, d in n.missing]
        items += [f"Caveat on <code>{e(m)}</code>: {e(d)}." for m, d in n.caveats]
        items += [f"† {e(label)}: imported from a submitted bundle ({e(s)})." for label, s in n.sources]
        items += [f"<code>{e(m)}</code>: {e(c)}" for m, c in n.conventions]
        items += [f"{e(label)}: configuration <code>{e(cid)}</code>, runs <code>{e(runs)}</code>"
                  for label, cid, runs in n.provenance]
        parts.append("<ul class=notes>" + "".join(f"<li>{item}</li>" for item in items) + "</ul>")
    if board.frame.empty:
        parts.append("<p>No finished runs.</p>")
    parts.append(f"<p class=notes>Regenerate: <code>{e(command)}</code></p>")
    parts.append(f"<script>{_JS}</script></body></html>")
    return "\n".join(parts)
