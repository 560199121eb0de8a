"""The tables checked in under leaderboards/: they parse, their rows carry their provenance in the stated format,
and leaderboards/README.md names the command that regenerates each of them. Generic over whatever files are there."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from bench.profiles import PROFILES

BOARDS = Path(__file__).resolve().parents[1] / "leaderboards"
HEX16 = re.compile(r"[0-9a-f]{16}")
TABLES = sorted(p for p in BOARDS.iterdir() if p.suffix in (".csv", ".md", ".tex") and p.name != "README.md")
MACHINE_PATH = re.compile(r"(?<![\w.])/(work|root|home|tmp|Users)/")


def test_there_are_committed_tables() -> None:
    assert any(p.suffix == ".csv" for p in TABLES)


def check_csv(path: Path) -> None:
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    assert rows, f"{path.name} has no rows"
    required = {"attack", "defense", "aux_dataset", "profile", "extractor", "n_train", "n_test", "seeds",
                "config_id", "run_ids"}
    assert required <= set(rows[0]), f"{path.name} lacks {sorted(required - set(rows[0]))}"
    metrics = [c[:-len("_std")] for c in rows[0] if c.endswith("_std") and c[:-len("_std")] in rows[0]]
    assert metrics, f"{path.name} has no metric columns"
    seen = set()
    for row in rows:
        assert row["attack"] and row["defense"], row
        assert row["profile"] in PROFILES, row["profile"]
        assert int(row["n_train"]) >= 1 and int(row["n_test"]) >= 1 and int(row["seeds"]) >= 1
        assert HEX16.fullmatch(row["config_id"]), row["config_id"]
        runs = row["run_ids"].split(" ")
        assert all(HEX16.fullmatch(r) for r in runs) and len(runs) == int(row["seeds"]), row["run_ids"]
        assert row["config_id"] not in seen, f"{path.name}: configuration {row['config_id']} twice"
        seen.add(row["config_id"])
        for m in metrics:  # a number, the status that says why there is none, or empty: no run of it computed m
            value = row[m]
            if value == "":
                continue
            try:
                float(value)
            except ValueError:
                assert value.split(":")[0].split(" ")[0] in ("ok", "unavailable", "undefined", "not-applicable",
                                                            "failed", "not"), f"{m}={value!r}"
    assert not MACHINE_PATH.search(path.read_text(encoding="utf-8")), f"{path.name} holds a machine's path"


def _provenance_ids(text: str) -> set[str]:
    return set(re.findall(r"config_id ([0-9a-f]{16})", text)) | set(re.findall(r": `([0-9a-f]{16})`;", text))


def _csv_ids(path: Path) -> set[str] | None:
    twin = path.with_suffix(".csv")
    return {r["config_id"] for r in csv.DictReader(twin.open(encoding="utf-8"))} if twin.is_file() else None


def check_markdown(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    sections = text.split("\n## ")[1:]
    assert sections, f"{path.name} has no table section"
    for section in sections:
        lines = [line for line in section.splitlines() if line.startswith("|")]
        assert len(lines) >= 3, section[:80]
        width = len(re.split(r"(?<!\\)\|", lines[0]))
        assert all(len(re.split(r"(?<!\\)\|", line)) == width for line in lines), section[:80]
        assert re.fullmatch(r"\|(:?-+:?\|)+", lines[1])
        assert re.search(r"^Regenerate: `bench leaderboard .*`$", section, re.M)
        provenance = re.findall(r"^- .*: `[0-9a-f]{16}`; `[0-9a-f]{16}(?: [0-9a-f]{16})*`$", section, re.M)
        assert len(provenance) == len(lines) - 2, "one provenance line (configuration; runs) per row"
    ids = _csv_ids(path)
    if ids is not None:
        assert _provenance_ids(text) <= ids, f"{path.name} names configurations its CSV does not have"
    assert not MACHINE_PATH.search(text), f"{path.name} holds a machine's path"


def check_latex(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert re.search(r"^% Regenerate: bench leaderboard ", text, re.M)
    tables = text.split(r"\begin{table}")[1:]
    assert tables and text.count(r"\end{table}") == len(tables)
    for t in tables:
        # A wide table may be stacked parts (bench/report/latex.py): each a booktabs tabular with every row.
        parts = t.split(r"\toprule")[1:]
        assert parts and t.count(r"\midrule") == t.count(r"\bottomrule") == len(parts)
        bodies = []
        for part in parts:
            body = part[part.index(r"\midrule") + 8:part.index(r"\bottomrule")].strip().splitlines()
            columns = len(re.findall(r"(?<!\\)&", part[:part.index(r"\midrule")])) + 1
            assert all(len(re.findall(r"(?<!\\)&", line)) == columns - 1 and line.endswith(r"\\") for line in body)
            bodies.append(len(body))
        assert len(set(bodies)) == 1, "every part has every row"
        assert len(re.findall(r"^% row .*: config_id [0-9a-f]{16}; run_ids [0-9a-f]{16}( [0-9a-f]{16})*$", t,
                              re.M)) == bodies[0]
    ids = _csv_ids(path)
    if ids is not None:
        assert _provenance_ids(text) <= ids, f"{path.name} names configurations its CSV does not have"
    assert not MACHINE_PATH.search(text), f"{path.name} holds a machine's path"


CHECKS = {".csv": check_csv, ".md": check_markdown, ".tex": check_latex}
STUDIES = sorted((BOARDS / "studies").glob("*.csv")) if (BOARDS / "studies").is_dir() else []


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.name)
def test_committed_study_records_its_conditions_and_command(path: Path) -> None:
    """Studies (leaderboards/studies/: benchmark outputs, not leaderboard tables) state the threads, split and
    profile of every row, carry a figure, and leaderboards/README.md names the benchmark command that made them."""
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    assert rows, f"{path.name} has no rows"
    for row in rows:
        assert int(row["torch_threads"]) >= 1 and int(row["n_train"]) >= 1 and int(row["n_test"]) >= 1, row
        assert row["profile"] in PROFILES, row["profile"]
    assert path.with_suffix(".png").is_file(), f"{path.name} has no figure beside it"
    readme = (BOARDS / "README.md").read_text(encoding="utf-8")
    section = readme.split(f"## studies/{path.stem}", 1)
    assert len(section) == 2, f"leaderboards/README.md has no section headed studies/{path.stem}"
    assert re.search(r"^python benchmarks/\S+\.py ", section[1].split("\n## ")[0], re.M), "no command in its section"
    assert not MACHINE_PATH.search(path.read_text(encoding="utf-8")), f"{path.name} holds a machine's path"


@pytest.mark.parametrize("path", TABLES, ids=lambda p: p.name)
def test_committed_table_parses_and_carries_its_provenance(path: Path) -> None:
    CHECKS[path.suffix](path)


def test_the_checks_accept_generated_tables_and_catch_broken_ones(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The same checks on tables `bench leaderboard` writes now (so they are exercised before any .md/.tex is
    committed), and on copies broken in the ways they must notice."""
    from bench.report.publish import publish
    from bench.run.spec import RunSpec
    from bench.store import Store

    with Store(tmp_path / "bench.sqlite") as s:
        for attack, seeds in (("cfgan", 2), ("mean-image", 1)):
            for seed in range(seeds):
                spec = RunSpec(attack=attack, defense="none", dataset="d", data_root=None, profile="smoke",
                               seed=seed, n_train=20, n_test=8, extract_size=64, image_size=32,
                               extractor={"name": "sift", "version": "1"},
                               defense_params={"name": "none", "version": "1", "params": {}},
                               attack_config={"name": attack, "version": "1", "params": {}})
                s.start_run(spec.run_id, spec.to_dict())
                s.set_set_metric(spec.run_id, "ssim", 0.3 + 0.1 * seed + (attack == "cfgan"), 8, "c",
                                 higher_is_better=True)
                s.finish_run(spec.run_id, {})
    monkeypatch.chdir(tmp_path)  # the regenerating command names the folders relative to the working folder
    paths = publish(tmp_path, tmp_path / "out", ["csv", "md", "tex"])
    assert "`bench leaderboard --results . --out out --format csv,md,tex --dataset d`" in paths[1].read_text()
    assert sorted(p.suffix for p in paths) == [".csv", ".md", ".tex"]
    for p in paths:
        CHECKS[p.suffix](p)
    broken = {
        ".csv": lambda t: t.replace(t.splitlines()[1].split(",")[-2], "not-an-id"),
        ".md": lambda t: t.replace("Regenerate:", "Made by:"),
        ".tex": lambda t: t.replace("\\bottomrule", ""),
    }
    for p in paths:
        bad = tmp_path / "bad" / p.name
        bad.parent.mkdir(exist_ok=True)
        bad.write_text(broken[p.suffix](p.read_text()))
        with pytest.raises(AssertionError):
            CHECKS[p.suffix](bad)


def test_readme_names_a_regenerating_command_for_each_table() -> None:
    readme = (BOARDS / "README.md").read_text(encoding="utf-8")
    sections = re.split(r"^## ", readme, flags=re.M)[1:]
    for path in TABLES:
        mine = [s for s in sections if path.name in s.splitlines()[0]]
        assert mine, f"leaderboards/README.md has no section headed with {path.name}"
        blocks = re.findall(r"```\n(.*?)```", mine[0], re.S)
        assert any(re.search(r"^bench leaderboard .*--dataset", b, re.M) for b in blocks), (
            f"the README section of {path.name} names no `bench leaderboard ... --dataset` command")
