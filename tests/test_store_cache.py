"""The SQLite store (schema, WAL, no duplicate rows) and the verified stage cache."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import sqlite3
from pathlib import Path

import pytest

from bench.run.spec import RunSpec, canonical_json, config_id, digest
from bench.run.splits import split_cross, split_ids
from bench.errors import BenchError
from bench.store.db import Store
from bench.store.schema import SCHEMA_VERSION


def _spec(**kw) -> dict:
    base = dict(attack="a", defense="none", dataset="d", data_root=None, profile="smoke", seed=0, n_train=2,
                n_test=2, extract_size=64, image_size=32, extractor={"name": "x"}, defense_params={},
                attack_config={"w": 1})
    base.update(kw)
    return RunSpec(**base).to_dict()


def test_store_schema_wal_and_reopen(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite"
    with Store(db) as s:
        assert s.schema_version() == SCHEMA_VERSION >= 3
    raw = sqlite3.connect(db)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"runs", "sample_metrics", "set_metrics", "annotations", "pair_annotations", "attributes", "utility",
            "schema_version"} <= tables
    raw.close()
    with Store(db) as s:  # reopening migrates nothing and keeps one version row
        assert s._db.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == 1


def test_store_rows_are_not_duplicated(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite") as s:
        s.start_run("r1", _spec())
        s.add_sample_metrics("r1", [(0, "a", "psnr", 10.0), (1, "b", "psnr", 12.0), (0, "a", "ssim", 0.5)])
        s.add_sample_metrics("r1", [(0, "a", "psnr", 10.0)])  # a resumed batch writes its rows again
        assert len(s.sample_metrics("r1")) == 3
        assert s.sample_indices_done("r1", ["psnr"]) == {0, 1}
        assert s.sample_indices_done("r1", ["psnr", "ssim"]) == {0}
        s.start_run("r1", _spec())  # resume keeps rows
        assert len(s.sample_metrics("r1")) == 3
        s.set_set_metric("r1", "psnr", float("inf"), 2, "c")
        s.set_set_metric("r1", "mse", float("nan"), 2, "c")
        got = s.set_metrics("r1")
        assert got["psnr"]["value"] == float("inf") and got["mse"]["value"] is None
        assert got["psnr"]["status"] == "ok" and got["mse"]["status"] == "undefined"
        s.finish_run("r1", {"x": 1})
        assert s.run("r1")["status"] == "done"
        assert json.loads(s.run("r1")["record_json"]) == {"x": 1}


def test_sample_rows_status_version_and_nan(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite") as s:
        s.start_run("r1", _spec())
        s.add_sample_metrics("r1", [(0, "a", "psnr", float("nan")), (1, "b", "psnr", None),
                                    (2, "c", "psnr", 3.0, "ok", "2"), (3, "d", "psnr", float("nan"), "failed", "2")])
        rows = {r["sample_index"]: r for r in s.sample_metrics("r1")}
        assert rows[0]["value"] is None and rows[0]["status"] == "undefined" and rows[0]["version"] == "1"
        assert rows[1]["status"] == "undefined"
        assert rows[2]["value"] == 3.0 and rows[2]["status"] == "ok" and rows[2]["version"] == "2"
        assert rows[3]["value"] is None and rows[3]["status"] == "failed"


def test_sample_metrics_are_restricted_to_the_current_ids(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite") as s:
        s.start_run("r1", _spec())
        # an earlier run of the same id scored 4 samples; the current split has 3, and index 1 is another sample
        s.add_sample_metrics("r1", [(i, f"old{i}", "psnr", 100.0) for i in range(4)])
        s.add_sample_metrics("r1", [(0, "old0", "psnr", 1.0), (2, "old2", "psnr", 3.0)])
        ids = ["old0", "new1", "old2"]
        rows = s.sample_metrics("r1", ids)
        assert [(r["sample_index"], r["sample_id"], r["value"]) for r in rows] == [(0, "old0", 1.0), (2, "old2", 3.0)]
        assert len(s.sample_metrics("r1")) == 4  # unrestricted: everything that is stored
        assert s.sample_indices_done("r1", ["psnr"], ids) == {0, 2}
        assert s.sample_indices_done("r1", ["psnr"]) == {0, 1, 2, 3}


def test_done_indices_respect_metric_versions(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite") as s:
        s.start_run("r1", _spec())
        s.add_sample_metrics("r1", [(0, "a", "psnr", 1.0, "ok", "1"), (1, "b", "psnr", 2.0, "ok", "2"),
                                    (0, "a", "ssim", 0.1, "ok", "1"), (1, "b", "ssim", 0.2, "ok", "1")])
        assert s.sample_indices_done("r1", {"psnr": "2"}) == {1}
        assert s.sample_indices_done("r1", {"psnr": "1"}) == {0}
        assert s.sample_indices_done("r1", {"psnr": "2", "ssim": "1"}) == {1}
        assert s.sample_indices_done("r1", {"psnr": "2", "ssim": "1"}, ["a", "x"]) == set()
        assert s.sample_indices_done("r1", ["psnr", "ssim"]) == {0, 1}  # names only: any version
        assert s.sample_indices_done("r1", {}) == set()


def test_set_metric_status_direction_range(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite") as s:
        s.start_run("r1", _spec())
        s.set_set_metric("r1", "lpips", float("nan"), 4, "lpips-v0.1", status="unavailable",
                         detail="bench weights pull lpips-alex", version="3", higher_is_better=False,
                         value_range=(0.0, float("inf")))
        s.set_set_metric("r1", "ssim", 0.5, 4, "wang2004", higher_is_better=True, value_range=(-1.0, 1.0))
        got = s.set_metrics("r1")
        assert got["lpips"] == {"metric": "lpips", "value": None, "n": 4, "convention": "lpips-v0.1",
                                "status": "unavailable", "detail": "bench weights pull lpips-alex", "version": "3",
                                "higher_is_better": False, "lo": 0.0, "hi": float("inf")}
        assert got["ssim"]["status"] == "ok" and got["ssim"]["higher_is_better"] is True
        assert (got["ssim"]["lo"], got["ssim"]["hi"], got["ssim"]["version"]) == (-1.0, 1.0, "1")
        with pytest.raises(ValueError, match="status"):
            s.set_set_metric("r1", "ssim", 0.5, 4, "c", status="fine")


def test_attributes_and_utility(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite") as s:
        s.start_run("r1", _spec())
        s.add_attributes("r1", [(0, "a", "gender", "1"), (1, "b", "gender", 0), (0, "a", "age", "30")])
        s.add_attributes("r1", [(0, "a", "gender", "0")])  # replaced, not duplicated
        rows = s.attributes("r1")
        assert [(r["sample_index"], r["attribute"], r["value"]) for r in rows] == [
            (0, "age", "30"), (0, "gender", "0"), (1, "gender", "0")]
        # with ids: only sample ids[i] at index i (index 1 now names another sample: its row is left out)
        assert [(r["sample_index"], r["attribute"]) for r in s.attributes("r1", ["a", "c"])] == [(0, "age"),
                                                                                                (0, "gender")]
        s.set_utility("r1", "retrieval_map", 0.75, "top-10")
        s.set_utility("r1", "bytes", float("nan"))
        assert s.utility("r1") == {"retrieval_map": {"value": 0.75, "detail": "top-10"},
                                   "bytes": {"value": None, "detail": None}}


def test_start_run_records_config_id(tmp_path: Path) -> None:
    spec = _spec(seed=3)
    with Store(tmp_path / "s.sqlite") as s:
        s.start_run("r1", spec)
        assert s.run("r1")["config_id"] == config_id(spec) == RunSpec(**spec).config_id
        s.start_run("r2", _spec(seed=4), "given")
        assert s.run("r2")["config_id"] == "given"
        assert [r["run_id"] for r in s.runs(config_id="given")] == ["r2"]


def test_fail_run_never_overwrites_done(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite") as s:
        s.start_run("r1", _spec())
        s.fail_run("r1", "boom")
        assert s.run("r1")["status"] == "failed" and s.run("r1")["error"] == "boom"
        s.start_run("r1", _spec())  # a retry clears the failure
        assert s.run("r1")["status"] == "running" and s.run("r1")["error"] is None
        s.finish_run("r1", {"x": 1})
        finished = s.run("r1")["finished"]
        s.fail_run("r1", "the other process failed later")
        assert s.run("r1")["status"] == "done" and s.run("r1")["error"] is None
        s.start_run("r1", _spec())  # a re-run that finds everything done keeps it done
        assert s.run("r1")["status"] == "done"
        s.finish_run("r1", {"x": 2})  # idempotent: still done, record replaced, first finish time kept
        assert s.run("r1")["status"] == "done" and s.run("r1")["finished"] == finished
        assert json.loads(s.run("r1")["record_json"]) == {"x": 2}


def test_store_rolls_back_a_failed_transaction(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite") as s:
        s.start_run("r1", _spec())
        with pytest.raises(RuntimeError):
            with s.transaction() as db:
                db.execute("INSERT INTO sample_metrics (run_id, sample_index, sample_id, metric, value)"
                           " VALUES ('r1', 0, 'a', 'm', 1.0)")
                raise RuntimeError("killed")
        assert s.sample_metrics("r1") == []


# The version-1 schema exactly as the first release created it (a store written by that release must migrate).
_V1_SQL = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
INSERT INTO schema_version VALUES (1);
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY, spec_json TEXT NOT NULL, dataset TEXT NOT NULL, attack TEXT NOT NULL,
    defense TEXT NOT NULL, profile TEXT NOT NULL, seed INTEGER NOT NULL, status TEXT NOT NULL, created REAL NOT NULL,
    updated REAL NOT NULL, finished REAL, record_json TEXT, error TEXT
);
CREATE TABLE sample_metrics (
    run_id TEXT NOT NULL REFERENCES runs(run_id), sample_index INTEGER NOT NULL, sample_id TEXT NOT NULL,
    metric TEXT NOT NULL, value REAL, PRIMARY KEY (run_id, sample_index, metric)
);
CREATE TABLE set_metrics (
    run_id TEXT NOT NULL REFERENCES runs(run_id), metric TEXT NOT NULL, value REAL, n INTEGER NOT NULL,
    convention TEXT NOT NULL, PRIMARY KEY (run_id, metric)
);
CREATE TABLE annotations (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, sample_index INTEGER NOT NULL,
    sample_id TEXT NOT NULL, kind TEXT NOT NULL, label REAL NOT NULL, annotator TEXT NOT NULL, created REAL NOT NULL
);
CREATE INDEX sample_metrics_run ON sample_metrics(run_id, metric);
"""


