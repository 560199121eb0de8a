"""face-cnn: the deconvolution network of Shahreza et al. (ICIP 2022) that rebuilds a face from its embedding.

The embedding, as a D×1×1 tensor, goes through stages of 4×4 transposed convolution + BN + ReLU, each followed by
a residual group of three 3×3 conv + BN + ReLU (output added to the group's input); a 3×3 convolution and a sigmoid
give the image. The paper profile is the published network: channels 512→256→128→64→32→16, spatial
4→8→16→30→58→112 (about 16 M parameters for D = 512; `describe()` counts them for dlib's D = 128). The smoke and
cpu profiles keep the layout at the run's image size (32 and 64 px) with narrower channels.

Loss: MSE + 0.1·(1 − SSIM)/2 (kornia's ssim_loss, 11×11 Gaussian window) + 0.005·identity term in the paper. The
identity term needs a differentiable face embedder; the built-in victim (dlib) is not differentiable, so the term
is disabled and every run says so in its notes. Adam 1e-3, learning rate ×0.5 every `decay_every` epochs, batch
32 (the paper's; the smoke profile uses smaller batches).

It consumes float embeddings only (values as numbers), standardised per input with the auxiliary statistics
(a departure: the paper feeds raw embeddings; the first batch norm makes the two nearly equivalent).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import kornia.losses
import torch
import torch.nn.functional as F
from torch import nn

from bench.attacks.embedding_inversion.vector_attack import VectorToImageAttack, training_images_note
from bench.errors import BenchError
from bench.features import FeatureSet, Requirement
from bench.hyper import declare
from bench.plugins import register_attack

# Per-profile hyper-parameters, the one place they are set.
# - smoke: seconds, for tests.
# - cpu: 64 px, reduced widths; sized for about 2-3 minutes of training on 1500 auxiliary embeddings on ONE CPU
#   thread (docs/embedding_inversion.md has the measured step time).
# - paper: the published network and optimiser (112 px; 30 epochs here, learning rate halved every 10).
PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {"net_size": 32, "sizes": [4, 8, 16, 32], "channels": [32, 16, 16, 8], "res_convs": 1,
              "batch_size": 8, "epochs": 2, "eval_batch": 16, "lr": 1e-3, "lr_gamma": 0.5, "decay_every": 10,
              "mse": 1.0, "ssim": 0.1, "identity": 0.005},
    "cpu": {"net_size": 64, "sizes": [4, 8, 16, 32, 64], "channels": [96, 64, 32, 16, 8], "res_convs": 1,
            "batch_size": 32, "epochs": 10, "eval_batch": 50, "lr": 1e-3, "lr_gamma": 0.5, "decay_every": 5,
            "mse": 1.0, "ssim": 0.1, "identity": 0.005},
    "paper": {"net_size": 112, "sizes": [4, 8, 16, 30, 58, 112], "channels": [512, 256, 128, 64, 32, 16],
              "res_convs": 3, "batch_size": 32, "epochs": 30, "eval_batch": 16, "lr": 1e-3, "lr_gamma": 0.5,
              "decay_every": 10, "mse": 1.0, "ssim": 0.1, "identity": 0.005},
}
IDENTITY_NOTE = ("face-cnn: the identity loss term (0.005 x MSE between face embeddings of output and target) is "
                 "disabled: it needs a differentiable face embedder, and the victim's dlib ResNet is not "
                 "differentiable from here (loss = MSE + 0.1 (1 - SSIM)/2)")


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ResidualGroup(nn.Module):
    """x + (n × [3×3 conv + BN + ReLU])(x)."""

    def __init__(self, channels: int, n: int) -> None:
        super().__init__()
        self.body = nn.Sequential(*[_conv_bn_relu(channels, channels) for _ in range(n)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def upconv_padding(s_in: int, s_out: int) -> tuple[int, int]:
    """(stride, padding) of a 4×4 transposed convolution taking s_in to s_out (1 -> 4 first, then ×2-ish)."""
    if s_in == 1:
        if s_out != 4:
            raise BenchError(f"face-cnn: the first stage goes from 1x1 to 4x4, not to {s_out}")
        return 1, 0
    twice_pad = (s_in - 1) * 2 + 4 - s_out
    if twice_pad < 0 or twice_pad % 2:
        raise BenchError(f"face-cnn: a 4x4 stride-2 transposed convolution cannot take {s_in} to {s_out}")
    return 2, twice_pad // 2


@dataclass(frozen=True)
class FaceCNNConfig:
    in_width: int
    sizes: tuple[int, ...]
    channels: tuple[int, ...]
    res_convs: int


class FaceCNN(nn.Module):
    """D×1×1 -> [4×4 transposed conv + BN + ReLU, residual group] per stage -> 3×3 conv -> sigmoid."""

    def __init__(self, cfg: FaceCNNConfig) -> None:
        super().__init__()
        if len(cfg.sizes) != len(cfg.channels):
            raise BenchError("face-cnn: one channel width per spatial size")
        stages: list[nn.Module] = []
        cin, s_in = cfg.in_width, 1
        for s_out, cout in zip(cfg.sizes, cfg.channels):
            stride, pad = upconv_padding(s_in, s_out)
            stages += [nn.ConvTranspose2d(cin, cout, 4, stride=stride, padding=pad, bias=False),
                       nn.BatchNorm2d(cout), nn.ReLU(inplace=True), ResidualGroup(cout, cfg.res_convs)]
            cin, s_in = cout, s_out
        self.stages = nn.Sequential(*stages)
        self.head = nn.Conv2d(cin, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.head(self.stages(x[:, :, None, None])))


@register_attack
class FaceCNNAttack(VectorToImageAttack):
    """face-cnn (Shahreza et al.): deconvolution network with residual groups, embedding -> face; MSE + SSIM loss."""

    name = "face-cnn"
    version = "1"
    consumes = Requirement("embeddings", {"float": True})
    reconstructs_faces = True
    paper_figures = {"paper_d512_params": 16e6}  # "about 16 M parameters" for a 512-d embedding
    paper = ("Shahreza, Hahn, Marcel: Face reconstruction from deep facial embeddings using a convolutional neural "
             "network, ICIP 2022 (as adapted in Osorio-Roig, Gerlitz, Rathgeb, Busch: Reversing deep face embeddings with "
             "probable privacy protection, WIFS 2023, against PE-MIU)")
    PROFILES = PROFILES
    params = declare(PROFILES, help={"res_convs": "convolutions per residual group", "mse": "weight of the MSE loss",
                                     "ssim": "weight of the SSIM loss", "identity": "weight of the identity loss"})

    def make_net(self, in_width: int) -> nn.Module:
        hp = self.hp
        return FaceCNN(FaceCNNConfig(int(in_width), tuple(hp["sizes"]), tuple(hp["channels"]), int(hp["res_convs"])))

    def loss(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        hp = self.hp
        window = min(11, out.shape[-1] // 2 * 2 - 1)
        return hp["mse"] * F.mse_loss(out, target) + hp["ssim"] * kornia.losses.ssim_loss(out, target, window)

    def fit_notes(self, features: FeatureSet) -> list[str]:
        notes = [IDENTITY_NOTE] + training_images_note(self.name, self.hp, self.image_size)
        if self.profile != "paper":
            notes.append(f"face-cnn: the {self.profile} profile uses channels {self.hp['channels']} at sizes "
                         f"{self.hp['sizes']}, {self.hp['res_convs']} conv(s) per residual group and "
                         f"{self.hp['epochs']} epochs instead of the paper's 512..16 channels, 3 convs per group, "
                         "112 px")
        return notes

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        if self.profile == "paper":
            with torch.device("meta"):
                net = self.make_net(512)
            out["paper_d512_params"] = sum(p.numel() for p in net.parameters())
            out["paper_reference"] = "about 16 M parameters for a 512-d embedding"
        return out
