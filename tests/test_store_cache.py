"""The SQLite store (schema, WAL, no duplicate rows) and the verified stage cache."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from bench.run.cache import StageCache
from bench.run.spec import RunSpec, canonical_json, digest
from bench.run.splits import split_cross, split_ids
from bench.errors import BenchError
from bench.store.db import SCHEMA_VERSION, Store


def _spec(**kw) -> dict:
    base = dict(attack="a", defense="none", dataset="d", data_root=None, profile="smoke", seed=0, n_train=2,
                n_test=2, extract_size=64, image_size=32, extractor={"name": "x"}, defense_params={},
                attack_config={"w": 1})
    base.update(kw)
    return RunSpec(**base).to_dict()


def test_store_schema_wal_and_reopen(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite"
    with Store(db) as s:
        assert s.schema_version() == SCHEMA_VERSION
    raw = sqlite3.connect(db)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"runs", "sample_metrics", "set_metrics", "annotations", "schema_version"} <= tables
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
        s.finish_run("r1", {"x": 1})
        assert s.run("r1")["status"] == "done"
        assert json.loads(s.run("r1")["record_json"]) == {"x": 1}


def test_store_rolls_back_a_failed_transaction(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite") as s:
        s.start_run("r1", _spec())
        with pytest.raises(RuntimeError):
            with s.transaction() as db:
                db.execute("INSERT INTO sample_metrics VALUES ('r1', 0, 'a', 'm', 1.0)")
                raise RuntimeError("killed")
        assert s.sample_metrics("r1") == []


def test_run_id_is_hash_of_canonical_spec() -> None:
    a = RunSpec(**{k: v for k, v in _spec().items()})
    b = RunSpec(**{k: v for k, v in reversed(list(_spec().items()))})
    assert a.run_id == b.run_id
    assert a.run_id != RunSpec(**_spec(seed=1)).run_id
    assert a.run_id != RunSpec(**_spec(attack_config={"w": 2})).run_id
    assert canonical_json({"b": 1, "a": [1, 2]}) == '{"a":[1,2],"b":1}'
    assert len(digest({"x": 1})) == 16


def test_cache_commit_verify_and_reject_corruption(tmp_path: Path) -> None:
    cache = StageCache(tmp_path)
    key = cache.key({"in": 1})
    assert cache.lookup("features", key) is None
    with cache.writing("features", key, {"in": 1}) as tmp:
        (tmp / "a.bin").write_bytes(b"hello")
    hit = cache.lookup("features", key)
    assert hit is not None and (hit / "a.bin").read_bytes() == b"hello"
    (hit / "a.bin").write_bytes(b"hellO")  # same size, different content: hash catches it
    assert cache.lookup("features", key) is None
    assert not cache.path("features", key).exists()


def test_cache_interrupted_write_leaves_no_entry(tmp_path: Path) -> None:
    cache = StageCache(tmp_path)
    key = cache.key({"in": 2})
    with pytest.raises(KeyboardInterrupt):
        with cache.writing("attacks", key, {"in": 2}) as tmp:
            (tmp / "half.pt").write_bytes(b"partial")
            raise KeyboardInterrupt
    assert cache.lookup("attacks", key) is None
    # a folder without manifest (a kill between files) is not trusted either
    folder = cache.path("attacks", key)
    folder.mkdir(parents=True)
    (folder / "half.pt").write_bytes(b"x")
    assert cache.lookup("attacks", key) is None


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