def test_v1_store_migrates_to_current(tmp_path: Path) -> None:
    path = tmp_path / "bench.sqlite"
    spec = _spec(seed=5)
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA journal_mode=WAL")
    raw.executescript(_V1_SQL)
    raw.execute("INSERT INTO runs (run_id, spec_json, dataset, attack, defense, profile, seed, status, created,"
                " updated, finished, record_json)"
                " VALUES ('old', ?, 'd', 'a', 'none', 'smoke', 5, 'done', 1, 2, 2, '{}')",
                (json.dumps(spec, sort_keys=True),))
    raw.executemany("INSERT INTO sample_metrics VALUES ('old', ?, ?, 'psnr', ?)", [(0, "a", 10.0), (1, "b", None)])
    raw.execute("INSERT INTO set_metrics VALUES ('old', 'psnr', 10.0, 2, 'standard')")
    raw.execute("INSERT INTO set_metrics VALUES ('old', 'mse', NULL, 2, 'standard')")
    raw.commit()
    raw.close()
    with Store(path) as s:
        assert s.schema_version() == SCHEMA_VERSION  # through every migration since v1
        run = s.run("old")
        assert run["status"] == "done" and run["config_id"] == config_id(spec)
        assert run["source"] is None  # v3: computed here, not imported
        rows = s.sample_metrics("old")
        assert [(r["value"], r["status"], r["version"]) for r in rows] == [(10.0, "ok", "1"), (None, "undefined", "1")]
        got = s.set_metrics("old")
        assert got["psnr"]["value"] == 10.0 and got["psnr"]["status"] == "ok" and got["psnr"]["version"] == "1"
        assert got["mse"]["status"] == "undefined" and got["psnr"]["higher_is_better"] is None
        # the new tables work on a migrated store
        s.set_utility("old", "u", 1.0)
        s.add_attributes("old", [(0, "a", "gender", "1")])
        s.add_sample_metrics("old", [(2, "c", "psnr", 5.0, "ok", "2")])
        assert s.utility("old")["u"]["value"] == 1.0 and len(s.attributes("old")) == 1
    with Store(path) as s:  # and reopening it is a no-op
        assert s.schema_version() == SCHEMA_VERSION and len(s.sample_metrics("old")) == 3


