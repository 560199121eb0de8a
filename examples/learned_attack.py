"""keypoint-cnn: a new learned attack in one file, built on leakbench's shared trainer (bench/training.py).

The worked example of docs/plugins.md, "A learned attack". It rebuilds an image from where SIFT found keypoints
(coordinates, sizes and angles; no descriptors): each record becomes a grid×grid raster of four channels (log
keypoint count, mean log size, mean cos and sin of the angle per cell), and a small convolutional decoder
(conv + batch norm + ReLU, nearest-neighbour upsampling to the image size, sigmoid) is trained with L1 and,
optionally, a relativistic GAN term against a patch discriminator. A baseline for the example, not a published
method.

What the base gives: hyper-parameters from PROFILES (`self.hp`, every key an `--attack-arg`), seeded batches, Adam
and its schedule, the step loop (divergence guard, loss history, progress bar, stage timing), the adversarial step,
batch-norm recalibration, the checkpoint (`state_dict` / `load_state_dict`, weights_only-safe), batched
reconstruction in eval mode, and FLOP figures for `describe`. What is left here: the input, the networks, the loss.

Use it from a package (an entry point in the `bench.attacks` group naming `KeypointCNN`) or register it yourself:
`bench.plugins.register_attack(KeypointCNN)`.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.features import FeatureSet, Requirement
from bench.features.sift import SiftSet
from bench.hyper import declare
from bench.nn.measure import count_parameters
from bench.plugins import FitContext
from bench.training import (RAGAN, Adversary, LearnedAttack, adam, flop_figures, optimise, recalibrate_bn,
                            schedules, seeded_batches)

# Per-profile hyper-parameters, the one place they are set (smoke: seconds, for tests; cpu: about a minute).
PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {"image_size": 32, "grid": 8, "widths": [16, 16, 8], "disc_widths": [8, 16], "batch_size": 4,
              "steps": 6, "eval_batch": 16, "lr": 1e-3, "betas": [0.5, 0.999], "lr_decay": "cosine",
              "adversarial": True, "lambda_adv": 0.01, "bn_batches": 4},
    "cpu": {"image_size": 64, "grid": 16, "widths": [64, 48, 32], "disc_widths": [32, 64, 64], "batch_size": 16,
            "steps": 400, "eval_batch": 50, "lr": 1e-3, "betas": [0.5, 0.999], "lr_decay": "cosine",
            "adversarial": True, "lambda_adv": 0.01, "bn_batches": 20},
}
CHANNELS = 4


def keypoint_raster(sift: SiftSet, indices: np.ndarray, grid: int) -> torch.Tensor:
    """B×4×grid×grid float32: per cell log(1 + count), mean log(1 + size), mean cos and sin of the angle."""
    out = np.zeros((len(indices), CHANNELS, grid * grid), dtype=np.float64)
    for row, i in enumerate(np.asarray(indices, dtype=np.int64)):
        kp = np.nan_to_num(sift.keypoints[sift.offsets[i]:sift.offsets[i + 1]].astype(np.float64))
        if not len(kp):
            continue
        xy = np.clip((kp[:, :2] / sift.image_size * grid).astype(np.int64), 0, grid - 1)
        cell = xy[:, 1] * grid + xy[:, 0]
        count = np.bincount(cell, minlength=grid * grid)
        angle = np.deg2rad(kp[:, 3])
        for c, values in enumerate((np.log1p(np.maximum(kp[:, 2], 0.0)), np.cos(angle), np.sin(angle)), start=1):
            out[row, c] = np.bincount(cell, weights=values, minlength=grid * grid) / np.maximum(count, 1)
        out[row, 0] = np.log1p(count)
    return torch.from_numpy(out.reshape(len(indices), CHANNELS, grid, grid).astype(np.float32))


def _block(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class Decoder(nn.Module):
    """Raster → conv block → (upsample ×2, conv block) until image_size → 3×3 conv → sigmoid."""

    def __init__(self, grid: int, image_size: int, widths: tuple[int, ...]) -> None:
        super().__init__()
        ups = int(round(math.log2(image_size / grid)))
        if grid * 2 ** ups != image_size:
            raise ValueError(f"keypoint-cnn: grid {grid} does not double up to {image_size}")
        layers, cin = _block(CHANNELS, widths[0]), widths[0]
        for k in range(ups):
            cout = widths[min(k + 1, len(widths) - 1)]
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), *_block(cin, cout)]
            cin = cout
        self.body = nn.Sequential(*layers, nn.Conv2d(cin, 3, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.body(x))


def patch_discriminator(widths: tuple[int, ...]) -> nn.Module:
    """Stride-2 convolutions with LeakyReLU, then one logit per patch."""
    layers: list[nn.Module] = []
    cin = 3
    for w in widths:
        layers += [nn.Conv2d(cin, w, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
        cin = w
    return nn.Sequential(*layers, nn.Conv2d(cin, 1, 3, padding=1))


class KeypointCNN(LearnedAttack):
    """keypoint-cnn: a convolutional decoder from the keypoint layout (no descriptors) to the image."""

    name = "keypoint-cnn"
    version = "1"
    default_extractor = "sift"
    consumes = Requirement("sift", {"has_coordinates": True})
    paper = "baseline (no paper): the worked example of a learned attack on leakbench's shared trainer"
    profiles = ("smoke", "cpu")
    shards_exactly = True  # batch norm synchronised, RaGAN's batch means global (bench.nn.distributed)
    PROFILES = PROFILES
    params = declare(PROFILES, help={"grid": "cells per side of the keypoint raster",
                                     "widths": "decoder widths", "disc_widths": "discriminator widths",
                                     "lambda_adv": "weight of the adversarial loss"})

    def __init__(self, profile: str, image_size: int, device: torch.device | str = "cpu", seed: int = 0,
                 params: Mapping[str, Any] | None = None) -> None:
        super().__init__(profile, image_size, device, seed, params)
        self.decoder: Decoder | None = None

    def network_shapes(self) -> dict[str, Any]:
        return {"grid": self.hp["grid"], "image_size": self.image_size, "widths": list(self.hp["widths"])}

    def build(self) -> None:
        self.decoder = Decoder(int(self.hp["grid"]), self.image_size, tuple(self.hp["widths"])).to(self.device)

    def networks(self) -> dict[str, nn.Module | None]:
        return {"decoder": self.decoder}

    def _raster(self, features: FeatureSet, indices: np.ndarray) -> torch.Tensor:
        assert isinstance(features, SiftSet), f"{self.name} needs SIFT features, got {features.kind!r}"
        return keypoint_raster(features, indices, int(self.hp["grid"])).to(self.device)

    def fit(self, features: FeatureSet, images: torch.Tensor, ctx: FitContext) -> None:
        """One stage: L1 (+ λ_adv·RaGAN), Adam, seeded batches; then batch-norm statistics re-estimated."""
        self.check_training_inputs(features, images, minimum=2)
        ctx.notes.append(f"{self.name}: a baseline without a paper; {self.hp['steps']} steps")
        self.start_training()  # seeds torch with the run seed and builds the decoder
        hp, net = self.hp, self.decoder
        assert net is not None
        opt = adam(net.parameters(), hp)
        adversary = None
        if hp["adversarial"]:
            disc = patch_discriminator(tuple(hp["disc_widths"])).to(self.device).train()
            adversary = Adversary(disc, RAGAN, adam(disc.parameters(), hp))
        scheds = schedules([opt] + ([adversary.opt] if adversary else []), hp["lr_decay"], int(hp["steps"]))
        net.train()

        def step(idx: np.ndarray) -> float:
            target = images[torch.from_numpy(idx)].to(self.device, torch.float32)
            fake = net(self._raster(features, idx))
            loss = F.l1_loss(fake, target)
            if adversary is not None:
                loss = loss + hp["lambda_adv"] * adversary.generator_term(target, fake)
            optimise(opt, loss)
            if adversary is not None:
                adversary.step(target, fake)
            return float(loss.detach())

        batches = seeded_batches(images.shape[0], hp["batch_size"], self.seed)
        self.run_stage("decoder", int(hp["steps"]), batches, step, schedulers=scheds, progress=ctx.progress)
        recalibrate_bn(net, lambda idx: net(self._raster(features, idx)), len(features), int(hp["batch_size"]),
                       int(hp["bn_batches"]), self.seed + 1)

    def reconstruct_batch(self, features: FeatureSet, indices: np.ndarray) -> torch.Tensor:
        assert self.decoder is not None
        return self.decoder(self._raster(features, indices))

    def describe(self) -> dict[str, Any]:
        g = int(self.hp["grid"])
        with torch.device("meta"):
            net = Decoder(g, self.image_size, tuple(self.hp["widths"])).eval()
            x = torch.zeros(1, CHANNELS, g, g)
        return {"profile": self.profile, "params_decoder": count_parameters(net), **flop_figures(net, x, digits=4)}
