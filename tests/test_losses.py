"""Losses and shared blocks: RaGAN vs a direct formula, sift loss, AdaIN statistics, VGG19 key compatibility."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision

from bench.errors import BenchError
from bench.attacks.sift_inversion.losses import SiftLoss, to_grey
from bench.nn.losses import PerceptualLoss, ragan_d_loss, ragan_g_loss
from bench.nn.blocks import DecoderBlock, EncoderBlock, ResidualUnit, adain
from bench.nn.vgg import VGG19Features


def _sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def _ragan_reference(real: list[float], fake: list[float]) -> tuple[float, float]:
    """Eqs. 5–8 of the CFGAN paper written out with plain Python loops."""
    mean_r = sum(real) / len(real)
    mean_f = sum(fake) / len(fake)
    d_real = [_sigmoid(r - mean_f) for r in real]  # D'(x_r)
    d_fake = [_sigmoid(f - mean_r) for f in fake]  # D'(x_f)
    l_dis = -sum(math.log(p) for p in d_real) / len(real) - sum(math.log(1 - p) for p in d_fake) / len(fake)
    l_adv = -sum(math.log(p) for p in d_fake) / len(fake) - sum(math.log(1 - p) for p in d_real) / len(real)
    return l_dis, l_adv


def test_ragan_losses_match_direct_formula() -> None:
    real = [1.3, -0.4, 2.2, 0.1]
    fake = [-1.0, 0.5, -2.5, 0.0]
    want_d, want_g = _ragan_reference(real, fake)
    r, f = torch.tensor(real, dtype=torch.float64), torch.tensor(fake, dtype=torch.float64)
    assert float(ragan_d_loss(r, f)) == pytest.approx(want_d, rel=1e-10)
    assert float(ragan_g_loss(r, f)) == pytest.approx(want_g, rel=1e-10)


def test_ragan_uses_relativistic_average() -> None:
    # Shifting every logit by one constant leaves the relativistic losses unchanged, unlike a plain GAN loss.
    r = torch.tensor([0.3, 1.1, -0.2])
    f = torch.tensor([-0.7, 0.4, 0.9])
    assert float(ragan_d_loss(r + 5, f + 5)) == pytest.approx(float(ragan_d_loss(r, f)), rel=1e-6)
    # Generator gradient flows through the fake logits.
    f_req = f.clone().requires_grad_(True)
    ragan_g_loss(r, f_req).backward()
    assert f_req.grad is not None and float(f_req.grad.abs().sum()) > 0


def test_ragan_stable_for_large_logits() -> None:
    r = torch.tensor([80.0, 90.0])
    f = torch.tensor([-90.0, -80.0])
    assert math.isfinite(float(ragan_d_loss(r, f))) and math.isfinite(float(ragan_g_loss(r, f)))


def test_to_grey_uses_itu601_weights() -> None:
    img = torch.rand(2, 3, 5, 5)
    want = 0.299 * img[:, 0] + 0.587 * img[:, 1] + 0.114 * img[:, 2]
    torch.testing.assert_close(to_grey(img)[:, 0], want)


def test_sift_loss_zero_for_identical_positive_otherwise() -> None:
    torch.manual_seed(0)
    a = torch.rand(2, 3, 32, 32)
    b = (a + 0.2 * torch.randn_like(a)).clamp(0, 1)
    loss = SiftLoss()
    assert float(loss(a, a)) == 0.0
    assert float(loss(b, a)) > 0.05
    assert not any(p.requires_grad for p in loss.parameters())  # kornia's kernels stay fixed
    recon = b.clone().requires_grad_(True)
    loss(recon, a).backward()
    assert recon.grad is not None and torch.isfinite(recon.grad).all() and float(recon.grad.abs().sum()) > 0


def test_sift_loss_stride_subsamples_positions() -> None:
    torch.manual_seed(1)
    a, b = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    assert float(SiftLoss(stride=4)(a, a)) == 0.0
    assert float(SiftLoss(stride=4)(b, a)) > 0.05


def test_adain_output_has_statistics_of_c() -> None:
    torch.manual_seed(2)
    s = torch.randn(3, 4, 8, 8) * 3 + 1
    c = torch.randn(3, 4, 8, 8) * 0.5 - 2
    out = adain(s, c, eps=1e-8)
    # Reference statistics computed sample by sample, channel by channel.
    for n in range(3):
        for ch in range(4):
            cv = c[n, ch].flatten().double()
            ov = out[n, ch].flatten().double()
            assert float(ov.mean()) == pytest.approx(float(cv.mean()), abs=1e-5)
            assert float(ov.std(unbiased=False)) == pytest.approx(float(cv.std(unbiased=False)), rel=1e-4)
    # The normalised content of s is kept: out is an increasing affine map of s per channel.
    corr = torch.corrcoef(torch.stack([s[0, 0].flatten(), out[0, 0].flatten()]))[0, 1]
    assert float(corr) == pytest.approx(1.0, abs=1e-5)


def test_adain_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError):
        adain(torch.zeros(1, 3, 4, 4), torch.zeros(1, 2, 4, 4))


def test_blocks_shapes_and_skip() -> None:
    x = torch.randn(2, 8, 16, 16)
    unit = ResidualUnit(8, 12)
    assert isinstance(unit.skip, torch.nn.Conv2d) and unit(x).shape == (2, 12, 16, 16)
    assert isinstance(ResidualUnit(8, 8).skip, torch.nn.Identity)
    skip, pooled = EncoderBlock(8, 12)(x)
    assert skip.shape == (2, 12, 16, 16) and pooled.shape == (2, 12, 8, 8)
    torch.testing.assert_close(pooled, torch.nn.functional.avg_pool2d(skip, 2))
    dec = DecoderBlock(12, 12, 6)
    assert dec(pooled, skip).shape == (2, 6, 16, 16)
    assert DecoderBlock(12, 0, 6)(pooled).shape == (2, 6, 16, 16)
    # The decoder block has one 3×3 conv more than the encoder block.
    n3 = lambda m: sum(1 for c in m.modules() if isinstance(c, torch.nn.Conv2d) and c.kernel_size == (3, 3))  # noqa: E731
    assert n3(DecoderBlock(12, 12, 6)) == n3(EncoderBlock(12, 6)) + 1


def _torchvision_vgg19_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(3)
    return torchvision.models.vgg19(weights=None).state_dict()


def test_vgg19_loads_torchvision_keys_and_gives_five_outputs() -> None:
    state = _torchvision_vgg19_state()
    assert any(k.startswith("classifier.") for k in state)  # ignored keys are present
    vgg = VGG19Features(state)
    torch.testing.assert_close(vgg.features[0].weight, state["features.0.weight"])
    torch.testing.assert_close(vgg.features[34].bias, state["features.34.bias"])
    assert all(not p.requires_grad for p in vgg.parameters())
    vgg.train()
    assert not vgg.training
    x = torch.rand(1, 3, 32, 32)
    outs = vgg(x)
    assert [tuple(o.shape) for o in outs] == [(1, 64, 32, 32), (1, 128, 16, 16), (1, 256, 8, 8),
                                              (1, 512, 4, 4), (1, 512, 2, 2)]
    # relu1_1 equals torchvision's first conv + relu on ImageNet-normalised input.
    tv = torchvision.models.vgg19(weights=None)
    tv.load_state_dict(state)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        want = tv.features[:30]((x - mean) / std)
    torch.testing.assert_close(outs[4], want)


def test_vgg19_rejects_foreign_state_dict() -> None:
    with pytest.raises(BenchError):
        VGG19Features({"features.0.weight": torch.zeros(64, 3, 3, 3)})


def test_perceptual_loss_zero_for_identical_positive_otherwise() -> None:
    loss = PerceptualLoss(_torchvision_vgg19_state())
    a = torch.rand(1, 3, 32, 32)
    b = torch.rand(1, 3, 32, 32)
    assert float(loss(a, a).detach()) == 0.0
    assert float(loss(b, a).detach()) > 0.0
