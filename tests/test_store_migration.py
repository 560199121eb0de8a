"""A store written by schema 4 (tests/data/store_v4, made by the schema-4 code) migrates without losing a row, and
runs whose data folder is present and unchanged are re-keyed to the content-based configuration id."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

from bench.datasets.folders import ImageFolder
from bench.report.leaderboard import refresh_leaderboard
from bench.run.spec import config_id
from bench.store import Store
from bench.store.schema import SCHEMA_VERSION

DATA = Path(__file__).resolve().parent / "data" / "store_v4"
TABLES = ("runs", "sample_metrics", "set_metrics", "attributes", "utility", "annotations", "pair_annotations")


def _maker():
    spec = importlib.util.spec_from_file_location("make_store_v4", DATA / "make_store_v4.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _v4_store(tmp_path: Path) -> Path:
    """The committed dump restored under tmp_path, its data folder recreated with the recorded times."""
    _maker().place(tmp_path / "faces")  # 'gone' stays absent, as after the dump was made
    store = tmp_path / "results" / "bench.sqlite"
    store.parent.mkdir()
    db = sqlite3.connect(store)
    db.executescript((DATA / "store_v4.sql").read_text().replace("@ROOT@", str(tmp_path.resolve())))
    db.close()
    return store


def _counts(path: Path) -> dict[str, int]:
    db = sqlite3.connect(path)
    try:
        return {t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in TABLES}
    finally:
        db.close()


def test_schema_4_store_migrates_without_losing_a_row(tmp_path: Path) -> None:
    path = _v4_store(tmp_path)
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT version FROM schema_version").fetchone()[0] == 4
    old = {r[0]: (r[1], r[2], r[3]) for r in raw.execute("SELECT run_id, config_id, spec_json, record_json FROM runs")}
    raw.close()
    before = _counts(path)
    assert before["runs"] == 4 and before["sample_metrics"] > 0 and before["set_metrics"] > 0

    with Store(path) as store:
        assert store.schema_version() == SCHEMA_VERSION == 5
        runs = {r["run_id"]: r for r in store.runs()}
        sets = {rid: store.set_metrics(rid) for rid in runs}
    assert _counts(path) == before
    assert set(runs) == set(old)
    assert all(s["psnr"]["status"] == "ok" for s in sets.values())

    by_root = {}
    for rid, (cid, spec_json, _) in old.items():
        spec = json.loads(spec_json)
        by_root.setdefault(Path(spec["data_root"]).name if spec["data_root"] else None, []).append(rid)
        assert runs[rid]["spec_json"] == spec_json  # the spec that hashes to the run id stays as it was
    faces, gone, synthetic = by_root["faces"], by_root["gone"], by_root[None]
    assert len(faces) == 2

    # Present and unchanged: the configuration id is the one of the spec with the content fingerprint (computed here
    # from a copy of the folder elsewhere, with new times), independent of where the data lies.
    copy = tmp_path / "copy"
    shutil.copytree(tmp_path / "faces", copy, copy_function=shutil.copyfile)
    content = ImageFolder(root=copy).fingerprint()
    spec = json.loads(old[faces[0]][1])
    expected = config_id({**spec, "dataset_fingerprint": {"private": content, "aux": content}})
    assert {runs[r]["config_id"] for r in faces} == {expected} and expected != old[faces[0]][0]
    record = json.loads(runs[faces[0]]["record_json"])
    assert record["config_id"] == expected and record["rekeyed"]["old_config_id"] == old[faces[0]][0]
    assert record["rekeyed"]["dataset_fingerprint"]["private"] == content
    # Gone or generated: unchanged.
    assert runs[gone[0]]["config_id"] == old[gone[0]][0]
    assert runs[synthetic[0]]["config_id"] == old[synthetic[0]][0] == config_id(json.loads(old[synthetic[0]][1]))

    with Store(path) as store:  # opening again changes nothing
        assert {r["run_id"]: r["config_id"] for r in store.runs()} == {k: v["config_id"] for k, v in runs.items()}
        board = refresh_leaderboard(store, tmp_path / "results", "folder")
    rows = board.read_text().splitlines()
    assert len(rows) == 3  # header, the two seeds of faces in one row, the run on the deleted folder


def test_a_folder_is_checked_once_for_all_its_runs(tmp_path: Path, monkeypatch) -> None:
    from bench.datasets import rekey

    calls = []
    real = rekey.legacy_content
    monkeypatch.setattr(rekey, "legacy_content", lambda root: calls.append(root) or real(root))
    with Store(_v4_store(tmp_path)) as store:
        assert store.schema_version() == 5
    assert sorted(p.name for p in calls) == ["faces"]  # two runs on faces, one listing; 'gone' is absent


def test_a_migrated_row_names_its_data_by_content(tmp_path: Path) -> None:
    """The tables' `data` column of a re-keyed row digests the content fingerprint its configuration id came from,
    so it reads the same as a row of new runs on the same data (not the old path-and-time fingerprint)."""
    from bench.hashing import digest
    from bench.report.tables import load_board

    path = _v4_store(tmp_path)
    content = ImageFolder(root=tmp_path / "faces").fingerprint()
    with Store(path) as store:
        board = load_board(store, "folder")
    data = sorted(board.frame["data"])
    assert digest({"aux": content, "private": content}, 8) in data


def test_a_new_store_opens_without_the_rekeying_imports(tmp_path: Path) -> None:
    """Creating a store runs every migration inside the transaction that holds the write lock; the v5 step has
    nothing to re-key in a new store, so it must not import the dataset code (torch) while other processes wait."""
    code = ("import sys; from pathlib import Path; from bench.store.db import Store; "
            f"Store(Path({str(tmp_path / 'bench.sqlite')!r})).close(); "
            "print('bench.datasets.rekey' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
