"""Defenses on gradient releases: pruning, Gaussian noise, DP-SGD, ATSPrivacy's augmentation policies, none.

Gradient defenses take a release (list of tensors) and return the defended release; `ats_augment` transforms the
training images before the gradient is taken. Randomness always comes from an explicit torch.Generator.
"""

from __future__ import annotations

import importlib.util
import math
from typing import Any, Sequence

import torch

Release = list[torch.Tensor]


def none(grads: Sequence[torch.Tensor]) -> Release:
    """No defense: the release unchanged (copied)."""
    return [g.clone() for g in grads]


def gradient_pruning(grads: Sequence[torch.Tensor], fraction: float = 0.7, scope: str = "layer") -> Release:
    """Zero the `fraction` smallest-magnitude entries of the release.

    scope="layer" (default) ranks entries within each parameter tensor separately: the convention of DLG's pruning
    defense and of ATSPrivacy's prune setting that SemSim's prune_70 is (each layer keeps its largest 30 %).
    scope="global" ranks all entries of the release together. Ties at the threshold are pruned.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"gradient_pruning: fraction must be in [0, 1], got {fraction}")
    if scope not in ("layer", "global"):
        raise ValueError(f"gradient_pruning: scope must be 'layer' or 'global', got {scope!r}")

    def keep_mask(mags: torch.Tensor) -> torch.Tensor:
        k = int(math.floor(fraction * mags.numel()))  # number of entries pruned
        if k == 0:
            return torch.ones_like(mags, dtype=torch.bool)
        thresh = mags.flatten().kthvalue(k).values
        return mags > thresh

    if scope == "layer":
        return [g * keep_mask(g.abs()) for g in grads]
    flat = torch.cat([g.abs().flatten() for g in grads])
    mask = keep_mask(flat)
    out, i = [], 0
    for g in grads:
        out.append(g * mask[i:i + g.numel()].view_as(g))
        i += g.numel()
    return out


def gradient_noise(grads: Sequence[torch.Tensor], sigma: float = 1e-3,
                   generator: torch.Generator | None = None) -> Release:
    """Add i.i.d. Gaussian noise N(0, sigma^2) to every entry (SemSim's gaussian setting: sigma = 1e-3)."""
    return [g + sigma * torch.randn(g.shape, generator=generator, dtype=g.dtype) for g in grads]


def dp_sgd(per_sample: Sequence[torch.Tensor], clip: float = 1.0, noise_multiplier: float = 1.0,
           generator: torch.Generator | None = None) -> Release:
    """DP-SGD release of a batch: clip each example's whole-model gradient to L2 norm `clip`, sum, add
    N(0, (noise_multiplier * clip)^2) per entry, divide by the batch size. `per_sample` has a leading batch dim
    (releases.per_sample_gradients)."""
    n = per_sample[0].shape[0]
    norms = torch.sqrt(sum(g.reshape(n, -1).pow(2).sum(1) for g in per_sample))
    scale = (clip / (norms + 1e-12)).clamp(max=1.0)
    out = []
    for g in per_sample:
        s = (g * scale.view(-1, *([1] * (g.ndim - 1)))).sum(0)
        out.append((s + noise_multiplier * clip * torch.randn(s.shape, generator=generator, dtype=s.dtype)) / n)
    return out


def dp_epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float = 1e-5) -> dict[str, Any]:
    """The epsilon a DP-SGD run reaches, from an installed accountant (Opacus' RDP accountant); never hand-rolled.

    Returns {"epsilon": float, "delta": ..., "accountant": name} or {"epsilon": None, "status": "unavailable", ...}.
    """
    if importlib.util.find_spec("opacus") is not None:
        from opacus.accountants import RDPAccountant  # type: ignore[import-not-found]
        acc = RDPAccountant()
        acc.history = [(noise_multiplier, sample_rate, steps)]
        return {"epsilon": float(acc.get_epsilon(delta)), "delta": delta, "accountant": "opacus-rdp"}
    return {"epsilon": None, "delta": delta, "status": "unavailable",
            "hint": "pip install opacus (no privacy accountant installed; epsilon is not computed by hand)"}


