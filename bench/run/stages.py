"""The cached stages before evaluation: victim features, the defense's utility, and the trained attack.

Each stage's cache key holds exactly its inputs, plugin code versions included, so a fixed bug in an extractor,
defense or attack never reuses an old result, and a replaced image file (new size or modification time) never
reuses old features.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.errors import BenchError
from bench.features import FeatureSet, check_coverage
from bench.nn import distributed
from bench.plugins import Dataset, Extractor, FitContext, ImageSet, UtilityContext, UtilityTraining, Victim
from bench.run.cache import StageCache
from bench.run.plan import Plan, fault_point
from bench.run.utility_split import EvaluationSplit
from bench.hashing import digest
from bench.training import speedups_enabled


@dataclass
class SplitFeatures:
    """A split's victim features with the ids that loaded, their labels, and the files that did not load."""

    features: FeatureSet
    ids: list[str]
    labels: dict[str, np.ndarray]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    cache_hit: bool = False


def unused_split(like: SplitFeatures) -> SplitFeatures:
    """The attacker's split of an attack that declares `uses_auxiliary = False`: no record, no id, no label."""
    return SplitFeatures(like.features.subset([]), [], {k: np.asarray(v)[:0] for k, v in like.labels.items()})


def describe_skipped(skipped: list[tuple[str, str]], limit: int = 5) -> str:
    """`a.jpg (truncated file), b.png (not an image), ...`: the first unreadable files with their reasons."""
    shown = ", ".join(f"{name} ({reason})" for name, reason in skipped[:limit])
    return shown + (f" and {len(skipped) - limit} more" if len(skipped) > limit else "")


def load_split(ds: Dataset, ids: list[str], size: int, what: str) -> ImageSet:
    """Images of one split; a split where no file loads is a clear error naming the files and the reasons."""
    images = ds.load(ids, size)
    if len(images) == 0:
        detail = f": {describe_skipped(images.skipped)}" if images.skipped else ""
        raise BenchError(f"no readable image in the {what} split of {ds.name!r} ({len(ids)} files){detail}")
    return images


def split_features(cache: StageCache, ds: Dataset, ids: list[str], size: int, extractor: Extractor, what: str,
                   progress: bool) -> SplitFeatures:
    """Victim features of one split, from the cache when present (keyed by content, ids, size, extractor)."""
    inputs = {"dataset": ds.fingerprint(), "ids": digest(ids, 32), "size": int(size), "extractor": extractor.config()}
    key = cache.key(inputs)

    def build(tmp: Path) -> None:
        images = load_split(ds, ids, size, what)
        feats = extractor.extract(images, progress=progress)
        check_coverage(feats, len(images), f"extractor {extractor.name!r}")
        feats.save(tmp / "features")
        np.savez(tmp / "labels.npz", **{k: np.asarray(v) for k, v in images.labels.items()})
        (tmp / "ids.json").write_text(json.dumps({"ids": list(images.ids), "skipped": images.skipped}))

    def load(folder: Path) -> SplitFeatures:
        info = json.loads((folder / "ids.json").read_text())
        with np.load(folder / "labels.npz", allow_pickle=False) as npz:
            labels = {k: np.array(npz[k]) for k in npz.files}
        return SplitFeatures(FeatureSet.load(folder / "features"), list(info["ids"]), labels,
                             [tuple(s) for s in info["skipped"]])

    found, hit = cache.load_or_create("features", key, inputs, build, load)
    found.cache_hit = hit
    return found


def trained_victim(cache: StageCache, p: Plan, progress: bool) -> dict[str, Any] | None:
    """Train the extractor's victim on the attacker/train split, or load it from the cache; None when the extractor
    trains no victim. Keyed by the extractor's config (victim, width, training hyper-parameters, seed and a digest
    of the training split's dataset fingerprint and ids, see `Extractor.bind`) and the size; returns what the
    training reported (steps, train accuracy, wall time)."""
    training = p.extractor.victim_training()
    if training is None:
        return None
    inputs = {"extractor": p.extractor.config(), "dataset": p.aux_dataset.fingerprint(),
              "ids": digest(p.train_ids, 32), "size": int(p.spec.extract_size)}
    key = cache.key(inputs)

    def build(tmp: Path) -> None:
        images = load_split(p.aux_dataset, p.train_ids, p.spec.extract_size, "victim training")
        t0 = time.perf_counter()
        state = p.extractor.train_victim(images, progress=progress)
        state["info"] = {**dict(state.get("info", {})), "train_s": round(time.perf_counter() - t0, 3),
                         "n_train_images": len(images)}
        torch.save(state, tmp / "victim.pt")

    def load(folder: Path) -> dict[str, Any]:
        state = torch.load(folder / "victim.pt", map_location="cpu", weights_only=True)
        p.extractor.load_victim(state)
        return dict(state.get("info", {}))

    info, hit = cache.load_or_create("victims", key, inputs, build, load)
    return {**info, "from_cache": hit}