def test_newer_schema_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "bench.sqlite"
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    raw.execute("INSERT INTO schema_version VALUES (99)")
    raw.commit()
    raw.close()
    with pytest.raises(BenchError, match=rf"newer bench \(schema 99 > {SCHEMA_VERSION}\); upgrade leakbench or use"
                                         rf" another --results"):
        Store(path)


def test_garbage_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "bench.sqlite"
    path.write_bytes(os.urandom(5000))
    with pytest.raises(BenchError, match="not a valid results store.*move it away"):
        Store(path)


def test_truncated_store_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "bench.sqlite"
    with Store(path) as s:
        s.start_run("r1", _spec())
        s.add_sample_metrics("r1", [(i, f"s{i}", m, float(i)) for i in range(300) for m in ("psnr", "ssim", "mse")])
        s.finish_run("r1", {})
    data = path.read_bytes()
    assert not (tmp_path / "bench.sqlite-wal").exists() or (tmp_path / "bench.sqlite-wal").stat().st_size == 0
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BenchError, match="bench.sqlite is not a valid results store"):
        with Store(path) as s:
            s.sample_metrics("r1")


def test_store_under_a_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "res").write_text("a file, not a folder")
    with pytest.raises(BenchError, match="res.*is a file"):
        Store(tmp_path / "res" / "bench.sqlite")
    with pytest.raises(BenchError, match="is a file"):
        Store(tmp_path / "res" / "deeper" / "bench.sqlite")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_folder_is_a_clear_error(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(BenchError, match="not writable"):
            Store(ro / "bench.sqlite")
    finally:
        ro.chmod(0o755)


def test_locked_store_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "bench.sqlite"
    with Store(path) as s:
        s.start_run("r1", _spec())
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(BenchError, match=r"locked by another process for more than 0.2 s"):
            Store(path, timeout=0.2)
        holder.execute("COMMIT")
        with Store(path, timeout=0.2) as s:  # opened while free, then a write meets the lock
            holder.execute("BEGIN EXCLUSIVE")
            assert s.run("r1")["status"] == "running"  # WAL readers do not wait
            with pytest.raises(BenchError, match="locked"):
                s.add_sample_metrics("r1", [(0, "a", "psnr", 1.0)])
            holder.execute("COMMIT")
            s.add_sample_metrics("r1", [(0, "a", "psnr", 1.0)])  # the failed write left nothing half-done
            assert len(s.sample_metrics("r1")) == 1
    finally:
        if holder.in_transaction:
            holder.execute("ROLLBACK")
        holder.close()


def _write_rows(path: str, worker: int, start: "mp.synchronize.Event") -> None:
    start.wait(30)
    with Store(Path(path)) as s:
        s.start_run("r1", _spec())
        for i in range(200):  # one transaction per row: as much contention as possible
            s.add_sample_metrics("r1", [(i, f"s{i}", f"m{worker}", float(i))])


def test_two_processes_write_one_store_at_once(tmp_path: Path) -> None:
    path = tmp_path / "bench.sqlite"
    # fork where there is one: a spawned child imports this module, i.e. bench and torch, again
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=_write_rows, args=(str(path), w, start)) for w in range(2)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    with Store(path) as s:
        rows = s.sample_metrics("r1")
        assert len(rows) == 400
        assert s.sample_indices_done("r1", ["m0", "m1"]) == set(range(200))


