"""Evaluation: reconstruct (or infer attributes for) the private split batch by batch, and score every metric.

One batch of images is held at a time. Each batch leaves files in the run folder: its reconstructions (lossless
PNG, with their sha256 in `batches/bNNNNN.json`) and, per metric, what the metric computed on it
(`scores/<metric>/bNNNNN.npz`: per-sample values, or a set metric's embeddings). A resumed run reuses a batch
whose files verify and recomputes one that does not (a corrupt or tampered PNG is rebuilt, not trusted); adding
a metric to a finished run scores the existing reconstructions without reconstructing. Metric values carry a
status: ok, unavailable (with the command that fixes it), undefined, not-applicable or failed (with its error).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from bench.features import FeatureSet
from bench.images import ImageReadError, read_image, resize, save_png
from bench.metric_value import FAILED, NOT_APPLICABLE, OK, UNAVAILABLE, UNDEFINED, MetricValue
from bench.plugins import EvalBatch, EvalContext, Metric, MetricUnavailable
from bench.hashing import arrays_sha256, file_sha256
from bench.run.plan import Plan, fault_point
from bench.run_files import recon_path
from bench.hashing import digest
from bench.run.pairing import pair_records
from bench.run.stages import SplitFeatures, load_split


@dataclass
class Evaluation:
    """Everything evaluation produced: per-sample rows, set values, predicted attributes, reuse counts."""

    sample_rows: list[tuple[int, str, str, float | None, str, str]]  # index, id, metric, value, status, version
    set_values: dict[str, MetricValue]
    attributes: list[tuple[int, str, str, str]] = field(default_factory=list)  # index, id, attribute, value
    batches_reused: int = 0
    batches: int = 0
    # Per released record (per-batch releases of an attack that declares `matching`): assignment[j] is the
    # position, in the attack's output order, of the reconstruction paired with the record's j-th original.
    assignment: list[list[int]] = field(default_factory=list)


def quantise(images: torch.Tensor) -> torch.Tensor:
    """What a lossless 8-bit PNG holds: scores are computed on exactly the saved reconstructions."""
    return images.clamp(0, 1).mul(255).round().div(255)


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, sort_keys=True))
    os.replace(tmp, path)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _applicability(p: Plan, m: Metric) -> str | None:
    """Why `m` does not apply to this attack's outputs, or None when it does."""
    outputs = type(p.attack).outputs
    if m.inputs == "attributes" and getattr(m, "attribute", None) in type(p.attack).attributes:
        return None  # an image attack that also predicts the attribute this metric scores
    if m.inputs != outputs:
        return f"{m.name} scores {m.inputs} but attack {p.attack.name!r} outputs {outputs}"
    return None


