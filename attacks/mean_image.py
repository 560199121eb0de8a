"""The trivial floor: every reconstruction is the mean auxiliary image, whatever was released."""

from __future__ import annotations

from typing import Any, Mapping

import torch

from bench.features import FeatureSet, Requirement
from bench.plugins import Attack, FitContext, register_attack


@register_attack
class MeanImage(Attack):
    """Floor baseline: outputs the mean of the attacker's auxiliary images for every private sample."""

    name = "mean-image"
    consumes = Requirement("*")
    default_extractor = "sift"
    uses_features = False  # the output ignores the released features, so featureless images are no obstacle
    paper = "trivial baseline (no paper): any attack worth reporting must beat it"

    def __init__(self, profile: str, image_size: int, device: torch.device | str = "cpu", seed: int = 0,
                 params: Mapping[str, Any] | None = None) -> None:
        super().__init__(profile, image_size, device, seed, params)
        self.mean: torch.Tensor | None = None

    def fit(self, features: FeatureSet, images: torch.Tensor, ctx: FitContext) -> None:
        self.mean = images.double().mean(dim=0).float()

    def reconstruct(self, features: FeatureSet, progress: bool = True) -> torch.Tensor:
        if self.mean is None:
            raise RuntimeError("mean-image: reconstruct() before fit()")
        return self.mean[None].expand(len(features), -1, -1, -1).clone()

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.mean = state["mean"]
