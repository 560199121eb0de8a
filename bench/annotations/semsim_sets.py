"""The annotation sets SemSim trains on: human "recognisable" answers, as triplets of an original, a reconstruction
judged recognisable and one judged not, with who labelled them and how many.

SemSim (Sun et al., NeurIPS 2023) trains its embedding network on such triplets (training: semsim_training.py,
checkpoints: semsim_save.py and bench/semsim_checkpoint.py). Annotations come from one of two sources:

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
scores the originals it was trained on). `shortfalls` says what a set lacks against MINIMUM (at least 2 human
annotators, 100 annotated reconstructions and 10 originals; a release-layout folder records no annotators, so only
the counts apply); training such a set needs `--allow-demo`, which marks the checkpoint DEMO.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from bench.annotations.semsim_layout import LAYOUT_HELP, parse_layout
from bench.annotations.transfer import is_constructed
from bench.errors import BenchError
from bench.hashing import canonical_json, file_sha256
from bench.images import ImageReadError, read_image, resize
from bench.plugins import dataset_label
from bench.semsim_checkpoint import MINIMUM


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
