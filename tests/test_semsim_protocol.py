"""SemSim's protocol end to end on gradient-inversion reconstructions of real CIFAR-10 test images (issue 17 C):
`bench grid` (inverting-gradients and dlg x none, gradient-pruning, gradient-noise, smoke profile) -> the annotation
server lists and serves every reconstruction -> annotations imported with `bench annotate import` -> `bench semsim
train` binds a checkpoint -> the same `bench grid` again scores semsim -> `bench correlate` at both levels.

THE ANNOTATIONS HERE ARE CONSTRUCTED, NOT HUMAN: two made-up annotators (ids beginning `constructed`) answer
"recognisable" when a reconstruction's stored PSNR plus their own seeded Gaussian noise exceeds the median PSNR of
all reconstructions. The rule is known, so the test can check the correlations against scipy on the values it
reads itself; the numbers say nothing about how people judge these images.

The images are a handful copied from ../shared/data/cifar10 into a tiny folder of the same layout (skipped when
the shared folder is absent), so that planning does not list 60,000 files.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from scipy import stats

from bench.cli import main
from bench.metrics.semsim import SemSimOverlap

from conftest import SHARED_DATA

CIFAR = SHARED_DATA / "cifar10"
CLASSES = ("airplane", "automobile", "bird", "cat")
ATTACKS = ("inverting-gradients", "dlg")
DEFENSES = ("none", "gradient-pruning", "gradient-noise")
METRICS = ("mse", "psnr", "ssim", "label-accuracy", "semsim")
IMAGE_METRICS = ("mse", "psnr", "ssim", "semsim")
ANNOTATORS = ("constructed-psnr-rule-1", "constructed-psnr-rule-2")
N_TEST = 4


def _tiny_cifar(root: Path) -> Path:
    """Real images of four classes in the folder layout: one train image and five test images of each (the run's
    4 private images plus an evaluation split for the accuracy utilities, bench/run/utility_split.py)."""
    if not (CIFAR / "test").is_dir():
        pytest.skip(f"CIFAR-10 not found at {CIFAR}")
    for split, per_class in (("test", 5), ("train", 1)):
        for c in CLASSES:
            (root / split / c).mkdir(parents=True)
            for src in sorted((CIFAR / split / c).glob("*.jpg"))[:per_class]:
                shutil.copy(src, root / split / c / src.name)
    return root


def _grid(results: Path, data: Path, *extra: str) -> object:
    return CliRunner().invoke(main, [
        "grid", "--attacks", ",".join(ATTACKS), "--defenses", ",".join(DEFENSES), "--datasets", f"cifar10={data}",
        "--profile", "smoke", "--n-train", "2", "--n-test", str(N_TEST), "--metrics", ",".join(METRICS),
        "--threads", "1", "--results", str(results), "--quiet", *extra])


def _set_rows(results: Path, metric: str) -> dict[str, tuple[str, str]]:
    with sqlite3.connect(results / "bench.sqlite") as db:
        return {r: (s, v) for r, s, v in db.execute(
            "SELECT run_id, status, version FROM set_metrics WHERE metric = ?", (metric,))}


def _sample_values(results: Path, metric: str) -> dict[tuple[str, int], float]:
    with sqlite3.connect(results / "bench.sqlite") as db:
        return {(r, int(i)): v for r, i, v in db.execute(
            "SELECT run_id, sample_index, value FROM sample_metrics WHERE metric = ?", (metric,))}


def _copy_results(src: Path, dst: Path) -> None:
    """A private copy of a results folder: files as they are, the store through SQLite's backup API (its WAL files
    come and go while it is open elsewhere)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("bench.sqlite*"))
    with sqlite3.connect(src / "bench.sqlite") as a, sqlite3.connect(dst / "bench.sqlite") as b:
        a.backup(b)
    a.close()
    b.close()