def victim_accuracy(cache: StageCache, p: Plan, evaluation: EvaluationSplit) -> dict[str, Any]:
    """The white-box victim's classification accuracy on the run's utility evaluation split (images of the test
    split disjoint from the private ones, bench/run/utility_split.py), cached by the extractor's config and that
    split; {} for extractors without a classifier to report on."""
    if not reports_victim_accuracy(p):
        return {}
    inputs = {"dataset": p.dataset.fingerprint(), "ids": digest(evaluation.ids, 32),
              "size": int(p.spec.extract_size), "extractor": p.extractor.config(), "on": "evaluation"}
    key = cache.key(inputs)

    def build(tmp: Path) -> None:
        images = load_split(p.dataset, evaluation.ids, p.spec.extract_size, "utility evaluation")
        report = dict(p.extractor.victim_accuracy(images))
        if report:
            report.update({"n": len(images), "on": evaluation.convention})
        (tmp / "accuracy.json").write_text(json.dumps(report, sort_keys=True))

    report, _ = cache.load_or_create("victim-accuracy", key, inputs, build,
                                     lambda folder: dict(json.loads((folder / "accuracy.json").read_text())))
    return report


def reports_victim_accuracy(p: Plan) -> bool:
    """Whether the run's extractor is white-box with a classifier whose accuracy it reports (``victim-accuracy``)."""
    return type(p.extractor).white_box and type(p.extractor).victim_accuracy is not Extractor.victim_accuracy


def needs_evaluation_split(p: Plan) -> bool:
    """Whether the run measures an accuracy among its utilities: ``victim-accuracy`` (a white-box extractor with a
    classifier) or a defense utility that trains the victim (`utility_source` "training")."""
    return reports_victim_accuracy(p) or p.defense.utility_source(p.extractor.produces) == "training"


def check_learnable(feats: FeatureSet, what: str, uses_features: bool = True) -> None:
    """A split in which no record holds any feature gives the attack nothing to learn: say so before training.

    An attack that declares `uses_features = False` (the mean-image floor) learns nothing from features, so a
    featureless split is no obstacle to it and is not refused.
    """
    if uses_features and len(feats) and feats.empty_records() == len(feats):
        raise BenchError(f"none of the {len(feats)} images of the {what} split has any {feats.kind} features "
                         "(blank, tiny or featureless images?); the attack would have nothing to learn from")


def defense_utility(cache: StageCache, p: Plan, private: SplitFeatures,
                    evaluation: EvaluationSplit | None = None) -> dict[str, float]:
    """The defense's utility figures, once per (data, extractor, defense parameters, seed); a utility that trains
    the victim under the defense (`utility_source` "training") is also keyed by the train split, the profile and
    the evaluation split it is measured on (`evaluation`, required then: never the private images instead)."""
    source = p.defense.utility_source(p.extractor.produces)
    if source is None:  # the defense reports no utility figure for this release
        return {}
    inputs = {"dataset": p.dataset.fingerprint(), "ids": digest(private.ids, 32), "size": p.spec.extract_size,
              "extractor": p.extractor.config(), "defense": p.defense.config(), "seed": p.spec.seed}
    if source == "training":
        if evaluation is None:
            raise BenchError("a utility that trains the victim is measured on the utility evaluation split; none given")
        inputs["training"] = {"dataset": p.aux_dataset.fingerprint(), "ids": digest(p.train_ids, 32),
                              "profile": p.profile.name}
        inputs["evaluation"] = digest(evaluation.ids, 32)
    key = cache.key(inputs)

    def build(tmp: Path) -> None:
        images = load_split(p.dataset, private.ids, p.spec.extract_size, "private")
        training = evaluated = None
        if source == "training":
            assert evaluation is not None
            evaluated = load_split(p.dataset, evaluation.ids, p.spec.extract_size, "utility evaluation")
            from bench.run.defend import client_victim  # (defend imports this module)
            training = UtilityTraining(images=load_split(p.aux_dataset, p.train_ids, p.spec.extract_size, "train"),
                                       profile=p.profile.name, victim=client_victim(p))
        ctx = UtilityContext(images=images, features=private.features, extractor=p.extractor, seed=p.spec.seed,
                             training=training, evaluation=evaluated)
        figures = {str(k): float(v) for k, v in p.defense.utility(ctx).items()}
        (tmp / "utility.json").write_text(json.dumps(figures, sort_keys=True))

    figures, _ = cache.load_or_create("utility", key, inputs, build,
                                      lambda folder: dict(json.loads((folder / "utility.json").read_text())))
    return figures


