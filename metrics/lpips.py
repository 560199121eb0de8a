"""LPIPS (learned perceptual image patch similarity, v0.1) in every convention the benchmark names.

Each variant is a registered metric with its own name (pyiqa style), one row of the convention table
(bench/metric_conventions.py, which also writes its convention text from the row's arguments). The standard ones
scale images from [0, 1] to [-1, 1] as the LPIPS authors specify; `lpips-semsim-compat` reproduces the SemSim
paper's code, which fed [0, 1] images unscaled to LPIPS-squeeze at 256×256, and is named as such so that it never
replaces the standard value silently. The network (bench/nn/lpips_net.py) loads its backbone and linear layers
through the weights manifest (hash-verified, weights_only); when a file is missing the metric is unavailable with
the fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from bench import metric_conventions, weights
from bench.errors import BenchError
from bench.metrics.pixel import check_pair
from bench.plugins import EvalContext, Metric, MetricUnavailable

_CHUNK = 16  # image pairs per forward pass: bounds activation memory at 256×256 (VGG) on a laptop


@dataclass(frozen=True)
class Variant:
    """One LPIPS convention: backbone, its weight files, how [0, 1] images are fed, and the pinned text."""

    name: str
    backbone: str  # alex | vgg | squeeze
    backbone_weights: str  # manifest entry (torchvision file)
    linear_weights: str  # manifest entry (LPIPS v0.1 linear layers)
    to_signed: bool  # map [0, 1] to [-1, 1] before the network (the standard convention)
    resize: int | None  # resize both images to this square size first (None: score at the given size)
    summary: str

    @classmethod
    def of(cls, row: metric_conventions.Convention) -> "Variant":
        """The variant of an LPIPS row of the convention table."""
        return cls(name=row.name, summary=row.summary, **row.args)


class LPIPSMetric(Metric):
    """LPIPS distance of each image pair (one registered subclass per LPIPS row of the convention table)."""

    variant: Variant
    higher_is_better = False
    value_range = (0.0, float("inf"))
    needs_weights = True

    @classmethod
    def convention_attributes(cls, row: metric_conventions.Convention) -> dict[str, Any]:
        """The class attributes of a table row: its arguments as one `Variant`."""
        return {"variant": Variant.of(row)}

    def __init__(self) -> None:
        self.net = None
        self.device = torch.device("cpu")

    def prepare(self, ctx: EvalContext) -> None:
        """Load the verified backbone and linear layers onto the run's device, or report the fix."""
        self.load(ctx.device)

    def load(self, device: torch.device | str = "cpu") -> "LPIPSMetric":
        """Build the network from the weights cache; MetricUnavailable(fix) when a file is missing or refused."""
        from bench.nn.lpips_net import LPIPSNet

        v = self.variant
        fix = weights.missing_fix((v.backbone_weights, v.linear_weights))
        if fix:
            raise MetricUnavailable(fix)
        try:
            net = LPIPSNet(v.backbone, weights.load_state_dict(v.backbone_weights),
                           weights.load_state_dict(v.linear_weights))
        except BenchError as exc:
            raise MetricUnavailable(f"{exc}; {weights.fix_command(v.backbone_weights)}") from None
        self.device = torch.device(device)
        self.net = net.to(self.device)
        return self

    def _inputs(self, images: torch.Tensor) -> torch.Tensor:
        v = self.variant
        x = images.to(device=self.device, dtype=torch.float32)
        if v.resize and tuple(x.shape[-2:]) != (v.resize, v.resize):
            x = F.interpolate(x, size=(v.resize, v.resize), mode="bilinear", align_corners=False, antialias=True)
        return x * 2 - 1 if v.to_signed else x

    def per_sample(self, recon: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """LPIPS of each image pair, float64 (N,) on the CPU; 0 for identical images."""
        a, b = check_pair(recon, ref, self.name, dtype=None)
        if self.net is None:
            self.load(a.device if a.device.type != "cpu" else "cpu")
        out = []
        with torch.inference_mode():
            for s in range(0, a.shape[0], _CHUNK):
                out.append(self.net(self._inputs(a[s:s + _CHUNK]), self._inputs(b[s:s + _CHUNK])).double().cpu())
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


_REGISTERED = metric_conventions.register(__name__)  # lpips, lpips-vgg, lpips-squeeze, lpips-semsim-compat
VARIANTS: dict[str, Variant] = {name: cls.variant for name, cls in _REGISTERED.items()}
