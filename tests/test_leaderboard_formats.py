"""Leaderboards for papers: Markdown, LaTeX and HTML tables and the figures, checked against values these tests set
in a store and compute themselves (means, sample stds, the best-value rule)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.errors import BenchError
from bench.report import html, latex, markdown
from bench.report.figures import attack_bars, leakage_utility_points, write_figures
from bench.report.publish import publish
from bench.report.tables import by_defense, load_board, select, winner
from bench.run.spec import RunSpec
from bench.store import Store

DIRECTION = {"psnr": True, "ssim": True, "mse": False}


def _spec(attack: str = "a", defense: str = "none", seed: int = 0, params: dict | None = None,
          **kw) -> RunSpec:
    base = dict(attack=attack, defense=defense, dataset="d", data_root=None, profile="smoke", seed=seed, n_train=20,
                n_test=8, extract_size=64, image_size=32, extractor={"name": "sift", "version": "1"},
                defense_params={"name": defense, "version": "1", "params": params or {}},
                attack_config={"name": attack, "version": "1", "params": {}})
    base.update(kw)
    return RunSpec(**base)


def _add(store: Store, spec: RunSpec, metrics: dict, utility: dict | None = None) -> str:
    """A finished run with the given set-level values: a float (ok), or (status, detail) for a missing value."""
    store.start_run(spec.run_id, spec.to_dict())
    for name, value in metrics.items():
        if isinstance(value, tuple):
            store.set_set_metric(spec.run_id, name, None, spec.n_test, f"conv-{name}", status=value[0],
                                 detail=value[1], higher_is_better=DIRECTION.get(name))
        else:
            store.set_set_metric(spec.run_id, name, value, spec.n_test, f"conv-{name}",
                                 higher_is_better=DIRECTION.get(name), value_range=(0.0, 1.0))
    for name, value in (utility or {}).items():
        store.set_utility(spec.run_id, name, value)
    store.finish_run(spec.run_id, {})
    return spec.run_id


def _expected_winner(rows: dict[str, list[float]], higher: bool) -> str | None:
    """The best-value rule written out again: best mean wins only if no tie and its ±std band clears the runner-up's."""
    stats = {k: (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0) for k, v in rows.items()}
    order = sorted(stats, key=lambda k: stats[k][0], reverse=higher)
    if len(order) < 2:
        return None
    (m1, s1), (m2, s2) = stats[order[0]], stats[order[1]]
    if m1 == m2:
        return None
    clear = (m1 - s1 > m2 + s2) if higher else (m1 + s1 < m2 - s2)
    return order[0] if clear else None


# Per case: metric -> attack -> values over seeds.
CASES = {
    "clear": {"ssim": {"a": [0.80, 0.82, 0.81], "b": [0.50, 0.52, 0.51], "c": [0.30, 0.31, 0.32]}},
    "overlap": {"ssim": {"a": [0.80, 0.60, 0.70], "b": [0.65, 0.66, 0.64]}},
    "tie": {"ssim": {"a": [0.5], "b": [0.5]}},
    "lower": {"mse": {"a": [0.10, 0.11], "b": [0.05, 0.051]}},
    "single-seed": {"psnr": {"a": [12.0], "b": [15.0]}},
    "lonely": {"ssim": {"a": [0.4, 0.5]}},
}


def _store_of(tmp_path: Path, case: dict) -> Path:
    db = tmp_path / "bench.sqlite"
    with Store(db) as s:
        (metric, rows), = case.items()
        for attack, values in rows.items():
            for seed, v in enumerate(values):
                _add(s, _spec(attack=attack, seed=seed), {metric: v})
    return db