@dataclass
class TrainedAttack:
    """Whether the checkpoint came from the cache, and the provenance of the training that made it."""

    cache_hit: bool
    provenance: dict[str, Any]
    notes: list[str]


def trained_attack(cache: StageCache, p: Plan, aux: FeatureSet, aux_images: torch.Tensor, aux_split: SplitFeatures,
                   progress: bool, environment: dict[str, Any], victim: Victim | None = None) -> TrainedAttack:
    """Fit the attack or load its checkpoint; keyed by attack, defense, extractor, auxiliary data, profile, seed.

    The checkpoint keeps the provenance of its training (device, wall time, threads, versions), so a run that
    reuses it reports how it was really trained.
    """
    inputs = {"attack": p.attack.config(), "defense": p.defense.config(), "extractor": p.extractor.config(),
              "aux": {"dataset": p.aux_dataset.fingerprint(), "ids": digest(aux_split.ids, 32),
                      "extract_size": p.spec.extract_size},
              "profile": p.profile.name, "seed": p.spec.seed}
    key = cache.key(inputs)

    def build(tmp: Path) -> None:
        ctx = FitContext(defense=p.defense, seed=p.spec.seed, device=p.attack.device, progress=progress,
                         labels=dict(aux_split.labels), ids=list(aux_split.ids), victim=victim)
        t0, c0 = time.perf_counter(), time.process_time()
        p.attack.fit(aux, aux_images, ctx)
        fault_point("during-train")  # a kill here leaves a partial temporary entry that the next writer sweeps
        # CPU time of the whole process (all its threads) while training: steadier than wall time on a busy machine
        provenance = {"device": str(p.attack.device), "train_s": round(time.perf_counter() - t0, 3),
                      "train_cpu_s": round(time.process_time() - c0, 3), "training_speedups": speedups_enabled(),
                      "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **environment}
        if not distributed.is_main():  # every rank trains; rank 0 alone keeps the checkpoint
            return
        torch.save({"spec": p.spec.to_dict(), "notes": list(ctx.notes), "provenance": provenance,
                    "state": p.attack.state_dict()}, tmp / "attack.pt")

    def load(folder: Path) -> dict[str, Any]:
        state = torch.load(folder / "attack.pt", map_location="cpu", weights_only=True)
        p.attack.load_state_dict(state["state"])
        return state

    state, hit = cache.load_or_create("attacks", key, inputs, build, load, every_rank=True)
    return TrainedAttack(hit, dict(state.get("provenance", {})), list(state.get("notes", [])))


def granted_victim(p: Plan) -> Victim | None:
    """A copy of the victim handle for an attack that declares `needs_victim` (plan checked the extractor grants
    it), attached to the attack; None for every other attack, which never sees the victim."""
    if not type(p.attack).needs_victim:
        return None
    # The size this run extracts at: a victim whose shape depends on it (e.g. a LeNet's last layer) is built to
    # match the release also when the features come from the cache and `extract` never ran in this process.
    p.extractor.extract_size = p.spec.extract_size
    own = p.extractor.victim()
    victim = Victim(model=copy.deepcopy(own.model), state=copy.deepcopy(dict(own.state)))
    p.attack.attach_victim(victim)
    return victim
