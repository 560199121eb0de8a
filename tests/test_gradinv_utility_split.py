"""The gradient-inversion utilities (fl-accuracy, victim-accuracy) are measured on an evaluation split of the test
split disjoint from the private images (bench/run/utility_split.py), and a finished run stored under the older
convention (measured on its private images) is re-scored by starting the grid again, without re-running its attack.
CIFAR-10 parts are skipped when ../shared/data/cifar10 is absent."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from bench.attacks.gradinv import defenses as gd
from bench.attacks.gradinv import utility as gu
from bench.attacks.gradinv.extractors import FedSGDLeNetZhu
from bench.cli import main
from bench.errors import BenchError
from bench.plugins import ImageSet, UtilityContext, UtilityTraining
from bench.profiles import PROFILES
from bench.run import utility_split
from bench.run.plan import RunRequest, plan

from conftest import SHARED_DATA

CIFAR = SHARED_DATA / "cifar10"


def _need_cifar() -> None:
    if not (CIFAR / "test").is_dir():
        pytest.skip(f"CIFAR-10 not found at {CIFAR}")


def _plan(seed: int, tmp_path: Path):
    return plan(RunRequest(attack="idlg", defense="gradient-pruning", dataset="cifar10", data_root=CIFAR,
                           profile="smoke", seed=seed, n_train=6, n_test=5, results=tmp_path, progress=False,
                           metrics=("mse",)))


def test_the_evaluation_split_is_test_images_disjoint_from_the_private_and_train_ones(tmp_path: Path) -> None:
    _need_cifar()
    for seed in (0, 1):
        p = _plan(seed, tmp_path)
        ev = utility_split.evaluation_split(p)
        assert len(ev.ids) == utility_split.EVAL_IMAGES["smoke"] == 16
        assert not set(ev.ids) & set(p.test_ids) and not set(ev.ids) & set(p.train_ids)
        assert all(i.startswith("test/") for i in ev.ids), ev.ids  # the dataset's test split
        if seed == 0:
            assert utility_split.evaluation_split(_plan(seed, tmp_path)).ids == ev.ids  # deterministic
        rec = ev.record()
        assert rec["n"] == 16 and rec["tag"] == utility_split.TAG and ev.convention.startswith(utility_split.TAG)
        assert "16 images of cifar10's test split" in ev.convention
    with pytest.raises(BenchError, match="no size declared"):
        utility_split.eval_size("nope")


def _learnable(n: int, seed: int, flip: bool = False) -> ImageSet:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 32, 32, generator=g) * 0.5
    y = torch.arange(n) % 2  # class 1 is redder
    x[y == 1, 0] += 0.5
    labels = (1 - y) if flip else y
    return ImageSet([f"i{seed}-{k}" for k in range(n)], x, {"label": labels.numpy()})


def test_fl_accuracy_is_measured_on_the_evaluation_split_and_moves_with_the_model() -> None:
    train, evaluation = _learnable(64, 0), _learnable(32, 1)
    private = _learnable(8, 2, flip=True)  # labels reversed: an accuracy measured on these would be ~0
    ext = FedSGDLeNetZhu()
    feats = ext.extract(ImageSet(private.ids[:1], private.images[:1], {"label": private.labels["label"][:1]}))
    ctx = UtilityContext(images=private, features=feats, extractor=ext, seed=0,
                         training=UtilityTraining(images=train, profile="test", victim=ext.victim()),
                         evaluation=evaluation)
    gu.PROFILES["test"] = {"steps": 60, "batch": 16, "lr": 0.05}
    try:
        trained = gu.fl_accuracy(ctx, gu.plain_step)["fl-accuracy"]
        frozen = gu.fl_accuracy(ctx, lambda m, a, b, g: gd.gradient_pruning(gu.plain_step(m, a, b, g), 1.0))
        assert trained >= 0.9  # on the evaluation images; on the (flipped) private ones it would be <= 0.1
        assert frozen["fl-accuracy"] != trained  # a model that never moved scores otherwise
        ctx.evaluation = None
        with pytest.raises(BenchError, match="evaluation split"):
            gu.fl_accuracy(ctx, gu.plain_step)  # never the private images instead
    finally:
        del gu.PROFILES["test"]


def test_the_profile_note_names_the_size_the_run_used() -> None:
    cpu = PROFILES["cpu"]
    assert cpu.caveat_at(64) == cpu.caveat and cpu.caveat_at(None) == cpu.caveat
    note = cpu.caveat_at(32)
    assert note.startswith("cpu profile: 32x32 images") and "64x64 images," not in note
    assert PROFILES["paper"].caveat_at(32) == ""


@pytest.mark.slow  # three grid starts on CIFAR-10 (about a minute on an idle core, minutes under load)
def test_a_finished_run_with_an_old_utility_is_re_scored_by_the_grid(tmp_path: Path) -> None:
    _need_cifar()
    args = ["grid", "--attacks", "idlg", "--defenses", "gradient-pruning", "--datasets", f"cifar10={CIFAR}",
            "--profile", "smoke", "--n-train", "6", "--n-test", "2", "--metrics", "mse", "--attack-arg",
            "iterations=2", "--threads", "1", "--quiet", "--results", str(tmp_path)]
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 0, out.output
    db = tmp_path / "bench.sqlite"
    with sqlite3.connect(db) as con:
        (run_id,) = [r[0] for r in con.execute("SELECT run_id FROM runs WHERE status = 'done'")]
        rows = dict(con.execute("SELECT name, detail FROM utility WHERE run_id = ?", (run_id,)))
        first = dict(con.execute("SELECT name, value FROM utility WHERE run_id = ?", (run_id,)))
    assert set(rows) == {"fl-accuracy", "victim-accuracy"}
    assert all(str(d).startswith(utility_split.TAG) for d in rows.values()), rows
    run_json = tmp_path / "runs" / run_id / "run.json"
    record = json.loads(run_json.read_text())
    assert record["utility_evaluation"]["n"] == 16 and record["utility_evaluation"]["tag"] == utility_split.TAG
    # A run finished under the older convention: figures on its private images, no detail.
    with sqlite3.connect(db) as con:
        con.execute("UPDATE utility SET value = 0.123, detail = NULL WHERE run_id = ?", (run_id,))
    dry = CliRunner().invoke(main, [*args, "--dry-run"])
    assert dry.exit_code == 0 and "done, to re-score (utility)" in dry.output, dry.output
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 0, out.output
    with sqlite3.connect(db) as con:
        again = dict(con.execute("SELECT name, value FROM utility WHERE run_id = ?", (run_id,)))
        details = dict(con.execute("SELECT name, detail FROM utility WHERE run_id = ?", (run_id,)))
        (n_runs,) = con.execute("SELECT count(*) FROM runs").fetchone()
    assert n_runs == 1  # the same run id, not a new run
    assert again == first and all(str(d).startswith(utility_split.TAG) for d in details.values())
    record = json.loads(run_json.read_text())
    assert record["cache"]["attack"] is True  # the attack was not trained or run again
    assert record["cache"]["eval_batches_reused"] == record["cache"]["eval_batches"]
    dry = CliRunner().invoke(main, [*args, "--dry-run"])
    assert dry.exit_code == 0 and f"{run_id}" in dry.output and ": done\n" in dry.output, dry.output
    assert np.isfinite(list(again.values())).all()
