"""SemSim (Sun et al., NeurIPS 2023): semantic similarity learned from human judgements of reconstructions.

A CIFAR ResNet-18 with its classifier replaced by the identity embeds both images (512-d); the score is the L2
distance between the embeddings of the original and the reconstruction: smaller means more similar, i.e. more
leakage. The network is the one `bench semsim train` fitted with a triplet margin loss on human annotations
(bench/semsim_train.py); the newest checkpoint in $BENCH_HOME/weights/semsim/manifest.json is verified by sha256
and loaded with torch.load(weights_only=True). Its input size and normalisation come from the checkpoint. Without
a trained checkpoint the metric is unavailable with the command that trains one.

The value depends on the checkpoint, so the recorded convention names the checkpoint's annotation-set hash and
digest, and the recorded version carries the checkpoint digest (cached scores of another checkpoint are never
reused).
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from bench.errors import BenchError
from bench.metrics.pixel import check_pair
from bench.plugins import EvalContext, Metric, MetricUnavailable, register_metric

_CHUNK = 64  # image pairs per forward pass

BASE_CONVENTION = ("SemSim: CIFAR ResNet-18 (3x3 stem, no max-pool, fc = identity, 512-d) trained by "
                   "`bench semsim train` (triplet margin loss, margin {margin}, p=2) on annotation set {ann}; "
                   "checkpoint {ckpt}; both images resized to {size}x{size} (bilinear, antialiased), normalised "
                   "with mean {mean} and std {std}; score = L2 distance between the embeddings of original and "
                   "reconstruction (0 = identical, smaller = more leakage); per image, set value = mean over "
                   "images; float64")


def convention_for(entry: dict[str, Any] | None) -> str:
    """The pinned convention of a manifest entry (the class-level text names the fields left open)."""
    if entry is None:
        return BASE_CONVENTION.format(margin="M", ann="<the checkpoint's annotation-set sha256>",
                                      ckpt="<the newest in $BENCH_HOME/weights/semsim/manifest.json>",
                                      size="S", mean="<the checkpoint's>", std="<the checkpoint's>")
    cfg = entry["config"]
    ann = entry["annotations"]
    return BASE_CONVENTION.format(
        margin=entry["training"].get("margin"),
        ann=f"sha256 {ann['hash']} ({ann.get('source')}: {ann.get('ids')} ids, {ann.get('positives')} positives, "
            f"{ann.get('negatives')} negatives)",
        ckpt=f"{entry['file']} (sha256 {entry['sha256']})", size=cfg["input_size"],
        mean=[round(float(v), 4) for v in cfg["mean"]], std=[round(float(v), 4) for v in cfg["std"]])


@register_metric
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

    def prepare(self, ctx: EvalContext) -> None:
        """Load the newest verified checkpoint onto the run's device, or report the command that trains one."""
        self.load(ctx.device)

    def load(self, device: torch.device | str = "cpu") -> "SemSim":
        from bench import semsim_train as st

        fix = (f"{st.TRAIN_FIX} (SOURCE: `store` or a folder in the SemSim release layout; "
               "no trained checkpoint in $BENCH_HOME/weights/semsim)")
        try:
            entries = st.read_manifest()
        except BenchError as exc:
            raise MetricUnavailable(str(exc)) from None
        if not entries:
            raise MetricUnavailable(fix)
        entry = entries[-1]
        try:
            ckpt = st.load_checkpoint(entry)
            self.device = torch.device(device)
            self._embed = st.embedder(ckpt, self.device, torch.float64)
        except (BenchError, KeyError, RuntimeError) as exc:
            # The newest checkpoint is never silently replaced by an older one.
            raise MetricUnavailable(f"{exc}; retrain with {st.TRAIN_FIX} (or remove its entry from "
                                    f"{st.manifest_path()})") from None
        self.entry = {**entry, "config": ckpt["config"]}
        self.convention = convention_for(self.entry)
        self.version = f"{type(self).version}+{entry['sha256'][:12]}"
        self._note = (f"SemSim checkpoint {entry['file']} (newest of {len(entries)}; annotation set "
                      f"{entry['annotations']['hash'][:12]}, trained {entry.get('created', '?')})")
        return self

    def value_note(self, n: int) -> str | None:
        return self._note

    def per_sample(self, recon: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """Embedding distance of each image pair, float64 (N,) on the CPU; 0 for identical images."""
        a, b = check_pair(recon, ref, self.name, dtype=None)
        if self._embed is None:
            self.load("cpu")
        out = []
        for s in range(0, a.shape[0], _CHUNK):
            ea, eb = self._embed(a[s:s + _CHUNK]), self._embed(b[s:s + _CHUNK])
            out.append((ea - eb).norm(dim=1).cpu())
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)
