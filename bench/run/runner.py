"""Runs one spec end to end: data -> victim features -> defense -> attack -> reconstructions -> metrics -> store.

Every stage caches its output under a key of exactly its inputs, so a run that is killed and started again
resumes where it stopped, recomputes nothing that is complete and never duplicates or loses a metric row.
The runner knows plugins only through their interfaces (bench.plugins): it has no idea what SIFT is.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from bench.run import outputs
from bench.run.cache import StageCache
from bench.run.plan import Plan, RunRequest, RunResult, fault_point, plan
from bench.errors import BenchError, IncompatibleError
from bench.features import FeatureSet, FeatureSpec
from bench.images import read_image, resize, save_png
from bench.plugins import Attack, Dataset, Defense, Extractor, FitContext, ImageSet, Metric, seeded_rng
from bench.profiles import RunProfile, get_profile
from bench.run.spec import RunSpec, digest
from bench.run.splits import split_cross, split_ids
from bench.store.db import Store

class _Timer:
    """Wall time per stage, recorded in run.json."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}

    def __call__(self, name: str) -> "_Timer":
        self._name, self._t0 = name, time.perf_counter()
        return self

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        self.times[self._name] = round(self.times.get(self._name, 0.0) + time.perf_counter() - self._t0, 3)


def _load_images(ds: Dataset, ids: list[str], size: int, what: str) -> ImageSet:
    images = ds.load(ids, size)
    if len(images) == 0:
        raise BenchError(f"no readable image in the {what} split of {ds.name!r}")
    return images


def _features(cache: StageCache, ds: Dataset, images: ImageSet, extractor: Extractor, split: str,
              progress: bool) -> tuple[FeatureSet, bool]:
    """Victim features of `images`, from the cache when present (keyed by dataset, ids, extractor, size)."""
    inputs = {"dataset": ds.fingerprint(), "split": split, "ids": digest(images.ids, 32),
              "size": int(images.images.shape[-1]), "extractor": extractor.config()}
    key = cache.key(inputs)
    hit = cache.lookup("features", key)
    if hit is not None:
        return FeatureSet.load(hit), True
    feats = extractor.extract(images, progress=progress)
    if len(feats) != len(images):
        raise RuntimeError(f"extractor {extractor.name!r} returned {len(feats)} records for {len(images)} images")
    with cache.writing("features", key, inputs) as tmp:
        feats.save(tmp)
    return FeatureSet.load(cache.path("features", key)), False


def _trained_attack(cache: StageCache, p: Plan, aux_feats: FeatureSet, aux_targets: torch.Tensor,
                    aux_ids: list[str], progress: bool, notes: list[str]) -> bool:
    """Fit the attack or load its checkpoint; keyed by attack, defense, auxiliary data, profile and seed."""
    inputs = {"attack": p.attack.config(), "defense": p.defense.config(), "extractor": p.extractor.config(),
              "aux": {"dataset": p.aux_dataset.fingerprint(), "ids": digest(aux_ids, 32),
                      "extract_size": p.spec.extract_size},
              "profile": p.profile.name, "seed": p.spec.seed}
    key = cache.key(inputs)
    hit = cache.lookup("attacks", key)
    if hit is not None:
        state = torch.load(hit / "attack.pt", map_location="cpu", weights_only=True)
        p.attack.load_state_dict(state["state"])
        notes.extend(n for n in state.get("notes", []) if n not in notes)
        return True
    ctx = FitContext(defense=p.defense, seed=p.spec.seed, device=p.attack.device, progress=progress)
    p.attack.fit(aux_feats, aux_targets, ctx)
    notes.extend(n for n in ctx.notes if n not in notes)
    with cache.writing("attacks", key, inputs) as tmp:
        torch.save({"spec": p.spec.to_dict(), "notes": ctx.notes, "state": p.attack.state_dict()}, tmp / "attack.pt")
    return False


def _quantise(images: torch.Tensor) -> torch.Tensor:
    """What a lossless 8-bit PNG holds: scores are computed on exactly the saved reconstructions."""
    return images.clamp(0, 1).mul(255).round().div(255)


def recon_path(run_dir: Path, index: int, sample_id: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in sample_id)[-60:]
    return run_dir / "reconstructions" / f"{index:05d}_{safe}.png"


