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


# ------------------------------------------------------------------------------------- the LPIPS/FID entries
def test_lpips_and_fid_manifest_entries() -> None:
    expected = {
        "alexnet": ("alexnet-owt-7be5be79.pth", "7be5be79"),
        "vgg16": ("vgg16-397923af.pth", "397923af"),
        "squeezenet1_1": ("squeezenet1_1-b8a52dc0.pth", "b8a52dc0"),
    }
    for name, (filename, prefix) in expected.items():
        wf = weights.MANIFEST[name]
        assert wf.filename == filename and wf.url == f"https://download.pytorch.org/models/{filename}"
        assert wf.sha256_prefix == prefix and wf.expected_digest.startswith(prefix)  # torchvision's naming
        assert wf.size and wf.licence and "lpips" in wf.used_by
    inception = weights.MANIFEST["pt-inception"]
    assert inception.filename == "pt_inception-2015-12-05-6726825d.pth"
    assert inception.url.startswith("https://github.com/toshas/torch-fidelity/releases/download/")
    assert inception.expected_digest.startswith("6726825d") and "FID" in inception.used_by
    assert "weights-inception-2015-12-05-6726825d.pth" in inception.aliases


@pytest.mark.parametrize("net", ["alex", "vgg", "squeeze"])
def test_lpips_linear_layers_are_shipped_with_the_package(net: str, bench_home: Path) -> None:
    """The v0.1 linear layers come from the installed lpips wheel, pinned by a full sha256, found without import."""
    import importlib.util

    wf = weights.MANIFEST[f"lpips-{net}"]
    assert wf.package == "lpips" and wf.sha256 is not None and wf.url.endswith(f"/v0.1/{net}.pth")
    shipped = Path(importlib.util.find_spec("lpips").submodule_search_locations[0]) / "weights" / "v0.1" / f"{net}.pth"
    assert sha256_hex(shipped) == wf.sha256 and shipped.stat().st_size == wf.size
    assert weights.packaged_path(wf) == shipped
    assert weights.is_available(wf.name) and weights.require(wf.name) == shipped  # usable in place, no download
    assert not weights.path_of(wf.name).exists()
    state = weights.load_state_dict(wf.name)  # saved on a GPU, in the legacy format: loads on the CPU, weights_only
    assert all(k.startswith("lin") and k.endswith(".weight") for k in state)
    assert weights.pull(wf.name, progress=False) == weights.path_of(wf.name)  # copied into the cache, offline
    assert weights.path_of(wf.name).read_bytes() == shipped.read_bytes()
    assert not list((shipped.parent).glob("*.sha256"))  # nothing written into site-packages


