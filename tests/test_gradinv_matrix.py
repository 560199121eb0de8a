"""The gradient-inversion family's compatibility matrix (issue 17): attacks x releases x defenses x victims x
datasets. Every pair of factor values runs at the smoke profile (an all-pairs cover of the product, on miniature
CIFAR-10 / CIFAR-100 binary releases written here); the whole product runs with --runslow; what the family cannot
attack is refused before any work in one line."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from bench.cli import main

ATTACKS = ("dlg", "idlg", "inverting-gradients")
# fedSGD of one image, of a batch of 2, and a FedAvg update (2 local steps on the record's 2 images, one at a time)
RELEASES = {"fedsgd-1": ["--extractor", "fedsgd"],
            "fedsgd-2": ["--extractor", "fedsgd", "--extractor-arg", "batch=2"],
            "fedavg": ["--extractor", "fedavg", "--extractor-arg", "batch=2", "--extractor-arg", "local_steps=2",
                       "--extractor-arg", "local_batch=1"]}
DEFENSES = ("none", "gradient-pruning", "gradient-noise", "dp-sgd", "ats-augment")
# the three victims at small widths (the architecture is what the matrix checks; widths keep it to seconds)
VICTIMS = {"lenet-zhu": [], "convnet": ["--extractor-arg", "width=2"], "resnet20-4": ["--extractor-arg", "width=1"]}
DATASETS = ("cifar10", "cifar100")
FACTORS: list[tuple[str, ...]] = [ATTACKS, tuple(RELEASES), DEFENSES, tuple(VICTIMS), DATASETS]


def all_pairs(factors: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    """Rows of the product that together hold every pair of values of any two factors (greedy, deterministic)."""
    want = {(i, a, j, b) for i, j in itertools.combinations(range(len(factors)), 2)
            for a in factors[i] for b in factors[j]}
    rows: list[tuple[str, ...]] = []
    candidates = list(itertools.product(*factors))

    def new(row: tuple[str, ...]) -> int:
        return sum((i, row[i], j, row[j]) in want for i, j in itertools.combinations(range(len(row)), 2))

    while want:
        row = max(candidates, key=new)
        rows.append(row)
        want -= {(i, row[i], j, row[j]) for i, j in itertools.combinations(range(len(row)), 2)}
    return rows


PAIRS = all_pairs(FACTORS)
PRODUCT = [r for r in itertools.product(*FACTORS) if r not in PAIRS]


def _record(labels: list[int], rng: np.random.Generator) -> bytes:
    """One CIFAR binary record: label byte(s), then the red, green and blue 32 x 32 planes."""
    img = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    return bytes(labels) + b"".join(img[:, :, c].tobytes() for c in range(3))


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Miniature binary releases: CIFAR-10 (10 train, 4 test records) and CIFAR-100 (8 train, 3 test, fine labels
    above 9, so a 10-class head could not hold them)."""
    root = tmp_path_factory.mktemp("cifar")
    rng = np.random.default_rng(0)
    c10 = root / "c10" / "cifar-10-batches-bin"
    c10.mkdir(parents=True)
    for b in range(1, 6):
        (c10 / f"data_batch_{b}.bin").write_bytes(b"".join(_record([(b + r) % 10], rng) for r in range(2)))
    (c10 / "test_batch.bin").write_bytes(b"".join(_record([r], rng) for r in (3, 7, 1, 5)))
    c100 = root / "c100" / "cifar-100-binary"
    c100.mkdir(parents=True)
    (c100 / "train.bin").write_bytes(b"".join(_record([r % 20, 90 + r], rng) for r in range(8)))
    (c100 / "test.bin").write_bytes(b"".join(_record([r % 20, 57 + 20 * r], rng) for r in range(3)))
    return {"cifar10": root / "c10", "cifar100": root / "c100"}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One results folder for the module: runs share its stage caches (victims, features, utility)."""
    return tmp_path_factory.mktemp("matrix-results")


def _args(attack: str, release: str, defense: str, victim: str, dataset: str, root: Path) -> list[str]:
    return ["run", "--attack", attack, "--defense", defense, *RELEASES[release], "--extractor-arg",
            f"victim={victim}", *VICTIMS[victim], "--dataset", dataset, "--data-root", str(root), "--profile",
            "smoke", "--n-train", "4", "--n-test", "2", "--attack-arg", "iterations=1", "--metrics",
            "mse,label-accuracy", "--quiet", "--threads", "1"]


def _check_run(row: tuple[str, ...], data: dict[str, Path], results: Path) -> None:
    attack, release, defense, victim, dataset = row
    res = CliRunner().invoke(main, [*_args(*row, data[dataset]), "--results", str(results)])
    assert res.exit_code == 0, res.output
    runs = {p.parent: json.loads(p.read_text()) for p in (results / "runs").glob("*/run.json")}
    run_dir, record = next((d, r) for d, r in runs.items() if r["spec"]["attack"] == attack
                           and r["spec"]["defense"] == defense and r["spec"]["dataset"] == dataset
                           and r["spec"]["extractor"]["name"] == RELEASES[release][1]
                           and r["spec"]["extractor"].get("victim", "lenet-zhu") == victim
                           and r["spec"]["extractor"].get("batch", 1) == (1 if release == "fedsgd-1" else 2))
    extractor = record["spec"]["extractor"]
    classes = 100 if dataset == "cifar100" else 10
    # a 100-class head on CIFAR-100; a 10-class config names no class count (its run ids are those of before)
    assert extractor.get("num_classes", 10) == classes and ("num_classes" in extractor) == (classes != 10)
    assert record["releases"]["records"] == (2 if release == "fedsgd-1" else 1)
    assert record["set_metrics"]["label-accuracy"]["status"] == "ok"
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert len(metrics) == 2 and metrics["mse"].notna().all()
    assert metrics["predicted:label"].between(0, classes - 1).all()
    # fedSGD releases report the defense's fl-accuracy; FedAvg releases none (FedAvg training is not wired)
    assert ("fl-accuracy" in record["utility"]) == (release != "fedavg"), record["utility"]
    if defense == "dp-sgd":
        assert record["releases"]["defense"]["per_release"]["delta"] == 1e-5


def test_the_pairs_cover_every_pair_of_values() -> None:
    """The cover is complete (every two factors' values meet in some row) and far smaller than the product."""
    for i, j in itertools.combinations(range(len(FACTORS)), 2):
        seen = {(r[i], r[j]) for r in PAIRS}
        assert seen == set(itertools.product(FACTORS[i], FACTORS[j])), (i, j)
    assert len(PAIRS) < 30 and len(PAIRS) + len(PRODUCT) == 3 * 3 * 5 * 3 * 2


@pytest.mark.parametrize("row", PAIRS, ids=["-".join(r) for r in PAIRS])
def test_every_compatible_pair_runs_at_smoke(row: tuple[str, ...], data: dict[str, Path], results: Path) -> None:
    _check_run(row, data, results)


@pytest.mark.slow
@pytest.mark.parametrize("row", PRODUCT, ids=["-".join(r) for r in PRODUCT])
def test_the_whole_product_runs_at_smoke(row: tuple[str, ...], data: dict[str, Path], results: Path) -> None:
    _check_run(row, data, results)


REFUSED = [
    # label recovery of distinct classes: more images per release than the victim has classes
    (["--attack", "idlg", "--extractor", "fedsgd", "--extractor-arg", "batch=11"], "cifar10",
     "recovers one distinct label per image"),
    (["--attack", "inverting-gradients", "--extractor", "fedavg", "--extractor-arg", "batch=101"], "cifar100",
     "releases 101 images per record of a 100-class victim"),
    # a defense of another family on a gradient release
    (["--attack", "dlg", "--defense", "gaussian-noise"], "cifar10", "cannot protect 'fl-gradients'"),
    (["--attack", "idlg", "--defense", "descriptor-noise", "--extractor", "fedavg"], "cifar100",
     "cannot protect 'fl-updates'"),
    # a gradient attack on a release that is not a federated client's (no victim model either)
    (["--attack", "inverting-gradients", "--extractor", "sift"], "cifar10", "grants no victim model"),
    # client-side / gradient defenses on a release that is not a gradient
    (["--attack", "mean-image", "--defense", "dp-sgd", "--extractor", "sift"], "cifar10",
     "cannot protect 'sift'"),
]


@pytest.mark.parametrize("args,dataset,words", REFUSED, ids=[f"{a[1]}-{i}" for i, (a, _, _) in enumerate(REFUSED)])
def test_incompatible_pairs_are_refused_in_one_line_before_any_work(args: list[str], dataset: str, words: str,
                                                                    data: dict[str, Path], tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["run", *args, "--dataset", dataset, "--data-root", str(data[dataset]),
                                    "--profile", "smoke", "--n-train", "4", "--n-test", "2", "--quiet",
                                    "--results", str(tmp_path)])
    assert res.exit_code != 0 and "Traceback" not in res.output, res.output
    assert words in res.output and len(res.output.strip().splitlines()) == 1, res.output
    assert not list(tmp_path.rglob("*.npz")) and not (tmp_path / "runs").exists()  # nothing extracted or run


def test_a_trained_victim_learns_on_cifar100_with_its_100_classes(data: dict[str, Path], results: Path) -> None:
    """trained=true on CIFAR-100: the victim trains on the train split's fine labels (90..97 here) with a 100-class
    head, and the config names both the class count and the training."""
    args = _args("inverting-gradients", "fedsgd-1", "none", "resnet20-4", "cifar100", data["cifar100"])
    res = CliRunner().invoke(main, [*args, "--extractor-arg", "trained=true", "--results", str(results)])
    assert res.exit_code == 0, res.output
    record = next(r for r in (json.loads(p.read_text()) for p in (results / "runs").glob("*/run.json"))
                  if r["spec"]["extractor"].get("trained") and r["spec"]["dataset"] == "cifar100")
    assert record["spec"]["extractor"]["num_classes"] == 100 and "training" in record["spec"]["extractor"]
    assert record["threat_model"]["victim"]["state"]["trained"] is True