@pytest.mark.parametrize("name", list(CASES))
def test_best_value_rule(name: str, tmp_path: Path) -> None:
    (metric, rows), = CASES[name].items()
    with Store(_store_of(tmp_path, CASES[name])) as s:
        board = load_board(s, "d")
    expected = _expected_winner(rows, DIRECTION[metric])
    got = winner(board.frame, metric, board.metrics[metric].higher_is_better)
    assert (None if got is None else board.frame["attack"][got]) == expected
    assert {"clear": "a", "lower": "b", "single-seed": "b"}.get(name) == expected  # the cases mean what they say
    md = markdown.render(board, "bench leaderboard --format md")
    bold = [line.split("|")[1].strip() for line in md.splitlines() if line.startswith("| ") and "**" in line]
    assert bold == ([] if expected is None else [expected])


def test_no_direction_claims_no_win(tmp_path: Path) -> None:
    with Store(tmp_path / "bench.sqlite") as s:
        for attack, v in (("a", 0.9), ("b", 0.1)):
            spec = _spec(attack=attack)
            s.start_run(spec.run_id, spec.to_dict())
            s.set_set_metric(spec.run_id, "custom", v, 8, "c")  # no direction recorded
            s.finish_run(spec.run_id, {})
        board = load_board(s, "d")
    assert winner(board.frame, "custom", board.metrics["custom"].higher_is_better) is None
    md = markdown.render(board, "cmd")
    assert "**" not in md and "| custom |" in md  # no arrow in the header either


def _table_rows(md: str, heading: str) -> tuple[list[str], list[list[str]]]:
    """Header cells and body cells of the pipe table under a `## ...` heading."""
    lines = md.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("## ") and heading in line)
    table = []
    for line in lines[start + 1:]:
        if line.startswith("## "):
            break
        if line.startswith("|"):
            table.append([c.strip() for c in line.strip().strip("|").split(" | ")])
    return table[0], table[2:]


def _mean_std(text: str) -> tuple[float, float | None]:
    text = text.strip("*")
    m = re.fullmatch(r"(-?[\d.]+)(?: ± ([\d.]+))?(?: \(.*\))?", text)
    assert m, text
    return float(m.group(1)), None if m.group(2) is None else float(m.group(2))


@pytest.fixture()
def paper_store(tmp_path: Path) -> Path:
    """Two defenses; attacks with 1-3 seeds, one unavailable metric, utility figures, an escaped-name attack."""
    with Store(tmp_path / "bench.sqlite") as s:
        for seed, (ps, ss, ms) in enumerate([(20.0, 0.8, 0.01), (21.0, 0.82, 0.011), (22.0, 0.81, 0.012)]):
            _add(s, _spec(attack="cfgan", seed=seed), {"psnr": ps, "ssim": ss, "mse": ms,
                                                        "lpips": ("unavailable", "bench weights pull alexnet")})
        for seed, (ps, ss, ms) in enumerate([(12.0, 0.4, 0.05), (12.5, 0.45, 0.06)]):
            _add(s, _spec(attack="mean-image", seed=seed), {"psnr": ps, "ssim": ss, "mse": ms,
                                                             "lpips": ("unavailable", "bench weights pull alexnet")})
        _add(s, _spec(attack="my_attack&co"), {"psnr": 11.0, "ssim": 0.3, "mse": 0.07})
        for seed, (ss, mr) in enumerate([(0.5, 0.6), (0.52, 0.7)]):
            _add(s, _spec(attack="cfgan", defense="subsample", params={"keep": 0.5}, seed=seed),
                 {"psnr": 15.0 + seed, "ssim": ss, "mse": 0.03}, {"match-rate": mr})
        _add(s, _spec(attack="mean-image", defense="subsample", params={"keep": 0.5}),
             {"psnr": 12.0, "ssim": 0.41, "mse": 0.05}, {"match-rate": 0.65})
        _add(s, _spec(attack="cfgan", defense="subsample", params={"keep": 0.1}),
             {"psnr": 13.0, "ssim": 0.44, "mse": 0.04}, {"match-rate": 0.2})
    return tmp_path


