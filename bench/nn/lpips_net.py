"""The LPIPS network (Zhang et al. 2018, v0.1): an ImageNet backbone, unit-normalised activations, learned weights.

    d(x, y) = Σ_l  mean_hw( Σ_c w_lc · (x̂_lhwc − ŷ_lhwc)² ),   x̂ = f / (‖f‖₂ over channels + 1e-10)

where f are backbone activations of the input after the v0.1 scaling layer ((x − shift) / scale, with the constants
the LPIPS authors fixed for inputs in [-1, 1]). Because the learned 1×1 convolution is linear and has no bias,
mean_hw(Σ_c w_c d_c) = Σ_c w_c mean_hw(d_c): the spatial mean is taken first and the weights applied to an N×C
matrix, which is cheaper and mathematically the same.

The backbones are written here with torchvision's layer numbering (so a torchvision state dict loads as is, with
only its `features.*` tensors used) and tap the activations the LPIPS authors chose.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from bench.errors import BenchError
from bench.nn.vgg import vgg_stack

# v0.1 scaling layer: the inputs in [-1, 1] are shifted and scaled per channel (ImageNet statistics mapped to [-1, 1]).
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10


class _Fire(nn.Module):
    """SqueezeNet's fire module: a 1×1 squeeze, then 1×1 and 3×3 expands concatenated (torchvision key names)."""

    def __init__(self, cin: int, squeeze: int, e1: int, e3: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(cin, squeeze, 1)
        self.expand1x1 = nn.Conv2d(squeeze, e1, 1)
        self.expand3x3 = nn.Conv2d(squeeze, e3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.relu_(self.squeeze(x))
        return torch.cat([torch.relu_(self.expand1x1(s)), torch.relu_(self.expand3x3(s))], dim=1)


def _alexnet() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True),
    )


def _vgg16() -> nn.Sequential:
    # torchvision's vgg16 `features` up to relu5_3 (LPIPS taps nothing after it)
    return vgg_stack((64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512), inplace=True)


def _squeezenet1_1() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 64, 3, stride=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, ceil_mode=True),
        _Fire(64, 16, 64, 64), _Fire(128, 16, 64, 64), nn.MaxPool2d(3, 2, ceil_mode=True),
        _Fire(128, 32, 128, 128), _Fire(256, 32, 128, 128), nn.MaxPool2d(3, 2, ceil_mode=True),
        _Fire(256, 48, 192, 192), _Fire(384, 48, 192, 192), _Fire(384, 64, 256, 256), _Fire(512, 64, 256, 256),
    )


# backbone -> (builder, indices in `features` after which an activation is tapped, its channel counts)
BACKBONES = {
    "alex": (_alexnet, (1, 4, 7, 9, 11), (64, 192, 384, 256, 256)),
    "vgg": (_vgg16, (3, 8, 15, 22, 29), (64, 128, 256, 512, 512)),
    "squeeze": (_squeezenet1_1, (1, 4, 7, 9, 10, 11, 12), (64, 128, 256, 384, 384, 512, 512)),
}


class LPIPSNet(nn.Module):
    """Frozen LPIPS v0.1 distance: `forward(x, y)` gives (N,) distances for N×3×H×W inputs already in the network's
    input range ([-1, 1] in the standard convention); the caller chooses how [0, 1] images map to it."""

    def __init__(self, backbone: str, backbone_state: Mapping[str, torch.Tensor],
                 linear_state: Mapping[str, torch.Tensor]) -> None:
        super().__init__()
        if backbone not in BACKBONES:
            raise BenchError(f"unknown LPIPS backbone {backbone!r}; known: {', '.join(BACKBONES)}")
        build, taps, chans = BACKBONES[backbone]
        self.backbone = backbone
        self.features = build()[: taps[-1] + 1]
        self.taps = frozenset(taps)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("inv_scale", 1.0 / torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        self._load_backbone(backbone_state)
        self.lin = nn.ParameterList([nn.Parameter(w, requires_grad=False) for w in _linear(linear_state, chans)])
        self.requires_grad_(False)
        self.eval()

    def _load_backbone(self, state: Mapping[str, torch.Tensor]) -> None:
        want = self.features.state_dict(prefix="features.")
        have = {k: v for k, v in state.items() if k in want}
        missing = sorted(set(want) - set(have))
        if missing:
            raise BenchError(f"LPIPS {self.backbone} backbone weights lack {len(missing)} tensors "
                             f"(first: {missing[0]}); not a torchvision {self.backbone} state dict")
        for key, value in have.items():
            if tuple(value.shape) != tuple(want[key].shape):
                raise BenchError(f"LPIPS {self.backbone} backbone weights: {key} has shape {tuple(value.shape)}, "
                                 f"expected {tuple(want[key].shape)}")
        self.load_state_dict({k: v.float() for k, v in have.items()}, strict=False)

    def train(self, mode: bool = True) -> "LPIPSNet":
        """Always stays in eval mode (frozen)."""
        return super().train(False)

    def layer_distances(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(N, L) per-layer distances; both batches go through the backbone together."""
        n = x.shape[0]
        h = (torch.cat([x, y]) - self.shift) * self.inv_scale
        out = []
        k = 0
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in self.taps:
                # unit-normalise each position's channel vector, squared difference, spatial mean, weights
                unit = h / (torch.linalg.vector_norm(h, dim=1, keepdim=True) + EPS)
                diff = torch.sub(unit[:n], unit[n:]).square_().mean(dim=(2, 3))  # N×C
                out.append(diff @ self.lin[k])
                k += 1
        return torch.stack(out, dim=1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.layer_distances(x, y).sum(dim=1)


def _linear(state: Mapping[str, torch.Tensor], chans: tuple[int, ...]) -> list[torch.Tensor]:
    """The per-layer channel weights (C,) from an LPIPS v0.1 linear-layer file (`linK.model.1.weight`, 1×C×1×1)."""
    weights = []
    for k, c in enumerate(chans):
        w = state.get(f"lin{k}.model.1.weight")
        if w is None:
            w = state.get(f"lin{k}.model.0.weight")  # saved without the dropout layer
        if w is None or w.numel() != c:
            got = "missing" if w is None else f"shape {tuple(w.shape)}"
            raise BenchError(f"LPIPS linear-layer weights: lin{k} is {got}, expected 1×{c}×1×1")
        weights.append(w.detach().float().reshape(c).clone())
    return weights
