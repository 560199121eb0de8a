"""SemSim's embedding network: human annotations in, a verified checkpoint in the weights cache out.

SemSim (Sun et al., NeurIPS 2023) trains a CIFAR ResNet-18 (classifier = identity, 512-d) with a triplet margin
loss (margin 1, p=2): anchor = an original image, positive = a reconstruction of it that humans judged
recognisable, negative = one judged unrecognisable. Annotations come from one of two sources:

- `store`: the `annotations` table of a results store (kind "recognisable", label 1/0 per reconstruction of a
  run; several annotators are merged by majority, ties are left out; imported rows that belong to no run, such as
  the SemSim release's, are read from their folder instead). The original is loaded from the run's
  dataset; the reconstruction is the run's saved PNG. An original with no unrecognisable reconstruction takes
  its negative from the unrecognisable reconstructions of other originals.
- a folder in the SemSim release layout: `<id>/` holds the original `*_ori.png` and recognisable reconstructions,
  `-<id>/` the unrecognisable ones of that id, `others/` extra negatives (used for ids without their own).

Provenance: every annotation set records who labelled it (`human`, `constructed` when every annotator id begins
`constructed`, `mixed`, or `not recorded` for a release-layout folder) and how much: annotators, answers,
reconstructions, originals, triplets per epoch, and the originals themselves (so that the metric can warn when it
scores the originals it was trained on). Training refuses a set under MINIMUM (at least 2 human annotators, 100
annotated reconstructions and 10 originals; a release-layout folder records no annotators, so only the counts
apply) unless `--allow-demo`, which marks the checkpoint DEMO, and every value scored with it.

Checkpoints are bound to a results folder: they live in `RESULTS/semsim/` beside `manifest.json`, which lists each
file with its sha256, the annotation set it was trained on (description, provenance and content hash), the
training settings and the final loss; the metric `semsim` of a run in RESULTS uses the newest checkpoint of
RESULTS/semsim only, never one of another results folder. A checkpoint holds tensors, numbers, strings, lists and
dicts only and is loaded with torch.load(weights_only=True) after its sha256 matches the manifest.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from bench import weights
from bench.annotations.semsim_layout import LAYOUT_HELP, parse_layout
from bench.annotations.transfer import is_constructed
from bench.errors import BenchError
from bench.hashing import canonical_json, file_sha256
from bench.images import ImageReadError, read_image, resize
from bench.plugins import dataset_label
from bench.semsim_checkpoint import (ARCH, CHECKPOINT_FORMAT, CIFAR100_MEAN, CIFAR100_STD, DEMO_MARK,  # noqa: F401
                                     FORMAT_VERSION, MANIFEST_NAME, MINIMUM, SEMSIM_FOLDER, TRAIN_FIX, build_model,
                                     embedder, legacy_dir, load_checkpoint, manifest_path, model_config, newest,
                                     normalise, provenance_text, read_manifest, semsim_dir)



# ------------------------------------------------------------------------------------------- annotation sets
@dataclass
class Group:
    """One original (anchor) with the indices of its recognisable and unrecognisable reconstructions."""

    key: str
    anchor: int
    positives: list[int] = field(default_factory=list)
    negatives: list[int] = field(default_factory=list)


@dataclass
class AnnotationSet:
    """Images at the training size (U×3×S×S in [0, 1]), their names, the groups and the extra-negative pool."""

    images: torch.Tensor
    names: list[str]
    groups: list[Group]
    extra: list[int]
    description: dict[str, Any]

    def usable(self) -> list[Group]:
        """Groups that yield a triplet: a positive, and a negative of their own or from the extra pool."""
        return [g for g in self.groups if g.positives and (g.negatives or self.extra_for(g))]

    def extra_for(self, g: Group) -> list[int]:
        own = set(g.negatives) | set(g.positives) | {g.anchor}
        return [i for i in self.extra if i not in own]


class _Images:
    """Collects images once each (by content key) and remembers their names and content digests."""

    def __init__(self) -> None:
        self.tensors: list[torch.Tensor] = []
        self.names: list[str] = []
        self.keys: list[str] = []  # name@content-digest, what the annotation-set hash is made of
        self._index: dict[str, int] = {}

    def add(self, image: torch.Tensor, name: str, content: str) -> int:
        key = f"{name}@{content[:16]}"
        if key not in self._index:
            self._index[key] = len(self.tensors)
            self.tensors.append(image)
            self.names.append(name)
            self.keys.append(key)
        return self._index[key]

    def stack(self, size: int) -> torch.Tensor:
        return torch.stack(self.tensors) if self.tensors else torch.zeros(0, 3, size, size)


def _set_hash(groups: Sequence[Group], extra: Sequence[int], keys: Sequence[str]) -> str:
    """sha256 of the sorted (anchor, positive/negative file, label) list, files named by path and content."""
    rows = []
    for g in groups:
        rows += [(keys[g.anchor], keys[i], 1) for i in g.positives]
        rows += [(keys[g.anchor], keys[i], 0) for i in g.negatives]
    rows += [("others", keys[i], 0) for i in extra]
    return hashlib.sha256(canonical_json(sorted(rows)).encode()).hexdigest()


def _counts(groups: Sequence[Group], extra: Sequence[int]) -> dict[str, int]:
    return {"ids": len(groups), "positives": sum(len(g.positives) for g in groups),
            "negatives": sum(len(g.negatives) for g in groups), "extra_negatives": len(extra)}




def shortfalls(prov: dict[str, Any]) -> list[str]:
    """What the set lacks for publishable values (empty when it meets MINIMUM)."""
    short = []
    if prov.get("labels") in ("constructed", "mixed"):
        short.append(f"{prov['constructed_annotators']} annotator(s) are constructed (ids beginning 'constructed'), "
                     "not human")
    human = prov.get("human_annotators")
    if human is not None and human < MINIMUM["human_annotators"]:
        short.append(f"{human} human annotator(s) (need >= {MINIMUM['human_annotators']})")
    for key in ("reconstructions", "originals"):
        if int(prov.get(key) or 0) < MINIMUM[key]:
            short.append(f"{prov.get(key)} {key} (need >= {MINIMUM[key]})")
    return short


def _tensor_digest(image: torch.Tensor) -> str:
    return hashlib.sha256(image.mul(255).round().to(torch.uint8).numpy().tobytes()).hexdigest()


def load_folder(root: Path, size: int) -> AnnotationSet:
    """A folder in the SemSim release layout, every image read at size×size (bilinear, antialiased)."""
    root = Path(root).expanduser()
    if not root.exists():
        raise BenchError(f"--annotations {root}: no such folder (give `store` or a folder in the SemSim layout: "
                         f"{LAYOUT_HELP})")
    if not root.is_dir():
        raise BenchError(f"--annotations {root}: not a folder")
    layout = parse_layout(root)
    store = _Images()
    skipped: list[tuple[str, str]] = []

    def read(path: Path) -> int | None:
        rel = path.relative_to(root).as_posix()
        try:
            img = read_image(path, size)
        except ImageReadError as exc:
            skipped.append((rel, str(exc)))
            return None
        return store.add(img, rel, file_sha256(path))

    groups: list[Group] = []
    for entry in layout.with_original:
        anchor = read(entry.original)
        if anchor is None:
            continue
        g = Group(entry.ident, anchor)
        for files, into in ((entry.recognisable, g.positives), (entry.unrecognisable, g.negatives)):
            into += [i for p in files if (i := read(p)) is not None]
        groups.append(g)
    extra = [i for p in layout.others if (i := read(p)) is not None]
    no_original = layout.without_original
    others = layout.has_others
    ann = AnnotationSet(store.stack(size), store.names, groups, extra, {})
    usable = ann.usable()
    found = {"id_folders": layout.id_folders, "negative_folders": layout.negative_folders, "others_folder": others,
             "originals": len(groups), **{k: v for k, v in _counts(groups, extra).items() if k != "ids"},
             "ids_without_original": len(no_original), "unreadable_files": len(skipped)}
    if not usable:
        raise BenchError(
            f"{root}: no usable triplet in the SemSim layout; found {found['id_folders']} <id>/ folders, "
            f"{found['negative_folders']} -<id>/ folders, {'an' if others else 'no'} others/ folder, "
            f"{found['originals']} originals (*_ori.png), {found['positives']} recognisable and "
            f"{found['negatives']} unrecognisable reconstructions, {found['extra_negatives']} extra negatives"
            + (f", {len(skipped)} unreadable files" if skipped else "")
            + "; a triplet needs <id>/ with its *_ori.png original and a recognisable reconstruction, and an "
              "unrecognisable one in -<id>/ or others/")
    counts = _counts(usable, extra)
    ann.description = {
        "source": "folder", "path": str(root.resolve()), **counts,
        "found": found, "skipped": [f"{n}: {r}" for n, r in skipped[:20]],
        "hash": _set_hash(usable, extra, store.keys),
        # The release layout records no annotator: who labelled it is "not recorded", only the counts are checked.
        "provenance": {"labels": "not recorded (release-layout folder)", "annotators": None,
                       "human_annotators": None, "constructed_annotators": None, "answers": None,
                       "reconstructions": counts["positives"] + counts["negatives"] + counts["extra_negatives"],
                       "originals": counts["ids"], "triplets": counts["positives"]},
        "originals": {"folder:" + str(root.resolve()): sorted(store.names[g.anchor] for g in usable)},
    }
    ann.groups = usable
    return ann


def load_store(results: Path, size: int) -> AnnotationSet:
    """The "recognisable" annotations of a results store, with originals from each run's dataset."""
    from bench import registry
    from bench.run_files import recon_path
    from bench.store import Store

    results = Path(results).expanduser()
    path = results / "bench.sqlite"
    if not path.is_file():
        raise BenchError(f"--annotations store: no results store at {path} (give --results DIR, the folder that "
                         f"`bench run` wrote and whose reconstructions were annotated)")
    with Store(path) as st:
        kinds = {r["kind"]: r["n"] for r in
                 st._query("SELECT kind, COUNT(*) AS n FROM annotations GROUP BY kind")}
        rows = st._query("SELECT run_id, sample_index, sample_id, AVG(label) AS label, COUNT(*) AS n "
                         "FROM annotations WHERE kind = 'recognisable' AND run_id IS NOT NULL "
                         "GROUP BY run_id, sample_index, sample_id ORDER BY run_id, sample_index")
        specs = {r["run_id"]: st.run(r["run_id"]) for r in rows}
        answers = st._query("SELECT run_id, sample_index, annotator FROM annotations "
                            "WHERE kind = 'recognisable' AND run_id IS NOT NULL")
    if not rows:
        other = ", ".join(f"{k} ({n})" for k, n in sorted(kinds.items()))
        raise BenchError(f"{path}: no annotations of kind 'recognisable' to train on"
                         + (f" (found only: {other})" if other else " (the annotations table is empty)")
                         + "; annotate reconstructions first (label 1 = recognisable, 0 = not)")
    images = _Images()
    problems: list[str] = []
    datasets: dict[tuple[str, str | None], Any] = {}
    by_anchor: dict[str, Group] = {}
    used: dict[tuple[str, int], int] = {}  # (run id, sample index) of each reconstruction read -> its image index
    anchors: dict[str, tuple[str, str]] = {}  # anchor key -> (dataset label, sample id)
    ties = 0
    for r in rows:
        label = float(r["label"])
        if label == 0.5:
            ties += 1
            continue
        run = specs.get(r["run_id"])
        if run is None:
            problems.append(f"run {r['run_id']} is not in the store")
            continue
        spec = json.loads(run["spec_json"])
        rpath = recon_path(results / "runs" / r["run_id"], int(r["sample_index"]), str(r["sample_id"]))
        try:
            recon = read_image(rpath, size)
        except ImageReadError as exc:
            problems.append(f"reconstruction {rpath}: {exc}")
            continue
        ds_key = (spec["dataset"], spec.get("data_root"))
        anchor_key = f"{spec['dataset']}:{r['sample_id']}"
        if anchor_key not in by_anchor:
            try:
                if ds_key not in datasets:
                    root = Path(spec["data_root"]) if spec.get("data_root") else None
                    datasets[ds_key] = registry.datasets.get(spec["dataset"]).obj(root=root)
                loaded = datasets[ds_key].load([str(r["sample_id"])], int(spec["extract_size"]))
            except Exception as exc:  # a moved data folder or an unregistered dataset: skipped and reported
                problems.append(f"original {anchor_key}: {exc}")
                continue
            if len(loaded) != 1:
                problems.append(f"original {anchor_key}: not readable")
                continue
            original = resize(loaded.images, size)[0]
            by_anchor[anchor_key] = Group(anchor_key, images.add(original, anchor_key, _tensor_digest(original)))
            anchors[anchor_key] = (dataset_label(spec["dataset"], spec.get("data_root")), str(r["sample_id"]))
        g = by_anchor[anchor_key]
        i = images.add(recon, f"{r['run_id']}/{int(r['sample_index']):05d}", file_sha256(rpath))
        used[(r["run_id"], int(r["sample_index"]))] = i
        (g.positives if label > 0.5 else g.negatives).append(i)
    groups = list(by_anchor.values())
    extra = sorted({i for g in groups for i in g.negatives})  # unrecognisable reconstructions of any original
    ann = AnnotationSet(images.stack(size), images.names, groups, extra, {})
    usable = ann.usable()
    if not usable:
        c = _counts(groups, [])
        raise BenchError(
            f"{path}: no usable triplet: {len(rows)} annotated reconstructions ({ties} ties left out), "
            f"{c['ids']} originals found, {c['positives']} recognisable and {c['negatives']} unrecognisable; "
            f"training needs at least one of each" + (f"; problems: {'; '.join(problems[:3])}" if problems else ""))
    kept = {g.key for g in usable}
    # The reconstructions training sees: those of the usable originals, and every unrecognisable one (extra pool).
    seen = {i for g in usable for i in g.positives + g.negatives} | set(extra)
    who = [str(a["annotator"]) for a in answers if used.get((a["run_id"], int(a["sample_index"]))) in seen]
    people = set(who)
    made_up = {a for a in people if is_constructed(a)}
    counts = _counts(usable, [])
    originals: dict[str, list[str]] = {}
    for key in sorted(kept):
        label, sid = anchors[key]
        originals.setdefault(label, []).append(sid)
    ann.description = {
        "source": "store", "path": str(path.resolve()), **counts,
        "annotated": len(rows), "ties_left_out": ties, "runs": len({r["run_id"] for r in rows}),
        "problems": problems[:20],
        "hash": _set_hash(usable, [], images.keys),
        "provenance": {"labels": "constructed" if made_up == people else "mixed" if made_up else "human",
                       "annotators": len(people), "human_annotators": len(people - made_up),
                       "constructed_annotators": len(made_up), "answers": len(who),
                       "reconstructions": len(seen), "originals": counts["ids"],
                       "triplets": counts["positives"]},
        "originals": {k: sorted(v) for k, v in originals.items()},
    }
    ann.groups = usable
    ann.extra = extra
    return ann