def test_markdown_table(paper_store: Path) -> None:
    with Store(paper_store / "bench.sqlite") as s:
        board = load_board(s, "d")
        run_ids = {r["run_id"] for r in s.runs(status="done")}
    md = markdown.render(board, "bench leaderboard --format md --dataset d")
    header, rows = _table_rows(md, "defense none")
    # lpips has no value in any row (unavailable twice, not computed once): one line under the table, no column.
    assert header == ["attack", "seeds", "mse ↓", "psnr ↑", "ssim ↑"]
    by_attack = {r[0]: r for r in rows}
    assert set(by_attack) == {"cfgan", "mean-image", "my\\_attack&co"}
    assert by_attack["cfgan"][1] == "3" and by_attack["mean-image"][1] == "2" and by_attack["my\\_attack&co"][1] == "1"
    for col, metric, values in ((3, "psnr", [20.0, 21.0, 22.0]), (4, "ssim", [0.8, 0.82, 0.81])):
        mean, std = _mean_std(by_attack["cfgan"][col])
        assert mean == pytest.approx(np.mean(values), abs=1e-4) and std == pytest.approx(np.std(values, ddof=1),
                                                                                           abs=1e-4)
    assert "No value in any row: `lpips` (unavailable: bench weights pull alexnet)." in md
    assert "unavailable |" not in md and "not computed |" not in md
    assert _mean_std(by_attack["my\\_attack&co"][3]) == (11.0, None)  # one seed: no ± shown
    # cfgan clears mean-image on psnr, ssim and mse (lower is better) with non-overlapping bands.
    assert [c.startswith("**") for c in by_attack["cfgan"][2:]] == [True, True, True]
    assert not any("**" in c for r in rows if r[0] != "cfgan" for c in r)
    assert "20 auxiliary (attacker) / 8 private (scored) images per run" in md
    assert "- `ssim`: conv-ssim" in md and "Regenerate: `bench leaderboard --format md --dataset d`" in md
    # Conventions and the cell rule once, after the last table (not under each of the three).
    tail = md[md.rindex("Regenerate:"):]
    assert md.count("conv-ssim") == 1 and "conv-ssim" in tail and md.count("one seed: no band") == 1
    assert all(rid in md for rid in run_ids)  # every run's id is in the provenance
    # The subsample table: two parameter settings are two tables; utility shown; no lpips column there.
    header, rows = _table_rows(md, "defense subsample(keep=0.5)")
    assert header == ["attack", "seeds", "mse ↓", "psnr ↑", "ssim ↑", "utility: match-rate"]
    cf = next(r for r in rows if r[0] == "cfgan")
    assert float(cf[-1]) == pytest.approx(0.65)
    # mse 0.03 (two seeds, std 0) vs mean-image 0.05 (one seed): bands clear, lower wins -> cfgan bold.
    assert cf[2] == "**0.03000 ± 0.00000**"
    assert "## d — defense subsample(keep=0.1)" in md


def test_markdown_lower_is_better_bold(paper_store: Path) -> None:
    with Store(paper_store / "bench.sqlite") as s:
        board = load_board(s, "d")
    (_, sub), = [(d, b) for d, b in by_defense(board) if d == "subsample(keep=0.5)"]
    cf = sub.frame.index[sub.frame["attack"] == "cfgan"][0]
    assert winner(sub.frame, "mse", False) == cf  # 0.03 ± 0 vs 0.05: clear
    assert winner(sub.frame, "ssim", True) == cf  # 0.51 ± 0.0141 vs 0.41: clear
    md = markdown.table(sub)
    row = next(line for line in md if line.startswith("| cfgan"))
    cells = [c.strip() for c in row.strip("|").split(" | ")]
    assert cells[2].startswith("**0.03000") and cells[4].startswith("**0.5100 ± 0.0141")