# ATSPrivacy's transformation list: AutoAugment's published CIFAR-10 policy (Cubuk et al., CVPR 2019), its 25
# sub-policies of two operations flattened in order into 50 single transformations (operation, magnitude level 0-9;
# 0 for operations without a magnitude).
# ATSPrivacy's policies "a-b-c" apply transformations a, b and c in turn. Assumption (not checked against the
# ATSPrivacy release): the flattening order, and that each chosen transformation is always applied (probability 1).
ATS_TRANSFORMS: tuple[tuple[str, int], ...] = (
    ("invert", 0), ("contrast", 6), ("rotate", 2), ("translate_x", 9), ("sharpness", 1), ("sharpness", 3),
    ("shear_y", 8), ("translate_y", 9), ("autocontrast", 0), ("equalize", 0), ("shear_y", 7), ("posterize", 7),
    ("color", 3), ("brightness", 7), ("sharpness", 9), ("brightness", 9), ("equalize", 0), ("equalize", 0),
    ("contrast", 7), ("sharpness", 5), ("color", 7), ("translate_x", 8), ("equalize", 0), ("autocontrast", 0),
    ("translate_y", 3), ("sharpness", 6), ("brightness", 6), ("color", 8), ("solarize", 2), ("invert", 0),
    ("equalize", 0), ("autocontrast", 0), ("equalize", 0), ("equalize", 0), ("color", 9), ("equalize", 0),
    ("autocontrast", 0), ("solarize", 8), ("brightness", 3), ("color", 0), ("solarize", 5), ("autocontrast", 0),
    ("translate_y", 9), ("translate_y", 9), ("autocontrast", 0), ("solarize", 3), ("equalize", 0), ("invert", 0),
    ("translate_y", 9), ("autocontrast", 0),
)


def _apply(op: str, level: int, x: torch.Tensor) -> torch.Tensor:
    """One AutoAugment operation at magnitude level 0-9 on images in [0, 1] (B, C, H, W); AutoAugment's ranges:
    shear 0.3, translate 150/331 of the side, rotate 30 deg, enhance factors 0.1-1.9, posterize 4-8 bits."""
    # imported here, not at the top: torchvision's import pulls in torch._dynamo (about 2.5 s of CPU), and this
    # module is imported whenever the registry loads, i.e. by every `bench` command
    import torchvision.transforms.functional as TF

    m = level / 9.0
    side = x.shape[-1]
    if op == "invert":
        return 1.0 - x
    if op == "autocontrast":
        return TF.autocontrast(x)
    if op == "equalize":
        return TF.equalize((x * 255).round().to(torch.uint8)).float() / 255
    if op == "rotate":
        return TF.rotate(x, 30.0 * m)
    if op in ("translate_x", "translate_y"):
        t = int(round(150 / 331 * side * m))
        return TF.affine(x, angle=0.0, translate=[t, 0] if op == "translate_x" else [0, t], scale=1.0, shear=[0.0])
    if op == "shear_y":
        return TF.affine(x, angle=0.0, translate=[0, 0], scale=1.0, shear=[0.0, math.degrees(math.atan(0.3 * m))])
    if op == "posterize":
        return TF.posterize((x * 255).round().to(torch.uint8), int(round(8 - 4 * m))).float() / 255
    if op == "solarize":
        return TF.solarize(x, 1.0 - m)
    factor = 0.1 + 1.8 * m
    fn = {"contrast": TF.adjust_contrast, "sharpness": TF.adjust_sharpness, "color": TF.adjust_saturation,
          "brightness": TF.adjust_brightness}[op]
    return fn(x, factor).clamp(0, 1)


def parse_policy(policy: str) -> list[list[int]]:
    """'3-1-7' -> [[3, 1, 7]]; '3-1-7+43-18-18' -> two policies, one chosen at random per image (ATSPrivacy's union)."""
    out = []
    for part in policy.split("+"):
        idx = [int(s) for s in part.split("-")]
        if any(not 0 <= i < len(ATS_TRANSFORMS) for i in idx):
            raise ValueError(f"ats policy {policy!r}: indices must be in 0..{len(ATS_TRANSFORMS) - 1}")
        out.append(idx)
    return out


def random_crop(x: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Random crop of the original size after zero padding of `padding` px, drawn per image."""
    b, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, [padding] * 4)
    offs = torch.randint(0, 2 * padding + 1, (b, 2), generator=generator)
    return torch.stack([padded[i, :, int(oy):int(oy) + h, int(ox):int(ox) + w] for i, (oy, ox) in enumerate(offs)])


def ats_augment(images: torch.Tensor, policy: str = "3-1-7", crop: bool = False,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """ATSPrivacy's defense: transform the client's training images (in [0, 1]) by the policy before the gradient."""
    g = generator or torch.Generator().manual_seed(0)
    pols = parse_policy(policy)
    out = []
    for i in range(len(images)):
        x = images[i:i + 1]
        pol = pols[int(torch.randint(len(pols), (1,), generator=g))] if len(pols) > 1 else pols[0]
        for j in pol:
            x = _apply(*ATS_TRANSFORMS[j], x)
        out.append(x)
    res = torch.cat(out).clamp(0, 1)
    return random_crop(res, g) if crop else res