def load_annotations(source: str, results: Path, size: int) -> AnnotationSet:
    """`store` (the results store's annotations) or a folder in the SemSim release layout."""
    return load_store(results, size) if source == "store" else load_folder(Path(source), size)


# ------------------------------------------------------------------------------------------------- training
@dataclass(frozen=True)
class TrainSettings:
    """What `bench semsim train` was asked for; recorded in the checkpoint and the manifest."""

    epochs: int = 20
    batch_size: int = 32
    lr: float = 1e-3
    margin: float = 1.0
    size: int = 32
    seed: int = 0
    device: str = "cpu"

    def check(self) -> None:
        for name, value, low in (("--epochs", self.epochs, 1), ("--batch-size", self.batch_size, 1),
                                 ("--size", self.size, 8)):
            if value < low:
                raise BenchError(f"{name} must be >= {low} (got {value})")
        if not self.lr > 0 or not np.isfinite(self.lr):
            raise BenchError(f"--lr must be a positive number (got {self.lr})")
        if not self.margin > 0 or not np.isfinite(self.margin):
            raise BenchError(f"--margin must be a positive number (got {self.margin})")
        if not 0 <= self.seed < 2**32:
            raise BenchError(f"--seed must be between 0 and {2**32 - 1} (got {self.seed})")








