"""Victim classifiers that gradient-inversion attacks target, with seeded construction and a small trainer.

`lenet-zhu` is DLG's sigmoid LeNet, `convnet` the Inverting Gradients ConvNet (width a parameter) and `resnet20-4`
the CIFAR ResNet-20 of width x4 used by ATSPrivacy and SemSim. Written from the architectures' published
descriptions (layer lists), not from any repository.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

VICTIMS = ("lenet-zhu", "convnet", "resnet20-4")


class LeNetZhu(nn.Module):
    """DLG's LeNet: three 5x5 convolutions (12 channels, strides 2, 2, 1, padding 2) with sigmoid, one linear layer.

    Sigmoid (twice differentiable everywhere) and no pooling are what make this victim easy to invert.
    """

    def __init__(self, num_classes: int = 10, channels: int = 3, image_size: int = 32) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 12, 5, stride=2, padding=2), nn.Sigmoid(),
            nn.Conv2d(12, 12, 5, stride=2, padding=2), nn.Sigmoid(),
            nn.Conv2d(12, 12, 5, stride=1, padding=2), nn.Sigmoid(),
        )
        side = (image_size + 3) // 4  # two stride-2 convolutions with padding 2, kernel 5
        self.fc = nn.Linear(12 * side * side, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x).flatten(1))


class ConvNet(nn.Module):
    """Inverting Gradients' ConvNet: eight 3x3 conv-BN-ReLU layers (widths w, 2w, 2w, 4w, 4w, 4w, 4w, 4w) with a
    3x3 max-pool after the sixth and the eighth, then one linear layer on the 3x3x4w map (32 px input; another
    input size s gives a (s // 3 // 3)^2 x 4w map)."""

    def __init__(self, width: int = 64, num_classes: int = 10, channels: int = 3, image_size: int = 32) -> None:
        super().__init__()
        widths = [channels, width, 2 * width, 2 * width, 4 * width, 4 * width, 4 * width, 4 * width, 4 * width]
        layers: list[nn.Module] = []
        for i in range(8):
            layers += [nn.Conv2d(widths[i], widths[i + 1], 3, padding=1), nn.BatchNorm2d(widths[i + 1]), nn.ReLU()]
            if i in (5, 7):
                layers.append(nn.MaxPool2d(3))
        self.body = nn.Sequential(*layers)
        side = image_size // 3 // 3
        if side < 1:
            raise ValueError(f"convnet needs inputs of at least 9 px (got {image_size})")
        self.fc = nn.Linear(4 * width * side * side, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x).flatten(1))


class _BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity shortcut, or a 1x1 conv-BN shortcut when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.short: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.b1(self.c1(x)))
        return torch.relu(self.b2(self.c2(y)) + self.short(x))


class CifarResNet(nn.Module):
    """He et al.'s CIFAR ResNet-(6n+2): a 3x3 stem, three stages of n basic blocks (16k, 32k, 64k channels,
    strides 1, 2, 2), global average pooling, one linear layer. n=3, k=4 is ResNet20-4 (projection shortcuts)."""

    def __init__(self, n: int = 3, width: int = 4, num_classes: int = 10, channels: int = 3) -> None:
        super().__init__()
        w = 16 * width
        self.stem = nn.Sequential(nn.Conv2d(channels, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU())
        blocks: list[nn.Module] = []
        cin = w
        for stage, stride in zip((1, 2, 4), (1, 2, 2)):
            for b in range(n):
                blocks.append(_BasicBlock(cin, w * stage, stride if b == 0 else 1))
                cin = w * stage
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.blocks(self.stem(x)).mean(dim=(2, 3)))


def _dlg_uniform_init(model: nn.Module) -> None:
    """DLG's initialisation of its LeNet: every weight and bias uniform in [-0.5, 0.5] (large sigmoid pre-activations
    give the gradients the dynamic range that makes batch-1 inversion near exact)."""
    for p in model.parameters():
        nn.init.uniform_(p, -0.5, 0.5)