def _evaluate(store: Store, p: Plan, run_dir: Path, released: FeatureSet, originals: torch.Tensor,
              test_ids: list[str], progress: bool) -> int:
    """Reconstruct and score the private split in fixed batches; complete batches are skipped on resume."""
    per_sample = [n for n, m in p.metrics.items() if m.level == "sample"]
    done = store.sample_indices_done(p.spec.run_id, per_sample)
    batch = p.profile.eval_batch
    starts = list(range(0, len(test_ids), batch))
    skipped = 0
    for start in tqdm(starts, desc="Evaluate", unit="batch", disable=not progress):
        idx = list(range(start, min(start + batch, len(test_ids))))
        paths = [recon_path(run_dir, i, test_ids[i]) for i in idx]
        if all(i in done for i in idx) and all(pth.is_file() for pth in paths):
            skipped += 1
            continue
        recon = p.attack.reconstruct(released.subset(idx), progress=False)
        if recon.shape != originals[idx].shape:
            raise RuntimeError(f"attack {p.attack.name!r} returned {tuple(recon.shape)}, "
                               f"expected {tuple(originals[idx].shape)}")
        recon = _quantise(recon.float().cpu())
        for i, pth in zip(range(len(idx)), paths):
            save_png(recon[i], pth)
        rows = []
        for name in per_sample:
            values = p.metrics[name].per_sample(recon, originals[idx]).double().tolist()
            rows += [(i, test_ids[i], name, v) for i, v in zip(idx, values)]
        store.add_sample_metrics(p.spec.run_id, rows)
        fault_point(f"after-eval-batch-{start // batch}")
    return skipped


def load_reconstructions(run_dir: Path, test_ids: Sequence[str]) -> torch.Tensor:
    return torch.stack([read_image(recon_path(run_dir, i, sid)) for i, sid in enumerate(test_ids)])


def execute(req: RunRequest) -> RunResult:
    """Run (or resume) one spec and write every output; the function behind `bench run`."""
    p = plan(req)
    results = Path(req.results)
    cache = StageCache(results / "cache")
    run_id = p.spec.run_id
    run_dir = results / "runs" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    timer, notes = _Timer(), []
    torch.manual_seed(p.spec.seed)
    with Store(results / "bench.sqlite") as store:
        store.start_run(run_id, p.spec.to_dict())
        try:
            with timer("load"):
                train_imgs = _load_images(p.aux_dataset, p.train_ids, p.spec.extract_size, "auxiliary")
                test_imgs = _load_images(p.dataset, p.test_ids, p.spec.extract_size, "private")
            with timer("extract"):
                train_feats, hit_tr = _features(cache, p.aux_dataset, train_imgs, p.extractor, "aux", req.progress)
                test_feats, hit_te = _features(cache, p.dataset, test_imgs, p.extractor, "private", req.progress)
            fault_point("after-features")
            with timer("defend"):
                # The victim protects with its secret keys; the attacker simulates the defense with its own.
                released = p.defense.protect(test_feats, seeded_rng(p.spec.seed, "victim-keys"))
                aux_released = p.defense.protect(train_feats, seeded_rng(p.spec.seed, "attacker-keys"))
            train_targets = resize(train_imgs.images, p.spec.image_size)
            originals = resize(test_imgs.images, p.spec.image_size)
            with timer("train"):
                hit_attack = _trained_attack(cache, p, aux_released, train_targets, train_imgs.ids, req.progress,
                                             notes)
            fault_point("after-train")
            with timer("evaluate"):
                skipped = _evaluate(store, p, run_dir, released, originals, test_imgs.ids, req.progress)
            with timer("set-metrics"):
                recon = load_reconstructions(run_dir, test_imgs.ids)
                per_sample: dict[str, list[float]] = {}
                for row in store.sample_metrics(run_id):
                    per_sample.setdefault(row["metric"], []).append(np.nan if row["value"] is None else row["value"])
                for name, metric in p.metrics.items():
                    if metric.level == "sample":
                        value = float(np.mean(per_sample[name]))
                    else:
                        from bench.plugins import EvalBatch
                        batch = EvalBatch(list(range(len(test_imgs))), list(test_imgs.ids))
                        value = metric.aggregate(metric.embed(recon, originals, batch))
                    store.set_set_metric(run_id, name, value, len(test_imgs), metric.convention)
            set_metrics = store.set_metrics(run_id)
            record = outputs.run_record(
                p, run_id, timer.times, notes, set_metrics, skipped_files=train_imgs.skipped + test_imgs.skipped,
                n_train=len(train_imgs), n_test=len(test_imgs), device=str(p.attack.device),
                cache={"features": bool(hit_tr and hit_te), "attack": hit_attack, "eval_batches_reused": skipped},
            )
            outputs.write_run_files(store, run_dir, record, test_imgs.ids, test_imgs.images, originals, recon,
                                    released, p.dataset.note)
            fault_point("before-finish")
            store.finish_run(run_id, record)
            board = outputs.refresh_leaderboard(store, results, p.spec.dataset)
        except BaseException as exc:
            store.fail_run(run_id, f"{type(exc).__name__}: {exc}")
            raise
    return RunResult(run_id, run_dir, set_metrics, board, record)
