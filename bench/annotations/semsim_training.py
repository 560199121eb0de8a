"""Training SemSim's embedding network on an annotation set (semsim_sets.py).

SemSim (Sun et al., NeurIPS 2023) trains a CIFAR ResNet-18 (classifier = identity, 512-d) with a triplet margin
loss (margin 1, p=2): anchor = an original image, positive = a reconstruction of it that humans judged
recognisable, negative = one judged unrecognisable (an original without one of its own takes it from the set's
extra pool). Deterministic under the seed: initialisation and triplet sampling.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from bench.annotations.semsim_sets import AnnotationSet
from bench.devices import resolve_device
from bench.errors import BenchError
from bench.semsim_checkpoint import build_model, model_config, normalise


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
    """The trained weights (on the CPU), the loss per epoch and how long training took."""

    state_dict: dict[str, torch.Tensor]
    final_loss: float
    losses: list[float]
    triplets_per_epoch: int
    wall_s: float


def train(ann: AnnotationSet, settings: TrainSettings, progress: bool = True) -> TrainResult:
    """Triplet-margin training (p=2) with Adam; deterministic under the seed (initialisation and sampling)."""
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
