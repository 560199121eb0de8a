"""CFGAN attack: coarse-to-fine GAN that rebuilds images from dense SIFT maps (Li et al., TCSVT 2024).

Training follows the paper (Sec. III.E, IV.A): the coarse net is trained first, then frozen while the fine net
trains; both stages minimise λ_pix·L1 + λ_per·perceptual + λ_adv·RaGAN + λ_sift·sift loss with Adam. The networks
are in cfgan_nets.py, the losses in bench/losses.py; per-profile hyper-parameters are in PROFILES below.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from bench.attacks.cfgan_nets import CFGANConfig, CoarseNet, Discriminator, FineNet
from bench.describe import count_flops, count_parameters
from bench.errors import BenchError
from bench.features import FeatureSet, Requirement
from bench.losses import PerceptualLoss, SiftLoss, ragan_d_loss, ragan_g_loss
from bench.plugins import Attack, FitContext, register_attack

# Per-profile hyper-parameters, the one place they are set.
# - smoke: seconds, for tests (tiny widths, a few steps).
# - cpu: tuned for ~3-4 minutes of training (coarse + fine) on 2 CPU cores at 64×64 (1500 training images); reduced
#   widths, a narrowed 3×3 conv (bottleneck_div 2), a higher learning rate than the paper's 1e-4 (3e-4 with cosine
#   decay converges clearly further in this short budget), and no perceptual loss: ImageNet VGG19 weights cannot be
#   assumed offline.
# - paper: the published configuration (Sec. IV.A): batch 8, Adam 1e-4, β (0.9, 0.999), λ_pix 1, λ_per 0.01,
#   λ_adv 0.02, λ_sift 0.01, all four losses; widths 128→256→512 capped at 512 (153 M generator parameters, see
#   cfgan_nets.py). The paper does not give a number of steps; 30 epochs of 24 000 images per stage is our choice.
PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        "map_size": 32, "image_size": 32,
        "enc_widths": [8, 16, 16, 16], "dec_widths": [16, 16, 16, 8], "disc_widths": [8, 16, 16, 16],
        "bottleneck_div": 1,
        "batch_size": 4, "coarse_steps": 4, "fine_steps": 4, "eval_batch": 16,
        "lr": 1e-3, "betas": [0.9, 0.999], "lr_decay": "none",
        "lambda_pix": 1.0, "lambda_per": 0.01, "lambda_adv": 0.02, "lambda_sift": 0.01,
        "perceptual": False, "adversarial": True, "sift_loss": True, "sift_stride": 4,
    },
    "cpu": {
        "map_size": 64, "image_size": 64,
        "enc_widths": [32, 64, 96, 128, 128], "dec_widths": [128, 128, 96, 64, 32], "disc_widths": [16, 32, 64, 64, 64],
        "bottleneck_div": 2,
        "batch_size": 16, "coarse_steps": 600, "fine_steps": 400, "eval_batch": 50,
        "lr": 3e-4, "betas": [0.9, 0.999], "lr_decay": "cosine",
        "lambda_pix": 1.0, "lambda_per": 0.01, "lambda_adv": 0.02, "lambda_sift": 0.01,
        "perceptual": False, "adversarial": True, "sift_loss": True, "sift_stride": 4,
    },
    "paper": {
        "map_size": 128, "image_size": 256,
        "enc_widths": [128, 256, 512, 512, 512, 512], "dec_widths": [512, 512, 512, 512, 256, 128, 64],
        "disc_widths": [64, 128, 256, 512, 512, 512, 512],
        "bottleneck_div": 1,
        "batch_size": 8, "coarse_steps": 90_000, "fine_steps": 90_000, "eval_batch": 16,
        "lr": 1e-4, "betas": [0.9, 0.999], "lr_decay": "none",
        "lambda_pix": 1.0, "lambda_per": 0.01, "lambda_adv": 0.02, "lambda_sift": 0.01,
        "perceptual": True, "adversarial": True, "sift_loss": True, "sift_stride": 1,
    },
}

PERCEPTUAL_OFF_NOTE = (
    "cfgan: perceptual (VGG19) loss is off in the {profile} profile, because ImageNet VGG19 weights cannot be "
    "assumed offline; the paper profile uses it"
)


def net_config(profile: str) -> CFGANConfig:
    """The network shapes of one profile."""
    p = PROFILES[profile]
    return CFGANConfig(
        map_size=p["map_size"], image_size=p["image_size"], enc_widths=tuple(p["enc_widths"]),
        dec_widths=tuple(p["dec_widths"]), disc_widths=tuple(p["disc_widths"]), bottleneck_div=p["bottleneck_div"],
    )


@register_attack
class CFGAN(Attack):
    """CFGAN: a coarse U-Net and an AdaIN-fused fine net rebuild the image from a dense SIFT map."""

    name = "cfgan"
    consumes = Requirement("sift", {"has_coordinates": True, "has_descriptors": True})
    paper = ("Li, Zhu, Wang, Zhou, Zhang: Deep reverse attack on SIFT features with a coarse-to-fine GAN model "
             "(CFGAN), IEEE TCSVT 2024, doi:10.1109/TCSVT.2024.3367808")
    profiles = ("smoke", "cpu", "paper")

    def __init__(self, profile: str, image_size: int, device: torch.device | str = "cpu", seed: int = 0) -> None:
        super().__init__(profile, image_size, device, seed)
        self.hp: dict[str, Any] = PROFILES[profile]
        if self.image_size != self.hp["image_size"]:
            raise BenchError(
                f"cfgan profile {profile!r} reconstructs at {self.hp['image_size']}×{self.hp['image_size']}, "
                f"but image_size {self.image_size} was asked for (use the run profile of the same name)"
            )
        self.net_cfg = net_config(profile)
        self.coarse: CoarseNet | None = None
        self.fine: FineNet | None = None
        self.history: dict[str, list[float]] = {"coarse": [], "fine": []}

    # ------------------------------------------------------------------------------------------------ plumbing
    def config(self) -> dict[str, Any]:
        """Profile hyper-parameters, network shapes and seed: everything that changes what `fit` learns."""
        return {**super().config(), "seed": self.seed, "hyper": dict(self.hp), "nets": self.net_cfg.to_dict(),
                "map": {"compress": True, "compat": False}}

    def preflight(self) -> None:
        """The paper profile needs ImageNet VGG19 weights for the perceptual loss; refuse to start without them."""
        if self.hp["perceptual"]:
            from bench import weights

            weights.require("vgg19")

    def _build(self) -> None:
        self.coarse = CoarseNet(self.net_cfg).to(self.device)
        self.fine = FineNet(self.net_cfg).to(self.device)

    def _maps(self, features: FeatureSet, indices: np.ndarray) -> torch.Tensor:
        from bench.sift_maps import sift_maps

        m = sift_maps(features, indices, self.hp["map_size"], compress=True, seed=self.seed)  # type: ignore[arg-type]
        return m.to(self.device, non_blocking=True)

    # ---------------------------------------------------------------------------------------------- training
    def fit(self, features: FeatureSet, images: torch.Tensor, ctx: FitContext) -> None:
        """Train the coarse net, then the fine net with the coarse net frozen."""
        s = self.image_size
        if images.dim() != 4 or tuple(images.shape[1:]) != (3, s, s):
            raise BenchError(f"cfgan: training images must be N×3×{s}×{s}, got {tuple(images.shape)}")
        if len(features) != images.shape[0]:
            raise BenchError(f"cfgan: {len(features)} feature records for {images.shape[0]} training images")
        if images.shape[0] < 2:
            raise BenchError("cfgan: needs at least 2 training images (batch norm)")
        if not self.hp["perceptual"]:
            ctx.notes.append(PERCEPTUAL_OFF_NOTE.format(profile=self.profile))
        torch.manual_seed(self.seed)
        self._build()
        assert self.coarse is not None and self.fine is not None
        losses = self._losses()
        gen = torch.Generator().manual_seed(self.seed)
        self.history = {"coarse": [], "fine": []}
        d_coarse = Discriminator(self.net_cfg).to(self.device)
        self._train_stage("coarse", self.coarse, d_coarse, None, features, images, losses, gen, ctx.progress)
        del d_coarse
        self.coarse.eval().requires_grad_(False)
        d_fine = Discriminator(self.net_cfg).to(self.device)
        self._train_stage("fine", self.fine, d_fine, self.coarse, features, images, losses, gen, ctx.progress)
        self.fine.eval()

    def _losses(self) -> dict[str, nn.Module]:
        out: dict[str, nn.Module] = {}
        if self.hp["sift_loss"]:
            out["sift"] = SiftLoss(stride=self.hp["sift_stride"]).to(self.device)
        if self.hp["perceptual"]:
            from bench import weights

            out["per"] = PerceptualLoss(weights.load_state_dict("vgg19")).to(self.device)
        return out

    def _batches(self, n: int, gen: torch.Generator) -> Any:
        """Endless epochs of a seeded permutation, in batches of batch_size (last partial batch dropped)."""
        b = min(int(self.hp["batch_size"]), n)
        while True:
            perm = torch.randperm(n, generator=gen).numpy()
            for i in range(0, n - b + 1, b):
                yield perm[i:i + b]

    def _train_stage(
        self,
        stage: str,
        net: nn.Module,
        disc: Discriminator,
        coarse: CoarseNet | None,
        features: FeatureSet,
        images: torch.Tensor,
        losses: Mapping[str, nn.Module],
        gen: torch.Generator,
        progress: bool,
    ) -> None:
        hp = self.hp
        steps = int(hp[f"{stage}_steps"])
        betas = tuple(hp["betas"])
        opt_g = torch.optim.Adam(net.parameters(), lr=hp["lr"], betas=betas)  # type: ignore[arg-type]
        opt_d = torch.optim.Adam(disc.parameters(), lr=hp["lr"], betas=betas)  # type: ignore[arg-type]
        scheds = []
        if hp["lr_decay"] == "cosine":
            scheds = [torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=max(steps, 1)) for o in (opt_g, opt_d)]
        net.train()
        disc.train()
        batches = self._batches(images.shape[0], gen)
        bar = tqdm(range(steps), desc=f"CFGAN {stage}", disable=not progress, unit="step")
        for step in bar:
            idx = next(batches)
            maps = self._maps(features, idx)
            target = images[torch.from_numpy(idx)].to(self.device, non_blocking=True)
            if coarse is not None:
                with torch.no_grad():
                    rough = coarse(maps)
                fake = net(maps, rough)
            else:
                fake = net(maps)
            # Generator step (discriminator frozen).
            loss = hp["lambda_pix"] * F.l1_loss(fake, target)
            if "sift" in losses:
                loss = loss + hp["lambda_sift"] * losses["sift"](fake, target)
            if "per" in losses:
                loss = loss + hp["lambda_per"] * losses["per"](fake, target)
            if hp["adversarial"]:
                disc.requires_grad_(False)
                with torch.no_grad():
                    real_logits = disc(target)
                loss = loss + hp["lambda_adv"] * ragan_g_loss(real_logits, disc(fake))
                disc.requires_grad_(True)
            opt_g.zero_grad(set_to_none=True)
            loss.backward()
            opt_g.step()
            # Discriminator step.
            if hp["adversarial"]:
                d_loss = ragan_d_loss(disc(target), disc(fake.detach()))
                opt_d.zero_grad(set_to_none=True)
                d_loss.backward()
                opt_d.step()
            for sch in scheds:
                sch.step()
            value = float(loss.detach())
            if not math.isfinite(value):
                raise RuntimeError(f"cfgan: {stage} training diverged at step {step} (loss {value})")
            self.history[stage].append(value)
            if progress and (step % 10 == 0 or step == steps - 1):
                bar.set_postfix(loss=f"{value:.4f}")
        bar.close()

    # ------------------------------------------------------------------------------------------ reconstruction
    def reconstruct(self, features: FeatureSet, progress: bool = True) -> torch.Tensor:
        """Coarse then fine reconstruction of every record, in batches, on the CPU as float32 in [0, 1]."""
        if self.coarse is None or self.fine is None:
            raise RuntimeError("cfgan: reconstruct() before fit() or load_state_dict()")
        self.coarse.eval()
        self.fine.eval()
        n, b = len(features), int(self.hp["eval_batch"])
        s = self.image_size
        out = torch.empty((n, 3, s, s), dtype=torch.float32)
        bar = tqdm(range(0, n, b), desc="CFGAN reconstruct", disable=not progress, unit="batch")
        with torch.no_grad():
            for start in bar:
                idx = np.arange(start, min(start + b, n))
                maps = self._maps(features, idx)
                rec = self.fine(maps, self.coarse(maps))
                out[start:start + len(idx)] = rec.float().cpu().clamp_(0.0, 1.0)
        return out

    # ------------------------------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """{'config': plain dict, 'coarse': ..., 'fine': ...}; discriminators are not kept."""
        if self.coarse is None or self.fine is None:
            raise RuntimeError("cfgan: state_dict() before fit() or load_state_dict()")

        def cpu(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            return {k: v.detach().cpu() for k, v in sd.items()}

        return {"config": self.config(), "coarse": cpu(self.coarse.state_dict()), "fine": cpu(self.fine.state_dict())}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the generators saved by `state_dict` (their network shapes must match this profile)."""
        nets = dict(state.get("config", {}).get("nets", {}))
        if nets != self.net_cfg.to_dict():
            raise BenchError(f"cfgan: saved state has networks {nets}, profile {self.profile!r} needs "
                             f"{self.net_cfg.to_dict()}")
        self._build()
        assert self.coarse is not None and self.fine is not None
        self.coarse.load_state_dict(state["coarse"])
        self.fine.load_state_dict(state["fine"])
        self.coarse.eval().requires_grad_(False)
        self.fine.eval()

    # ---------------------------------------------------------------------------------------------- describe
    def describe(self) -> dict[str, Any]:
        """Parameter counts and FLOPs/MACs of one inference (coarse + fine) at this profile's sizes."""
        cfg = self.net_cfg
        with torch.device("meta"):
            coarse, fine, disc = CoarseNet(cfg).eval(), FineNet(cfg).eval(), Discriminator(cfg).eval()
            sift_map = torch.zeros(1, cfg.in_channels, cfg.map_size, cfg.map_size)
        flops = count_flops(lambda m: fine(m, coarse(m)), sift_map)
        p_c, p_f, p_d = count_parameters(coarse), count_parameters(fine), count_parameters(disc)
        return {
            "profile": self.profile,
            "map_size": cfg.map_size,
            "image_size": cfg.image_size,
            "params_coarse_generator": p_c,
            "params_fine_generator": p_f,
            "params_discriminators": 2 * p_d,
            "params_generators": p_c + p_f,
            "params_total": p_c + p_f + 2 * p_d,
            "inference": f"one {cfg.image_size}x{cfg.image_size} image from a {cfg.map_size}x{cfg.map_size} map, "
                         "coarse + fine (convolutions and matrix products)",
            "gflops": flops / 1e9,
            "gmacs": flops / 2e9,
            "paper_table_ii": {"params": "153M", "flops": "148G",
                               "best_match": "generators only (no discriminators) and MACs"},
        }

