"""Runs one spec end to end: data -> victim features -> defense -> attack -> outputs -> metrics -> store.

A run is split in two: `compute` (any process, a grid worker included) reads data and writes only files — the
stage cache and the run folder — and returns a `RunOutcome`; `write` (the coordinator, the only SQLite writer)
puts an outcome into the store. `execute` does both in one process, as `bench run` does. Every stage caches its
output under a key of exactly its inputs, so a run that is killed and started again resumes where it stopped,
recomputes nothing that is complete and never duplicates or loses a metric row. The runner knows plugins only
through their interfaces (bench.plugins): it has no idea what SIFT is.

Under torchrun (several ranks, bench.nn.distributed) every rank runs `execute`: rank 0 computes and writes the
stages before training while the others wait and read its cache entries, all ranks train the attack together
(data-parallel), and rank 0 alone keeps the checkpoint and goes on to evaluate, write the run folder and the store;
the other ranks stop after training (`execute` returns None there).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bench.errors import BenchError
from bench.images import resize
from bench.plugins import EvalContext, dataset_label
from bench.run import outputs
from bench.run.cache import StageCache
from bench.run.defend import defended_releases
from bench.run.evaluate import Evaluation, evaluate
from bench.locks import file_lock
from bench.nn import distributed
from bench.run.plan import Plan, RunRequest, fault_point, plan
from bench.hashing import digest
from bench.run.stages import (check_learnable, unused_split, defense_utility, granted_victim, load_split, split_features,
                              needs_evaluation_split, trained_attack, trained_victim, victim_accuracy)
from bench.run.utility_split import evaluation_split
from bench.store import Store
from bench.threads import apply_threads, thread_record


@dataclass
class RunOutcome:
    """What `compute` produced, for the single writer: picklable, no open handles."""

    run_id: str
    config_id: str
    spec: dict[str, Any]
    record: dict[str, Any]
    run_dir: Path
    evaluation: Evaluation
    utility: dict[str, float] = field(default_factory=dict)
    # utility name -> what it was measured on (the store's detail; bench/run/utility_split.py's convention)
    utility_details: dict[str, str] = field(default_factory=dict)


@dataclass
class RunResult:
    """Where a finished run's outputs are and its set-level metric values (with their statuses)."""

    run_id: str
    run_dir: Path
    set_metrics: dict[str, dict[str, Any]]
    leaderboard: Path | None
    record: dict[str, Any] = field(default_factory=dict)


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


def results_folder(results: Path) -> Path:
    """`results` created if needed and checked writable; a file or read-only folder is a clear error."""
    results = Path(results)
    try:
        results.mkdir(parents=True, exist_ok=True)
        probe = results / f".write-test-{time.time_ns()}"
        probe.write_bytes(b"")
        probe.unlink()
    except (FileExistsError, NotADirectoryError):
        raise BenchError(f"--results {results}: not a folder (a file is in the way)") from None
    except PermissionError:
        raise BenchError(f"--results {results}: not writable (permission denied)") from None
    except OSError as exc:
        raise BenchError(f"--results {results}: cannot write there ({exc.strerror or exc})") from None
    return results


def check_parallel(p: Plan) -> None:
    """Under several ranks, refuse (one line) an attack whose training does not split exactly over them."""
    if not distributed.active():
        return
    from bench.training import LearnedAttack, parallel_refusal

    if not (isinstance(p.attack, LearnedAttack) and type(p.attack).shards_exactly):
        raise BenchError(parallel_refusal(p.spec.attack))


def parallel_record() -> dict[str, Any]:
    """How many processes trained (run.json's `distributed`): world size and backend (1 and None alone)."""
    import torch.distributed as dist

    size = distributed.world()[1] if distributed.active() else 1
    return {"world_size": size, "backend": dist.get_backend() if distributed.active() else None}