def build_victim(name: str, num_classes: int = 10, seed: int = 0, width: int | None = None,
                 image_size: int = 32) -> nn.Module:
    """Construct a victim by name with a seeded initialisation (same seed, same weights; the global RNG untouched)."""
    factories: dict[str, Callable[[], nn.Module]] = {
        "lenet-zhu": lambda: LeNetZhu(num_classes, image_size=image_size),
        "convnet": lambda: ConvNet(width or 64, num_classes, image_size=image_size),
        "resnet20-4": lambda: CifarResNet(3, width or 4, num_classes),
    }
    if name not in factories:
        raise ValueError(f"unknown victim {name!r}; known: {', '.join(VICTIMS)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = factories[name]()
        if name == "lenet-zhu":
            _dlg_uniform_init(model)
    return model


def n_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (BatchNorm's affine weights included, running statistics not)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 256) -> float:
    """Top-1 accuracy of `model` (eval mode) on normalised `images` with integer `labels`."""
    was = model.training
    model.eval()
    correct = 0
    for i in range(0, len(images), batch_size):
        correct += int((model(images[i:i + batch_size]).argmax(1) == labels[i:i + batch_size]).sum())
    model.train(was)
    return correct / max(len(images), 1)


def train_victim(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, epochs: int = 1, lr: float = 0.1,
                 batch_size: int = 128, seed: int = 0, weight_decay: float = 5e-4,
                 augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
                 test: tuple[torch.Tensor, torch.Tensor] | None = None, steps: int | None = None) -> dict[str, float]:
    """Train `model` in place with SGD (momentum 0.9, cosine-decayed lr) on (images, labels); seeded batch order.

    `epochs` passes over the data, or exactly `steps` mini-batches when given (epochs then follow one another,
    each in a fresh seeded order, the last one cut short). `augment(batch, generator)` transforms each training
    batch (e.g. an ATSPrivacy policy: the defense's utility is the accuracy of a victim trained under it). Returns
    train accuracy and, given `test`, test accuracy.
    """
    if len(images) == 0:
        raise ValueError("train_victim: no training images")
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    per_epoch = (len(images) + batch_size - 1) // batch_size
    total = max(1, steps if steps is not None else epochs * per_epoch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, total)
    model.train()
    done = 0
    while done < total:
        order = torch.randperm(len(images), generator=g)
        for i in range(0, len(images), batch_size):
            if done == total:
                break
            done += 1
            idx = order[i:i + batch_size]
            x = images[idx]
            if augment is not None:
                x = augment(x, g)
            loss = nn.functional.cross_entropy(model(x), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    out = {"train_accuracy": accuracy(model, images, labels)}
    if test is not None:
        out["test_accuracy"] = accuracy(model, *test)
    return out


# Training of a `trained` victim per run profile (SGD, momentum 0.9, cosine lr, weight decay 5e-4, no augmentation,
# on the run's attacker/train split at the run's extract size). smoke: seconds, for tests. cpu: about 1-3 minutes on
# one thread at 32 px with the default widths (measured per step: lenet-zhu 0.02 s, convnet-64 ~14 s, resnet20-4
# ~5 s at batch 32), so the wide victims are only partly trained there (lenet-zhu, 1,500 steps on 1,500 CIFAR-10
# train images: 30 % accuracy on 500 test images, 42 s). paper: an assumption, not a published
# figure: about 100 epochs of 50,000 CIFAR images at batch 128 (the papers train their victims to convergence).
VICTIM_TRAINING: dict[str, dict[str, Any]] = {
    "smoke": {"steps": 2, "batch_size": 8, "lr": 0.01, "weight_decay": 5e-4},
    "cpu": {"steps": {"lenet-zhu": 1500, "convnet": 12, "resnet20-4": 30}, "batch_size": 32, "lr": 0.01,
            "weight_decay": 5e-4},
    "paper": {"steps": 39000, "batch_size": 128, "lr": 0.1, "weight_decay": 5e-4},
}


def training_config(victim: str, profile: str) -> dict[str, Any]:
    """The declared training hyper-parameters of `victim` at `profile` (steps resolved for that victim)."""
    if victim not in VICTIMS:
        raise ValueError(f"unknown victim {victim!r}; known: {', '.join(VICTIMS)}")
    hp = dict(VICTIM_TRAINING[profile])
    if isinstance(hp["steps"], dict):
        hp["steps"] = hp["steps"][victim]
    return hp
