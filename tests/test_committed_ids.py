"""Committed leaderboards name their configurations and runs by id: the ids recomputed today from the runs' specs
must be those committed (a change to how ids are hashed would orphan every stored result)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from bench.spec import config_id, run_id

ROOT = Path(__file__).resolve().parents[1]
RUNS = json.loads((ROOT / "tests" / "data" / "committed_specs.json").read_text(encoding="utf-8"))["runs"]


@pytest.mark.parametrize("run", RUNS, ids=[r["run_id"] for r in RUNS])
def test_committed_ids_recompute_from_their_specs(run: dict) -> None:
    rows = list(csv.DictReader((ROOT / "leaderboards" / run["board"]).open(encoding="utf-8")))
    row = next(r for r in rows if r["config_id"] == run["config_id"])
    assert run["run_id"] in row["run_ids"].split(" ")  # the fixture names a committed row and one of its runs
    assert run_id(run["spec"]) == run["run_id"]
    assert config_id(run["spec"]) == run["config_id"]


def test_the_fixture_holds_seeds_of_one_configuration_with_trained_victims() -> None:
    """The seed-derived fields (a trained victim's training seed and split digest) differ between the seeds of a
    configuration: the fixture exercises the rule that keeps them out of the configuration id."""
    by_config: dict[str, list[dict]] = {}
    for r in RUNS:
        by_config.setdefault(r["config_id"], []).append(r["spec"])
    assert any(len({s["extractor"]["training"]["seed"] for s in specs}) > 1
               and len({s["extractor"]["training"]["data"] for s in specs}) > 1 for specs in by_config.values())
