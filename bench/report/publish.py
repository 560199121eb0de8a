"""`bench leaderboard`: write the chosen formats (CSV, Markdown, LaTeX, HTML) and figures for each dataset.

Each file names the command that regenerates it. Every format renders one Board per dataset (bench/report/tables.py,
filtered by --defense and --metrics); the CSV keeps the layout `bench run` refreshes (bench/report/csv_table.py).
"""

from __future__ import annotations

import os
import secrets
import shlex
from pathlib import Path
from typing import Callable, Collection, Sequence


from bench.errors import BenchError
from bench.report import html, latex, markdown
from bench.report.csv_table import csv_frame
from bench.report.leaderboard import _write_csv_atomically, ensure_out_dir
from bench.report.tables import Board, defense_name, load_board, select
from bench.store.db import Store

FORMATS = ("csv", "md", "tex", "html")
_RENDER: dict[str, Callable[[Board, str], str]] = {"md": markdown.render, "tex": latex.render, "html": html.render}


def _shown(path: Path) -> str:
    """A path as the command should show it: relative to the working folder when it lies inside it (a committed
    table never names this machine's folders), else as given."""
    path = Path(path)
    if path.is_absolute():
        try:
            return str(path.relative_to(Path.cwd()))
        except ValueError:
            return str(path)
    return str(path)


def _render(fmt: str, board: Board, command: str, tex_width: str) -> str:
    """The text of one format; LaTeX tables are laid out for `tex_width`."""
    if fmt == "tex":
        return latex.render(board, command, latex.length_pt(tex_width))
    return _RENDER[fmt](board, command)


def regenerate_command(results: Path, out_dir: Path | None, formats: Sequence[str], dataset: str,
                       defenses: Sequence[str], metrics: Sequence[str], figures: bool = False,
                       figure_metric: str | None = None, tex_width: str = latex.TEXT_WIDTH,
                       grid_file: Path | None = None) -> str:
    """The `bench leaderboard` line that writes this dataset's files again from the same store."""
    args = ["bench", "leaderboard", "--results", _shown(results)]
    if out_dir is not None:
        args += ["--out", _shown(out_dir)]
    args += ["--format", ",".join(formats), "--dataset", dataset]
    for d in defenses:
        args += ["--defense", d]
    if metrics:
        args += ["--metrics", ",".join(metrics)]
    if figures:
        args.append("--figures")
        if figure_metric:
            args += ["--figure-metric", figure_metric]
    if tex_width != latex.TEXT_WIDTH and "tex" in formats:
        args += ["--tex-width", tex_width]
    if grid_file is not None:
        args += ["--grid-file", _shown(grid_file)]
    return shlex.join(args)