def _triplets(ann: AnnotationSet, order: torch.Tensor, pairs: list[tuple[int, int, int]],
              gen: torch.Generator) -> tuple[list[int], list[int], list[int]]:
    """Anchor, positive and negative image indices for the pairs in `order`; negatives drawn with `gen`."""
    a, p, n = [], [], []
    for k in order.tolist():
        gi, anchor, positive = pairs[k]
        g = ann.groups[gi]
        pool = g.negatives or ann.extra_for(g)
        a.append(anchor)
        p.append(positive)
        n.append(pool[int(torch.randint(len(pool), (1,), generator=gen))])
    return a, p, n


@dataclass
class TrainResult:
    state_dict: dict[str, torch.Tensor]
    final_loss: float
    losses: list[float]
    triplets_per_epoch: int
    wall_s: float


def train(ann: AnnotationSet, settings: TrainSettings, progress: bool = True) -> TrainResult:
    """Triplet-margin training (p=2) with Adam; deterministic under the seed (initialisation and sampling)."""
    from bench.devices import resolve_device

    settings.check()
    device = resolve_device(settings.device)
    config = model_config(settings.size)
    torch.manual_seed(settings.seed)
    model = build_model(config).to(device)
    gen = torch.Generator().manual_seed(settings.seed)
    opt = torch.optim.Adam(model.parameters(), lr=settings.lr)
    loss_fn = nn.TripletMarginLoss(margin=settings.margin, p=2)
    pairs = [(gi, g.anchor, p) for gi, g in enumerate(ann.groups) for p in g.positives]
    images = ann.images
    losses: list[float] = []
    cudnn = torch.backends.cudnn
    saved = (cudnn.deterministic, cudnn.benchmark)
    cudnn.deterministic, cudnn.benchmark = True, False
    t0 = time.perf_counter()
    try:
        model.train()
        bar = tqdm(range(settings.epochs), desc="SemSim train", unit="epoch", disable=not progress)
        for _ in bar:
            order = torch.randperm(len(pairs), generator=gen)
            total, count = 0.0, 0
            for s in range(0, len(pairs), settings.batch_size):
                a, p, n = _triplets(ann, order[s:s + settings.batch_size], pairs, gen)
                x = normalise(images[a + p + n].to(device), config)
                emb = model(x)
                k = len(a)
                loss = loss_fn(emb[:k], emb[k:2 * k], emb[2 * k:])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * k
                count += k
            losses.append(total / max(count, 1))
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
    finally:
        cudnn.deterministic, cudnn.benchmark = saved
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return TrainResult(state, losses[-1], losses, len(pairs), round(time.perf_counter() - t0, 3))