def test_latex_table(paper_store: Path) -> None:
    with Store(paper_store / "bench.sqlite") as s:
        board = load_board(s, "d")
    tex = latex.render(board, "bench leaderboard --format tex --dataset d")
    tables = tex.split(r"\begin{table}")[1:]
    assert len(tables) == 3  # none, subsample(keep=0.1), subsample(keep=0.5)
    for t in tables:
        assert t.count(r"\toprule") == 1 and t.count(r"\midrule") == 1 and t.count(r"\bottomrule") == 1
        assert t.index(r"\toprule") < t.index(r"\midrule") < t.index(r"\bottomrule")
        assert t.count("{") - t.count(r"\{") == t.count("}") - t.count(r"\}")
    none = tables[0]
    body = none[none.index(r"\midrule") + len(r"\midrule"):none.index(r"\bottomrule")].strip().splitlines()
    header = none[none.index(r"\toprule") + len(r"\toprule"):none.index(r"\midrule")].strip()
    assert r"psnr $\uparrow$" in header and r"mse $\downarrow$" in header
    columns = header.count("&") + 1
    for line in body:
        assert line.endswith(r"\\") and len(re.findall(r"(?<!\\)&", line)) == columns - 1
    rows = {line.split(" & ")[0]: line for line in body}
    assert set(rows) == {"cfgan", "mean-image", r"my\_attack\&co"}  # underscore and ampersand escaped
    assert rows["cfgan"].count(r"\textbf{") == 3 and r"\textbf" not in rows["mean-image"] + rows[r"my\_attack\&co"]
    assert r"\textbf{21.00 $\pm$ 1.00}" in rows["cfgan"]
    assert "% Regenerate: bench leaderboard --format tex --dataset d" in tex
    assert "No value in any row: lpips (unavailable: bench weights pull alexnet)." in none
    assert "lpips" not in header
    # Conventions, sample counts and the best-value rule once per file, in the notes block after the last table;
    # captions are one short line.
    notes_block = tex[tex.rindex(r"\end{table}"):]
    assert tex.count("conv-ssim") == 1 and "conv-ssim" in notes_block
    assert tex.count("images per run") == 1 and "images per run" in notes_block
    assert tex.count("one seed: no band") == 1 and r"\ref{tab:d-none}" in notes_block
    captions = re.findall(r"\\caption\{(.*)\}\\label", tex)
    assert len(captions) == 3 and all(len(c) < 80 for c in captions), captions
    assert re.search(r"% row cfgan: config_id [0-9a-f]{16}; run_ids( [0-9a-f]{16}){3}", tex)


def test_caveats_and_sample_counts_of_ok_values_are_said(tmp_path: Path) -> None:
    """A caveat stored with an ok value (FID's small-sample bias) and a metric scored on another count are noted."""
    with Store(tmp_path / "bench.sqlite") as s:
        for attack, v in (("a", 40.0), ("b", 80.0)):
            spec = _spec(attack=attack)
            s.start_run(spec.run_id, spec.to_dict())
            s.set_set_metric(spec.run_id, "fid", v, 6, "c", detail="biased: computed on 6 < 2048 images",
                             higher_is_better=False)
            s.set_set_metric(spec.run_id, "ssim", 0.5, 8, "c", higher_is_better=True)
            s.finish_run(spec.run_id, {})
        board = load_board(s, "d")
    for text in (markdown.render(board, "cmd"), html.render(board, "cmd")):
        assert "biased: computed on 6 \\< 2048 images" in text or "biased: computed on 6 &lt; 2048 images" in text
        assert "fid on 6" in text
    assert r"Caveat on fid: biased: computed on 6 \textless{} 2048 images." in latex.render(board, "cmd")


def test_rows_differing_in_settings_share_a_table_with_that_setting_as_a_column(tmp_path: Path) -> None:
    """Same attack and defense, two private-split sizes: two rows (never merged) and an n_test column."""
    with Store(tmp_path / "bench.sqlite") as s:
        _add(s, _spec(n_test=200), {"ssim": 0.41})
        _add(s, _spec(n_test=8), {"ssim": 0.62})
        _add(s, _spec(attack="b", n_test=200), {"ssim": 0.30})
        board = load_board(s, "d")
    assert len(by_defense(board)) == 1  # one table
    header, rows = _table_rows(markdown.render(board, "cmd"), "defense none")
    assert header == ["attack", "n\\_test", "seeds", "ssim ↑"]
    assert sorted((r[0], r[1], r[3].strip("*")) for r in rows) == [("a", "200", "0.4100"), ("a", "8", "0.6200"),
                                                                   ("b", "200", "0.3000")]
    md = markdown.render(board, "cmd")
    assert "8 private" not in md and "20 auxiliary (attacker) images per run" in md  # only what all rows share


