"""The profile caveat (bench/profiles.py): every cpu-profile output says that it under-states the paper profile —
run.json notes, the `bench run` and `bench grid` summaries, the leaderboard's `profile_note` column — and the caveat
never enters the run spec (existing run ids stay valid)."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench import profiles
from bench.cli import main
from bench.report.leaderboard import leaderboard_frame
from bench.run.plan import RunRequest, plan
from bench.run.spec import RunSpec
from bench.store import Store

CAVEAT = "TEST caveat: these numbers under-state the paper profile"


def test_cpu_profile_says_it_under_states_the_paper_profile() -> None:
    caveat = profiles.PROFILES["cpu"].caveat
    assert "under-state" in caveat and "paper profile" in caveat
    assert profiles.PROFILES["paper"].caveat == ""
    assert profiles.PROFILES["cpu"].to_dict()["caveat"] == caveat  # recorded in run.json's "profile"


@pytest.fixture()
def smoke_with_caveat(monkeypatch: pytest.MonkeyPatch) -> None:
    """The smoke profile given a caveat, so that the plumbing is tested at smoke cost."""
    monkeypatch.setitem(profiles.PROFILES, "smoke", dataclasses.replace(profiles.PROFILES["smoke"], caveat=CAVEAT))


def test_caveat_is_not_in_the_run_spec(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    req = RunRequest(attack="mean-image", profile="smoke", results=tmp_path, progress=False)
    before = plan(req).spec
    monkeypatch.setitem(profiles.PROFILES, "smoke", dataclasses.replace(profiles.PROFILES["smoke"], caveat=CAVEAT))
    after = plan(req).spec
    assert after.run_id == before.run_id and after.config_id == before.config_id
    assert CAVEAT not in json.dumps(after.to_dict())


def test_run_json_summary_and_leaderboard_carry_it(smoke_with_caveat: None, tmp_path: Path) -> None:
    out = CliRunner().invoke(main, ["run", "--attack", "mean-image", "--profile", "smoke", "--quiet",
                                    "--metrics", "mse", "--results", str(tmp_path)])
    assert out.exit_code == 0, out.output
    assert f"note: {CAVEAT}" in out.output
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    record = json.loads((run_dir / "run.json").read_text())
    assert record["notes"][0] == CAVEAT and record["profile"]["caveat"] == CAVEAT
    (row,) = list(csv.DictReader((tmp_path / "leaderboards" / "synthetic-faces.csv").open()))
    assert row["profile_note"] == CAVEAT


def test_grid_summary_carries_it(smoke_with_caveat: None, tmp_path: Path) -> None:
    out = CliRunner().invoke(main, ["grid", "--attacks", "mean-image", "--profile", "smoke", "--quiet",
                                    "--metrics", "mse", "--results", str(tmp_path)])
    assert out.exit_code == 0, out.output
    assert out.output.rstrip().splitlines()[-1] == f"note: {CAVEAT}"


def test_no_caveat_no_note(tmp_path: Path) -> None:
    out = CliRunner().invoke(main, ["run", "--attack", "mean-image", "--profile", "smoke", "--quiet",
                                    "--metrics", "mse", "--results", str(tmp_path)])
    assert out.exit_code == 0, out.output
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    assert not any("under-state" in n for n in json.loads((run_dir / "run.json").read_text())["notes"])


def test_leaderboard_rows_of_earlier_cpu_runs_get_it(tmp_path: Path) -> None:
    """The column comes from the profile's name, so rows of runs recorded before the caveat existed carry it too."""
    spec = RunSpec(attack="a", defense="none", dataset="d", data_root=None, profile="cpu", seed=0, n_train=20,
                   n_test=8, extract_size=128, image_size=64, extractor={"name": "sift", "version": "1"},
                   defense_params={"name": "none", "version": "1", "params": {}},
                   attack_config={"name": "a", "version": "1", "params": {}})
    with Store(tmp_path / "bench.sqlite") as s:
        s.start_run(spec.run_id, spec.to_dict())
        s.set_set_metric(spec.run_id, "psnr", 10.0, 8, "c", higher_is_better=True)
        s.finish_run(spec.run_id, {"notes": []})
        frame = leaderboard_frame(s, "d")
    assert frame.iloc[0]["profile_note"] == profiles.PROFILES["cpu"].caveat