def compute(req: RunRequest, p: Plan | None = None) -> RunOutcome | None:
    """Compute (or resume) one run; writes only files, never the store. Safe under concurrent processes.
    A rank other than 0 of a data-parallel run writes nothing, trains its share and returns None."""
    apply_threads(req.threads)
    threads = thread_record()
    p = p or plan(req)
    check_parallel(p)
    if not distributed.is_main():
        return _compute_locked(req, p, StageCache(Path(req.results) / "cache"), Path(req.results), threads)
    results = results_folder(req.results)
    cache = StageCache(results / "cache")
    run_id = p.spec.run_id
    run_dir = results / "runs" / run_id
    with file_lock(results / "runs" / f"{run_id}.lock"):  # a second process on the same run waits, then reuses
        run_dir.mkdir(parents=True, exist_ok=True)
        return _compute_locked(req, p, cache, run_dir, threads)


def _compute_locked(req: RunRequest, p: Plan, cache: StageCache, run_dir: Path,
                    threads: dict[str, Any]) -> RunOutcome | None:
    timer = _Timer()
    torch.manual_seed(p.spec.seed)
    with timer("victim"):
        victim_training = trained_victim(cache, p, req.progress)
    uses_aux = type(p.attack).uses_auxiliary
    with timer("extract"):
        private = split_features(cache, p.dataset, p.test_ids, p.spec.extract_size, p.extractor, "private",
                                 req.progress)
        aux = (split_features(cache, p.aux_dataset, p.train_ids, p.spec.extract_size, p.extractor, "auxiliary",
                              req.progress) if uses_aux else unused_split(private))
    fault_point("after-features")
    with timer("defend"):
        # The victim protects with its secret keys; the attacker simulates the defense with its own, or queries
        # the victim's protected API when the defense runs inside it; a client-side defense acts on each split's
        # images before the release (bench.run.defend).
        released, aux_released = defended_releases(p, private, aux)
    with timer("utility"):
        # Accuracies (a gradient defense's fl-accuracy, victim-accuracy) are measured on the utility evaluation
        # split: test images disjoint from the private ones (bench/run/utility_split.py), never on the private split.
        evaluated = needs_evaluation_split(p)
        evaluation = evaluation_split(p) if evaluated else None
        utility = defense_utility(cache, p, private, evaluation)
        details: dict[str, str] = {}
        if evaluation is not None and p.defense.utility_source(p.extractor.produces) == "training":
            details = {k: evaluation.convention for k in utility}
        accuracy = victim_accuracy(cache, p, evaluation) if evaluation is not None else {}
        if "test_accuracy" in accuracy:  # the victim classifier's utility, a leaderboard column like any utility
            utility = {**utility, "victim-accuracy": float(accuracy["test_accuracy"])}
            details["victim-accuracy"] = str(accuracy.get("on", ""))
    with timer("load"):
        aux_images = (resize(load_split(p.aux_dataset, aux.ids, p.spec.extract_size, "auxiliary").images,
                             p.spec.image_size) if uses_aux
                      else torch.zeros(0, 3, p.spec.image_size, p.spec.image_size))
    check_learnable(aux_released, "auxiliary", type(p.attack).uses_features)
    environment = {"threads": threads, "versions": outputs.package_versions(), "distributed": parallel_record()}
    victim = granted_victim(p)
    with timer("train"):
        trained = trained_attack(cache, p, aux_released, aux_images, aux, req.progress, environment, victim)
    fault_point("after-train")
    if not distributed.is_main():
        return None  # rank 0 evaluates and writes
    ctx = EvalContext(labels=dict(private.labels), ids=list(private.ids), aux_images=aux_images,
                      aux_labels=dict(aux.labels), device=p.attack.device, seed=p.spec.seed,
                      image_size=p.spec.image_size, cache_dir=cache.root / "metrics",
                      reference_key=digest({"dataset": p.dataset.fingerprint(), "ids": digest(private.ids, 32),
                                            "extract_size": p.spec.extract_size,
                                            "image_size": p.spec.image_size}, 20),
                      progress=req.progress, results=cache.root.parent,
                      dataset=dataset_label(p.spec.dataset, p.spec.data_root))
    with timer("evaluate"):
        ev = evaluate(p, run_dir, released, private, ctx, req.progress)
    del aux_images
    record = outputs.run_record(
        p, req, timer.times, trained, ev, utility, threads,
        skipped_files=_listing_skipped(p) + aux.skipped + private.skipped,
        n_train=len(aux.ids) if uses_aux else len(p.train_ids), n_test=len(private.ids),
        victim=victim, private_ids=list(private.ids), released=released,
        victim_report={"training": victim_training, "accuracy": accuracy},
        cache={"features": aux.cache_hit and private.cache_hit, "attack": trained.cache_hit,
               "eval_batches_reused": ev.batches_reused, "eval_batches": ev.batches},
    )
    record["distributed"] = parallel_record()  # this run's processes (a reused checkpoint's: under training)
    if evaluation is not None:  # what the accuracies among the utilities were measured on
        record["utility_evaluation"] = {**evaluation.record(), "figures": sorted(details)}
    outputs.write_run_files(run_dir, record, p, private.ids, released, ev)
    fault_point("before-finish")
    return RunOutcome(run_id=p.spec.run_id, config_id=p.spec.config_id, spec=p.spec.to_dict(), record=record,
                      run_dir=run_dir, evaluation=ev, utility=utility, utility_details=details)