def test_latex_escapes_specials() -> None:
    assert latex.escape("a_b%c&d#e$f{g}h~i^j\\k") == (r"a\_b\%c\&d\#e\$f\{g\}h\textasciitilde{}i"
                                                       r"\textasciicircum{}j\textbackslash{}k")
    assert latex.escape("0.5 ± 0.1 ↑") == r"0.5 $\pm$ 0.1 $\uparrow$"
    assert latex.escape("bench weights pull --all ---") == r"bench weights pull -{}-all -{}-{}-"


def test_source_column_is_shown_when_present(paper_store: Path) -> None:
    with Store(paper_store / "bench.sqlite") as s:
        board = load_board(s, "d")
    board.frame["source"] = ["" if a != "mean-image" else "bundle-42.zip" for a in board.frame["attack"]]
    md = markdown.render(board, "cmd")
    assert "| mean-image † |" in md and "mean-image: imported from a submitted bundle (bundle-42.zip)" in md
    assert "| cfgan |" in md
    tex = latex.render(board, "cmd")
    assert r"mean-image$^\dagger$ &" in tex and "bundle-42.zip" in tex
    assert "bundle-42.zip" in html.render(board, "cmd")


def test_select_filters_and_errors(paper_store: Path) -> None:
    with Store(paper_store / "bench.sqlite") as s:
        board = load_board(s, "d")
    only = select(board, ["subsample"], ["ssim", "psnr"])
    assert set(only.frame["defense"]) == {"subsample(keep=0.5)", "subsample(keep=0.1)"}
    assert list(only.metrics) == ["ssim", "psnr"]
    assert set(select(board, ["subsample(keep=0.1)"]).frame["defense"]) == {"subsample(keep=0.1)"}
    with pytest.raises(BenchError, match="defense nope"):
        select(board, ["nope"])
    with pytest.raises(BenchError, match="metric ssimm"):
        select(board, [], ["ssimm"])


def test_figure_data_and_files(paper_store: Path, tmp_path: Path) -> None:
    with Store(paper_store / "bench.sqlite") as s:
        board = load_board(s, "d")
    points = leakage_utility_points(board, "ssim")
    by_def = {r.defense: r for r in points.itertuples()}
    assert set(by_def) == {"none", "subsample(keep=0.5)", "subsample(keep=0.1)"}
    assert by_def["none"].attack == "cfgan" and math.isnan(by_def["none"].utility_value)  # no utility: reference
    half = by_def["subsample(keep=0.5)"]
    assert half.attack == "cfgan" and half.leakage == pytest.approx(0.51)
    assert half.leakage_std == pytest.approx(np.std([0.5, 0.52], ddof=1))
    assert half.utility == "match-rate" and half.utility_value == pytest.approx(0.65)
    assert by_def["subsample(keep=0.1)"].utility_value == pytest.approx(0.2)
    mse = leakage_utility_points(board, "mse")  # lower is better: the best attack has the smallest mse
    assert mse.set_index("defense").loc["subsample(keep=0.5)", "attack"] == "cfgan"
    bars = attack_bars(board, "psnr")
    row = bars[(bars["defense"] == "none") & (bars["row"] == "mean-image")].iloc[0]
    assert row["mean"] == pytest.approx(12.25) and row["std"] == pytest.approx(np.std([12, 12.5], ddof=1))
    assert row["seeds"] == 2 and len(bars) == 6
    paths = write_figures(board, "ssim", tmp_path)
    assert sorted(p.name for p in paths) == ["d-attacks.pdf", "d-attacks.png", "d-leakage-utility.pdf",
                                             "d-leakage-utility.png"]
    for p in paths:
        if p.suffix == ".png":
            with Image.open(p) as im:
                assert im.width > 200 and im.height > 200
        else:
            assert p.read_bytes().startswith(b"%PDF-")
    with pytest.raises(BenchError, match="metric lpipz"):
        leakage_utility_points(board, "lpipz")


