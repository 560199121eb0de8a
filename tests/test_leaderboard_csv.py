"""The CSV leaderboard is one more renderer of the Board (bench/report/csv_table.py): the Markdown and the CSV of one
board agree cell by cell, and a Board read back from a CSV writes the same CSV again."""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import pytest

from bench.report import markdown
from bench.report.csv_board import board_from_csv
from bench.report.csv_table import csv_frame
from bench.report.leaderboard import _write_csv_atomically, refresh_leaderboard
from bench.report.publish import publish
from bench.report.tables import load_board
from bench.run.spec import RunSpec
from bench.store import Store

COMMITTED = Path(__file__).resolve().parents[1] / "leaderboards"
DIRECTION = {"psnr": True, "ssim": True, "mse": False, "fid": False}


def _spec(attack: str, defense: str = "none", seed: int = 0, keep: float | None = None) -> RunSpec:
    params = {} if keep is None else {"keep": keep}
    return RunSpec(attack=attack, defense=defense, dataset="d", data_root=None, profile="smoke", seed=seed,
                   n_train=20, n_test=8, extract_size=64, image_size=32, extractor={"name": "sift", "version": "1"},
                   defense_params={"name": defense, "version": "1", "params": params},
                   attack_config={"name": attack, "version": "1", "params": {}})


def _add(store: Store, spec: RunSpec, metrics: dict, utility: dict | None = None) -> None:
    """A finished run: per metric a float (ok), (float, caveat) or (status, detail) for a missing value."""
    store.start_run(spec.run_id, spec.to_dict())
    for name, value in metrics.items():
        hib = DIRECTION.get(name)
        if isinstance(value, tuple) and isinstance(value[0], str):
            store.set_set_metric(spec.run_id, name, None, 8, f"conv-{name}", status=value[0], detail=value[1],
                                 higher_is_better=hib)
        elif isinstance(value, tuple):
            store.set_set_metric(spec.run_id, name, value[0], 8, f"conv-{name}", detail=value[1], higher_is_better=hib)
        else:
            store.set_set_metric(spec.run_id, name, value, 8, f"conv-{name}", higher_is_better=hib)
    for name, value in (utility or {}).items():
        store.set_utility(spec.run_id, name, value)
    store.finish_run(spec.run_id, {})


@pytest.fixture()
def results(tmp_path: Path) -> Path:
    """Two defenses; 1-4 seeds; values ok on some seeds only, unavailable, failed, with caveats; utility figures."""
    with Store(tmp_path / "bench.sqlite") as s:
        for seed, (ps, ss) in enumerate([(20.0, 0.8), (21.0, 0.82), (22.0, 0.81)]):
            _add(s, _spec("cfgan", seed=seed), {"psnr": ps, "ssim": ss, "lpips": ("unavailable", "pull alexnet")})
        for seed, ss in enumerate([0.5, 0.7, ("unavailable", "pull x"), ("failed", "boom")]):
            _add(s, _spec("z", seed=seed), {"ssim": ss, "psnr": 9.0 + seed, "zz": ("unavailable", "pull x")})
        _add(s, _spec("y", seed=0), {"ssim": 0.2, "fid": (30.5, "biased: computed on 8 < 2048 images")})
        _add(s, _spec("y", seed=1), {"ssim": 0.25, "fid": (31.5, "biased: computed on 8 < 2048 images")})
        for seed, (ss, mr) in enumerate([(0.5, 0.6), (0.52, 0.7)]):
            _add(s, _spec("cfgan", "subsample", seed, keep=0.5), {"psnr": 15.0 + seed, "ssim": ss, "mse": 0.03},
                 {"match-rate": mr})
        _add(s, _spec("mean-image", "subsample", keep=0.5), {"psnr": 12.0, "ssim": 0.41, "mse": 0.05},
             {"match-rate": 0.65})
    return tmp_path


def _md_tables(md: str) -> dict[str, tuple[list[str], list[list[str]]]]:
    """Per `## ... — defense X` heading: the header cells and body cells of its pipe table."""
    out: dict[str, tuple[list[str], list[list[str]]]] = {}
    defense = None
    for line in md.splitlines():
        if line.startswith("## "):
            defense = line.split(" — defense ", 1)[1]
            out[defense] = ([], [])
        elif defense and line.startswith("| "):
            cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
            header, rows = out[defense]
            if not header:
                header.extend(cells)
            else:
                rows.append(cells)
    return out


def _number(text: str) -> tuple[float, int]:
    """A shown number and its decimals."""
    return float(text), len(text.split(".")[1]) if "." in text else 0


def _close(csv_value: float, shown: str) -> bool:
    value, places = _number(shown)
    return math.isclose(csv_value, value, abs_tol=0.5 * 10 ** -places + 1e-12)