# ------------------------------------------------------------------------------------- checkpoints, manifest










def _write_manifest(results: Path, entries: list[dict[str, Any]]) -> None:
    path = manifest_path(results)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
    tmp.write_text(json.dumps({"format": "bench-semsim-manifest", "format_version": FORMAT_VERSION,
                               "checkpoints": entries}, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def save_checkpoint(ann: AnnotationSet, settings: TrainSettings, result: TrainResult, results: Path,
                    demo: bool = False) -> dict[str, Any]:
    """Write the checkpoint atomically into RESULTS/semsim and register it in that folder's manifest; its entry.

    `demo` (from --allow-demo) is recorded in the checkpoint and the entry, and the file name starts `demo-`.
    """
    from bench.locks import file_lock

    folder = semsim_dir(results)
    folder.mkdir(parents=True, exist_ok=True)
    training = {"epochs": settings.epochs, "batch_size": settings.batch_size, "lr": settings.lr,
                "margin": settings.margin, "p": 2, "size": settings.size, "seed": settings.seed,
                "device": settings.device, "optimizer": "Adam", "loss": "TripletMarginLoss",
                "triplets_per_epoch": result.triplets_per_epoch, "torch": str(torch.__version__)}
    short = shortfalls(ann.description["provenance"])
    if short and not demo:
        raise BenchError("refusing to save a SemSim checkpoint below the minimum without demo=True: "
                         + "; ".join(short))
    ckpt = {"format": CHECKPOINT_FORMAT, "format_version": FORMAT_VERSION, "config": model_config(settings.size),
            "state_dict": result.state_dict, "annotations": ann.description, "training": training,
            "final_loss": float(result.final_loss), "losses": [float(v) for v in result.losses],
            "demo": bool(demo), "shortfalls": short}
    part = folder / f".semsim-{uuid.uuid4().hex}.part"
    try:
        buf = io.BytesIO()  # a buffer, not the file: the archive's inner folder name would carry the file name
        torch.save(ckpt, buf)
        part.write_bytes(buf.getvalue())
        del buf
        torch.load(part, map_location="cpu", weights_only=True)  # what the metric will do: fail here, not there
        sha = weights.sha256_of(part)
        name = f"{'demo-' if demo else ''}semsim-{ann.description['hash'][:12]}-{sha[:8]}.pt"
        dest = folder / name
        entry = {"file": name, "sha256": sha, "size": part.stat().st_size, "annotations": ann.description,
                 "training": training, "config": ckpt["config"], "final_loss": float(result.final_loss),
                 "wall_s": result.wall_s, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                 "created_ns": time.time_ns(), "demo": bool(demo), "shortfalls": short}
        with file_lock(folder / f"{MANIFEST_NAME}.lock"):
            os.replace(part, dest)
            entries = [e for e in read_manifest(results) if e.get("file") != name]
            _write_manifest(results, entries + [entry])
    finally:
        part.unlink(missing_ok=True)
    return {**entry, "path": str(dest)}


def bind_checkpoint(path: Path, results: Path) -> dict[str, Any]:
    """Bind a checkpoint of another results folder to RESULTS as well (`bench semsim bind`); its new entry.

    The file must be listed, with its sha256, in the manifest beside it (a RESULTS/semsim folder) and load with
    weights_only=True; it is copied into RESULTS/semsim with its manifest entry (provenance and DEMO mark
    unchanged, `bound_from` naming where it came from), so that RESULTS's runs use it from then on.
    """
    from bench.locks import file_lock

    path = Path(path).expanduser()
    if not path.is_file():
        raise BenchError(f"{path}: no such checkpoint file")
    source = path.resolve().parent.parent
    listed = [e for e in read_manifest(source) if e.get("file") == path.name]
    if not listed:
        raise BenchError(f"{path} is not listed in {manifest_path(source)}: only a checkpoint that "
                         "`bench semsim train` registered (with its sha256 and provenance) can be bound")
    entry = listed[-1]
    ckpt = load_checkpoint(entry, source)  # size, sha256, weights_only, format, DEMO flag agree with the manifest
    folder = semsim_dir(results)
    if folder.resolve() == path.resolve().parent:
        raise BenchError(f"{path} is already bound to {results}")
    folder.mkdir(parents=True, exist_ok=True)
    part = folder / f".semsim-{uuid.uuid4().hex}.part"
    try:
        part.write_bytes(path.read_bytes())
        if weights.sha256_of(part) != entry["sha256"]:
            raise BenchError(f"{path} changed while it was copied; try again")
        new = {**entry, "bound_from": str(path.resolve()), "demo": bool(ckpt.get("demo")),
               "created": datetime.datetime.now(datetime.timezone.utc).isoformat(), "created_ns": time.time_ns()}
        with file_lock(folder / f"{MANIFEST_NAME}.lock"):
            os.replace(part, folder / entry["file"])
            entries = [e for e in read_manifest(results) if e.get("file") != entry["file"]]
            _write_manifest(results, entries + [new])
    finally:
        part.unlink(missing_ok=True)
    return {**new, "path": str(folder / entry["file"])}




