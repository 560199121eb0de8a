"""SemSim (Sun et al., NeurIPS 2023): semantic similarity learned from human judgements of reconstructions.

A CIFAR ResNet-18 with its classifier replaced by the identity embeds both images (512-d); the score is the L2
distance between the embeddings of the original and the reconstruction: smaller means more similar, i.e. more
leakage. The network is the one `bench semsim train` fitted with a triplet margin loss on annotations
(bench/annotations/semsim_training.py), loaded through bench/semsim_checkpoint.py. Checkpoints are bound to a results folder: a run
in RESULTS uses the newest checkpoint of RESULTS/semsim/manifest.json (verified by sha256, loaded with
torch.load(weights_only=True)) and never one of another results folder or of the user-wide cache. Its input size
and normalisation come from the checkpoint. Without a checkpoint in RESULTS/semsim the metric is unavailable with
the command that trains one.

The value depends on the checkpoint and on the labels it learned from, so the recorded convention names the
checkpoint's digest and its annotation set (hash and provenance: human or constructed labels, annotators,
answers, reconstructions, originals), the recorded version carries the checkpoint digest (cached scores of
another checkpoint are never reused), and the note stored with every value repeats the provenance, starts
"DEMO ... NOT FOR PUBLICATION" for a checkpoint trained with --allow-demo, and says when the checkpoint was trained
on originals that the run scores (a SemSimOverlap warning is issued too).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable

import torch

from bench.errors import BenchError
from bench.metrics.pixel import check_pair
from bench import metric_conventions
from bench.plugins import EvalContext, Metric, MetricUnavailable

_CHUNK = 64  # image pairs per forward pass

BASE_CONVENTION = ("SemSim: CIFAR ResNet-18 (3x3 stem, no max-pool, fc = identity, 512-d) trained by "
                   "`bench semsim train` (triplet margin loss, margin {margin}, p=2) on annotation set {ann}; "
                   "checkpoint {ckpt}; both images resized to {size}x{size} (bilinear, antialiased), normalised "
                   "with mean {mean} and std {std}; score = L2 distance between the embeddings of original and "
                   "reconstruction (0 = identical, smaller = more leakage); per image, set value = mean over "
                   "images; float64")


class SemSimOverlap(UserWarning):
    """The SemSim checkpoint was trained on originals that the run scores: the values are not held out."""


def _provenance(entry: dict[str, Any]) -> str:
    from bench import semsim_checkpoint as st

    prov = entry["annotations"].get("provenance")
    return st.provenance_text(prov) if prov else "provenance not recorded (a checkpoint of an earlier bench)"


def convention_for(entry: dict[str, Any] | None) -> str:
    """The pinned convention of a manifest entry (the class-level text names the fields left open)."""
    if entry is None:
        return BASE_CONVENTION.format(margin="M", ann="<the checkpoint's annotation-set sha256 and provenance>",
                                      ckpt="<the newest in RESULTS/semsim/manifest.json of the run's results "
                                           "folder>",
                                      size="S", mean="<the checkpoint's>", std="<the checkpoint's>")
    cfg = entry["config"]
    ann = entry["annotations"]
    text = BASE_CONVENTION.format(
        margin=entry["training"].get("margin"),
        ann=f"sha256 {ann['hash']} ({ann.get('source')}; {_provenance(entry)})",
        ckpt=f"{entry['file']} (sha256 {entry['sha256']})", size=cfg["input_size"],
        mean=[round(float(v), 4) for v in cfg["mean"]], std=[round(float(v), 4) for v in cfg["std"]])
    return f"{_demo_mark()}; {text}" if entry.get("demo") else text


def _demo_mark() -> str:
    from bench import semsim_checkpoint as st

    return st.DEMO_MARK


class SemSim(Metric):
    """SemSim: L2 distance between learned embeddings of original and reconstruction; 0 means identical."""

    name = "semsim"
    version = "1"
    higher_is_better = False
    value_range = (0.0, float("inf"))
    needs_weights = True
    convention = convention_for(None)

    def __init__(self) -> None:
        self._embed: Callable[[torch.Tensor], torch.Tensor] | None = None
        self.device = torch.device("cpu")
        self.entry: dict[str, Any] | None = None
        self._note: str | None = None
        self._overlap: tuple[int, int] | None = None
        self._unchecked = False  # a release-layout checkpoint: its originals are files, not dataset items

    def prepare(self, ctx: EvalContext) -> None:
        """Load the newest verified checkpoint of the run's results folder onto the run's device, or report the
        command that trains one; warn when it was trained on originals of this run."""
        if ctx.results is None:
            raise MetricUnavailable("semsim scores only inside a run: its checkpoint is bound to the run's results "
                                    "folder (RESULTS/semsim)")
        self.load(ctx.results, ctx.device)
        self.check_overlap(ctx.dataset, ctx.ids)

    def expected_version(self, results: Path) -> str:
        """What `load` would make the version for RESULTS now, from the manifest alone (no checkpoint read): the
        newest entry's digest, or the bare version without a readable manifest entry (the metric is unavailable
        then, and records that version). A grid thus scores a finished run again after `bench semsim train`."""
        from bench import semsim_checkpoint as st

        try:
            entries = st.read_manifest(Path(results))
        except BenchError:
            return type(self).version
        sha = str(entries[-1].get("sha256") or "") if entries else ""
        return f"{type(self).version}+{sha[:12]}" if sha else type(self).version

    def load(self, results: Path, device: torch.device | str = "cpu") -> "SemSim":
        """The newest checkpoint of RESULTS/semsim; MetricUnavailable (with the training command) without one."""
        from bench import semsim_checkpoint as st

        results = Path(results)
        # Stored with the value: no machine path in it, so stores of two results folders compare equal.
        fix = f"{st.TRAIN_FIX} --results RESULTS (no trained checkpoint in RESULTS/semsim of this run's results folder"
        if (st.legacy_dir() / st.MANIFEST_NAME).is_file():
            fix += ("; the user-wide checkpoints in BENCH_HOME/weights/semsim are not used: they served every results folder at once "
                    "and carry no provenance of their labels")
        fix += ")"
        try:
            entries = st.read_manifest(results)
        except BenchError as exc:
            raise MetricUnavailable(str(exc)) from None
        if not entries:
            raise MetricUnavailable(fix)
        entry = entries[-1]
        try:
            ckpt = st.load_checkpoint(entry, results)
            self.device = torch.device(device)
            self._embed = st.embedder(ckpt, self.device, torch.float64)
        except (BenchError, KeyError, RuntimeError) as exc:
            # The newest checkpoint is never silently replaced by an older one.
            raise MetricUnavailable(f"{exc}; retrain with {st.TRAIN_FIX} --results RESULTS (or remove its entry "
                                    "from RESULTS/semsim/manifest.json)") from None
        self.entry = {**entry, "config": ckpt["config"], "annotations": ckpt["annotations"],
                      "demo": bool(ckpt.get("demo"))}
        self.convention = convention_for(self.entry)
        self.version = f"{type(self).version}+{entry['sha256'][:12]}"
        self._overlap, self._unchecked = None, False
        self._note = (f"SemSim checkpoint RESULTS/semsim/{entry['file']} (newest of {len(entries)}; "
                      f"annotation set {ckpt['annotations']['hash'][:12]}, {_provenance(self.entry)}; "
                      f"trained {entry.get('created', '?')})")
        if self.entry["demo"]:
            self._note = f"{st.DEMO_MARK}: {self._note}"
        return self

    def check_overlap(self, dataset: str | None, ids: list[str]) -> int | None:
        """How many of the scored originals (`dataset`, `ids`) the checkpoint was trained on; warns when any.

        None when it cannot be told: no dataset named, or a checkpoint from a release-layout folder (its originals
        are files of that folder, not items of a bench dataset).
        """
        if self.entry is None or dataset is None:
            return None
        trained = self.entry["annotations"].get("originals")
        if trained is None or self.entry["annotations"].get("source") != "store":
            self._overlap = None
            self._unchecked = True
            return None
        seen = set(trained.get(dataset, ()))
        both = sum(1 for i in ids if i in seen)
        self._overlap = (both, len(ids))
        if both:
            warnings.warn(f"SemSim checkpoint {self.entry['file']} was trained on {both} of the {len(ids)} originals "
                          f"it scores here ({dataset}): its values on them are not held out", SemSimOverlap,
                          stacklevel=2)
        return both

    def value_note(self, n: int) -> str | None:
        note = self._note
        if note and self._overlap and self._overlap[0]:
            note += (f"; trained on {self._overlap[0]} of the {self._overlap[1]} originals it scores here "
                     "(not held out)")
        elif note and self._unchecked:
            note += "; whether it was trained on the originals scored here cannot be told (a folder's originals)"
        return note

    def per_sample(self, recon: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """Embedding distance of each image pair, float64 (N,) on the CPU; 0 for identical images."""
        a, b = check_pair(recon, ref, self.name, dtype=None)
        if self._embed is None:
            raise RuntimeError("semsim: per_sample() before prepare() or load(RESULTS)")
        out = []
        for s in range(0, a.shape[0], _CHUNK):
            ea, eb = self._embed(a[s:s + _CHUNK]), self._embed(b[s:s + _CHUNK])
            out.append((ea - eb).norm(dim=1).cpu())
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


metric_conventions.register(__name__)  # the row `semsim` of the convention table