def _open_new_store(path: str, start: "mp.synchronize.Barrier", out: "mp.Queue") -> None:
    start.wait(60)
    try:
        with Store(Path(path)) as s:
            s.start_run("r1", _spec())
        out.put("ok")
    except Exception as exc:  # reported to the parent, which names it
        out.put(repr(exc))


def test_many_processes_create_one_new_store_at_once(tmp_path: Path) -> None:
    """Eight processes opening one store that does not exist yet all succeed (SQLite may answer the journal-mode switch
    or the first write with an immediate SQLITE_BUSY; before the retry this failed in about one round in seven)."""
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context("spawn")
    failures = []
    for round_ in range(15):
        path = tmp_path / f"new{round_}.sqlite"
        n = 8
        start, out = ctx.Barrier(n), ctx.Queue()
        procs = [ctx.Process(target=_open_new_store, args=(str(path), start, out)) for _ in range(n)]
        for p in procs:
            p.start()
        results = [out.get(timeout=120) for _ in range(n)]
        for p in procs:
            p.join(120)
        failures += [r for r in results if r != "ok"]
        with Store(path) as s:
            assert s.run("r1")["status"] == "running"
    assert not failures, failures


def test_run_id_is_hash_of_canonical_spec() -> None:
    a = RunSpec(**{k: v for k, v in _spec().items()})
    b = RunSpec(**{k: v for k, v in reversed(list(_spec().items()))})
    assert a.run_id == b.run_id
    assert a.run_id != RunSpec(**_spec(seed=1)).run_id
    assert a.run_id != RunSpec(**_spec(attack_config={"w": 2})).run_id
    assert canonical_json({"b": 1, "a": [1, 2]}) == '{"a":[1,2],"b":1}'
    assert len(digest({"x": 1})) == 16


