"""The SIFT-inversion family's own loss: CFGAN's dense-SIFT loss on grey images."""

from __future__ import annotations

import kornia.feature as KF
import torch
from torch import nn

# ITU-R BT.601 luma weights (as OpenCV's RGB2GRAY), for grey images fed to SIFT.
LUMA_601 = (0.299, 0.587, 0.114)


def to_grey(images: torch.Tensor) -> torch.Tensor:
    """N×3×H×W RGB → N×1×H×W grey with ITU-R 601 weights."""
    w = images.new_tensor(LUMA_601).view(1, 3, 1, 1)
    return (images * w).sum(dim=1, keepdim=True)


class SiftLoss(nn.Module):
    """CFGAN's sift loss (eq. 9): L1 distance between dense SIFT descriptors of the grey original and reconstruction.

    Descriptors come from kornia's DenseSIFTDescriptor (defaults: 4×4 cells of 4 px, 8 angle bins, RootSIFT) at
    every pixel position (or every `stride`-th, a cheaper approximation for CPU budgets); the loss is the L1 norm of
    the 128-d difference, averaged over positions and images.
    """

    def __init__(self, stride: int = 1) -> None:
        super().__init__()
        self.dsift = KF.DenseSIFTDescriptor(stride=int(stride)).requires_grad_(False)  # fixed kernels

    def target_descriptors(self, target: torch.Tensor) -> torch.Tensor:
        """The dense descriptors of the grey `target` images (N×128×h×w, no gradients): fixed for a fixed image,
        so a trainer may compute them once per image and pass them to `forward`."""
        with torch.no_grad():
            return self.dsift(to_grey(target))

    def forward(self, recon: torch.Tensor, target: torch.Tensor,
                target_descriptors: torch.Tensor | None = None) -> torch.Tensor:
        """Scalar loss; gradients flow into `recon` only. `target_descriptors`: those of `target`, if known."""
        d_r = self.dsift(to_grey(recon))
        d_t = self.target_descriptors(target) if target_descriptors is None else target_descriptors
        return (d_r - d_t).abs().sum(dim=1).mean()
