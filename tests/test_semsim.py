"""SemSim: the CIFAR ResNet-18, training from a SemSim-layout folder and from the store's annotations, the
checkpoint manifest (sha256, weights_only), the metric before and after training, determinism and user errors."""

from __future__ import annotations

import json
import math
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from bench import errors
from bench import semsim_checkpoint as checkpoint
from bench import weights
from bench.annotations import semsim_save as save
from bench.annotations import semsim_sets as sets
from bench.annotations import semsim_training as training
from bench.cli.semsim import semsim_group
from bench.nn.resnet_cifar import parameter_count, resnet18_cifar
from bench.run.plan import RunRequest
from bench.run.runner import execute

N_IDS = 6


def _save(arr: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(path)


def make_layout(root: Path, n_ids: int = N_IDS, seed: int = 0) -> Path:
    """A tiny SemSim release: smooth random originals, noisy copies (recognisable), noise and other ids' copies."""
    rng = np.random.default_rng(seed)
    originals = []
    for _ in range(n_ids):
        base = rng.integers(0, 255, (4, 4, 3), dtype=np.uint8)
        originals.append(np.asarray(Image.fromarray(base).resize((32, 32), Image.BICUBIC), dtype=np.float64))
    for i, o in enumerate(originals):
        _save(o, root / str(i) / f"{i}_ori.png")
        for k in range(2):
            _save(o + rng.normal(0, 30, o.shape), root / str(i) / f"{i}_rec{k}.png")
        _save(rng.normal(128, 80, o.shape), root / f"-{i}" / f"{i}_noise.png")
        _save(originals[(i + 1) % n_ids] + rng.normal(0, 30, o.shape), root / f"-{i}" / f"{i}_other.png")
    return root


def _request(results: Path) -> RunRequest:
    return RunRequest(attack="mean-image", profile="smoke", n_train=6, n_test=4, metrics=("semsim", "psnr"),
                      results=results, progress=False)


def _train_cli(*args: str) -> object:
    return CliRunner().invoke(semsim_group, ["train", *args, "--quiet"])


# ---------------------------------------------------------------------------------------------- the network
def test_resnet18_cifar_architecture() -> None:
    net = resnet18_cifar()
    assert parameter_count(net) == 11_168_832  # the standard CIFAR ResNet-18 without its fc layer
    assert parameter_count(resnet18_cifar(num_classes=10)) == 11_168_832 + 512 * 10 + 10
    assert isinstance(net.fc, torch.nn.Identity)
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in net.modules())
    assert [len(layer) for layer in (net.layer1, net.layer2, net.layer3, net.layer4)] == [2, 2, 2, 2]
    with torch.no_grad():
        assert net.eval()(torch.rand(2, 3, 32, 32)).shape == (2, 512)


# -------------------------------------------------------------------------------------- training and metric
def _annotate(results: Path, run_id: str, answers: dict[str, list[float]]) -> None:
    """Store answers {annotator: [label of sample 0, 1, ...]} for the reconstructions of one run."""
    with sqlite3.connect(results / "bench.sqlite") as db:
        ids = [r[0] for r in db.execute("SELECT sample_id FROM sample_metrics WHERE run_id = ? AND metric = 'psnr' "
                                        "ORDER BY sample_index", (run_id,))]
        db.executemany("INSERT INTO annotations (run_id, sample_index, sample_id, kind, label, annotator, created) "
                       "VALUES (?, ?, ?, 'recognisable', ?, ?, ?)",
                       [(run_id, i, ids[i], label, who, time.time())
                        for who, labels in answers.items() for i, label in enumerate(labels)])


