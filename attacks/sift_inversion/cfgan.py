"""CFGAN attack: coarse-to-fine GAN that rebuilds images from dense SIFT maps (Li et al., TCSVT 2024).

Training follows the paper (Sec. III.E, IV.A): the coarse net is trained first, then frozen while the fine net
trains; both stages minimise λ_pix·L1 + λ_per·perceptual + λ_adv·RaGAN + λ_sift·sift loss with Adam. The networks
are in cfgan_nets.py, the SIFT loss in losses.py beside it, the generic GAN losses in bench/nn/losses.py; per-profile hyper-parameters are in PROFILES below.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.attacks.sift_inversion.cfgan_nets import CFGANConfig, CoarseNet, Discriminator, FineNet
from bench.attacks.sift_inversion.losses import SiftLoss
from bench.features import FeatureSet, Requirement
from bench.hyper import declare, stage_steps
from bench.nn.losses import PerceptualLoss
from bench.nn.measure import count_parameters
from bench.plugins import FitContext, register_attack
from bench.record_cache import DenseRecordCache
from bench.training import (RAGAN, Adversary, LearnedAttack, adam, flop_figures, optimise, recalibrate_bn,
                            record_inputs, schedules, seeded_batches, speedups_enabled)

# Per-profile hyper-parameters, the one place they are set.
# - smoke: seconds, for tests (tiny widths, a few steps).
# - cpu: tuned for about 3-4 minutes of training (coarse + fine) on 2 CPU cores at 64×64 with 1500 training images
#   (measured: ~0.25 s per coarse step and ~0.4 s per fine step with 2 threads). Reduced widths and a narrowed 3×3
#   conv (bottleneck_div 2); batch 8 as in the paper; learning rate 1e-3 with cosine decay instead of the paper's 1e-4, which in this budget stays at the mean-image
#   floor (UTKFace, 640 steps: SSIM .34 with 1e-4 vs .57 with 1e-3); dense SIFT of the sift loss on a stride-4 grid
#   (stride 1 alone costs more than the generator step); the fine net starts from the coarse net's weights and
#   batch-norm statistics are re-estimated after each stage (see _init_fine_from_coarse, _recalibrate_bn); no
#   perceptual loss, because ImageNet VGG19 weights cannot be assumed offline.
# - paper: the published configuration (Sec. IV.A): batch 8, Adam 1e-4, β (0.9, 0.999), λ_pix 1, λ_per 0.01,
#   λ_adv 0.02, λ_sift 0.01, all four losses; widths 128→256→512 capped at 512 (152 M generator parameters, see
#   cfgan_nets.py). The paper does not give a number of steps; 30 epochs of 24 000 images per stage is our choice.
PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        "map_size": 32, "image_size": 32,
        "enc_widths": [8, 16, 16, 16], "dec_widths": [16, 16, 16, 8], "disc_widths": [8, 16, 16, 16],
        "bottleneck_div": 1,
        "batch_size": 4, "coarse_steps": 4, "fine_steps": 4, "eval_batch": 16,
        "lr": 1e-3, "betas": [0.9, 0.999], "lr_decay": "none",
        "lambda_pix": 1.0, "lambda_per": 0.01, "lambda_adv": 0.02, "lambda_sift": 0.01,
        "perceptual": False, "adversarial": True, "sift_loss": True, "sift_stride": 4, "bn_batches": 4,
        "fine_from_coarse": True,
    },
    "cpu": {
        "map_size": 64, "image_size": 64,
        "enc_widths": [16, 32, 64, 96, 128], "dec_widths": [128, 96, 64, 32, 16], "disc_widths": [16, 32, 64, 64, 64],
        "bottleneck_div": 2,
        "batch_size": 8, "coarse_steps": 400, "fine_steps": 240, "eval_batch": 50,
        "lr": 1e-3, "betas": [0.9, 0.999], "lr_decay": "cosine",
        "lambda_pix": 1.0, "lambda_per": 0.01, "lambda_adv": 0.02, "lambda_sift": 0.01,
        "perceptual": False, "adversarial": True, "sift_loss": True, "sift_stride": 4, "bn_batches": 40,
        "fine_from_coarse": True,
    },
    "paper": {
        "map_size": 128, "image_size": 256,
        "enc_widths": [128, 256, 512, 512, 512, 512], "dec_widths": [512, 512, 512, 512, 256, 128, 64],
        "disc_widths": [64, 128, 256, 512, 512, 512, 512],
        "bottleneck_div": 1,
        "batch_size": 8, "coarse_steps": 90_000, "fine_steps": 90_000, "eval_batch": 16,
        "lr": 1e-4, "betas": [0.9, 0.999], "lr_decay": "none",
        "lambda_pix": 1.0, "lambda_per": 0.01, "lambda_adv": 0.02, "lambda_sift": 0.01,
        "perceptual": True, "adversarial": True, "sift_loss": True, "sift_stride": 1, "bn_batches": 0,
        "fine_from_coarse": False,
    },
}

CL = torch.channels_last

PERCEPTUAL_OFF_NOTE = (
    "cfgan: perceptual (VGG19) loss is off in the {profile} profile, because ImageNet VGG19 weights cannot be "
    "assumed offline; the paper profile uses it"
)


def net_config(profile: str | Mapping[str, Any]) -> CFGANConfig:
    """The network shapes of one profile (a name, or its hyper-parameters with any overrides)."""
    p = PROFILES[profile] if isinstance(profile, str) else profile
    return CFGANConfig(
        map_size=p["map_size"], image_size=p["image_size"], enc_widths=tuple(p["enc_widths"]),
        dec_widths=tuple(p["dec_widths"]), disc_widths=tuple(p["disc_widths"]), bottleneck_div=p["bottleneck_div"],
    )


@register_attack
class CFGAN(LearnedAttack):
    """CFGAN: a coarse U-Net and an AdaIN-fused fine net rebuild the image from a dense SIFT map."""

    name = "cfgan"
    default_extractor = "sift"
    consumes = Requirement("sift", {"has_coordinates": True, "has_descriptors": True})
    paper = ("Li, Zhu, Wang, Zhou, Zhang: Deep reverse attack on SIFT features with a coarse-to-fine GAN model "
             "(CFGAN), IEEE TCSVT 2024, doi:10.1109/TCSVT.2024.3367808")
    profiles = ("smoke", "cpu", "paper")
    paper_figures = {"params_generators": 153e6, "gmacs": 148.0}  # Table II (its "FLOPs" are MACs)
    shards_exactly = True  # batch norm synchronised, RaGAN's batch means global (bench.nn.distributed)
    PROFILES = PROFILES
    params = {**declare(PROFILES, help={
        "bottleneck_div": "divisor of the 3×3 bottleneck conv widths", "fine_from_coarse":
        "start the fine net from the coarse net's weights"}),
        **stage_steps(PROFILES, ("coarse_steps", "fine_steps"))}

    def __init__(self, profile: str, image_size: int, device: torch.device | str = "cpu", seed: int = 0,
                 params: Mapping[str, Any] | None = None) -> None:
        super().__init__(profile, image_size, device, seed, params)
        self.net_cfg = net_config(self.hp)
        self.coarse: CoarseNet | None = None
        self.fine: FineNet | None = None

    # ------------------------------------------------------------------------------------------------ plumbing
    def network_shapes(self) -> dict[str, Any]:
        return self.net_cfg.to_dict()

    def config(self) -> dict[str, Any]:
        """Profile hyper-parameters and network shapes: what changes what `fit` learns (the seed is keyed separately)."""
        return {**super().config(), "map": {"compress": True, "compat": False}}

    def preflight(self) -> None:
        """The paper profile needs ImageNet VGG19 weights for the perceptual loss; refuse to start without them."""
        if self.hp["perceptual"]:
            from bench import weights

            weights.require("vgg19")

    def build(self) -> None:
        # channels_last: oneDNN convolutions run about twice as fast on the CPU in this layout (and fine on GPUs).
        self.coarse = CoarseNet(self.net_cfg).to(self.device, memory_format=CL)
        self.fine = FineNet(self.net_cfg).to(self.device, memory_format=CL)

    def networks(self) -> dict[str, nn.Module | None]:
        return {"coarse": self.coarse, "fine": self.fine}

    def _cpu_maps(self, features: FeatureSet, indices: np.ndarray) -> torch.Tensor:
        from bench.attacks.sift_inversion.maps import sift_maps

        return sift_maps(features, indices, self.hp["map_size"], compress=True, seed=self.seed,  # type: ignore[arg-type]
                         channels_last=True)

    def _maps(self, features: FeatureSet, indices: np.ndarray) -> torch.Tensor:
        return self._cpu_maps(features, indices).to(self.device, memory_format=CL, non_blocking=True)

    # ---------------------------------------------------------------------------------------------- training
    def fit(self, features: FeatureSet, images: torch.Tensor, ctx: FitContext) -> None:
        """Train the coarse net, then the fine net with the coarse net frozen."""
        self.check_training_inputs(features, images, minimum=2)
        if not self.hp["perceptual"]:
            ctx.notes.append(PERCEPTUAL_OFF_NOTE.format(profile=self.profile))
        changes = self._departures()
        if changes:
            ctx.notes.append(f"cfgan: the {self.profile} profile departs from the paper's training: " + "; ".join(changes))
        self.start_training()
        assert self.coarse is not None and self.fine is not None
        losses = self._losses()
        gen = torch.Generator().manual_seed(self.seed)  # shared by both stages' batches
        coarse, fine = self.coarse, self.fine
        cpu_maps = record_inputs(lambda idx: self._cpu_maps(features, idx), len(features))  # kept per record

        def maps(idx: np.ndarray) -> torch.Tensor:
            return cpu_maps(idx).to(self.device, memory_format=CL, non_blocking=True)

        targets = self._target_inputs(images, losses)
        self._train_stage("coarse", coarse, Discriminator(self.net_cfg).to(self.device, memory_format=CL), None,
                          maps, targets, len(features), losses, gen, ctx.progress)
        self._recalibrate_bn(coarse, lambda m: coarse(m), maps, len(features))
        coarse.eval().requires_grad_(False)
        if self.hp["fine_from_coarse"]:
            self._init_fine_from_coarse()
        self._train_stage("fine", fine, Discriminator(self.net_cfg).to(self.device, memory_format=CL), coarse,
                          maps, targets, len(features), losses, gen, ctx.progress)
        self._recalibrate_bn(fine, lambda m: fine(m, coarse(m)), maps, len(features))
        fine.eval()

    def _target_inputs(self, images: torch.Tensor, losses: Mapping[str, nn.Module]) -> Any:
        """`targets(idx) -> (images, their SIFT-loss descriptors or None)`. The descriptors of a fixed image never
        change: with the speed-ups they are computed once per image (kept within 512 MiB), else every step."""
        sift = losses.get("sift")

        def target_images(idx: np.ndarray) -> torch.Tensor:
            return images[torch.from_numpy(np.asarray(idx))].to(self.device, torch.float32, memory_format=CL)

        kept = None
        if sift is not None and speedups_enabled():
            kept = DenseRecordCache(lambda idx: sift.target_descriptors(target_images(idx)),  # type: ignore[operator]
                                    images.shape[0])

        def targets(idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
            return target_images(idx), (kept(idx) if kept is not None else None)

        return targets

    def _departures(self) -> list[str]:
        """What this profile's training does differently from the paper profile (for the run notes)."""
        hp, paper = self.hp, PROFILES["paper"]
        out = []
        if hp["enc_widths"] != paper["enc_widths"] or hp["bottleneck_div"] != paper["bottleneck_div"]:
            out.append("reduced widths")
        if hp["lr"] != paper["lr"] or hp["lr_decay"] != paper["lr_decay"]:
            decay = "constant" if hp["lr_decay"] == "none" else f"{hp['lr_decay']} decay"
            out.append(f"learning rate {hp['lr']:g} ({decay})")
        if hp["sift_loss"] and hp["sift_stride"] != 1:
            out.append(f"sift loss on a stride-{hp['sift_stride']} grid")
        if hp["fine_from_coarse"]:
            out.append("fine net warm-started from the coarse net")
        if hp["bn_batches"]:
            out.append("batch-norm statistics re-estimated after each stage")
        return out

    def _losses(self) -> dict[str, nn.Module]:
        out: dict[str, nn.Module] = {}
        if self.hp["sift_loss"]:
            out["sift"] = SiftLoss(stride=self.hp["sift_stride"]).to(self.device)
        if self.hp["perceptual"]:
            from bench import weights

            out["per"] = PerceptualLoss(weights.load_state_dict("vgg19")).to(self.device)
        return out

    def _train_stage(self, stage: str, net: nn.Module, disc: Discriminator, coarse: CoarseNet | None,
                     maps: Any, targets: Any, n_records: int, losses: Mapping[str, nn.Module],
                     gen: torch.Generator, progress: bool) -> None:
        """λ_pix·L1 (+ λ_sift·SIFT, + λ_per·perceptual) + λ_adv·RaGAN against `disc`; `coarse` (frozen) feeds the
        fine net its rough image. `maps(idx)`: the batch's SIFT maps; `targets(idx)`: its images and their SIFT-loss
        descriptors (None: computed here)."""
        hp = self.hp
        steps = int(hp[f"{stage}_steps"])
        opt_g = adam(net.parameters(), hp)
        adversary = Adversary(disc, RAGAN, adam(disc.parameters(), hp))
        scheds = schedules([opt_g, adversary.opt], hp["lr_decay"], steps)
        net.train()
        disc.train()

        def step(idx: np.ndarray) -> float:
            m = maps(idx)
            target, target_desc = targets(idx)
            if coarse is not None:
                with torch.no_grad():
                    rough = coarse(m)
                fake = net(m, rough)
            else:
                fake = net(m)
            loss = hp["lambda_pix"] * F.l1_loss(fake, target)
            if "sift" in losses:
                loss = loss + hp["lambda_sift"] * losses["sift"](fake, target, target_desc)
            if "per" in losses:
                loss = loss + hp["lambda_per"] * losses["per"](fake, target)
            if hp["adversarial"]:
                loss = adversary.train_step(opt_g, loss, hp["lambda_adv"], target, fake)
            else:
                optimise(opt_g, loss)
            return float(loss.detach())

        batches = seeded_batches(n_records, hp["batch_size"], gen)
        self.run_stage(stage, steps, batches, step, schedulers=scheds, progress=progress)

    def _init_fine_from_coarse(self) -> None:
        """Start the fine net's SIFT encoder and decoder from the trained coarse net's (same shapes).

        A warm start for short CPU budgets, where a fine net trained from scratch cannot catch up with the coarse
        net in the steps available; the coarse-image encoder still starts from scratch.
        """
        assert self.coarse is not None and self.fine is not None
        self.fine.sift_encoder.load_state_dict(self.coarse.encoder.state_dict())
        self.fine.decoder.load_state_dict(self.coarse.decoder.state_dict())

    def _recalibrate_bn(self, net: nn.Module, forward: Any, maps: Any, n: int) -> None:
        """BN running statistics of the trained `net` re-estimated over `bn_batches` batches of `maps(idx)` of the
        `n` training records (bench.training). Off (0) in the paper profile, whose long training makes it
        unnecessary."""
        recalibrate_bn(net, lambda idx: forward(maps(idx)), n, int(self.hp["batch_size"]),
                       int(self.hp.get("bn_batches", 0)), self.seed + 1)

    # ------------------------------------------------------------------------------------------ reconstruction
    def reconstruct_batch(self, features: FeatureSet, indices: np.ndarray) -> torch.Tensor:
        """Coarse then fine reconstruction of the records `indices`."""
        assert self.coarse is not None and self.fine is not None
        maps = self._maps(features, indices)
        return self.fine(maps, self.coarse(maps))

    # ---------------------------------------------------------------------------------------------- describe
    def describe(self) -> dict[str, Any]:
        """Parameter counts and FLOPs/MACs of one inference (coarse + fine) at this profile's sizes."""
        cfg = self.net_cfg
        with torch.device("meta"):
            coarse, fine, disc = CoarseNet(cfg).eval(), FineNet(cfg).eval(), Discriminator(cfg).eval()
            sift_map = torch.zeros(1, cfg.in_channels, cfg.map_size, cfg.map_size)
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
            **flop_figures(lambda m: fine(m, coarse(m)), sift_map),
            "paper_table_ii": {"params": "153M", "flops": "148G",
                               "best_match": "generators only (no discriminators) and MACs"},
        }
