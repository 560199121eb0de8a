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
    # fork where there is one: a spawned child imports this module, i.e. bench and torch, again (~3 s of CPU each)
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
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


HTML = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body>proxy login</body></html>\n"


def _forge(folder: Path, name: str, content: bytes) -> None:
    """Replace one cached file and rewrite the manifest to match it: the entry verifies but cannot be read."""
    import hashlib
    import json

    (folder / name).write_bytes(content)
    info = json.loads((folder / "manifest.json").read_text())
    info["files"][name] = {"size": len(content), "sha256": hashlib.sha256(content).hexdigest()}
    (folder / "manifest.json").write_text(json.dumps(info))


def test_unreadable_entry_with_a_matching_manifest_is_rebuilt_with_a_warning(tmp_path: Path) -> None:
    import pytest
    import torch

    from bench.run.cache import CorruptCacheEntry

    cache = StageCache(tmp_path)
    key = cache.key({"in": 3})
    builds = []

    def build(tmp: Path) -> None:
        builds.append(1)
        torch.save({"w": torch.arange(3)}, tmp / "attack.pt")

    def load(folder: Path) -> list[int]:
        return torch.load(folder / "attack.pt", weights_only=True)["w"].tolist()

    assert cache.load_or_create("attacks", key, {"in": 3}, build, load) == ([0, 1, 2], False)
    assert cache.load_or_create("attacks", key, {"in": 3}, build, load) == ([0, 1, 2], True)
    folder = cache.path("attacks", key)
    _forge(folder, "attack.pt", HTML)
    assert cache.lookup("attacks", key) == folder  # the manifest matches: verification alone cannot tell
    with pytest.warns(CorruptCacheEntry, match=r"stage-cache entry .*attack.* is corrupt.*rebuilding"):
        assert cache.load_or_create("attacks", key, {"in": 3}, build, load) == ([0, 1, 2], False)
    assert len(builds) == 2 and (folder / "attack.pt").read_bytes() != HTML

    def bad_build(tmp: Path) -> None:  # a stage that writes what it cannot read back is a bug: raise
        (tmp / "attack.pt").write_bytes(HTML)

    other = cache.key({"in": 4})
    with pytest.raises(Exception):
        cache.load_or_create("attacks", other, {"in": 4}, bad_build, load)


def test_a_run_rebuilds_a_cached_attack_that_is_html(tmp_path: Path) -> None:
    """End to end: `bench run` on a cache whose attack.pt became an HTML page (manifest rewritten to match)."""
    import pytest

    from bench.run.cache import CorruptCacheEntry
    from bench.run.plan import RunRequest
    from bench.run.runner import execute

    req = RunRequest(attack="mean-image", profile="smoke", n_train=6, n_test=4, metrics=("mse",),
                     results=tmp_path / "r", progress=False)
    first = execute(req)
    (entry,) = [p.parent for p in (tmp_path / "r" / "cache" / "attacks").glob("*/attack.pt")]
    _forge(entry, "attack.pt", HTML)
    feats = sorted(p.parent for p in (tmp_path / "r" / "cache" / "features").glob("*/labels.npz"))
    _forge(feats[0], "labels.npz", HTML)  # any cached file: a features entry too
    with pytest.warns(CorruptCacheEntry) as caught:
        again = execute(req)
    named = " ".join(str(w.message) for w in caught)
    assert entry.name in named and feats[0].name in named
    assert again.set_metrics["mse"]["value"] == first.set_metrics["mse"]["value"]
    assert (entry / "attack.pt").read_bytes() != HTML and (feats[0] / "labels.npz").read_bytes() != HTML