def test_splits_deterministic_disjoint_and_sized() -> None:
    ids = [f"img{i:03d}.jpg" for i in range(100)]
    tr, te = split_ids(ids, 0, 30, 10)
    assert len(tr) == 30 and len(te) == 10 and not set(tr) & set(te)
    assert (tr, te) == split_ids(list(reversed(ids)), 0, 30, 10)  # order of listing does not matter
    assert split_ids(ids, 1, 30, 10) != (tr, te)
    # growing the training split keeps the test split
    assert split_ids(ids, 0, 50, 10)[1] == te
    with pytest.raises(BenchError, match="needs 110"):
        split_ids(ids, 0, 100, 10)
    a, b = split_cross(ids, [f"p{i}" for i in range(20)], 0, 30, 5, "aux", "priv")
    assert len(a) == 30 and len(b) == 5 and all(x.startswith("p") for x in b)


def test_imported_run_keeps_its_source_until_computed_here(tmp_path: Path) -> None:
    spec = _spec()
    rid = digest(spec)
    sets = [{"metric": "psnr", "value": 10.0, "n": 2, "convention": "c", "status": "ok", "version": "1",
             "higher_is_better": True, "lo": 0.0, "hi": float("inf")}]
    rows = [(0, "a", "psnr", 9.0, "ok", "1"), (1, "b", "psnr", 11.0, "ok", "1")]
    with Store(tmp_path / "s.sqlite") as s:
        assert s.import_run(rid, spec, config_id(spec), {"spec": spec}, "dist==1 bundle abc", rows, sets)
        assert not s.import_run(rid, spec, config_id(spec), {}, "dist==1 bundle abc", rows, sets)  # no duplicate
        run = s.run(rid)
        assert (run["status"], run["source"]) == ("done", "dist==1 bundle abc")
        assert [r["value"] for r in s.sample_metrics(rid)] == [9.0, 11.0]
        got = s.set_metrics(rid)["psnr"]
        assert (got["value"], got["higher_is_better"], got["hi"]) == (10.0, True, float("inf"))
        s.start_run(rid, spec)  # `bench run` of the same spec here: the rows become local ones
        assert s.run(rid)["source"] is None