class _BatchOutputs:
    """One batch's reconstructions (or predicted attributes), reused from the run folder when they verify."""

    def __init__(self, p: Plan, run_dir: Path, released: FeatureSet, k: int, idx: list[int], ids: list[str],
                 records: list[int] | None = None):
        self.p, self.run_dir, self.k, self.idx, self.ids = p, run_dir, k, idx, ids
        self.records = idx if records is None else records  # the released records whose images these are
        self.record_path = run_dir / "batches" / f"b{k:05d}.json"
        self.images_out = type(p.attack).outputs == "images"
        self.recon: torch.Tensor | None = None
        self.originals: torch.Tensor | None = None
        self.assignment: list[list[int]] = []
        self.reused = self._load()
        if not self.reused:
            self._make(released)

    def _load(self) -> bool:
        rec = _read_json(self.record_path)
        if not rec or rec.get("ids") != self.ids or rec.get("indices") != self.idx:
            return False
        if self.images_out:
            paths = [recon_path(self.run_dir, i, s) for i, s in zip(self.idx, self.ids)]
            try:
                if [file_sha256(q) for q in paths] != rec.get("pngs"):
                    return False
                self.recon = torch.stack([read_image(q) for q in paths])
            except (OSError, ImageReadError):
                return False
        self.attributes = {k: np.asarray(v) for k, v in rec.get("attributes", {}).items()}
        if any(a not in self.attributes for a in type(self.p.attack).attributes):
            return False  # written before the attack declared these attributes: rebuild them
        self.assignment = rec.get("assignment", [])
        self.digest = rec["digest"]
        return True

    def _make(self, released: FeatureSet) -> None:
        part = released.subset(self.records)
        rec: dict[str, Any] = {"ids": self.ids, "indices": self.idx}
        self.attributes = {}
        if self.images_out:
            out, pred = self.p.attack.reconstruct_with_attributes(part, progress=False)
            size = self.p.spec.image_size
            if tuple(out.shape) != (len(self.idx), 3, size, size):
                raise RuntimeError(f"attack {self.p.attack.name!r} returned {tuple(out.shape)}, "
                                   f"expected {(len(self.idx), 3, size, size)}")
            self._check_attributes(pred)
            self.recon = quantise(out.detach().float().cpu())
            self.attributes = {k: np.asarray(v) for k, v in pred.items()}
            similarity = type(self.p.attack).matching
            if similarity and released.granularity != "sample":
                self.originals = _originals(self.p, self.ids)
                self.recon, self.attributes, self.assignment = pair_records(
                    self.recon, self.originals, [len(c) for c in part.covers()], similarity, self.attributes)
                rec["assignment"] = self.assignment
            if self.attributes:
                rec["attributes"] = {k: v.tolist() for k, v in self.attributes.items()}
            paths = [recon_path(self.run_dir, i, s) for i, s in zip(self.idx, self.ids)]
            for img, q in zip(self.recon, paths):
                save_png(img, q)
            rec["pngs"] = [file_sha256(q) for q in paths]
        else:
            pred = self.p.attack.predict(part, progress=False)
            self._check_attributes(pred)
            self.attributes = {k: np.asarray(v) for k, v in pred.items()}
            rec["attributes"] = {k: v.tolist() for k, v in self.attributes.items()}
        rec["digest"] = digest(rec, 32)  # (covers the assignment and attributes: reuse restores them)
        self.digest = rec["digest"]
        _write_json(self.record_path, rec)


    def _check_attributes(self, pred: dict[str, np.ndarray]) -> None:
        for name in type(self.p.attack).attributes:
            if name not in pred or len(pred[name]) != len(self.idx):
                raise RuntimeError(f"attack {self.p.attack.name!r} predicted no {len(self.idx)} values "
                                   f"for attribute {name!r}")


def _score_path(run_dir: Path, metric: str, k: int) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_.@%=" else "_" for c in metric)
    return run_dir / "scores" / safe / f"b{k:05d}.npz"


def _load_scores(path: Path, version: str, batch_digest: str) -> dict[str, np.ndarray] | None:
    meta = _read_json(path.with_suffix(".json"))
    if not meta or meta.get("version") != version or meta.get("batch") != batch_digest or not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: np.array(npz[k]) for k in npz.files}
    except (OSError, ValueError):
        return None
    return arrays if arrays_sha256(arrays) == meta.get("sha") else None


