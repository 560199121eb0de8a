"""The pretrained-weights manifest and cache: import, verification (with its sidecar), pull, safe loading."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Iterator

import pytest
import torch

from bench import weights
from bench.errors import BenchError, UnknownNameError, WeightsMissingError

NAME = "toy-standin"


def sha256_hex(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture()
def standin(tmp_path: Path, bench_home: Path) -> Iterator[tuple[weights.WeightFile, Path, dict]]:
    """A small state dict saved by the test, registered in the manifest under NAME with its real sha256."""
    state = {"conv.weight": torch.arange(24, dtype=torch.float32).reshape(2, 3, 2, 2), "conv.bias": torch.ones(2)}
    src = tmp_path / "download" / "toy-standin.pth"
    src.parent.mkdir()
    torch.save(state, src)
    wf = weights.WeightFile(
        name=NAME,
        filename="toy-standin-0000.pth",
        url=src.as_uri(),
        sha256=sha256_hex(src),
        size=src.stat().st_size,
        licence="test-only",
        used_by="tests",
    )
    weights.register_weight(wf)
    yield wf, src, state
    weights.unregister_weight(NAME)


def test_defaults_and_env(bench_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert weights.bench_home() == bench_home
    assert weights.weights_dir() == bench_home / "weights"
    monkeypatch.delenv("BENCH_HOME")
    assert weights.bench_home() == Path.home() / ".cache" / "bench"


def test_vgg19_manifest_entry() -> None:
    wf = weights.MANIFEST["vgg19"]
    assert wf.filename == "vgg19-dcbb9e9d.pth"
    assert wf.url == "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
    assert wf.size == 574673361
    # torchvision names its files after the first 8 hex digits of their sha256
    assert wf.expected_digest.startswith("dcbb9e9d")
    assert wf.licence and wf.used_by


def test_weightfile_validation() -> None:
    common = dict(name="x", filename="x.pth", url="file:///x", size=1, licence="l", used_by="u")
    with pytest.raises(ValueError):
        weights.WeightFile(sha256=None, **common)
    with pytest.raises(ValueError):
        weights.WeightFile(sha256="abc", **common)
    with pytest.raises(ValueError):
        weights.WeightFile(sha256="a" * 64, sha256_prefix="bbbbbbbb", **common)
    prefix_only = weights.WeightFile(sha256=None, sha256_prefix="dcbb9e9d", **common)
    assert prefix_only.matches("dcbb9e9d" + "0" * 56)
    assert not prefix_only.matches("dcbb9e9e" + "0" * 56)


def test_register_conflict_and_unknown_name(standin) -> None:
    wf, _, _ = standin
    weights.register_weight(wf)  # identical: fine
    other = weights.WeightFile(**{**wf.__dict__, "url": "file:///elsewhere"})
    with pytest.raises(ValueError):
        weights.register_weight(other)
    with pytest.raises(UnknownNameError, match="toy-standin"):
        weights.path_of("toy-standn")


def test_require_names_the_fix_when_missing(bench_home: Path) -> None:
    assert not weights.is_available("vgg19")
    with pytest.raises(WeightsMissingError) as err:
        weights.require("vgg19")
    msg = str(err.value)
    assert "\n" not in msg
    assert "`bench weights pull vgg19` (needs internet)" in msg
    assert "`bench weights import /path/to/vgg19-dcbb9e9d.pth`" in msg
    assert str(bench_home / "weights") in msg


def test_import_good_file_then_load(standin) -> None:
    wf, src, state = standin
    assert not weights.is_available(NAME)
    dest = weights.import_file(src)  # identified by its sha256 alone
    assert dest == weights.weights_dir() / wf.filename
    assert dest.read_bytes() == src.read_bytes()
    assert weights.is_available(NAME)
    assert weights.require(NAME) == dest
    loaded = weights.load_state_dict(NAME)
    assert loaded.keys() == state.keys()
    for k in state:
        assert torch.equal(loaded[k], state[k])
    sidecar = json.loads((dest.parent / (dest.name + ".sha256")).read_text())
    assert sidecar["sha256"] == sha256_hex(dest) and sidecar["size"] == dest.stat().st_size
    assert not list(dest.parent.glob("*.part"))  # no temporary left behind


def test_import_by_name(standin) -> None:
    wf, src, _ = standin
    assert weights.import_file(src, name=NAME) == weights.path_of(NAME)


def test_import_refuses_tampered_file(standin, tmp_path: Path) -> None:
    wf, src, _ = standin
    tampered = tmp_path / wf.filename
    data = bytearray(src.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tampered.write_bytes(bytes(data))
    with pytest.raises(BenchError, match="sha256"):
        weights.import_file(tampered)  # named like the entry, wrong digest
    with pytest.raises(BenchError, match="sha256"):
        weights.import_file(tampered, name=NAME)
    stranger = tmp_path / "unrelated.bin"
    stranger.write_bytes(b"not a weight file")
    with pytest.raises(BenchError, match="not any file of the weights manifest"):
        weights.import_file(stranger)
    with pytest.raises(BenchError, match="no such file"):
        weights.import_file(tmp_path / "missing.pth")
    assert not weights.path_of(NAME).exists()
    assert not list(weights.weights_dir().glob("*.part"))


def test_verification_is_cached_and_redone_after_changes(standin, monkeypatch: pytest.MonkeyPatch) -> None:
    wf, src, _ = standin
    dest = weights.import_file(src)
    calls = []
    real = weights.sha256_of

    def counting(path: Path) -> str:
        calls.append(path)
        return real(path)

    monkeypatch.setattr(weights, "sha256_of", counting)
    for _ in range(3):
        assert weights.is_available(NAME)
    assert calls == []  # the sidecar answered: no re-hashing of an unchanged file

    # Same size, one byte changed, new mtime: must be re-hashed and rejected.
    data = bytearray(dest.read_bytes())
    data[-10] ^= 0x01
    st = dest.stat()
    dest.write_bytes(bytes(data))
    os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    assert dest.stat().st_size == wf.size
    assert not weights.is_available(NAME)
    assert calls == [dest]
    with pytest.raises(WeightsMissingError, match="fail verification"):
        weights.require(NAME)

    # Size change: rejected before any hashing.
    calls.clear()
    dest.write_bytes(bytes(data) + b"x")
    assert not weights.is_available(NAME)
    assert calls == []


def test_stale_sidecar_is_not_trusted(standin) -> None:
    """A sidecar claiming the right digest for a different file (size/mtime changed) does not make it valid."""
    wf, src, _ = standin
    dest = weights.import_file(src)
    sidecar = dest.parent / (dest.name + ".sha256")
    record = json.loads(sidecar.read_text())
    dest.write_bytes(b"\0" * wf.size)  # right size, wrong content
    os.utime(dest, ns=(record["mtime_ns"] + 7_000_000_000, record["mtime_ns"] + 7_000_000_000))
    assert not weights.is_available(NAME)


def test_pull_from_file_url(standin) -> None:
    wf, src, state = standin
    dest = weights.pull(NAME, progress=False)
    assert dest == weights.path_of(NAME) and weights.is_available(NAME)
    assert torch.equal(weights.load_state_dict(NAME)["conv.bias"], state["conv.bias"])
    assert weights.pull(NAME, progress=False) == dest  # already present: no-op
    assert not list(dest.parent.glob("*.part"))


def test_pull_bad_url_is_a_bench_error(standin, tmp_path: Path) -> None:
    wf, _, _ = standin
    weights.unregister_weight(NAME)
    broken = weights.WeightFile(**{**wf.__dict__, "url": (tmp_path / "nowhere.pth").as_uri()})
    weights.register_weight(broken)
    with pytest.raises(BenchError, match=r"could not download .*bench weights import PATH"):
        weights.pull(NAME, progress=False)
    assert not weights.path_of(NAME).exists()
    assert not list(weights.weights_dir().glob("*.part"))


def test_pull_wrong_content_is_not_installed(standin, tmp_path: Path) -> None:
    wf, _, _ = standin
    other = tmp_path / "other.pth"
    torch.save({"w": torch.zeros(3)}, other)
    weights.unregister_weight(NAME)
    weights.register_weight(weights.WeightFile(**{**wf.__dict__, "url": other.as_uri(), "size": None}))
    with pytest.raises(BenchError, match="not the expected file"):
        weights.pull(NAME, progress=False)
    assert not weights.path_of(NAME).exists()


RAN: list[str] = []


def _side_effect(tag: str) -> str:
    """What a malicious pickle would run on load; here it only records that it ran."""
    RAN.append(tag)
    return tag


class Payload:
    """An arbitrary Python object whose unpickling calls a function (the classic pickle attack)."""

    def __reduce__(self):
        return (_side_effect, ("pwned",))


def test_load_refuses_arbitrary_pickles(bench_home: Path, tmp_path: Path) -> None:
    RAN.clear()
    evil = tmp_path / "evil.pth"
    torch.save({"w": torch.zeros(2), "payload": Payload()}, evil)
    wf = weights.WeightFile(
        name="toy-evil", filename="toy-evil.pth", url=evil.as_uri(), sha256=sha256_hex(evil),
        size=evil.stat().st_size, licence="test-only", used_by="tests",
    )
    weights.register_weight(wf)
    try:
        weights.import_file(evil)  # its hash is right: verification alone cannot catch it
        assert weights.is_available("toy-evil")
        with pytest.raises(BenchError, match=r"refusing to load .*_side_effect"):
            weights.load_state_dict("toy-evil")
        assert RAN == []  # the payload never ran
        torch.load(evil, weights_only=False)  # the control: a plain unpickle does run it
        assert RAN == ["pwned"]
    finally:
        weights.unregister_weight("toy-evil")


def test_status_rows(standin) -> None:
    wf, src, _ = standin
    rows = {r["name"]: r for r in weights.status_rows()}
    assert {"vgg19", NAME} <= rows.keys()
    for key in ("name", "filename", "size", "licence", "used_by", "present", "verified"):
        assert key in rows["vgg19"]
    assert rows[NAME]["present"] is False and rows[NAME]["verified"] is False
    weights.import_file(src)
    row = {r["name"]: r for r in weights.status_rows()}[NAME]
    assert row["present"] is True and row["verified"] is True and row["size"] == wf.size