def _grid(path: Path, colour: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (48, 32), colour).save(path)


def test_html_page_sorts_and_shows_grids(paper_store: Path, page) -> None:
    with Store(paper_store / "bench.sqlite") as s:
        runs = s.runs(status="done")
    for k, r in enumerate(runs):
        _grid(paper_store / "runs" / r["run_id"] / "grid.png", (40 * k % 255, 90, 160))
    paths = publish(paper_store, paper_store / "out", ["html"], defenses=["none"])
    (page_path,) = paths
    text = page_path.read_text()
    assert "http://" not in text and "https://" not in text and "<link" not in text  # nothing external
    page.goto(page_path.resolve().as_uri())
    table = page.locator("table.board").first

    def attacks() -> list[str]:
        return [t.split(" ")[0] for t in table.locator("tbody tr td:first-child").all_inner_texts()]

    ssim = {"cfgan": np.mean([0.8, 0.82, 0.81]), "mean-image": np.mean([0.4, 0.45]), "my_attack&co": 0.3}
    table.locator("th[data-metric=ssim]").click()
    assert attacks() == sorted(ssim, key=ssim.get)
    table.locator("th[data-metric=ssim]").click()
    assert attacks() == sorted(ssim, key=ssim.get, reverse=True)
    # lpips has no value in any row: one line under the table, no column to sort by.
    assert table.locator("th[data-metric=lpips]").count() == 0
    assert "lpips" in page.locator("body").inner_text()
    table.locator("th", has_text="seeds").click()
    assert attacks() == ["my_attack&co", "mean-image", "cfgan"]  # 1, 2, 3 seeds
    images = page.locator("table.board img")
    assert images.count() == 6  # 3 + 2 + 1 runs of the `none` table
    widths = images.evaluate_all("imgs => imgs.map(i => i.complete && i.naturalWidth)")
    assert widths == [48] * 6


def test_rows_that_differ_only_in_something_not_shown_get_a_column(tmp_path: Path) -> None:
    """Same attack, defense and settings, different data folders (fingerprints): a `data` column tells the rows apart;
    rendered from the CSV (which has no fingerprint), a `config` column does."""
    with Store(tmp_path / "bench.sqlite") as s:
        _add(s, _spec(dataset_fingerprint={"files": 3, "digest": "aaa"}), {"ssim": 0.41})
        _add(s, _spec(dataset_fingerprint={"files": 3, "digest": "bbb"}), {"ssim": 0.42})
        _add(s, _spec(attack="b"), {"ssim": 0.30})
        board = load_board(s, "d")
    from bench.hashing import digest

    header, rows = _table_rows(markdown.render(board, "cmd"), "defense none")
    assert header == ["attack", "data", "seeds", "ssim ↑"]
    fingerprints = {digest({"files": 3, "digest": x}, 8) for x in ("aaa", "bbb")}
    assert {r[1] for r in rows if r[0] == "a"} == fingerprints
    tex = latex.render(board, "cmd")
    assert re.search(r"^attack & data & ssim", tex, re.M) and "data: the first 8 hex digits" in tex
    from bench.report.csv_board import board_from_csv

    csv_path = publish(tmp_path, tmp_path / "out", ["csv"])[0]
    header, rows = _table_rows(markdown.render(board_from_csv(csv_path), "cmd"), "defense none")
    assert header == ["attack", "config", "seeds", "ssim ↑"]
    ids = {r["config_id"][:8] for r in __import__("csv").DictReader(csv_path.open()) if r["attack"] == "a"}
    assert {r[1] for r in rows if r[0] == "a"} == ids and len(ids) == 2


