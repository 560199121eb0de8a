"""VGG19 convolutional stack (torchvision layer numbering) giving relu1_1 … relu5_1 for perceptual losses.

Written here rather than imported from torchvision so that only the `features.N.weight/bias` tensors of a
torchvision-format state dict are needed (classifier keys are ignored) and the model is frozen by construction.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from bench.errors import BenchError

# torchvision's vgg19 configuration: conv widths, "M" = 2×2 max pooling.
_CFG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
                               512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
# Indices in `features` of relu1_1, relu2_1, relu3_1, relu4_1, relu5_1.
RELU_X_1 = (1, 6, 11, 20, 29)
LAYER_NAMES = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def vgg_stack(cfg: tuple[int | str, ...], inplace: bool = False) -> nn.Sequential:
    """A VGG convolutional stack in torchvision's `features` numbering (its state-dict keys): per width a 3×3 conv
    and a ReLU (`inplace` ReLUs where no activation is kept for later), "M" a 2×2 max pooling; RGB in."""
    layers: list[nn.Module] = []
    cin = 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, int(v), 3, padding=1), nn.ReLU(inplace=inplace)]
            cin = int(v)
    return nn.Sequential(*layers)


def _features() -> nn.Sequential:
    return vgg_stack(_CFG, inplace=False)


class VGG19Features(nn.Module):
    """Frozen VGG19 feature stack: [0, 1] RGB in, the five relu*_1 activations out (ImageNet normalisation inside)."""

    def __init__(self, state_dict: Mapping[str, torch.Tensor] | None = None) -> None:
        super().__init__()
        self.features = _features()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        if state_dict is not None:
            self.load_torchvision(state_dict)
        self.requires_grad_(False)
        self.eval()

    def load_torchvision(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Load the `features.*` tensors of a torchvision vgg19 state dict; other keys are ignored."""
        feats = {k: v for k, v in state_dict.items() if k.startswith("features.")}
        want = set(self.features.state_dict(prefix="features."))
        missing = sorted(want - set(feats))
        if missing:
            raise BenchError(f"VGG19 weights lack {len(missing)} tensors (first: {missing[0]}); not a vgg19 state dict")
        try:
            self.load_state_dict(feats, strict=False)
        except RuntimeError as exc:
            raise BenchError(f"VGG19 weights do not fit torchvision's vgg19: {str(exc).splitlines()[0]}") from None

    def train(self, mode: bool = True) -> "VGG19Features":
        """Always stays in eval mode (frozen)."""
        return super().train(False)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """[relu1_1, relu2_1, relu3_1, relu4_1, relu5_1] of N×3×H×W images in [0, 1]."""
        x = (images - self.mean) / self.std
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in RELU_X_1:
                out.append(x)
                if i == RELU_X_1[-1]:
                    break
        return out