@pytest.fixture(scope="module")
def protocol(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The first grid of the protocol (before any annotation), into one results folder."""
    base = tmp_path_factory.mktemp("semsim-protocol")
    data = _tiny_cifar(base / "cifar10")
    results = base / "results"
    out = _grid(results, data)
    assert out.exit_code == 0, out.output
    with sqlite3.connect(results / "bench.sqlite") as db:
        runs = {r: json.loads(s) for r, s in db.execute("SELECT run_id, spec_json FROM runs WHERE status = 'done'")}
    return {"results": results, "data": data, "runs": runs, "output": out.output}


def test_grid_reconstructs_every_cifar_image_at_32_px(protocol: dict) -> None:
    results, runs = protocol["results"], protocol["runs"]
    assert len(runs) == len(ATTACKS) * len(DEFENSES)
    assert {(s["attack"], s["defense"]) for s in runs.values()} == {(a, d) for a in ATTACKS for d in DEFENSES}
    for run_id, spec in runs.items():
        assert spec["extractor"]["name"] == "fedsgd-lenet-zhu" and spec["image_size"] == 32
        pngs = sorted((results / "runs" / run_id / "reconstructions").glob("*.png"))
        assert len(pngs) == N_TEST and all(Image.open(p).size == (32, 32) for p in pngs)
    # Before any annotation semsim has no checkpoint: stored as unavailable with the command that trains one.
    assert {s for s, _ in _set_rows(results, "semsim").values()} == {"unavailable"}
    assert {s for s, _ in _set_rows(results, "psnr").values()} == {"ok"}


def test_annotation_server_serves_the_gradient_reconstructions(protocol: dict, tmp_path: Path) -> None:
    """What `bench annotate serve` would show: one item per reconstruction of every run; the original is the CIFAR
    image at its native 32 px, the reconstruction the saved PNG; an answer given over HTTP lands in the store."""
    import http.client

    from bench.annotations.items import Catalogue
    from bench.annotations.server import AnnotationServer

    results = tmp_path / "results"
    _copy_results(protocol["results"], results)
    server = AnnotationServer(Catalogue(results)).start()

    def get(path: str) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        sep = "&" if "?" in path else "?"
        conn.request("GET", f"{path}{sep}token={server.token}")
        res = conn.getresponse()
        body = res.read()
        conn.close()
        return res.status, body

    try:
        assert set(server.service.catalogue.runs) == set(protocol["runs"])
        keys = {it.refs[0] for it in server.service.catalogue.items}
        assert keys == set(_sample_values(results, "psnr"))  # every scored reconstruction, nothing else
        status, body = get("/api/state?annotator=constructed-http")
        state = json.loads(body)
        assert status == 200 and (state["total"], state["done"]) == (len(keys), 0)
        item = state["item"]
        run_id, index = item["key"].split(":")[1], int(item["key"].split(":")[2])
        status, original = get(item["original"])
        assert status == 200
        want = np.asarray(Image.open(protocol["data"] / item["sample_id"]).convert("RGB"))
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(original)).convert("RGB")), want)
        status, recon = get(item["reconstructions"][0])
        saved = next((results / "runs" / run_id / "reconstructions").glob(f"{index:05d}_*.png"))
        assert status == 200 and recon == saved.read_bytes()
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.request("POST", f"/api/answer?token={server.token}", body=json.dumps(
            {"annotator": "constructed-http", "key": item["key"], "answer": "yes"}),
            headers={"Content-Type": "application/json"})
        res = conn.getresponse()
        assert res.status == 200 and json.loads(res.read())["done"] == 1
        conn.close()
    finally:
        server.stop()
    with sqlite3.connect(results / "bench.sqlite") as db:
        assert db.execute("SELECT run_id, sample_index, label, annotator FROM annotations").fetchall() == [
            (run_id, index, 1.0, "constructed-http")]


def _constructed_answers(results: Path, path: Path) -> dict[tuple[str, int], dict[str, int]]:
    """CONSTRUCTED answers (see the module docstring): PSNR + seeded noise above the median PSNR -> recognisable."""
    psnr = _sample_values(results, "psnr")
    with sqlite3.connect(results / "bench.sqlite") as db:
        ids = {(r, int(i)): s for r, i, s in db.execute(
            "SELECT run_id, sample_index, sample_id FROM sample_metrics WHERE metric = 'psnr'")}
    keys = sorted(psnr)
    values = np.array([psnr[k] for k in keys])
    median, spread = float(np.median(values)), float(values.std())
    labels: dict[tuple[str, int], dict[str, int]] = {k: {} for k in keys}
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["kind", "run_id", "sample_index", "sample_id", "label", "annotator"])
        for a, who in enumerate(ANNOTATORS):
            noise = np.random.default_rng(100 + a).normal(0, 0.5 * spread, len(keys))
            for k, v, e in zip(keys, values, noise):
                labels[k][who] = int(v + e > median)
                w.writerow(["recognisable", k[0], k[1], ids[k], labels[k][who], who])
    return labels


def test_constructed_annotations_train_semsim_and_correlate(protocol: dict, tmp_path: Path) -> None:
    results = tmp_path / "results"
    _copy_results(protocol["results"], results)
    labels = _constructed_answers(results, tmp_path / "constructed.csv")
    out = CliRunner().invoke(main, ["annotate", "import", str(tmp_path / "constructed.csv"), "--results",
                                    str(results)])
    assert out.exit_code == 0, out.output
    assert f"imported {len(labels) * len(ANNOTATORS)} recognisable" in out.output

    # 16 px input instead of the paper's 32 (a quarter of the compute; the test checks the path, not the network)
    train = ["semsim", "train", "--annotations", "store", "--results", str(results), "--epochs", "1",
             "--batch-size", "16", "--size", "16", "--quiet"]
    refused = CliRunner().invoke(main, train)
    assert refused.exit_code == 2 and "constructed" in refused.output  # never a checkpoint without --allow-demo
    out = CliRunner().invoke(main, [*train, "--allow-demo"])
    assert out.exit_code == 0, out.output
    manifest = json.loads((results / "semsim" / "manifest.json").read_text())
    (entry,) = manifest["checkpoints"]
    assert entry["demo"] is True and entry["annotations"]["provenance"]["labels"] == "constructed"
    assert entry["config"]["input_size"] == 16

    # The same grid command again: runs stored with semsim `unavailable` are scored from their saved
    # reconstructions with the new checkpoint (the other metrics' values do not change) ...
    before = _sample_values(results, "psnr")
    with pytest.warns(SemSimOverlap, match="not held out"):  # trained on the originals it now scores, and says so
        again = _grid(results, protocol["data"])
    assert again.exit_code == 0, again.output
    assert "already complete" not in again.output
    semsim = _set_rows(results, "semsim")
    assert set(semsim.values()) == {("ok", f"1+{entry['sha256'][:12]}")}
    assert _sample_values(results, "psnr") == before
    with sqlite3.connect(results / "bench.sqlite") as db:
        details = {d for (d,) in db.execute("SELECT detail FROM set_metrics WHERE metric = 'semsim'")}
    assert all(d.startswith("DEMO SemSim checkpoint") for d in details)
    # ... and a third time nothing is computed.
    third = _grid(results, protocol["data"])
    assert third.exit_code == 0 and third.output.count("(already complete)") == len(protocol["runs"])

    # bench correlate at both levels: every image metric, semsim included, with all three coefficients.
    human = {k: float(np.mean(list(v.values()))) for k, v in labels.items()}
    for level in ("config", "sample"):
        out = CliRunner().invoke(main, ["correlate", "--results", str(results), "--level", level,
                                        "--resamples", "200", "--no-plots"])
        assert out.exit_code == 0, out.output
        assert "NOTE: constructed annotations, not human judgements" in out.output
        table = {(r["metric"], r["method"]): r
                 for r in csv.DictReader((results / "correlation" / f"correlation-{level}.csv").open())}
        for metric in IMAGE_METRICS:
            for method in ("spearman", "pearson", "kendall"):
                row = table[(metric, method)]
                assert row["status"] == "ok" and row["annotations"].startswith("constructed"), row
                assert int(row["n"]) == (len(protocol["runs"]) if level == "config" else len(human))
        assert table[("semsim", "spearman")]["orientation"] == "negated (lower is better)"
        points = list(csv.DictReader((results / "correlation" / f"points-{level}.csv").open()))
        assert {p["extractor"] for p in points} == {"fedsgd-lenet-zhu"}  # the victim names the "model" axis
    # Sample level, recomputed here from the stored values and the constructed labels.
    keys = sorted(human)
    h = np.array([human[k] for k in keys])
    for metric, sign in (("psnr", 1), ("mse", -1), ("semsim", -1)):
        values = _sample_values(results, metric)
        x = sign * np.array([values[k] for k in keys])
        for method, fn in (("spearman", stats.spearmanr), ("pearson", stats.pearsonr),
                           ("kendall", stats.kendalltau)):
            r, p = fn(x, h)
            assert float(table[(metric, method)]["r"]) == pytest.approx(float(r), abs=1e-9)
            assert float(table[(metric, method)]["p"]) == pytest.approx(float(p), rel=1e-6)
    assert float(table[("psnr", "spearman")]["r"]) > 0.5  # the labels were made from PSNR
