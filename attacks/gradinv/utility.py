"""The utility of a gradient defense: the victim's test accuracy when it is trained by fedSGD under the defense.

Every training step draws a batch of the attacker/train split (never a private image), computes the client's update
exactly as the client would release it under the defense (`ClientStep`: pruned, noised, DP-SGD clipped and noised,
or on ATSPrivacy-transformed images) and applies it with SGD (momentum 0.9, cosine-decayed learning rate). The
victim starts from its own initialisation (seed 0, as the untrained extractor) and stays in eval mode, as when it
computes a release: BatchNorm layers use their running statistics, which training does not update (per-example
gradients, which DP-SGD needs, are undefined under batch statistics). The figure is its top-1 accuracy on the run's
utility evaluation split (`ctx.evaluation`: images of the dataset's test split disjoint from the private, scored
ones; size per profile, bench/run/utility_split.py), ``fl-accuracy``. Never on the private images: a run has a
handful of them, and an accuracy on 4 images says nothing.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from bench.attacks.gradinv import releases, victims
from bench.errors import BenchError
from bench.plugins import UtilityContext

# One client update under a defense: (model, images, labels, generator) -> one gradient tensor per parameter.
ClientStep = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Generator], list[torch.Tensor]]

# Training budget per profile: steps, images per step, learning rate. smoke: a few steps (tests); cpu: about half a
# minute for lenet-zhu on one thread (the ATS policies several times that). lr 0.01: on CIFAR-10 (1,500 train
# images, 300 steps) the sigmoid lenet-zhu stayed at chance with 0.05 and 0.2 and reached 19 % with 0.005 and 0.01.
PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {"steps": 4, "batch": 4, "lr": 0.01},
    "cpu": {"steps": 300, "batch": 32, "lr": 0.01},
    "paper": {"steps": 5000, "batch": 128, "lr": 0.01},
}


def budget(profile: str) -> dict[str, Any]:
    """The training budget at `profile` (an unknown profile is an error, never a silent default)."""
    if profile not in PROFILES:
        raise BenchError(f"gradient-defense utility: no training budget for profile {profile!r} "
                         f"(known: {', '.join(PROFILES)})")
    return dict(PROFILES[profile])


def plain_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> list[torch.Tensor]:
    """The undefended client update: the fedSGD gradient of the batch's mean loss."""
    return releases.batch_gradient(model, x, y)


def train_under_defense(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, step: ClientStep,
                        steps: int, batch: int, lr: float, seed: int) -> None:
    """Train `model` in place for `steps` SGD steps, each applying the defended update `step` of one batch.

    Batches are drawn by a seeded shuffle (a new permutation each pass over the data), fixed size `batch`."""
    g = torch.Generator().manual_seed(int(seed))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, steps))
    model.eval()
    order = torch.randperm(len(images), generator=g)
    pos = 0
    for _ in range(steps):
        if pos + batch > len(order):
            order, pos = torch.randperm(len(images), generator=g), 0
        idx = order[pos:pos + batch]
        pos += batch
        grads = step(model, images[idx], labels[idx], g)
        for p, gr in zip(params, grads):
            p.grad = gr.detach().to(p.dtype).reshape(p.shape).clone()
        opt.step()
        sched.step()


def fl_accuracy(ctx: UtilityContext, step: ClientStep) -> dict[str, float]:
    """``fl-accuracy``: accuracy on the utility evaluation split (`ctx.evaluation`) of the victim trained under
    `step` at the profile's budget on the train split (`ctx.training`)."""
    if ctx.training is None:
        raise BenchError("gradient-defense utility needs the train split (utility_source 'training')")
    if ctx.evaluation is None:
        raise BenchError("gradient-defense utility needs the utility evaluation split (ctx.evaluation); it is never "
                         "measured on the private images instead")
    meta = ctx.features.meta or {}
    field = meta.get("label_field", "label")
    train, test = ctx.training.images, ctx.evaluation
    if field not in train.labels or field not in test.labels:
        raise BenchError(f"gradient-defense utility: the images carry no class label {field!r}")
    state = ctx.training.victim.state
    size = int(train.images.shape[-1])
    model = victims.build_victim(str(state.get("victim", "lenet-zhu")), num_classes=int(state.get("num_classes", 10)),
                                 seed=0,
                                 width=state.get("width") or None, image_size=size)
    hp = budget(ctx.training.profile)
    y_train = torch.as_tensor(np.asarray(train.labels[field]), dtype=torch.long)
    y_test = torch.as_tensor(np.asarray(test.labels[field]), dtype=torch.long)
    batch = min(int(hp["batch"]), len(train))
    train_under_defense(model, train.images.float(), y_train, step, int(hp["steps"]), batch, float(hp["lr"]),
                        ctx.seed)
    return {"fl-accuracy": victims.accuracy(model.eval(), test.images.float(), y_test)}


def sample_rate(profile: str, n_train: int) -> float:
    """DP-SGD's sampling rate in the utility training: images per step over the train split's size."""
    return min(1.0, budget(profile)["batch"] / max(1, n_train))