def test_markdown_and_csv_of_one_board_agree_cell_by_cell(results: Path) -> None:
    with Store(results / "bench.sqlite") as s:
        board = load_board(s, "d")
    md = _md_tables(markdown.render(board, "cmd").replace("\\", ""))
    rows = list(csv.DictReader(publish(results, results / "out", ["csv"])[0].open(encoding="utf-8")))
    metrics = [c for c in rows[0] if f"{c}_std" in rows[0]]
    assert {(r["attack"], r["defense"]) for r in rows} == {(r[0], d) for d, (_, body) in md.items() for r in body}
    checked = 0
    for defense, (header, body) in md.items():
        shown = {h.split(" ")[0]: i for i, h in enumerate(header)}
        mine = [r for r in rows if r["defense"] == defense]
        # the table shows exactly the metrics with an ok value in one of its rows
        with_values = [m for m in metrics if any(_is_number(r[m]) for r in mine)]
        assert sorted(m for m in shown if m in metrics) == sorted(with_values), defense
        for cells in body:
            r = next(r for r in mine if r["attack"] == cells[0])
            assert cells[shown["seeds"]] == r["seeds"]
            for m in with_values:
                text = cells[shown[m]].strip("*")
                if not _is_number(r[m]):  # no ok value: the table shows the statuses the CSV details
                    if r[m] == "":  # no seed of the row has the metric
                        assert text == "not computed" and r[f"{m}_std"] == "", (defense, cells[0], m)
                        continue
                    statuses = {part.split(":")[0] for part in re.sub(r" \(\d+/\d+ seeds\)$", "", r[m]).split("; ")}
                    assert set(text.split("/")) == statuses, (defense, cells[0], m)
                    continue
                got = re.fullmatch(r"(\S+)(?: ± (\S+))?(?: \((\d+/\d+) seeds\))?", text)
                assert got, text
                assert _close(float(r[m]), got.group(1)), (defense, cells[0], m)
                std = r[f"{m}_std"]
                if got.group(2):
                    assert _close(float(std.split(" ")[0]), got.group(2)), (defense, cells[0], m)
                else:  # no ± in the table: no std in the CSV (one ok seed)
                    assert not _is_number(std.split(" ")[0]), (defense, cells[0], m)
                share = re.search(r"(\d+/\d+) seeds", std)
                assert (share.group(1) if share else None) == got.group(3), (defense, cells[0], m)
                checked += 1
            for u in (h.split(": ", 1)[1] for h in header if h.startswith("utility: ")):
                assert math.isclose(float(r[f"utility:{u}"]), float(cells[header.index(f"utility: {u}")]),
                                    rel_tol=1e-3)
    assert checked >= 12
    z = next(r for r in rows if r["attack"] == "z")
    assert z["ssim_std"] == "0.141421 (2/4 seeds; others failed: boom; unavailable: pull x)"
    assert z["zz"] == "unavailable: pull x" and z["lpips"] == ""
    assert next(r for r in rows if r["attack"] == "y")["fid_note"] == "biased: computed on 8 < 2048 images"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def test_refresh_and_publish_write_the_board_rendering(results: Path) -> None:
    with Store(results / "bench.sqlite") as s:
        refreshed = refresh_leaderboard(s, results, "d").read_text(encoding="utf-8")
        board = load_board(s, "d")
    _write_csv_atomically(csv_frame(board), results / "board.csv")
    assert refreshed == (results / "board.csv").read_text(encoding="utf-8")
    assert publish(results, results / "p", ["csv"])[0].read_text(encoding="utf-8") == refreshed


def test_a_filtered_csv_keeps_only_what_its_rows_need(results: Path) -> None:
    """--defense subsample: fid's caveat column goes with the rows that had one; the metric columns stay."""
    path = publish(results, results / "p", ["csv"], defenses=["subsample"])[0]
    header = next(csv.reader(path.open(encoding="utf-8")))
    assert "fid" in header and "fid_note" not in header and "utility:match-rate" in header
    path = publish(results, results / "q", ["csv"], metrics=["ssim", "fid"])[0]
    header = next(csv.reader(path.open(encoding="utf-8")))
    assert header[8:13] == ["ssim", "ssim_std", "fid", "fid_std", "fid_note"]


def test_a_board_read_back_from_a_csv_writes_the_same_csv(results: Path, tmp_path: Path) -> None:
    written = publish(results, results / "out", ["csv"])[0]
    files = [written] + [COMMITTED / n for n in ("faces-utkface.csv", "sift-utkface.csv", "faces-lfw-utility.csv")]
    for path in files:
        again = tmp_path / f"again-{path.name}"
        _write_csv_atomically(csv_frame(board_from_csv(path)), again)
        assert again.read_text(encoding="utf-8") == path.read_text(encoding="utf-8"), path.name
