"""The stage cache: verified reuse, atomic commits, one writer per key across processes, stale temporaries swept."""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path

from bench.run.cache import StageCache


def _build_slowly(tmp: Path) -> None:
    time.sleep(0.5)
    (tmp / "out.txt").write_text("built")
    (tmp / "who").write_text(str(mp.current_process().pid))


def _worker(root: str, results: "mp.Queue") -> None:
    cache = StageCache(Path(root))
    folder, hit = cache.get_or_create("stage", cache.key({"k": 1}), {"k": 1}, _build_slowly)
    results.put((hit, (folder / "who").read_text()))


def test_two_processes_one_key_first_writer_wins(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(str(tmp_path), q)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    got = [q.get(timeout=5) for _ in procs]
    assert sorted(hit for hit, _ in got) == [False, True, True]  # one built it, the others reused it
    assert len({who for _, who in got}) == 1  # everybody got the same entry


def test_verified_reuse_and_tamper(tmp_path: Path) -> None:
    cache = StageCache(tmp_path)
    key = cache.key({"in": 1})
    calls = []

    def build(tmp: Path) -> None:
        calls.append(1)
        (tmp / "a.bin").write_bytes(b"abc")

    folder, hit = cache.get_or_create("features", key, {"in": 1}, build)
    assert not hit and (folder / "a.bin").read_bytes() == b"abc"
    assert cache.get_or_create("features", key, {"in": 1}, build)[1] is True
    (folder / "a.bin").write_bytes(b"abd")  # same size, different content
    folder, hit = cache.get_or_create("features", key, {"in": 1}, build)
    assert not hit and len(calls) == 2 and (folder / "a.bin").read_bytes() == b"abc"


def test_failed_build_leaves_nothing_and_stale_temporaries_are_swept(tmp_path: Path) -> None:
    cache = StageCache(tmp_path)
    key = cache.key({"in": 2})

    def boom(tmp: Path) -> None:
        (tmp / "partial").write_text("x")
        raise RuntimeError("killed half way")

    try:
        cache.get_or_create("attacks", key, {"in": 2}, boom)
    except RuntimeError:
        pass
    assert cache.lookup("attacks", key) is None
    stale = cache.path("attacks", key).with_name(f"{key}.tmp-99999999")  # what a SIGKILLed writer leaves
    stale.mkdir(parents=True)
    (stale / "partial").write_text("x")
    folder, hit = cache.get_or_create("attacks", key, {"in": 2}, lambda tmp: (tmp / "ok").write_text("1"))
    assert not hit and not stale.exists() and (folder / "ok").is_file()
    assert [p.name for p in folder.parent.iterdir() if ".tmp-" in p.name] == []


def test_spec_version_is_in_every_key(monkeypatch) -> None:
    import bench.run.cache as cache_mod

    a = StageCache(Path(".")).key({"x": 1})
    monkeypatch.setattr(cache_mod, "SPEC_VERSION", 999)
    assert StageCache(Path(".")).key({"x": 1}) != a
