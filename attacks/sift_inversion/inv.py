"""INV: the cascaded U-Net inversion of Pittaluga et al. (CVPR 2019), CFGAN's "INV" row, on dense SIFT maps.

Pittaluga et al. rebuild a scene image from sparse, irregular projected SfM points (depth, colour, SIFT, any of them
possibly missing) with a cascade of U-Nets: CoarseNet on the sparse multichannel point image, then RefineNet on the
coarse image together with that input. CoarseNet is trained with L1 + perceptual (VGG) loss, then RefineNet, with
CoarseNet fixed, with L1 + perceptual + adversarial loss. Single-image SIFT has no depth or colour, so the sparse
input here is the family's compressed dense SIFT map (128 channels, the same keypoint per cell as CFGAN's) plus a
binary keypoint mask channel (`keypoint_maps(..., extras=("presence",))`), which tells the nets an empty cell from
a descriptor that happens to be near zero. Networks are in inv_nets.py; per-profile hyper-parameters below.

Batch norm is used in training; reconstruction runs in evaluation mode with running statistics re-estimated after
each stage as plain averages over `bn_batches` batches (as in cfgan.py), so a reconstruction never depends on the
batch around it.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.attacks.sift_inversion.inv_nets import CoarseNet, Discriminator, INVConfig, RefineNet
from bench.attacks.sift_inversion.ivr import keypoint_maps, require_sift
from bench.features import FeatureSet, Requirement
from bench.hyper import declare, stage_steps
from bench.features.sift import SiftSet
from bench.nn.measure import count_parameters
from bench.plugins import FitContext, register_attack
from bench.training import (BCE, Adversary, Batches, LearnedAttack, adam, flop_figures, optimise, recalibrate_bn,
                            record_inputs, schedules, seeded_batches)

CL = torch.channels_last

# Per-profile hyper-parameters, the one place they are set.
# - smoke: seconds, for tests; L1 only.
# - cpu: about 3 minutes on 2 CPU cores at 64×64 (1500 auxiliary images); reduced widths, L1 only (no ImageNet VGG19
#   weights offline, and no adversarial term in a budget of a few hundred steps), learning rate 1e-3 cosine.
# - paper: sized like CFGAN's Table II INV row (88 M parameters, 150 G multiply-accumulates at 256×256); L1 +
#   perceptual (VGG19) for CoarseNet, L1 + perceptual + adversarial for RefineNet; Adam 1e-4, β (0.9, 0.999),
#   batch 8. Loss weights and steps are our choices (see docs/baselines.md).
PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        "map_size": 32, "image_size": 32, "coarse": [8, 16, 16], "refine": [8, 16, 16], "disc": [8, 16],
        "batch_size": 4, "coarse_steps": 4, "refine_steps": 4, "eval_batch": 16,
        "lr": 1e-3, "betas": [0.9, 0.999], "lr_decay": "none",
        "lambda_pix": 1.0, "lambda_per": 0.01, "lambda_adv": 0.01,
        "perceptual": False, "adversarial": False, "mask_channel": True, "bn_batches": 4,
    },
    "cpu": {
        "map_size": 64, "image_size": 64, "coarse": [24, 48, 96, 128], "refine": [16, 32, 64, 96],
        "disc": [32, 64, 128],
        "batch_size": 8, "coarse_steps": 400, "refine_steps": 200, "eval_batch": 50,
        "lr": 1e-3, "betas": [0.9, 0.999], "lr_decay": "cosine",
        "lambda_pix": 1.0, "lambda_per": 0.01, "lambda_adv": 0.01,
        "perceptual": False, "adversarial": False, "mask_channel": True, "bn_batches": 40,
    },
    "paper": {
        "map_size": 128, "image_size": 256, "coarse": [96, 192, 256, 512, 512, 512],
        "refine": [112, 224, 384, 512, 512, 512, 512], "disc": [64, 128, 256, 512],
        "batch_size": 8, "coarse_steps": 90_000, "refine_steps": 90_000, "eval_batch": 16,
        "lr": 1e-4, "betas": [0.9, 0.999], "lr_decay": "none",
        "lambda_pix": 1.0, "lambda_per": 0.01, "lambda_adv": 0.01,
        "perceptual": True, "adversarial": True, "mask_channel": True, "bn_batches": 0,
    },
}


def net_config(profile: str | Mapping[str, Any]) -> INVConfig:
    p = PROFILES[profile] if isinstance(profile, str) else profile
    return INVConfig(map_size=p["map_size"], image_size=p["image_size"], coarse=tuple(p["coarse"]),
                     refine=tuple(p["refine"]), disc=tuple(p["disc"]), in_channels=128 + int(p["mask_channel"]))


@register_attack
class INV(LearnedAttack):
    """INV (Pittaluga et al.): CoarseNet then RefineNet U-Nets on the sparse SIFT map with a keypoint mask."""

    name = "inv"
    default_extractor = "sift"
    consumes = Requirement("sift", {"has_coordinates": True, "has_descriptors": True})
    paper = ("Pittaluga, Koppal, Kang, Sinha: Revealing scenes by inverting structure from motion reconstructions, "
             "CVPR 2019, arXiv:1904.03303 (the INV baseline of CFGAN, IEEE TCSVT 2024, Tables I-II)")
    profiles = ("smoke", "cpu", "paper")
    paper_figures = {"params_generators": 88e6, "gmacs": 150.0}  # CFGAN's Table II (its "FLOPs" are MACs)
    PROFILES = PROFILES
    params = {**declare(PROFILES, help={"mask_channel": "add a keypoint-mask input channel"}),
              **stage_steps(PROFILES, ("coarse_steps", "refine_steps"))}

    def __init__(self, profile: str, image_size: int, device: torch.device | str = "cpu", seed: int = 0,
                 params: Mapping[str, Any] | None = None) -> None:
        super().__init__(profile, image_size, device, seed, params)
        self.net_cfg = net_config(self.hp)
        self.coarse: CoarseNet | None = None
        self.refine: RefineNet | None = None

    def network_shapes(self) -> dict[str, Any]:
        return self.net_cfg.to_dict()

    def config(self) -> dict[str, Any]:
        return {**super().config(), "map": {"compress": True, "mask_channel": bool(self.hp["mask_channel"])}}

    def preflight(self) -> None:
        """The paper profile's perceptual loss needs ImageNet VGG19 weights; refuse to start without them."""
        if self.hp["perceptual"]:
            from bench import weights

            weights.require("vgg19")

    def build(self) -> None:
        self.coarse = CoarseNet(self.net_cfg).to(self.device, memory_format=CL)
        self.refine = RefineNet(self.net_cfg).to(self.device, memory_format=CL)

    def networks(self) -> dict[str, nn.Module | None]:
        return {"coarse": self.coarse, "refine": self.refine}

    def _cpu_maps(self, features: SiftSet, idx: np.ndarray) -> torch.Tensor:
        extras = ("presence",) if self.hp["mask_channel"] else ()
        return keypoint_maps(features, idx, self.hp["map_size"], seed=self.seed, extras=extras)

    def _maps(self, features: SiftSet, idx: np.ndarray) -> torch.Tensor:
        return self._cpu_maps(features, idx).to(self.device, memory_format=CL)

    # ---------------------------------------------------------------------------------------------- training
    def fit(self, features: FeatureSet, images: torch.Tensor, ctx: FitContext) -> None:
        """CoarseNet first, then RefineNet with CoarseNet frozen (as in the paper)."""
        sift = require_sift(self.name, features)
        self.check_training_inputs(features, images, minimum=2)
        hp = self.hp
        if not hp["perceptual"]:
            ctx.notes.append(f"inv: perceptual (VGG19) loss is off in the {self.profile} profile, because ImageNet "
                             "VGG19 weights cannot be assumed offline; the paper profile uses it")
        if not hp["adversarial"]:
            ctx.notes.append(f"inv: adversarial loss is off in the {self.profile} profile (RefineNet trains with "
                             "L1 only); the paper profile uses it")
        if self.profile != "paper":
            ctx.notes.append(f"inv: the {self.profile} profile uses reduced widths (CoarseNet {hp['coarse']}, "
                             f"RefineNet {hp['refine']}), {hp['coarse_steps']} + {hp['refine_steps']} steps, learning "
                             f"rate {hp['lr']:g} ({'constant' if hp['lr_decay'] == 'none' else hp['lr_decay'] + ' decay'}) "
                             "and re-estimated batch-norm statistics")
        self.start_training()
        assert self.coarse is not None and self.refine is not None
        per = None
        if hp["perceptual"]:
            from bench import weights
            from bench.nn.losses import PerceptualLoss

            per = PerceptualLoss(weights.load_state_dict("vgg19")).to(self.device)
        batches = seeded_batches(images.shape[0], hp["batch_size"], self.seed)  # one stream for both stages
        coarse, refine = self.coarse, self.refine
        cpu_maps = record_inputs(lambda idx: self._cpu_maps(sift, idx), len(sift))  # kept per record (speed-ups)

        def maps(idx: np.ndarray) -> torch.Tensor:
            return cpu_maps(idx).to(self.device, memory_format=CL)

        self._train_stage("coarse", coarse, lambda m: coarse(m), maps, images, batches, per, False, ctx.progress)
        self._recalibrate_bn(coarse, lambda m: coarse(m), maps, len(sift))
        coarse.eval().requires_grad_(False)

        def refine_fwd(m: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                rough = coarse(m)
            return refine(m, rough)

        self._train_stage("refine", refine, refine_fwd, maps, images, batches, per, bool(hp["adversarial"]),
                          ctx.progress)
        self._recalibrate_bn(refine, refine_fwd, maps, len(sift))
        refine.eval()

    def _train_stage(self, stage: str, net: nn.Module, forward: Callable[[torch.Tensor], torch.Tensor],
                     maps: Callable[[np.ndarray], torch.Tensor], images: torch.Tensor, batches: Batches,
                     per: nn.Module | None, adversarial: bool, progress: bool) -> None:
        """λ_pix·L1 (+ λ_per·perceptual) (+ λ_adv·BCE GAN against a discriminator built here when `adversarial`) on
        the batches' maps `maps(idx)`."""
        hp = self.hp
        steps = int(hp[f"{stage}_steps"])
        opt = adam(net.parameters(), hp)
        adversary = None
        if adversarial:
            disc = Discriminator(self.net_cfg).to(self.device, memory_format=CL).train()
            adversary = Adversary(disc, BCE, adam(disc.parameters(), hp))
        scheds = schedules([opt] + ([adversary.opt] if adversary else []), hp["lr_decay"], steps)
        net.train()

        def step(idx: np.ndarray) -> float:
            target = images[torch.from_numpy(idx)].to(self.device, torch.float32, memory_format=CL)
            fake = forward(maps(idx))
            loss = hp["lambda_pix"] * F.l1_loss(fake, target)
            if per is not None:
                loss = loss + hp["lambda_per"] * per(fake, target)
            if adversary is not None:
                loss = adversary.train_step(opt, loss, hp["lambda_adv"], target, fake)
            else:
                optimise(opt, loss)
            return float(loss.detach())

        self.run_stage(stage, steps, batches, step, schedulers=scheds, progress=progress)

    def _recalibrate_bn(self, net: nn.Module, forward: Callable[[torch.Tensor], torch.Tensor],
                        maps: Callable[[np.ndarray], torch.Tensor], n: int) -> None:
        """Running BN statistics of the trained `net` re-estimated as plain averages over `bn_batches` batches of
        the `n` training records' maps `maps(idx)`."""
        recalibrate_bn(net, lambda idx: forward(maps(idx)), n, int(self.hp["batch_size"]),
                       int(self.hp["bn_batches"]), self.seed + 1)

    # ------------------------------------------------------------------------------------------ reconstruction
    def reconstruction_inputs(self, features: FeatureSet) -> SiftSet:
        return require_sift(self.name, features)

    def reconstruct_batch(self, features: SiftSet, indices: np.ndarray) -> torch.Tensor:
        assert self.coarse is not None and self.refine is not None
        maps = self._maps(features, indices)
        return self.refine(maps, self.coarse(maps))

    def describe(self) -> dict[str, Any]:
        cfg = self.net_cfg
        with torch.device("meta"):
            coarse, refine, disc = CoarseNet(cfg).eval(), RefineNet(cfg).eval(), Discriminator(cfg).eval()
            x = torch.zeros(1, cfg.in_channels, cfg.map_size, cfg.map_size)
        p_c, p_r, p_d = count_parameters(coarse), count_parameters(refine), count_parameters(disc)
        return {
            "profile": self.profile,
            "map_size": cfg.map_size,
            "image_size": cfg.image_size,
            "input_channels": cfg.in_channels,
            "params_coarse_net": p_c,
            "params_refine_net": p_r,
            "params_generators": p_c + p_r,
            "params_discriminator": p_d,
            "params_total": p_c + p_r + p_d,
            "inference": f"one {cfg.image_size}x{cfg.image_size} image from a {cfg.map_size}x{cfg.map_size} map, "
                         "CoarseNet + RefineNet (convolutions and matrix products)",
            **flop_figures(lambda m: refine(m, coarse(m)), x),
            "paper_table_ii": {"params": "88M", "flops": "150G",
                               "best_match": "generators only (no discriminator) and MACs"},
        }
