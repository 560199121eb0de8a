"""feature-decoder and feature-gan: the ShuffleBits paper's decoders from a (shuffled) feature vector to an image.

Threat model (ShuffleBits): the attacker queries the victim's protected inference API as a black box with its own
auxiliary images. ShuffleBits runs inside that API, so with `mode=fixed` the answers carry the victim's one secret
permutation (a fixed bijection of the inputs that the decoder can learn to see through), while with
`mode=one-time-pad` every answer has a fresh permutation. The runner hands `fit` exactly that
(`bench.plugins.attacker_training_features`).

Inputs: float embeddings as numbers, ShuffleBits bit patterns as 32 bits per value (never as floats), both
standardised on the auxiliary split (`attacks/embedding_inversion/inputs.py`).

- `feature-decoder` (the paper's "autoencoder" row): the decoder trained with the pixel MSE alone.
- `feature-gan`: the same decoder as generator, trained with pixel MSE + a least-squares conditional GAN term
  (weight `adv`). The paper also uses a feature-reconstruction loss (the decoded image re-embedded by the victim
  model should match the input vector); the victim here (dlib) is not differentiable, so that term is disabled and
  every run says so in its notes.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.attacks.embedding_inversion.inputs import VECTOR_KINDS, input_width
from bench.attacks.embedding_inversion.vector_attack import (DESCRIBE_DIM, VectorToImageAttack,
                                                             training_images_note)
from bench.attacks.feature_inversion.nets import ConditionalDiscriminator, DecoderConfig, FeatureDecoder
from bench.features import FeatureSet
from bench.hyper import declare
from bench.features.embeddings import BitPatternSet, EmbeddingSet
from bench.plugins import register_attack
from bench.training import adam, optimise

PAPER = ("Ni, Huttunen, Rahtu: On the importance of encrypting deep features, arXiv:2108.07147 (2021), which "
         "introduces ShuffleBits; the decoder attacks of its evaluation")

# Per-profile hyper-parameters, the one place they are set.
# - smoke: seconds, for tests.
# - cpu: 64 px (4×4 map, four upsampling blocks), sized for a couple of minutes on one thread with 1500 records.
# - paper: the paper's widths (dense to a 128-channel map, five blocks 256..16) on a square 8×8 map for 256 px.
PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {"net_size": 32, "fc": [64], "map_size": 4, "map_channels": 32, "blocks": [32, 16, 8],
              "batch_size": 8, "epochs": 2, "eval_batch": 16, "lr": 1e-3, "lr_gamma": 0.5, "decay_every": 10,
              "disc": [8, 16, 16], "cond": 16, "adv": 0.01},
    "cpu": {"net_size": 64, "fc": [512], "map_size": 4, "map_channels": 64, "blocks": [64, 32, 16, 8],
            "batch_size": 32, "epochs": 10, "eval_batch": 50, "lr": 1e-3, "lr_gamma": 0.5, "decay_every": 5,
            "disc": [16, 32, 64, 64], "cond": 64, "adv": 0.01},
    "paper": {"net_size": 256, "fc": [1024], "map_size": 8, "map_channels": 128, "blocks": [256, 128, 64, 32, 16],
              "batch_size": 32, "epochs": 60, "eval_batch": 16, "lr": 2e-4, "lr_gamma": 0.5, "decay_every": 20,
              "betas": [0.5, 0.999], "disc": [64, 128, 256, 512, 512, 512], "cond": 256, "adv": 0.01},
}
FEATURE_LOSS_NOTE = ("feature-gan: the paper's feature-reconstruction loss (re-embedding the decoded image with the "
                     "victim model) is disabled: the victim here (dlib) is not differentiable; the generator is "
                     "trained with pixel MSE + {adv} x least-squares conditional GAN loss")


class _DecoderAttack(VectorToImageAttack):
    consumes = VECTOR_KINDS
    reconstructs_faces = True  # here: faces decoded from face descriptors (default victim: dlib-face)
    paper = PAPER
    PROFILES = PROFILES

    def make_net(self, in_width: int) -> nn.Module:
        hp = self.hp
        return FeatureDecoder(DecoderConfig(int(in_width), tuple(hp["fc"]), int(hp["map_size"]),
                                            int(hp["map_channels"]), tuple(hp["blocks"])))

    def loss(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(out, target)

    def describe_widths(self) -> dict[str, int]:
        return {"embeddings": input_width(EmbeddingSet.kind, DESCRIBE_DIM),
                "bit-patterns": input_width(BitPatternSet.kind, DESCRIBE_DIM)}

    def fit_notes(self, features: FeatureSet) -> list[str]:
        notes = training_images_note(self.name, self.hp, self.image_size)
        notes.append(f"{self.name}: square {self.hp['map_size']}x{self.hp['map_size']}x{self.hp['map_channels']} "
                     "map (the paper's 12x4 map fits person crops, not square faces)")
        if features.kind == BitPatternSet.kind:
            notes.append(f"{self.name}: bit patterns read as 32 bits per value ({32 * features.dim} 0/1 inputs)")
        return notes


@register_attack
class FeatureDecoderAttack(_DecoderAttack):
    """feature-decoder (ShuffleBits' "autoencoder" attack): dense + residual upsampling decoder, pixel MSE."""

    name = "feature-decoder"
    version = "1"
    params = declare(PROFILES, skip=("disc", "cond", "adv"))


@register_attack
class FeatureGANAttack(_DecoderAttack):
    """feature-gan (ShuffleBits' GAN attack): the same decoder with pixel MSE + least-squares conditional GAN."""

    name = "feature-gan"
    version = "1"
    params = declare(PROFILES, help={"disc": "discriminator widths", "cond": "width of the discriminator's condition",
                                     "adv": "weight of the adversarial loss"})

    def fit_notes(self, features: FeatureSet) -> list[str]:
        return super().fit_notes(features) + [FEATURE_LOSS_NOTE.format(adv=self.hp["adv"])]

    def prepare_training(self, in_width: int) -> None:
        hp = self.hp
        self.disc = ConditionalDiscriminator(in_width, int(hp["net_size"]), tuple(hp["disc"]),
                                             int(hp["cond"])).to(self.device)
        self.disc_opt = adam(self.disc.parameters(), hp)

    def train_step(self, x: torch.Tensor, target: torch.Tensor, opt: torch.optim.Optimizer) -> float:
        """One discriminator step ((D(real)−1)² + D(fake)²)/2, then one generator step MSE + adv·(D(fake)−1)²/2."""
        assert self.net is not None
        fake = self.net(x)
        d_real, d_fake = self.disc(target, x), self.disc(fake.detach(), x)
        d_loss = 0.5 * ((d_real - 1.0).pow(2).mean() + d_fake.pow(2).mean())
        optimise(self.disc_opt, d_loss)
        g_adv = 0.5 * (self.disc(fake, x) - 1.0).pow(2).mean()
        g_loss = F.mse_loss(fake, target) + float(self.hp["adv"]) * g_adv
        optimise(opt, g_loss)
        return float(g_loss.detach())