def _save_scores(path: Path, arrays: dict[str, np.ndarray], version: str, batch_digest: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.tmp-{os.getpid()}.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    _write_json(path.with_suffix(".json"), {"version": version, "batch": batch_digest, "sha": arrays_sha256(arrays)})


def evaluate(p: Plan, run_dir: Path, released: FeatureSet, private: SplitFeatures, ctx: EvalContext,
             progress: bool) -> Evaluation:
    """Reconstruct and score the private split in fixed batches; verified batches and scores are reused."""
    ids = private.ids
    status: dict[str, tuple[str, str | None]] = {}
    for name, m in p.metrics.items():
        reason = _applicability(p, m)
        if reason:
            status[name] = (NOT_APPLICABLE, reason)
            continue
        try:
            m.prepare(ctx)
        except MetricUnavailable as exc:
            status[name] = (UNAVAILABLE, exc.fix)
        except Exception as exc:  # recorded with its error; the other metrics go on
            status[name] = (FAILED, f"{type(exc).__name__}: {exc}")
    active = [n for n in p.metrics if n not in status]
    parts: dict[str, list[dict[str, np.ndarray]]] = {n: [] for n in active}
    attributes: list[tuple[int, str, str, str]] = []
    groups = _eval_groups(released, len(ids), p.profile.eval_batch)
    order = [i for idx, _ in groups for i in idx]
    reused = 0
    assignment: list[list[int]] = []
    for k, (idx, records) in enumerate(tqdm(groups, desc="Evaluate", unit="batch", disable=not progress)):
        b_ids = [ids[i] for i in idx]
        out = _BatchOutputs(p, run_dir, released, k, idx, b_ids,
                            None if released.granularity == "sample" else records)
        assignment += out.assignment
        for name, values in out.attributes.items():
            attributes += [(i, s, name, str(v)) for i, s, v in zip(idx, b_ids, values.tolist())]
        eb = EvalBatch(idx, b_ids, labels={n: np.asarray(v)[idx] for n, v in private.labels.items()},
                       attributes=out.attributes)
        originals: torch.Tensor | None = out.originals
        computed = False
        for name in [n for n in active if n not in status]:
            m, path = p.metrics[name], _score_path(run_dir, name, k)
            arrays = _load_scores(path, m.version, out.digest)
            if arrays is None:
                if originals is None:
                    originals = _originals(p, b_ids)
                try:
                    with torch.no_grad():
                        arrays = {key: np.asarray(v) for key, v in m.embed(out.recon, originals, eb).items()}
                    if m.level == "sample" and len(arrays.get("values", ())) != len(idx):
                        raise RuntimeError(f"{len(arrays.get('values', ()))} values for {len(idx)} samples")
                except Exception as exc:
                    status[name] = (FAILED, f"{type(exc).__name__}: {exc}")
                    continue
                _save_scores(path, arrays, m.version, out.digest)
                computed = True
            parts[name].append(arrays)
        reused += out.reused and not computed
        fault_point(f"after-eval-batch-{k}")
    ev = _summarise(p, ids, parts, status, attributes, reused, len(groups), order)
    ev.assignment = assignment
    return ev


def _eval_groups(released: FeatureSet, n: int, batch: int) -> list[tuple[list[int], list[int]]]:
    """(image indices, record indices) of each evaluation batch: `batch` consecutive images for per-sample
    releases; whole records (their covered images, at least `batch` per group but the last) for per-batch ones."""
    if released.granularity == "sample":
        return [(list(range(s, min(s + batch, n))), list(range(s, min(s + batch, n)))) for s in range(0, n, batch)]
    groups: list[tuple[list[int], list[int]]] = []
    idx: list[int] = []
    records: list[int] = []
    for r, cover in enumerate(released.covers()):
        idx, records = idx + [int(i) for i in cover], records + [r]
        if len(idx) >= batch:
            groups.append((idx, records))
            idx, records = [], []
    if records:
        groups.append((idx, records))
    return groups


def _originals(p: Plan, ids: Sequence[str]) -> torch.Tensor:
    """The batch's private originals at the scoring size (loaded per batch: the split is never held whole)."""
    images = load_split(p.dataset, list(ids), p.spec.extract_size, "private")
    if list(images.ids) != list(ids):
        missing = sorted(set(ids) - set(images.ids))
        raise RuntimeError(f"private images changed since their features were extracted: {missing[:5]} unreadable")
    return resize(images.images, p.spec.image_size)


def _summarise(p: Plan, ids: list[str], parts: dict[str, list[dict[str, np.ndarray]]],
               status: dict[str, tuple[str, str | None]], attributes: list[tuple[int, str, str, str]],
               reused: int, n_batches: int, order: list[int] | None = None) -> Evaluation:
    rows: list[tuple[int, str, str, float | None, str, str]] = []
    values: dict[str, MetricValue] = {}
    for name, m in p.metrics.items():
        value: float | None = None
        st, detail = status.get(name, (OK, None))
        if st == OK:
            merged = {key: np.concatenate([b[key] for b in parts[name]]) for key in parts[name][0]} \
                if parts[name] else {}
            try:
                value = float(m.aggregate(merged))
            except Exception as exc:
                st, detail = FAILED, f"{type(exc).__name__}: {exc}"
            if st == OK and m.level == "sample":
                at = order if order is not None else list(range(len(ids)))  # the image of each value, in turn
                for i, v in zip(at, np.asarray(merged["values"], dtype=np.float64).tolist()):
                    rows.append((i, ids[i], name, None if v != v else v, OK if v == v else UNDEFINED, m.version))
            if st == OK and value != value:
                st, detail, value = UNDEFINED, "the value is not defined for these inputs (NaN)", None
            elif st == OK:
                detail = m.value_note(len(ids))
        values[name] = MetricValue(name, value, st, detail, len(ids), m.convention, m.version,
                                   bool(m.higher_is_better), tuple(m.value_range))
    return Evaluation(rows, values, attributes, reused, n_batches)