def _listing_skipped(p: Plan) -> list[tuple[str, str]]:
    """Files left out when the data folders were listed (e.g. a dangling symlink), with the reason, once each."""
    found: list[tuple[str, str]] = []
    for ds in dict.fromkeys([p.aux_dataset, p.dataset]):
        found += [tuple(s) for s in getattr(ds, "listing_skipped", [])]
    return list(dict.fromkeys(found))


def write(store: Store, outcome: RunOutcome) -> None:
    """Put one outcome of a run already started in the store (`Store.start_run`, once, before computing) into it
    (idempotent: re-writing a run replaces its rows, never duplicates them)."""
    ev = outcome.evaluation
    store.add_sample_metrics(outcome.run_id, ev.sample_rows)
    for name, v in ev.set_values.items():
        store.set_set_metric(outcome.run_id, name, float("nan") if v.value is None else v.value, v.n, v.convention,
                             status=v.status, detail=v.detail, version=v.version,
                             higher_is_better=v.higher_is_better, value_range=v.value_range)
    if ev.attributes:
        store.add_attributes(outcome.run_id, ev.attributes)
    for name, value in outcome.utility.items():
        store.set_utility(outcome.run_id, name, value, detail=outcome.utility_details.get(name))
    store.finish_run(outcome.run_id, outcome.record)


def execute(req: RunRequest) -> RunResult | None:
    """Run (or resume) one spec, write every output and refresh the leaderboard; the function behind `bench run`.
    On a rank other than 0 of a data-parallel run: train its share, write nothing, return None."""
    from bench.report.leaderboard import refresh_leaderboard

    p = plan(req)
    check_parallel(p)  # before the store records a run
    if not distributed.is_main():
        compute(req, p)
        return None
    results = results_folder(req.results)
    with Store(results / "bench.sqlite") as store:  # opened once; no transaction is held while computing
        store.start_run(p.spec.run_id, p.spec.to_dict(), p.spec.config_id)
        try:
            outcome = compute(req, p)
            assert outcome is not None  # rank 0 (or one process) always has one
        except BaseException as exc:
            store.fail_run(p.spec.run_id, f"{type(exc).__name__}: {exc}")
            raise
        write(store, outcome)
        set_metrics = store.set_metrics(outcome.run_id)
        board = refresh_leaderboard(store, results, p.spec.dataset)
    return RunResult(outcome.run_id, outcome.run_dir, set_metrics, board, outcome.record)
