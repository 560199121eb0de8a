"""Generic GAN training losses: relativistic-average adversarial (RaGAN), plain BCE, and VGG19 perceptual loss."""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from bench.nn.distributed import batch_mean
from bench.nn.vgg import VGG19Features


def bce_with_target(logits: torch.Tensor, target: float) -> torch.Tensor:
    """Binary cross-entropy of logits against one constant target (1: real, 0: fake), mean over the batch."""
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def ragan_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator loss of RaGAN (CFGAN eqs. 5, 7, 8): −E log D'(x_r) − E log(1 − D'(x_f)).

    D'(x_r) = sigmoid(D(x_r) − E[D(x_f)]) and D'(x_f) = sigmoid(D(x_f) − E[D(x_r)]), the expectations being batch
    means (over the global batch when several processes each train on a shard: bench.nn.distributed.batch_mean);
    computed on logits with BCE-with-logits for numerical stability.
    """
    return (bce_with_target(real_logits - batch_mean(fake_logits), 1.0)
            + bce_with_target(fake_logits - batch_mean(real_logits), 0.0))


def ragan_g_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Generator loss of RaGAN (CFGAN eqs. 6–8): −E log D'(x_f) − E log(1 − D'(x_r))."""
    return (bce_with_target(fake_logits - batch_mean(real_logits), 1.0)
            + bce_with_target(real_logits - batch_mean(fake_logits), 0.0))


class PerceptualLoss(nn.Module):
    """Perceptual loss (CFGAN eq. 4): sum over relu1_1 … relu5_1 of VGG19 of the mean squared feature difference.

    The paper writes an L2 distance per layer; this uses the per-layer mean of squared differences (MSE), the usual
    implementation, which keeps the five layers on comparable scales. Needs ImageNet VGG19 weights
    (torchvision-format state dict).
    """

    def __init__(self, vgg_state_dict: Mapping[str, torch.Tensor]) -> None:
        super().__init__()
        self.vgg = VGG19Features(vgg_state_dict)

    def forward(self, recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Scalar loss; gradients flow into `recon` only."""
        f_r = self.vgg(recon)
        with torch.no_grad():
            f_t = self.vgg(target)
        return sum((F.mse_loss(a, b) for a, b in zip(f_r, f_t)), recon.new_zeros(()))
