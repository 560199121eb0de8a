"""The CIFAR-style ResNet-18 (He et al. 2016, adapted to 32×32 inputs) used as SemSim's embedding network.

Differences from the ImageNet ResNet-18: the stem is one 3×3 convolution with stride 1 (no 7×7 conv, no max-pool),
so a 32×32 image reaches the last stage at 4×4. Four stages of two BasicBlocks each, widths 64-128-256-512,
stride 2 at the first block of stages 2-4 with a 1×1 convolution + batch norm on the shortcut, then a global
average pool. With `num_classes=0` the classifier is the identity and the network returns the 512-d pooled
features (11,168,832 parameters); with `num_classes=K` a linear layer is appended (K = 10: 11,173,962).
"""

from __future__ import annotations

import torch
from torch import nn

WIDTHS = (64, 128, 256, 512)
RESNET18_BLOCKS = (2, 2, 2, 2)


class BasicBlock(nn.Module):
    """Two 3×3 conv + batch-norm layers with an identity (or 1×1 projection) shortcut; ReLU after the sum."""

    expansion = 1

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNetCifar(nn.Module):
    """CIFAR ResNet: 3×3 stem, four stages of BasicBlocks, global average pool, optional linear classifier."""

    def __init__(self, blocks: tuple[int, ...] = RESNET18_BLOCKS, widths: tuple[int, ...] = WIDTHS,
                 num_classes: int = 0) -> None:
        super().__init__()
        if len(blocks) != len(widths):
            raise ValueError(f"one block count per stage: got {len(blocks)} counts for {len(widths)} widths")
        self.conv1 = nn.Conv2d(3, widths[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        stages = []
        in_ch = widths[0]
        for i, (n, width) in enumerate(zip(blocks, widths)):
            layers = []
            for j in range(n):
                layers.append(BasicBlock(in_ch, width, stride=2 if (i > 0 and j == 0) else 1))
                in_ch = width
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.embed_dim = in_ch
        self.fc: nn.Module = nn.Linear(in_ch, num_classes) if num_classes else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        """He-normal convolutions (fan-out, as torchvision's ResNets), unit-scale batch norms."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled embedding (N × 512 for ResNet-18)."""
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.pool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def resnet18_cifar(num_classes: int = 0) -> ResNetCifar:
    """CIFAR ResNet-18; `num_classes=0` (the default) returns the 512-d embedding (classifier = identity)."""
    return ResNetCifar(RESNET18_BLOCKS, WIDTHS, num_classes)


def parameter_count(model: nn.Module) -> int:
    """Number of learnable parameters (batch-norm running statistics are buffers and not counted)."""
    return sum(p.numel() for p in model.parameters())
