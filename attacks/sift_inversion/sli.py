"""SLI attacks: SIFT → LBP → image reconstruction (Wu & Zhou, IEEE TIFS 2021), and its variants SLI-B and SLI-R.

- `sli`: network 1 (U-Net) maps the dense SIFT map (128 channels, descriptors d/127.5 − 1 at their keypoint cells)
  to a local-binary-pattern structure image (1 channel in [-1, 1], lbp.py); network 2 (same U-Net shape) maps the
  SIFT map and that LBP image (129 channels) to RGB. Training is sequential: the LBP net is trained first, then
  frozen, and the image net is trained on the LBP net's *predicted* LBP images, i.e. on exactly the input it gets at
  reconstruction time (no ground-truth-LBP stage, so no train/test mismatch to fine-tune away).
- `sli-b`: coordinates only (descriptors dropped): a 1-channel binary keypoint map → the image U-Net (no LBP stage).
- `sli-r`: descriptors only (coordinates dropped): every released descriptor is matched by cosine similarity to the
  descriptors of one reference image of the attacker's auxiliary split and placed at the matched reference
  keypoint; the SLI networks are trained on auxiliary maps built the same way and then applied.

Losses (both nets): relativistic-average GAN against a patch discriminator + 100×L1; the image net adds perceptual
(VGG19 relu1_1 … relu5_1) and style (Gram matrices of the same layers) losses when ImageNet VGG19 weights are used
(the paper profile requires them). Networks are in sli_nets.py; per-profile hyper-parameters in PROFILES below.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.attacks.sift_inversion.lbp import lbp_image
from bench.attacks.sift_inversion.sli_nets import PatchDiscriminator, UNet, UNetConfig
from bench.errors import BenchError
from bench.features import FeatureSet, Requirement
from bench.hyper import declare, stage_steps
from bench.features.sift import DESCRIPTOR_DIM, SiftSet
from bench.nn.losses import PerceptualLoss
from bench.nn.measure import count_parameters
from bench.plugins import FitContext, ImageSet, register_attack
from bench.training import (RAGAN, Adversary, LearnedAttack, adam, flop_figures, optimise, record_inputs, schedules,
                            seeded_batches)

PAPER = ("Wu, Zhou: Privacy leakage of SIFT features via deep generative model based image reconstruction, "
         "IEEE TIFS 16, 2021, doi:10.1109/TIFS.2021.3070427")

# Per-profile hyper-parameters of sli, sli-b and sli-r, the one place they are set.
# - smoke: seconds, for tests (32 px, tiny widths, a few steps).
# - cpu: about 3-4 minutes of training on 2 CPU cores at 64×64 with 1,500 images. Six stride-2 levels (64 → 1, the
#   paper's "down to 1×1" at a quarter of its resolution) with widths 32-64-128-128-128-128 instead of eight levels
#   of 64…512; a 3-level patch discriminator; Adam 1e-3 with cosine decay (in a few hundred steps the usual 2e-4
#   stays near the mean image); 200 LBP-net steps and 600 image-net steps, batch 8 (measured with 2 threads on a
#   shared machine: ~0.21 s per LBP step, ~0.26 s per image step, i.e. ~3.5 minutes on idle cores; 624 s on UTKFace
#   under a load average of 3-4.6); the image net, whose output is scored, gets most of the budget; no perceptual or style loss (VGG19 weights cannot be assumed offline).
# - paper: the published configuration at 256×256: eight levels 64-128-256-512-512-512-512-512, instance norm,
#   LeakyReLU 0.2, RaGAN + 100×L1 (+ perceptual + style for the image net). The paper's text does not fix the
#   optimiser, the loss weights of the perceptual/style terms, the batch size or the number of steps: Adam 2e-4,
#   β (0.5, 0.999), batch 8, λ_per 1, λ_style 250 (the usual values of the GAN inpainting models SLI builds on)
#   and 100,000 steps per network are our choices.
PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        "image_size": 32, "widths": [8, 16, 16, 16, 16], "disc_widths": [8, 16],
        "batch_size": 4, "lbp_steps": 4, "image_steps": 4, "eval_batch": 16,
        "lr": 1e-3, "betas": [0.5, 0.999], "lr_decay": "none",
        "lambda_l1": 100.0, "lambda_adv": 1.0, "lambda_per": 1.0, "lambda_style": 250.0,
        "adversarial": True, "perceptual": False,
    },
    "cpu": {
        "image_size": 64, "widths": [32, 64, 128, 128, 128, 128], "disc_widths": [32, 64, 128],
        "batch_size": 8, "lbp_steps": 200, "image_steps": 600, "eval_batch": 50,
        "lr": 1e-3, "betas": [0.5, 0.999], "lr_decay": "cosine",
        "lambda_l1": 100.0, "lambda_adv": 1.0, "lambda_per": 1.0, "lambda_style": 250.0,
        "adversarial": True, "perceptual": False,
    },
    "paper": {
        "image_size": 256, "widths": [64, 128, 256, 512, 512, 512, 512, 512], "disc_widths": [64, 128, 256, 512],
        "batch_size": 8, "lbp_steps": 100_000, "image_steps": 100_000, "eval_batch": 16,
        "lr": 2e-4, "betas": [0.5, 0.999], "lr_decay": "none",
        "lambda_l1": 100.0, "lambda_adv": 1.0, "lambda_per": 1.0, "lambda_style": 250.0,
        "adversarial": True, "perceptual": True,
    },
}

# Paper Table II (SLI): 78 M parameters, 96 G "FLOPs" (multiply-accumulates, as CFGAN counts them), 0.129 s/image.
PAPER_TABLE_II = {"params": "78M", "flops": "96G", "seconds_per_image": 0.129}

PERCEPTUAL_OFF_NOTE = (
    "{name}: perceptual and style (VGG19) losses are off in the {profile} profile, because ImageNet VGG19 weights "
    "cannot be assumed offline; the paper profile uses them"
)


def gram(f: torch.Tensor) -> torch.Tensor:
    """Gram matrices N×C×C of N×C×H×W features, normalised by C·H·W."""
    n, c, h, w = f.shape
    flat = f.reshape(n, c, h * w)
    return flat @ flat.transpose(1, 2) / float(c * h * w)


class PerceptualStyleLoss(nn.Module):
    """Perceptual loss (bench.nn.losses.PerceptualLoss: Σ_l MSE of VGG19 relu{1..5}_1 features) and style loss
    (Σ_l L1 distance of the same layers' Gram matrices), from one VGG19 pass per image batch."""

    def __init__(self, vgg_state_dict: Mapping[str, torch.Tensor]) -> None:
        super().__init__()
        self.perceptual = PerceptualLoss(vgg_state_dict)

    def forward(self, recon: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f_r = self.perceptual.vgg(recon)
        with torch.no_grad():
            f_t = self.perceptual.vgg(target)
        zero = recon.new_zeros(())
        per = sum((F.mse_loss(a, b) for a, b in zip(f_r, f_t)), zero)
        style = sum((F.l1_loss(gram(a), gram(b)) for a, b in zip(f_r, f_t)), zero)
        return per, style


@register_attack
class SLI(LearnedAttack):
    """SLI: a U-Net predicts the LBP structure image from the dense SIFT map, a second U-Net the RGB image."""

    name = "sli"
    default_extractor = "sift"
    consumes = Requirement("sift", {"has_coordinates": True, "has_descriptors": True})
    paper = PAPER
    profiles = ("smoke", "cpu", "paper")
    paper_figures = {"params_generators": 78e6, "gmacs": 96.0}  # Table II; its "FLOPs" are MACs (docs/sli.md)
    PROFILES = PROFILES
    shards_exactly = True  # instance norm (per image) only; RaGAN's batch means global (bench.nn.distributed)
    params = {**declare(PROFILES),
              **stage_steps(PROFILES, ("lbp_steps", "image_steps"))}

    uses_lbp: bool = True  # two stages (SIFT → LBP → RGB); sli-b has only the image net

    def __init__(self, profile: str, image_size: int, device: torch.device | str = "cpu", seed: int = 0,
                 params: Mapping[str, Any] | None = None) -> None:
        super().__init__(profile, image_size, device, seed, params)
        self.lbp_net: UNet | None = None
        self.image_net: UNet | None = None

    # ------------------------------------------------------------------------------------------------ shapes
    @property
    def map_channels(self) -> int:
        """Channels of the SIFT map fed to the networks (128 descriptor channels; 1 for the binary map)."""
        return DESCRIPTOR_DIM

    def net_configs(self) -> dict[str, UNetConfig]:
        s, widths = self.image_size, tuple(self.hp["widths"])
        cfgs = {"image": UNetConfig(self.map_channels + (1 if self.uses_lbp else 0), 3, widths, s)}
        if self.uses_lbp:
            cfgs["lbp"] = UNetConfig(self.map_channels, 1, widths, s)
        return cfgs

    def network_shapes(self) -> dict[str, Any]:
        return {k: v.to_dict() for k, v in sorted(self.net_configs().items())}

    def config(self) -> dict[str, Any]:
        """Profile hyper-parameters and network shapes (the seed is keyed separately)."""
        return {**super().config(), "map": {"compress": False, "binary": not self.uses_lbp and self.map_channels == 1}}

    def preflight(self) -> None:
        """The paper profile needs ImageNet VGG19 weights (perceptual and style losses); refuse to start without."""
        if self.hp["perceptual"]:
            from bench import weights

            weights.require("vgg19")

    def build(self) -> None:
        cfgs = self.net_configs()
        self.image_net = UNet(cfgs["image"]).to(self.device)
        self.lbp_net = UNet(cfgs["lbp"]).to(self.device) if self.uses_lbp else None

    def networks(self) -> dict[str, nn.Module | None]:
        return {"image": self.image_net, **({"lbp": self.lbp_net} if self.uses_lbp else {})}

    # ------------------------------------------------------------------------------------------- the inputs
    def _released(self, features: FeatureSet, indices: np.ndarray) -> SiftSet:
        """The records `indices` as a SiftSet that carries what the map needs (sli-r fills in coordinates)."""
        assert isinstance(features, SiftSet), f"{self.name} needs SIFT features, got {features.kind!r}"
        return features.subset(indices)

    def _cpu_maps(self, features: FeatureSet, indices: np.ndarray) -> torch.Tensor:
        """B×C×S×S SIFT maps of records `indices`: keypoints scaled to the S-grid, the first on a cell keeps it."""
        from bench.attacks.sift_inversion.maps import sift_maps

        sub = self._released(features, np.asarray(indices, dtype=np.int64))
        return sift_maps(sub, np.arange(len(sub)), self.image_size, compress=False, seed=self.seed,
                         binary=self.map_channels == 1)

    def _maps(self, features: FeatureSet, indices: np.ndarray) -> torch.Tensor:
        """`_cpu_maps` on the attack's device."""
        return self._cpu_maps(features, indices).to(self.device)

    def _net_input(self, maps: torch.Tensor) -> torch.Tensor:
        """What the image net sees: the map and, for SLI, the LBP net's predicted LBP image."""
        if not self.uses_lbp:
            return maps
        assert self.lbp_net is not None
        with torch.no_grad():
            lbp = self.lbp_net(maps)
        return torch.cat([maps, lbp], dim=1)

    # ---------------------------------------------------------------------------------------------- training
    def _prepare(self, features: FeatureSet, images: torch.Tensor, ctx: FitContext) -> None:
        """Anything to set up from the auxiliary split before training (sli-r picks its reference here)."""

    def fit(self, features: FeatureSet, images: torch.Tensor, ctx: FitContext) -> None:
        """Train the LBP net (SLI only), freeze it, then train the image net on its predicted LBP images."""
        self.check_training_inputs(features, images)
        if not self.hp["perceptual"]:
            ctx.notes.append(PERCEPTUAL_OFF_NOTE.format(name=self.name, profile=self.profile))
        changes = self._departures()
        if changes:
            ctx.notes.append(f"{self.name}: the {self.profile} profile departs from the paper: " + "; ".join(changes))
        self._prepare(features, images, ctx)
        self.start_training()
        assert self.image_net is not None
        gen = torch.Generator().manual_seed(self.seed)  # shared by both stages' batches
        images = images.float()
        # Each record's map (its released keypoints placed, for sli-r/sli-l) is built once with the speed-ups.
        cpu_maps = record_inputs(lambda idx: self._cpu_maps(features, idx), len(features))

        def maps(idx: np.ndarray) -> torch.Tensor:
            return cpu_maps(idx).to(self.device)

        if self.uses_lbp:
            assert self.lbp_net is not None
            self._train_stage("lbp", self.lbp_net, maps, lbp_image(images), gen, ctx.progress)
            self.lbp_net.eval().requires_grad_(False)
        self._train_stage("image", self.image_net, maps, images, gen, ctx.progress)
        self.image_net.eval()

    def _departures(self) -> list[str]:
        hp, paper = self.hp, PROFILES["paper"]
        out = []
        if hp["widths"] != paper["widths"]:
            out.append(f"{len(hp['widths'])} U-Net levels of widths {'-'.join(map(str, hp['widths']))} at "
                       f"{hp['image_size']} px (paper: 8 levels 64…512 at 256 px)")
        if hp["lr"] != paper["lr"] or hp["lr_decay"] != paper["lr_decay"]:
            decay = "constant" if hp["lr_decay"] == "none" else f"{hp['lr_decay']} decay"
            out.append(f"learning rate {hp['lr']:g} ({decay})")
        steps = f"{hp['lbp_steps']} LBP-net + {hp['image_steps']} image-net steps" if self.uses_lbp else \
            f"{hp['image_steps']} image-net steps"
        if hp["image_steps"] != paper["image_steps"]:
            out.append(steps)
        if not hp["adversarial"]:
            out.append("no adversarial loss")
        return out

    def _train_stage(self, stage: str, net: UNet, maps: Any, targets: torch.Tensor, gen: torch.Generator,
                     progress: bool) -> None:
        """One network's training on the batches' SIFT maps `maps(idx)`: RaGAN + λ_l1·L1 (+ perceptual and style
        for the image net, when on).

        The LBP net's outputs and targets live in [-1, 1]; the image net's tanh output is mapped to [0, 1] for the
        L1 and VGG losses and both real and fake images are fed to the discriminator in [-1, 1].
        """
        hp = self.hp
        steps = int(hp[f"{stage}_steps"])
        is_image = stage == "image"
        disc = PatchDiscriminator(targets.shape[1], tuple(hp["disc_widths"])).to(self.device)
        opt_g = adam(net.parameters(), hp)
        adversary = Adversary(disc, RAGAN, adam(disc.parameters(), hp))
        # The discriminator's schedule only when it trains (an idle optimiser's scheduler makes torch warn).
        scheds = schedules([opt_g, adversary.opt] if hp["adversarial"] else [opt_g], hp["lr_decay"], steps)
        vgg = None
        if is_image and hp["perceptual"]:
            from bench import weights

            vgg = PerceptualStyleLoss(weights.load_state_dict("vgg19")).to(self.device)
        net.train()
        disc.train()

        def step(idx: np.ndarray) -> float:
            m = maps(idx)
            x = self._net_input(m) if is_image else m
            target = targets[torch.from_numpy(idx)].to(self.device, torch.float32)
            out = net(x)
            fake = (out + 1.0) * 0.5 if is_image else out
            loss = hp["lambda_l1"] * F.l1_loss(fake, target)
            if vgg is not None:
                per, style = vgg(fake, target)
                loss = loss + hp["lambda_per"] * per + hp["lambda_style"] * style
            real_d = target * 2.0 - 1.0 if is_image else target
            if hp["adversarial"]:  # the discriminator sees both in [-1, 1]: `out` already is
                loss = adversary.train_step(opt_g, loss, hp["lambda_adv"], real_d, out)
            else:
                optimise(opt_g, loss)
            return float(loss.detach())

        self.run_stage(stage, steps, seeded_batches(targets.shape[0], hp["batch_size"], gen), step,
                       schedulers=scheds, progress=progress, desc=f"{self.name.upper()} {stage} net")

    # ------------------------------------------------------------------------------------------ reconstruction
    def reconstruct_batch(self, features: FeatureSet, indices: np.ndarray) -> torch.Tensor:
        """Images of the records `indices`: LBP net, then image net (tanh output mapped to [0, 1])."""
        assert self.image_net is not None
        return (self.image_net(self._net_input(self._maps(features, indices))) + 1.0) * 0.5

    def predict_lbp(self, features: FeatureSet) -> torch.Tensor:
        """The LBP net's structure images (N×1×S×S in [-1, 1]) for `features` (SLI only; for inspection)."""
        if self.lbp_net is None:
            raise RuntimeError(f"{self.name}: no LBP net (sli-b has none; or not fitted)")
        with torch.no_grad():
            return self.lbp_net.eval()(self._maps(features, np.arange(len(features)))).cpu()

    # ---------------------------------------------------------------------------------------------- describe
    def describe(self) -> dict[str, Any]:
        """Parameter counts and FLOPs/MACs of one inference (LBP net + image net) at this profile's size."""
        cfgs = self.net_configs()
        s = self.image_size
        with torch.device("meta"):
            nets = {k: UNet(c).eval() for k, c in cfgs.items()}
            discs = {k: PatchDiscriminator(c.out_channels, tuple(self.hp["disc_widths"])) for k, c in cfgs.items()}
            sift_map = torch.zeros(1, self.map_channels, s, s)

        def infer(m: torch.Tensor) -> torch.Tensor:
            if "lbp" in nets:
                m = torch.cat([m, nets["lbp"](m)], dim=1)
            return nets["image"](m)

        params = {k: count_parameters(n) for k, n in nets.items()}
        p_gen = sum(params.values())
        p_disc = sum(count_parameters(d) for d in discs.values())
        out: dict[str, Any] = {"profile": self.profile, "image_size": s, "map_channels": self.map_channels,
                               "unet_levels": len(self.hp["widths"]), "unet_widths": "-".join(map(str, self.hp["widths"]))}
        if "lbp" in params:
            out["params_lbp_generator"] = params["lbp"]
        out.update({
            "params_image_generator": params["image"],
            "params_generators": p_gen,
            "params_discriminators": p_disc,
            "params_total": p_gen + p_disc,
            "inference": f"one {s}x{s} image from a {s}x{s} map, "
                         + ("LBP net + image net" if "lbp" in nets else "image net")
                         + " (convolutions and matrix products)",
            **flop_figures(infer, sift_map),
            "paper_table_ii_sli": {**PAPER_TABLE_II, "best_match": "generators only; MACs (see docs/sli.md)"},
        })
        return out


@register_attack
class SLIB(SLI):
    """SLI-B: the image U-Net rebuilds the image from a binary keypoint map (coordinates only, no descriptors)."""

    name = "sli-b"
    consumes = Requirement("sift", {"has_coordinates": True})
    uses_lbp = False
    paper_figures = {}  # the paper reports no size for SLI-B
    # No LBP net: its step count is not a parameter, and `steps` sets the image net's.
    params = {**declare(PROFILES, skip=("lbp_steps",)), **stage_steps(PROFILES, ("image_steps",))}

    @property
    def map_channels(self) -> int:
        return 1


@register_attack
class SLIR(SLI):
    """SLI-R: descriptors without coordinates are placed at the matched keypoints of an auxiliary reference image."""

    name = "sli-r"
    shards_exactly = False  # sli's step, but its reference preparation was not checked on several processes
    consumes = Requirement("sift", {"has_descriptors": True})

    def __init__(self, profile: str, image_size: int, device: torch.device | str = "cpu", seed: int = 0,
                 params: Mapping[str, Any] | None = None) -> None:
        super().__init__(profile, image_size, device, seed, params)
        self.reference: dict[str, Any] | None = None
        self._ref_unit: np.ndarray | None = None  # unit-norm float32 reference descriptors (M×128)

    def _set_reference(self, ref: dict[str, Any]) -> None:
        self.reference = ref
        d = np.asarray(ref["descriptors"].numpy() if torch.is_tensor(ref["descriptors"]) else ref["descriptors"],
                       dtype=np.float32)
        self._ref_unit = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)

    def _prepare(self, features: FeatureSet, images: torch.Tensor, ctx: FitContext) -> None:
        """Pick the reference among the auxiliary images (ctx.rng) and extract its SIFT with the victim's extractor.

        The released auxiliary features carry no coordinates, so the attacker runs the (public) extractor
        configuration recorded in the features' meta on its own auxiliary image, upsampled from the attack's image
        size to the extraction size. Candidates without any keypoint are skipped.
        """
        from bench.extractors.sift import SiftExtractor
        from bench.images import resize

        assert isinstance(features, SiftSet), f"{self.name} needs SIFT features, got {features.kind!r}"
        cfg = dict(features.meta.get("extractor", {}))
        keys = ("contrast_threshold", "n_features", "n_octave_layers", "edge_threshold", "sigma")
        extractor = SiftExtractor(**{k: cfg[k] for k in keys if k in cfg})
        size = features.image_size
        order = ctx.rng("sli-r-reference").permutation(images.shape[0])
        ids = list(ctx.ids) if len(ctx.ids) == images.shape[0] else [f"aux-{i}" for i in range(images.shape[0])]
        for i in order[:64]:
            img = resize(images[int(i):int(i) + 1].float(), size)
            ref = extractor.extract(ImageSet(ids=[ids[int(i)]], images=img), progress=False)
            if ref.counts()[0] > 0:
                self._set_reference({
                    "id": ids[int(i)], "index": int(i), "image_size": int(size),
                    "xy": torch.from_numpy(np.array(ref.keypoints[:, :2], dtype=np.float32)),
                    "descriptors": torch.from_numpy(np.array(ref.descriptors, dtype=np.uint8)),
                })
                ctx.notes.append(f"{self.name}: reference image {ids[int(i)]!r} of the auxiliary split "
                                 f"({int(ref.counts()[0])} keypoints, extracted by the attacker at {size} px)")
                return
        raise BenchError(f"{self.name}: no auxiliary image among those tried has a SIFT keypoint to serve as reference")

    def _released(self, features: FeatureSet, indices: np.ndarray) -> SiftSet:
        """Records `indices` with every descriptor placed at its best cosine match among the reference keypoints."""
        assert isinstance(features, SiftSet), f"{self.name} needs SIFT features, got {features.kind!r}"
        if self.reference is None or self._ref_unit is None:
            raise RuntimeError(f"{self.name}: no reference image (fit() or load_state_dict() first)")
        sub = features.subset(indices)
        kp = np.array(sub.keypoints, dtype=np.float32, copy=True)
        ref_xy = self.reference["xy"].numpy().astype(np.float64) * (sub.image_size / float(self.reference["image_size"]))
        for i in range(len(sub)):  # one matrix product per image (rows never mix across images)
            a, b = int(sub.offsets[i]), int(sub.offsets[i + 1])
            if a == b:
                continue
            q = sub.descriptors[a:b].astype(np.float32)
            q /= np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
            best = np.argmax(q @ self._ref_unit.T, axis=1)
            kp[a:b, :2] = ref_xy[best]
        return SiftSet(kp, sub.descriptors, sub.offsets, flags={**sub.flags, "has_coordinates": True}, meta=sub.meta)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        if self.reference is None:
            raise RuntimeError(f"{self.name}: state_dict() before fit()")
        state["reference"] = dict(self.reference)
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        ref = dict(state["reference"])
        self._set_reference({"id": str(ref["id"]), "index": int(ref["index"]), "image_size": int(ref["image_size"]),
                             "xy": ref["xy"].float(), "descriptors": ref["descriptors"].to(torch.uint8)})