def test_constructed_store_set_is_refused_then_demo_marks_every_value(bench_home: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    # Before training: unavailable with the command that trains a checkpoint for this results folder.
    before = execute(_request(results))
    sem = before.set_metrics["semsim"]
    assert sem["status"] == "unavailable" and "bench semsim train --annotations SOURCE --results RESULTS" in \
        sem["detail"]
    assert str(tmp_path) not in sem["detail"]  # stored with the value: no machine path
    assert before.set_metrics["psnr"]["status"] == "ok"

    # Coin flips by a made-up annotator: 2 recognisable, 2 not, of the run's 4 originals.
    _annotate(results, before.run_id, {"constructed-demo-1": [1, 1, 0, 0]})
    prov = sets.load_store(results, 32).description["provenance"]
    # 2 usable originals (those with a recognisable reconstruction); the 2 unrecognisable ones are the negatives.
    assert prov == {"labels": "constructed", "annotators": 1, "human_annotators": 0, "constructed_annotators": 1,
                    "answers": 4, "reconstructions": 4, "originals": 2, "triplets": 2}
    msg = _error(_train_cli("--annotations", "store", "--results", str(results), "--epochs", "1"))
    for words in ("constructed", "0 human annotator(s) (need >= 2)", "4 reconstructions (need >= 100)",
                  "2 originals (need >= 10)", "--allow-demo"):
        assert words in msg, msg
    assert checkpoint.read_manifest(results) == [] and not checkpoint.semsim_dir(results).exists()

    out = _train_cli("--annotations", "store", "--results", str(results), "--epochs", "1", "--batch-size", "2",
                     "--allow-demo")
    assert out.exit_code == 0, out.output
    assert "provenance: labels constructed: 1 annotators (0 human, 1 constructed), 4 answers" in out.output
    assert "DEMO SemSim checkpoint" in out.output and "NOT FOR PUBLICATION" in out.output
    (entry,) = checkpoint.read_manifest(results)
    assert entry["demo"] is True and entry["file"].startswith("demo-semsim-")
    ckpt = torch.load(checkpoint.semsim_dir(results) / entry["file"], map_location="cpu", weights_only=True)
    assert ckpt["demo"] is True and ckpt["annotations"]["provenance"] == prov
    with sqlite3.connect(results / "bench.sqlite") as db:
        first_two = sorted(r[0] for r in db.execute("SELECT sample_id FROM annotations WHERE label = 1"))
    assert ckpt["annotations"]["originals"] == {"synthetic-faces": first_two}  # the anchors, named for the warning

    # Every value scored with it says DEMO and where its labels came from, and that its originals were scored.
    with pytest.warns(UserWarning, match="trained on 2 of the 4 originals it scores"):
        after = execute(_request(results))
    sem = after.set_metrics["semsim"]
    assert sem["status"] == "ok" and math.isfinite(sem["value"])
    assert sem["detail"].startswith("DEMO SemSim checkpoint") and "NOT FOR PUBLICATION" in sem["detail"]
    assert "labels constructed" in sem["detail"] and "trained on 2 of the 4 originals" in sem["detail"]
    assert sem["convention"].startswith("DEMO SemSim checkpoint") and "labels constructed" in sem["convention"]
    # ... and so does the leaderboard row (its semsim note column).
    import pandas as pd

    board = pd.read_csv(after.leaderboard)
    assert board["semsim_note"].str.startswith("DEMO SemSim checkpoint").all()

    # Never across results folders: another folder's runs do not use this checkpoint.
    other = execute(_request(tmp_path / "other"))
    sem = other.set_metrics["semsim"]
    assert sem["status"] == "unavailable" and "no trained checkpoint in RESULTS/semsim" in sem["detail"]


def test_human_store_set_meeting_the_minimum_is_not_demo(bench_home: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    results = tmp_path / "results"
    run = execute(_request(results))
    _annotate(results, run.run_id, {"alice": [1, 1, 0, 0], "bob": [1, 1, 0, 1]})
    prov = sets.load_store(results, 32).description["provenance"]
    # sample 3 is a tie (1 yes, 1 no) and left out with its two answers
    assert prov == {"labels": "human", "annotators": 2, "human_annotators": 2, "constructed_annotators": 0,
                    "answers": 6, "reconstructions": 3, "originals": 2, "triplets": 2}
    assert sets.shortfalls(prov) == ["3 reconstructions (need >= 100)", "2 originals (need >= 10)"]
    # Under a minimum this small set meets, it trains without --allow-demo and nothing is marked DEMO.
    monkeypatch.setattr(sets, "MINIMUM", {"human_annotators": 2, "reconstructions": 3, "originals": 2})
    out = _train_cli("--annotations", "store", "--results", str(results), "--epochs", "1", "--batch-size", "2")
    assert out.exit_code == 0, out.output
    assert "DEMO" not in out.output
    (entry,) = checkpoint.read_manifest(results)
    assert entry["demo"] is False and entry["file"].startswith("semsim-")
    with pytest.warns(UserWarning, match="trained on 2 of the 4"):
        sem = execute(_request(results)).set_metrics["semsim"]
    assert sem["status"] == "ok" and "DEMO" not in sem["detail"] and "DEMO" not in sem["convention"]
    assert "labels human: 2 annotators, 6 answers, 3 reconstructions, 2 originals" in sem["convention"]
    # One constructed answer among human ones makes the set `mixed`: refused even under that minimum.
    _annotate(results, run.run_id, {"constructed-x": [1, 1, 1, 1]})
    assert sets.load_store(results, 32).description["provenance"]["labels"] == "mixed"
    assert "constructed" in _error(_train_cli("--annotations", "store", "--results", str(results), "--epochs", "1"))


def test_user_wide_checkpoints_are_not_used(bench_home: Path, tmp_path: Path) -> None:
    """A checkpoint in $BENCH_HOME/weights/semsim (where earlier releases kept them for every folder) is ignored."""
    data = sets.load_folder(make_layout(tmp_path / "layout", n_ids=2), 32)
    settings = training.TrainSettings(epochs=1, batch_size=4)
    save.save_checkpoint(data, settings, training.train(data, settings, progress=False), checkpoint.legacy_dir().parent,
                         demo=True)
    assert (checkpoint.legacy_dir() / checkpoint.MANIFEST_NAME).is_file()
    sem = execute(_request(tmp_path / "results")).set_metrics["semsim"]
    assert sem["status"] == "unavailable" and "are not used" in sem["detail"]


def test_bind_names_a_checkpoint_of_another_results_folder(bench_home: Path, tmp_path: Path) -> None:
    """`bench semsim bind` is the one way a checkpoint reaches another results folder: named, verified, with its
    provenance and DEMO mark."""
    data = sets.load_folder(make_layout(tmp_path / "layout", n_ids=2), 32)
    settings = training.TrainSettings(epochs=1, batch_size=4)
    entry = save.save_checkpoint(data, settings, training.train(data, settings, progress=False), tmp_path / "a",
                                 demo=True)
    target = tmp_path / "b"
    assert execute(_request(target)).set_metrics["semsim"]["status"] == "unavailable"

    stray = tmp_path / "stray.pt"  # a copy outside any manifest: refused
    stray.write_bytes(Path(entry["path"]).read_bytes())
    bind = CliRunner().invoke(semsim_group, ["bind", str(stray), "--results", str(target)])
    assert "is not listed in" in _error(bind)
    out = CliRunner().invoke(semsim_group, ["bind", entry["path"], "--results", str(target)])
    assert out.exit_code == 0, out.output
    assert "DEMO" in out.output and "labels not recorded" in out.output
    (bound,) = checkpoint.read_manifest(target)
    assert bound["sha256"] == entry["sha256"] and bound["demo"] is True
    assert bound["bound_from"] == str(Path(entry["path"]).resolve())
    sem = execute(_request(target)).set_metrics["semsim"]
    assert sem["status"] == "ok" and sem["detail"].startswith("DEMO SemSim checkpoint")
    assert f"RESULTS/semsim/{entry['file']}" in sem["detail"]
    assert "cannot be told" in sem["detail"]  # a folder-trained checkpoint: overlap unknown, and said so

    with open(entry["path"], "r+b") as fh:  # a tampered source is refused
        fh.seek(1000)
        byte = fh.read(1)
        fh.seek(1000)
        fh.write(bytes([byte[0] ^ 1]))
    weights.forget_verifications()
    assert "sha256 mismatch" in _error(CliRunner().invoke(semsim_group, ["bind", entry["path"], "--results",
                                                                         str(tmp_path / "c")]))


def test_folder_set_minimum_and_trained_embedding(bench_home: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    layout = make_layout(tmp_path / "layout")
    msg = _error(_train_cli("--annotations", str(layout), "--results", str(results)))
    assert "24 reconstructions (need >= 100)" in msg and "6 originals (need >= 10)" in msg
    assert "annotator" not in msg  # the release layout records none: only the counts are checked
    out = _train_cli("--annotations", str(layout), "--results", str(results), "--epochs", "4", "--batch-size", "4",
                     "--seed", "3", "--allow-demo")
    assert out.exit_code == 0, out.output
    assert "checkpoint:" in out.output and "--metrics semsim" in out.output

    (entry,) = checkpoint.read_manifest(results)
    path = checkpoint.semsim_dir(results) / entry["file"]
    assert path.is_file() and str(path) in out.output
    assert weights.sha256_of(path) == entry["sha256"] and path.stat().st_size == entry["size"]
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    assert ckpt["format"] == checkpoint.CHECKPOINT_FORMAT and ckpt["config"]["input_size"] == 32
    ann = entry["annotations"]
    assert (ann["source"], ann["ids"], ann["positives"], ann["negatives"]) == ("folder", N_IDS, 12, 12)
    assert ann["provenance"]["labels"].startswith("not recorded") and ann["provenance"]["annotators"] is None
    assert len(ann["hash"]) == 64 and ann["hash"] == ckpt["annotations"]["hash"]
    assert entry["training"]["seed"] == 3 and math.isfinite(entry["final_loss"])
    torch.manual_seed(3)
    init = resnet18_cifar().state_dict()
    assert any(not torch.equal(init[k], v) for k, v in ckpt["state_dict"].items()), "training changed nothing"

    # The trained embedding puts recognisable reconstructions nearer their original than unrecognisable ones.
    data = sets.load_folder(layout, 32)
    emb = checkpoint.embedder(checkpoint.load_checkpoint(entry, results))(data.images)
    pos = [float((emb[g.anchor] - emb[i]).norm()) for g in data.groups for i in g.positives]
    neg = [float((emb[g.anchor] - emb[i]).norm()) for g in data.groups for i in g.negatives]
    assert np.mean(pos) < np.mean(neg)

    # 25 ids x 4 reconstructions meet the minimum: no --allow-demo needed, nothing marked DEMO.
    big = make_layout(tmp_path / "big", n_ids=25)
    out = _train_cli("--annotations", str(big), "--results", str(results), "--epochs", "1", "--batch-size", "64")
    assert out.exit_code == 0, out.output
    assert "DEMO" not in out.output
    assert checkpoint.read_manifest(results)[-1]["demo"] is False


def test_metric_refuses_a_tampered_checkpoint(bench_home: Path, tmp_path: Path) -> None:
    from bench.metrics.semsim import SemSim
    from bench.plugins import MetricUnavailable

    results = tmp_path / "results"
    with pytest.raises(MetricUnavailable, match="bench semsim train --annotations SOURCE"):
        SemSim().load(results)
    data = sets.load_folder(make_layout(tmp_path / "layout", n_ids=2), 32)
    settings = training.TrainSettings(epochs=1, batch_size=4)
    entry = save.save_checkpoint(data, settings, training.train(data, settings, progress=False), results, demo=True)
    metric = SemSim().load(results)
    same = metric.per_sample(data.images[:2], data.images[:2])
    assert same.dtype == torch.float64 and torch.all(same == 0)
    assert metric.version.endswith(entry["sha256"][:12])
    from bench.contract import check_plugin

    failed = [(c, d) for c, ok, d in check_plugin("semsim", "metrics") if not ok]
    assert not failed, failed  # outside a run: unavailable (bound to a results folder), which the kit accepts
    other = SemSim().load(results)
    a, b = data.images[:2], data.images[2:4]
    batch = other.per_sample(a, b)
    assert torch.allclose(torch.cat([other.per_sample(a[i:i + 1], b[i:i + 1]) for i in range(2)]), batch,
                          atol=1e-9)  # float64: independent of the batch
    with open(entry["path"], "r+b") as fh:  # flip one byte
        fh.seek(1000)
        byte = fh.read(1)
        fh.seek(1000)
        fh.write(bytes([byte[0] ^ 1]))
    weights.forget_verifications()
    with pytest.raises(MetricUnavailable, match="sha256 mismatch"):
        SemSim().load(results)


def test_same_seed_same_weights(bench_home: Path, tmp_path: Path, pinned_threads: int) -> None:
    """One seed and one thread count give byte-identical training (across thread counts only a tolerance could)."""
    data = sets.load_folder(make_layout(tmp_path / "layout", n_ids=3), 32)
    settings = training.TrainSettings(epochs=2, batch_size=2, seed=7)
    a = training.train(data, settings, progress=False)
    b = training.train(data, settings, progress=False)
    assert a.losses == b.losses
    assert a.state_dict.keys() == b.state_dict.keys()
    assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)
    first = save.save_checkpoint(data, settings, a, tmp_path / "r", demo=True)
    second = save.save_checkpoint(data, settings, b, tmp_path / "r", demo=True)
    assert first["sha256"] == second["sha256"]  # byte-identical checkpoints: one manifest entry
    assert len(checkpoint.read_manifest(tmp_path / "r")) == 1
    with pytest.raises(errors.BenchError, match="below the minimum"):
        save.save_checkpoint(data, settings, a, tmp_path / "r")  # the API refuses too, not only the CLI


# --------------------------------------------------------------------------------------------------- errors
def _error(result: object) -> str:
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def test_layout_errors(bench_home: Path, tmp_path: Path) -> None:
    assert "no such folder" in _error(_train_cli("--annotations", str(tmp_path / "missing")))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no usable triplet" in _error(_train_cli("--annotations", str(empty)))

    no_neg = tmp_path / "no-negatives"  # originals and positives, but nothing unrecognisable anywhere
    make_layout(no_neg, n_ids=2)
    for d in no_neg.glob("-*"):
        for f in d.iterdir():
            f.unlink()
        d.rmdir()
    msg = _error(_train_cli("--annotations", str(no_neg)))
    assert "no usable triplet" in msg and "2 originals" in msg and "4 recognisable" in msg

    (no_neg / "others").mkdir()  # extra negatives make it usable
    _save(np.zeros((32, 32, 3)), no_neg / "others" / "x.png")
    data = sets.load_folder(no_neg, 32)
    assert data.description["ids"] == 2 and data.description["extra_negatives"] == 1

    no_ori = tmp_path / "no-originals"
    make_layout(no_ori, n_ids=2)
    for f in no_ori.rglob("*_ori.png"):
        f.unlink()
    assert "0 originals" in _error(_train_cli("--annotations", str(no_ori)))

    two = tmp_path / "two-originals"
    make_layout(two, n_ids=2)
    _save(np.zeros((32, 32, 3)), two / "0" / "copy_ori.png")
    assert "2 originals" in _error(_train_cli("--annotations", str(two)))

    assert ">= 1" in _error(_train_cli("--annotations", str(no_neg), "--epochs", "0", "--results",
                                       str(tmp_path / "r")))
    assert checkpoint.read_manifest(tmp_path / "r") == []


def test_store_errors(bench_home: Path, tmp_path: Path) -> None:
    from bench.store import Store

    msg = _error(_train_cli("--annotations", "store", "--results", str(tmp_path / "nowhere")))
    assert "no results store" in msg
    Store(tmp_path / "r" / "bench.sqlite").close()
    msg = _error(_train_cli("--annotations", "store", "--results", str(tmp_path / "r")))
    assert "no annotations of kind 'recognisable'" in msg


def test_manifest_is_json_with_the_documented_fields(bench_home: Path, tmp_path: Path) -> None:
    data = sets.load_folder(make_layout(tmp_path / "layout", n_ids=2), 32)
    settings = training.TrainSettings(epochs=1, batch_size=4)
    save.save_checkpoint(data, settings, training.train(data, settings, progress=False), tmp_path / "r", demo=True)
    doc = json.loads(checkpoint.manifest_path(tmp_path / "r").read_text())
    (entry,) = doc["checkpoints"]
    assert {"file", "sha256", "size", "annotations", "training", "config", "final_loss", "created",
            "demo", "shortfalls"} <= set(entry)
    assert {"epochs", "batch_size", "lr", "margin", "size", "seed"} <= set(entry["training"])
    assert {"labels", "annotators", "answers", "reconstructions", "originals"} <= set(
        entry["annotations"]["provenance"])
    out = CliRunner().invoke(semsim_group, ["list", "--results", str(tmp_path / "r")])
    assert out.exit_code == 0 and entry["file"] in out.output and "DEMO" in out.output