def test_packaged_file_is_located_without_importing_the_package(
    bench_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    pkg = tmp_path / "site" / "toy_weights_pkg"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('importing this package is a side effect')\n")
    data = pkg / "data" / "w.pth"
    torch.save({"w": torch.ones(3)}, data)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    wf = weights.WeightFile(name="toy-shipped", filename="toy-shipped.pth", url="https://example.invalid/w.pth",
                            sha256=sha256_hex(data), size=data.stat().st_size, licence="test-only", used_by="tests",
                            package="toy_weights_pkg", package_path="data/w.pth")
    weights.register_weight(wf)
    try:
        assert weights.require("toy-shipped") == data
        assert "toy_weights_pkg" not in sys.modules
        row = {r["name"]: r for r in weights.status_rows()}["toy-shipped"]
        assert row["state"] == "shipped" and row["path"] == str(data)
        data.write_bytes(data.read_bytes()[:-3])  # a damaged shipped copy is refused like any other
        with pytest.raises(WeightsMissingError, match="truncated"):
            weights.require("toy-shipped")
    finally:
        weights.unregister_weight("toy-shipped")


# ------------------------------------------------------------------------------ refusals explained clearly
HTML = b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>Please log in</body></html>\n"


def test_html_page_saved_as_checkpoint_is_named(standin, tmp_path: Path) -> None:
    wf, _, _ = standin
    page = tmp_path / wf.filename
    page.write_bytes(HTML)
    with pytest.raises(BenchError, match="the server returned an HTML page, not the checkpoint"):
        weights.import_file(page)  # recognised by its name
    with pytest.raises(BenchError, match="the server returned an HTML page, not the checkpoint"):
        weights.import_file(page, name=NAME)
    anonymous = tmp_path / "download.pth"
    anonymous.write_bytes(b"\n  " + HTML)
    with pytest.raises(BenchError, match="HTML page"):
        weights.import_file(anonymous)
    # the same page in the cache (e.g. copied there by hand) is refused before use, with the reason
    weights.weights_dir().mkdir(parents=True, exist_ok=True)
    weights.path_of(NAME).write_bytes(HTML)
    with pytest.raises(WeightsMissingError, match="HTML page"):
        weights.load_state_dict(NAME)
    assert "HTML page" in weights.missing_fix([NAME])


def test_truncated_file_is_reported_as_truncated(standin, tmp_path: Path) -> None:
    wf, src, _ = standin
    cut = tmp_path / wf.filename
    cut.write_bytes(src.read_bytes()[: wf.size // 2])
    with pytest.raises(BenchError, match=rf"truncated: {wf.size // 2} of {wf.size} bytes"):
        weights.import_file(cut)
    weights.unregister_weight(NAME)
    weights.register_weight(weights.WeightFile(**{**wf.__dict__, "size": None}))  # size unknown: the zip tells
    with pytest.raises(BenchError, match="truncated"):
        weights.import_file(cut, name=NAME)


def test_hash_mismatch_names_both_digests(standin, tmp_path: Path) -> None:
    wf, src, _ = standin
    other = tmp_path / wf.filename
    data = bytearray(src.read_bytes())
    data[100] ^= 0x55
    other.write_bytes(bytes(data))
    with pytest.raises(BenchError) as err:
        weights.import_file(other, name=NAME)
    msg = str(err.value)
    assert sha256_hex(other) in msg and wf.sha256 in msg and "\n" not in msg


def test_verification_is_redone_by_each_process(standin) -> None:
    """A sidecar is only a hint for listings: before first use a process hashes the file itself."""
    wf, src, _ = standin
    dest = weights.import_file(src)
    forged = bytearray(dest.read_bytes())
    forged[-20] ^= 0x01
    st = dest.stat()
    dest.write_bytes(bytes(forged))
    os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size and mtime: the sidecar still "matches"
    weights.forget_verifications()  # as a new process would start
    assert weights.is_available(NAME)  # the quick check trusts the sidecar...
    with pytest.raises(WeightsMissingError, match="sha256 mismatch"):
        weights.require(NAME)  # ...but nothing is used before this process has hashed it
    with pytest.raises(WeightsMissingError):
        weights.load_state_dict(NAME)


def test_require_hashes_once_per_process(standin, monkeypatch: pytest.MonkeyPatch) -> None:
    wf, src, _ = standin
    weights.import_file(src)
    weights.forget_verifications()
    calls = []
    real = weights.sha256_of
    monkeypatch.setattr(weights, "sha256_of", lambda p: calls.append(p) or real(p))
    for _ in range(3):
        weights.load_state_dict(NAME)
    assert len(calls) == 1


# ----------------------------------------------------------------------------------------- import a folder
def test_import_folder(standin, tmp_path: Path) -> None:
    wf, src, state = standin
    folder = tmp_path / "by-hand"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "renamed.bin").write_bytes(src.read_bytes())  # recognised by its hash
    (folder / "notes.txt").write_text("where I got these files")
    (folder / "other.pth").write_bytes(b"\0" * 64)
    second = weights.WeightFile(name="toy-second", filename="toy-second.pth", url="file:///nowhere",
                                sha256="0" * 64, size=None, licence="test-only", used_by="tests")
    weights.register_weight(second)
    try:
        (folder / "toy-second.pth").write_bytes(HTML)  # named like an entry, but an HTML page
        report = weights.import_path(folder)
    finally:
        weights.unregister_weight("toy-second")
    assert [(s.name, n) for s, n, _ in report.imported] == [("renamed.bin", NAME)]
    assert weights.is_available(NAME)
    assert [s.name for s, _ in report.refused] == ["toy-second.pth"] and "HTML page" in report.refused[0][1]
    assert sorted(p.name for p in report.unknown) == ["notes.txt", "other.pth"]
    single = weights.import_path(src)
    assert [n for _, n, _ in single.imported] == [NAME]
    with pytest.raises(BenchError, match="no such file or folder"):
        weights.import_path(tmp_path / "absent")


# ------------------------------------------------------------------------------------ pull over local HTTP
@pytest.fixture()
def http_server(tmp_path: Path) -> Iterator[tuple[str, dict]]:
    """A local HTTP server on 127.0.0.1 (ephemeral port) serving `routes` {path: (status, headers, body)}."""
    import http.server
    import threading

    routes: dict[str, tuple[int, dict[str, str], bytes]] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            status, headers, body = routes.get(self.path, (404, {"Content-Type": "text/plain"}, b"not found"))
            self.send_response(status)
            sent_length = False
            for k, v in headers.items():
                self.send_header(k, v)
                sent_length |= k.lower() == "content-length"
            if not sent_length:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", routes
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _serve_as(wf: weights.WeightFile, url: str) -> None:
    weights.unregister_weight(wf.name)
    weights.register_weight(weights.WeightFile(**{**wf.__dict__, "url": url}))


def test_pull_over_http(standin, http_server) -> None:
    wf, src, state = standin
    base, routes = http_server
    routes["/ok.pth"] = (200, {"Content-Type": "application/octet-stream"}, src.read_bytes())
    _serve_as(wf, base + "/ok.pth")
    dest = weights.pull(NAME, progress=False)
    assert dest.read_bytes() == src.read_bytes()
    assert torch.equal(weights.load_state_dict(NAME)["conv.weight"], state["conv.weight"])
    assert not list(dest.parent.glob(".*.part"))


def test_pull_over_http_refuses_html_truncated_and_wrong_files(standin, http_server) -> None:
    wf, src, _ = standin
    base, routes = http_server
    body = src.read_bytes()
    routes["/login"] = (200, {"Content-Type": "text/html; charset=utf-8"}, HTML)
    routes["/html-as-binary"] = (200, {"Content-Type": "application/octet-stream"}, HTML)
    routes["/short"] = (200, {"Content-Type": "application/octet-stream"}, body[:100])
    routes["/cut"] = (200, {"Content-Type": "application/octet-stream", "Content-Length": str(len(body))}, body[:100])
    wrong = bytearray(body)
    wrong[50] ^= 0xFF
    routes["/wrong"] = (200, {"Content-Type": "application/octet-stream"}, bytes(wrong))
    cases = {
        "/login": "the server returned an HTML page, not the checkpoint",
        "/html-as-binary": "the server returned an HTML page, not the checkpoint",
        "/short": rf"truncated: 100 of {wf.size} bytes",
        "/cut": "truncated",
        "/wrong": rf"sha256 mismatch: the file's sha256 is {hashlib.sha256(bytes(wrong)).hexdigest()}, "
                  rf"the manifest expects {wf.sha256}",
        "/missing": "could not download .*404",
    }
    for route, pattern in cases.items():
        _serve_as(wf, base + route)
        with pytest.raises(BenchError, match=pattern):
            weights.pull(NAME, progress=False)
        assert not weights.path_of(NAME).exists(), route
        assert not list(weights.weights_dir().glob(".*.part")), route


# ------------------------------------------------------------------------------------------------- the CLI
def _cli(*args: str):
    from click.testing import CliRunner

    from bench.cli.weights import weights_group

    return CliRunner().invoke(weights_group, list(args))


def test_cli_list_shows_state_size_licence_and_use(standin) -> None:
    wf, src, _ = standin
    out = _cli("list")
    assert out.exit_code == 0, out.output
    text = out.output
    assert "alexnet" in text and "missing" in text and "244.4 MB" in text
    assert "enables: metric lpips (AlexNet backbone)" in text and "BSD-3-Clause" in text
    assert "bench weights pull alexnet (offline: bench weights import alexnet-owt-7be5be79.pth)" in text
    assert "lpips-alex" in text and "shipped" in text
    weights.import_file(src)
    lines = _cli("list").output.splitlines()
    assert any(line.split()[:2] == [NAME, "verified"] for line in lines)
    weights.path_of(NAME).write_bytes(HTML)
    out = _cli("list").output
    assert any(line.split()[:2] == [NAME, "refused"] for line in out.splitlines())
    assert "HTML page" in out


def test_cli_pull_import_and_errors(standin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wf, src, _ = standin
    out = _cli("pull", "toy-standn")
    assert out.exit_code == 2 and "did you mean toy-standin" in out.output
    out = _cli("pull", NAME, "--quiet")
    assert out.exit_code == 0, out.output
    assert str(weights.path_of(NAME)) in out.output
    # pull all, with a manifest of the stand-in and a shipped file only (no network here)
    monkeypatch.setattr(weights, "MANIFEST", {NAME: wf, "lpips-alex": weights.MANIFEST["lpips-alex"]})
    out = _cli("pull", "all", "--quiet")
    assert out.exit_code == 0, out.output
    assert "lpips-alex:" in out.output and weights.path_of("lpips-alex").is_file()
    folder = tmp_path / "hand"
    folder.mkdir()
    (folder / "x.pth").write_bytes(src.read_bytes())
    (folder / "readme.txt").write_text("hi")
    weights.path_of(NAME).unlink()
    out = _cli("import", str(folder))
    assert out.exit_code == 0, out.output
    assert f"imported {NAME}" in out.output and "readme.txt" in out.output and "not in the manifest" in out.output
    page = tmp_path / wf.filename
    page.write_bytes(HTML)
    out = _cli("import", str(page))
    assert out.exit_code == 2 and "HTML page" in out.output and "Traceback" not in out.output