def _write_text(text: str, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        tmp.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def publish(results: Path, out_dir: Path | None = None, formats: Sequence[str] = ("csv",),
            datasets: Sequence[str] = (), defenses: Sequence[str] = (), metrics: Sequence[str] = (),
            figures: bool = False, figure_metric: str = "ssim", tex_width: str = latex.TEXT_WIDTH,
            run_ids: Collection[str] | None = None, grid_file: Path | None = None) -> list[Path]:
    """Write <out>/<dataset>.<format> for every chosen format and dataset (and the figures); return the paths.
    `run_ids`: only these runs (`bench leaderboard --grid-file`: a committed table holds its grid's rows, not the
    whole store); `grid_file`, the grid file they were planned from, goes into the regenerate command."""
    from bench.report.figures import check_metric, write_figures

    results = Path(results)
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise BenchError(f"unknown --format {', '.join(bad)}; choose from {', '.join(FORMATS)}")
    if results.exists() and not results.is_dir():
        raise BenchError(f"--results {results} is a file, not a folder")
    latex.length_pt(tex_width)  # a bad --tex-width is reported before anything is read or written
    db = results / "bench.sqlite"
    if not db.is_file():
        raise BenchError(f"no results store at {db}; run `bench run` first or pass --results DIR")
    planned = set(run_ids) if run_ids is not None else None
    out = ensure_out_dir(Path(out_dir) if out_dir is not None else results / "leaderboards")
    paths: list[Path] = []
    with Store(db) as store:
        have = sorted({r["dataset"] for r in store.runs(status="done")
                       if planned is None or r["run_id"] in planned})
        unknown = [d for d in datasets if d not in have]
        if unknown:
            raise BenchError(f"no finished runs on dataset {', '.join(unknown)}; the store has "
                             f"{', '.join(have) or 'none'}")
        boards = []
        for d in list(datasets) or have:
            board = load_board(store, d, results / "runs", planned)
            if defenses and not datasets:  # over every dataset: skip those without the chosen defenses
                if not any(x == k or x == defense_name(k) for x in defenses for k in set(board.frame["defense"])):
                    continue
            boards.append(select(board, defenses, metrics))
        if defenses and not boards:
            raise BenchError(f"no finished runs of defense {', '.join(defenses)} on any dataset")
        if figures:  # every problem is reported before any file is written
            for board in boards:
                check_metric(board, figure_metric)
        for board in boards:
            command = regenerate_command(results, out_dir, formats, board.dataset, defenses, metrics, figures,
                                         figure_metric if figures else None, tex_width, grid_file)
            for fmt in formats:
                path = out / f"{board.dataset}.{fmt}"
                if fmt == "csv":  # the same board as the other formats, so the same rows and numbers
                    _write_csv_atomically(csv_frame(board), path)
                else:
                    _write_text(_render(fmt, board, command, tex_width), path)
                paths.append(path)
            if figures:
                paths += write_figures(board, figure_metric, out)
    return paths


def from_csv_command(csv_path: Path, out_dir: Path | None, formats: Sequence[str], dataset: str | None,
                     defenses: Sequence[str], metrics: Sequence[str], tex_width: str = latex.TEXT_WIDTH) -> str:
    """The `bench leaderboard --from-csv` line that writes these files again from the same CSV."""
    args = ["bench", "leaderboard", "--from-csv", _shown(csv_path)]
    if out_dir is not None:
        args += ["--out", _shown(out_dir)]
    args += ["--format", ",".join(formats)]
    if dataset:
        args += ["--dataset", dataset]
    for d in defenses:
        args += ["--defense", d]
    if metrics:
        args += ["--metrics", ",".join(metrics)]
    if tex_width != latex.TEXT_WIDTH and "tex" in formats:
        args += ["--tex-width", tex_width]
    return shlex.join(args)


def publish_from_csv(csv_path: Path, out_dir: Path | None = None, formats: Sequence[str] = ("md", "tex"),
                     dataset: str | None = None, defenses: Sequence[str] = (),
                     metrics: Sequence[str] = (), tex_width: str = latex.TEXT_WIDTH, figures: bool = False,
                     figure_metric: str = "ssim") -> list[Path]:
    """Render a CSV leaderboard (one already written, e.g. a committed one) as <out>/<CSV stem>.<format> without the
    results store; directions and conventions come from the metric registry (bench/report/csv_board.py). With
    `figures`, also <out>/<dataset>-leakage-utility.* and <dataset>-attacks.* (the CSV keeps no std of utility
    figures: the leakage-utility figure says so where a point has several seeds)."""
    from bench.report.csv_board import board_from_csv
    from bench.report.figures import check_metric, write_figures

    csv_path = Path(csv_path)
    bad = [f for f in formats if f not in FORMATS or f == "csv"]
    if bad:
        raise BenchError(f"--format {', '.join(bad)} with --from-csv: choose from md, tex, html (the CSV is the input)")
    if not csv_path.is_file():
        raise BenchError(f"--from-csv {csv_path}: no such file")
    latex.length_pt(tex_width)
    out = ensure_out_dir(Path(out_dir) if out_dir is not None else csv_path.parent)
    board = select(board_from_csv(csv_path, dataset), defenses, metrics)
    if figures:
        check_metric(board, figure_metric)  # before any file is written
    command = from_csv_command(csv_path, out_dir, formats, dataset, defenses, metrics, tex_width)
    paths = []
    for fmt in formats:
        path = out / f"{csv_path.stem}.{fmt}"
        _write_text(_render(fmt, board, command, tex_width), path)
        paths.append(path)
    if figures:
        paths += write_figures(board, figure_metric, out)
    return paths