def test_rows_that_differ_in_a_spec_field_get_it_as_a_column(tmp_path: Path) -> None:
    """Same attack, defense, settings and data; different extraction size and attack hyper-parameter: a `differs`
    column names the fields and values (not a bare configuration id)."""
    with Store(tmp_path / "bench.sqlite") as s:
        for size, steps in ((64, 100), (128, 200)):
            spec = _spec(extract_size=size)
            spec.attack_config["hyper"] = {"steps": steps}
            _add(s, spec, {"ssim": 0.4 + size / 1000})
        _add(s, _spec(attack="b"), {"ssim": 0.30})
        board = load_board(s, "d")
    header, rows = _table_rows(markdown.render(board, "cmd"), "defense none")
    assert header == ["attack", "differs", "seeds", "ssim ↑"]
    # fields in the order of their spec path (attack_config.hyper.steps before extract_size)
    assert sorted(r[1] for r in rows if r[0] == "a") == ["steps=100, extract\\_size=64",
                                                         "steps=200, extract\\_size=128"]
    assert [r[1] for r in rows if r[0] == "b"] == [""]


def test_from_csv_renders_the_same_tables_as_the_store(paper_store: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """`bench leaderboard --from-csv` re-renders a CSV leaderboard without the store: the same rows, numbers, bold
    cells and one-line notes of metrics without values as the tables rendered from the store."""
    from click.testing import CliRunner

    from bench.cli import main

    monkeypatch.chdir(paper_store)
    made = publish(paper_store, paper_store / "from-store", ["csv", "md", "tex"])
    out = CliRunner().invoke(main, ["leaderboard", "--from-csv", "from-store/d.csv", "--out", "again",
                                    "--format", "md,tex"])
    assert out.exit_code == 0, out.output
    md_store, md_csv = made[1].read_text(), (paper_store / "again" / "d.md").read_text()
    for heading in ("defense none", "defense subsample(keep=0.5)", "defense subsample(keep=0.1)"):
        assert _table_rows(md_csv, heading) == _table_rows(md_store, heading)
    assert "No value in any row: `lpips` (unavailable: bench weights pull alexnet)." in md_csv
    assert "Regenerate: `bench leaderboard --from-csv from-store/d.csv --out again --format md,tex`" in md_csv
    tex_store, tex_csv = made[2].read_text(), (paper_store / "again" / "d.tex").read_text()
    body = lambda t: [line for line in t.splitlines() if line.endswith(r"\\") or "& " in line]  # noqa: E731
    assert body(tex_csv) == body(tex_store)
    assert "the CSV does not record them" in tex_csv
    bad = CliRunner().invoke(main, ["leaderboard", "--from-csv", "from-store/d.csv", "--format", "csv"])
    assert bad.exit_code != 0 and "the CSV is the input" in bad.output
    bad = CliRunner().invoke(main, ["leaderboard", "--from-csv", "nowhere.csv"])
    assert bad.exit_code != 0 and "no such file" in bad.output


def test_from_csv_keeps_partial_seeds_and_statuses(tmp_path: Path) -> None:
    """A metric ok on 2 of 3 seeds (the third unavailable) and one unavailable on every seed of a row read back from
    the CSV give the same cells and notes as from the store."""
    from bench.report.csv_board import board_from_csv

    with Store(tmp_path / "bench.sqlite") as s:
        for seed, v in enumerate((0.5, 0.7, ("unavailable", "bench weights pull x"))):
            _add(s, _spec(seed=seed), {"ssim": v, "zz": ("unavailable", "bench weights pull x")})
        _add(s, _spec(attack="b"), {"ssim": 0.2, "zz": 0.3})
        board = load_board(s, "d")
    csv_path = publish(tmp_path, tmp_path / "out", ["csv"])[0]
    again = board_from_csv(csv_path, "d")
    store_md, csv_md = markdown.render(board, "cmd"), markdown.render(again, "cmd")
    header, rows = _table_rows(csv_md, "defense none")
    assert (header, rows) == _table_rows(store_md, "defense none")
    a = next(r for r in rows if r[0] == "a")
    assert a[header.index("ssim ↑")].strip("*") == "0.6000 ± 0.1414 (2/3 seeds)"
    assert a[header.index("zz")] == "unavailable"
    assert "Missing `zz`: unavailable: bench weights pull x." in csv_md  # zz: no direction in the registry either
