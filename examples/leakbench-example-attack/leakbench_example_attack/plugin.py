"""ridge-keypoints: ridge regression from the layout of SIFT keypoints (no descriptors) to a low-resolution image."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from bench.features import FeatureSet, Requirement
from bench.params import Param
from bench.plugins import Attack, FitContext

TARGET = 16  # the regression predicts TARGET×TARGET images, upsampled to the scoring size


def layout_features(features: FeatureSet, grid: int) -> np.ndarray:
    """N×(2·grid²+1) float64: per cell the share of the image's keypoints and their mean log size, and the log count.

    Each row depends on its own record only, so reconstructions are independent of the batch around them; an image
    without keypoints is the zero vector.
    """
    size = float(features.meta["image_size"])
    out = np.zeros((len(features), 2 * grid * grid + 1), dtype=np.float64)
    for i in range(len(features)):
        kp = np.asarray(features.keypoints_of(i), dtype=np.float64)
        kp = kp[np.all(np.isfinite(kp[:, :3]), axis=1)] if len(kp) else kp
        if not len(kp):
            continue
        cx = np.clip((kp[:, 0] / size * grid).astype(np.int64), 0, grid - 1)
        cy = np.clip((kp[:, 1] / size * grid).astype(np.int64), 0, grid - 1)
        cell = cy * grid + cx
        counts = np.bincount(cell, minlength=grid * grid).astype(np.float64)
        sizes = np.bincount(cell, weights=np.log1p(np.maximum(kp[:, 2], 0.0)), minlength=grid * grid)
        out[i, : grid * grid] = counts / len(kp)
        out[i, grid * grid: 2 * grid * grid] = np.divide(sizes, counts, out=np.zeros_like(sizes), where=counts > 0)
        out[i, -1] = np.log1p(len(kp))
    return out


class RidgeKeypoints(Attack):
    """Ridge regression from where SIFT found keypoints (no descriptors) to a low-resolution image."""

    name = "ridge-keypoints"
    version = "1"
    consumes = Requirement("sift", {"has_coordinates": True})
    default_extractor = "sift"
    paper = "baseline (no paper): ridge regression from the keypoint layout to a 16x16 image"
    profiles = ("smoke", "cpu")
    params = {
        "grid": Param(int, 8, "cells per side of the keypoint raster", low=2, high=32),
        "alpha": Param(float, 1000.0, "ridge penalty on the standardised features", low=1e-9),
    }

    def __init__(self, profile: str, image_size: int, device: torch.device | str = "cpu", seed: int = 0,
                 params: Mapping[str, Any] | None = None) -> None:
        super().__init__(profile, image_size, device, seed, params)
        self.state: dict[str, torch.Tensor] | None = None

    def fit(self, features: FeatureSet, images: torch.Tensor, ctx: FitContext) -> None:
        """Closed-form ridge on standardised layout features; targets are the images average-pooled to 16×16."""
        x = layout_features(features, int(self.params["grid"]))
        y = F.adaptive_avg_pool2d(images.double(), TARGET).reshape(len(images), -1).numpy()
        mu, sd = x.mean(axis=0), x.std(axis=0)
        sd[sd == 0] = 1.0
        z = (x - mu) / sd
        y_mean = y.mean(axis=0)
        gram = z.T @ z + float(self.params["alpha"]) * np.eye(z.shape[1])
        weights = np.linalg.solve(gram, z.T @ (y - y_mean))
        self.state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in
                      {"mu": mu, "sd": sd, "weights": weights, "y_mean": y_mean}.items()}

    def reconstruct(self, features: FeatureSet, progress: bool = True) -> torch.Tensor:
        if self.state is None:
            raise RuntimeError("ridge-keypoints: reconstruct() before fit()")
        n = len(features)
        if n == 0:
            return torch.zeros(0, 3, self.image_size, self.image_size)
        s = {k: v.numpy() for k, v in self.state.items()}
        z = (layout_features(features, int(self.params["grid"])) - s["mu"]) / s["sd"]
        small = torch.from_numpy(z @ s["weights"] + s["y_mean"]).reshape(n, 3, TARGET, TARGET)
        big = F.interpolate(small, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        return big.clamp(0.0, 1.0).float()

    def state_dict(self) -> dict[str, Any]:
        return dict(self.state or {})

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.state = {k: torch.as_tensor(state[k]) for k in ("mu", "sd", "weights", "y_mean")}
