"""Gradient-inversion family core (issue 17): victims, releases, gradient defenses, batched attacks, matching."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from bench import matching
from bench.attacks.gradinv import attacks, defenses, releases, victims


def conv(cin: int, cout: int, k: int, bias: bool = True) -> int:
    return cin * cout * k * k + (cout if bias else 0)


# ---- victims ------------------------------------------------------------------------------------------------------

def test_lenet_zhu_parameter_count() -> None:
    # DLG's LeNet on 32 px: 3 convs 5x5, 12 channels, strides 2, 2, 1 -> 12 x 8 x 8 features -> 10 logits.
    expected = conv(3, 12, 5) + 2 * conv(12, 12, 5) + (12 * 8 * 8) * 10 + 10
    assert expected == 15_826
    assert victims.n_parameters(victims.build_victim("lenet-zhu")) == expected


def test_convnet_parameter_count() -> None:
    w = 64  # IG's ConvNet-64: widths w, 2w, 2w, 4w x5; BN affine per conv; linear on 3 x 3 x 4w.
    ch = [3, w, 2 * w, 2 * w] + [4 * w] * 5
    expected = sum(conv(ch[i], ch[i + 1], 3) + 2 * ch[i + 1] for i in range(8)) + 36 * w * 10 + 10
    assert expected == 2_904_970
    assert victims.n_parameters(victims.build_victim("convnet", width=64)) == expected
    assert victims.n_parameters(victims.build_victim("convnet", width=16)) < expected


def _resnet20_count(k: int) -> int:
    w = [16 * k, 32 * k, 64 * k]
    total = conv(3, w[0], 3, bias=False) + 2 * w[0]
    cin = w[0]
    for c in w:
        for b in range(3):
            total += conv(cin, c, 3, False) + 2 * c + conv(c, c, 3, False) + 2 * c
            if cin != c:
                total += conv(cin, c, 1, False) + 2 * c  # projection shortcut
            cin = c
    return total + w[2] * 10 + 10


def test_resnet20_parameter_counts() -> None:
    assert victims.n_parameters(victims.build_victim("resnet20-4")) == _resnet20_count(4)
    base = victims.n_parameters(victims.build_victim("resnet20-4", width=1))
    assert base == _resnet20_count(1)
    assert abs(base - 270_000) / 270_000 < 0.02  # He et al.: ResNet-20 has 0.27M parameters


def test_seeded_init() -> None:
    a, b, c = (victims.build_victim("convnet", width=8, seed=s) for s in (1, 1, 2))
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["body.0.weight"], sc["body.0.weight"])
    lenet = victims.build_victim("lenet-zhu")
    assert all(p.abs().max() <= 0.5 for p in lenet.parameters())  # DLG's uniform(-0.5, 0.5) init


def test_trainer_learns_a_separable_task() -> None:
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 2, (64,), generator=g)
    images = torch.rand(64, 3, 32, 32, generator=g) * 0.2
    images[labels == 1, 0] += 0.8  # class 1: a bright red channel
    model = victims.build_victim("convnet", width=4, num_classes=2)
    out = victims.train_victim(model, images, labels, epochs=10, lr=0.05, batch_size=16, test=(images, labels))
    assert out["train_accuracy"] > 0.9 and out["test_accuracy"] == out["train_accuracy"]


# ---- releases -----------------------------------------------------------------------------------------------------

@pytest.fixture()
def lenet16() -> nn.Module:
    return victims.build_victim("lenet-zhu", image_size=16).double()


def _data(n: int, side: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return torch.rand(n, 3, side, side, generator=g, dtype=torch.float64), torch.randint(0, 10, (n,), generator=g)


def test_per_sample_gradients_equal_a_loop_of_batch_one(lenet16: nn.Module) -> None:
    x, y = _data(4)
    ps = releases.per_sample_gradients(lenet16, x, y)
    for i in range(4):
        for a, b in zip(ps, releases.image_gradient(lenet16, x[i], y[i])):
            torch.testing.assert_close(a[i], b)
    # the batch release of mean loss is the mean of the per-sample releases
    for a, b in zip(ps, releases.batch_gradient(lenet16, x, y)):
        torch.testing.assert_close(a.mean(0), b)


def test_per_sample_refuses_train_mode_batchnorm() -> None:
    with pytest.raises(ValueError, match="eval mode"):
        releases.per_sample_gradients(victims.build_victim("convnet", width=4).train(), *_data(2, 32))


def test_fedavg_update(lenet16: nn.Module) -> None:
    x, y = _data(4)
    before = copy.deepcopy(lenet16.state_dict())
    one = releases.fedavg_update(lenet16, x, y, local_steps=1, lr=0.01)
    for a, b in zip(one, releases.batch_gradient(lenet16, x, y)):
        torch.testing.assert_close(a, 0.01 * b)
    five = releases.fedavg_update(lenet16, x, y, local_steps=5, lr=0.01, local_batch=2)
    assert not torch.allclose(five[0], 5 * one[0])
    assert all(torch.equal(before[k], v) for k, v in lenet16.state_dict().items())  # the client's copy moved


# ---- defenses -----------------------------------------------------------------------------------------------------

def test_pruning_per_layer_and_global() -> None:
    a = torch.arange(1.0, 11.0)  # magnitudes 1..10
    b = torch.arange(1.0, 11.0) * 100
    la, lb = defenses.gradient_pruning([a, -b], 0.7, "layer")
    assert torch.equal(la, torch.tensor([0.0] * 7 + [8.0, 9.0, 10.0]))
    assert (lb != 0).sum() == 3 and lb[-1] == -1000
    ga, gb = defenses.gradient_pruning([a, -b], 0.7, "global")  # 14 of 20 pruned: all of a and the 4 smallest of b
    assert (ga == 0).all() and (gb != 0).sum() == 6
    with pytest.raises(ValueError):
        defenses.gradient_pruning([a], 1.5)


def test_gradient_noise_scale() -> None:
    g = torch.zeros(100_000)
    out = defenses.gradient_noise([g], 1e-3, torch.Generator().manual_seed(0))[0]
    assert abs(out.std().item() - 1e-3) < 2e-5


def test_dp_sgd_clips_each_example() -> None:
    per = [torch.tensor([[3.0, 4.0], [0.3, 0.4]])]  # norms 5 and 0.5
    out = defenses.dp_sgd(per, clip=1.0, noise_multiplier=0.0)[0]
    torch.testing.assert_close(out, (torch.tensor([0.6, 0.8]) + torch.tensor([0.3, 0.4])) / 2)
    noisy = defenses.dp_sgd([torch.zeros(4, 50_000)], clip=2.0, noise_multiplier=0.5,
                            generator=torch.Generator().manual_seed(0))[0]
    assert abs(noisy.std().item() - 0.5 * 2.0 / 4) < 0.01


def test_dp_epsilon_is_from_an_accountant_or_unavailable() -> None:
    out = defenses.dp_epsilon(1.0, 0.01, 1000)
    try:
        import opacus  # noqa: F401
    except ImportError:
        assert out["epsilon"] is None and out["status"] == "unavailable"
    else:
        assert 0 < out["epsilon"] < 100


def test_ats_policies() -> None:
    assert len(defenses.ATS_TRANSFORMS) == 50
    assert defenses.parse_policy("3-1-7+43-18-18") == [[3, 1, 7], [43, 18, 18]]
    with pytest.raises(ValueError):
        defenses.parse_policy("3-1-70")
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(defenses._apply("invert", 0, x), 1 - x)
    for policy in ("3-1-7", "43-18-18", "3-1-7+43-18-18"):
        out = defenses.ats_augment(x, policy, crop=True, generator=torch.Generator().manual_seed(1))
        assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1 and not torch.allclose(out, x)
        again = defenses.ats_augment(x, policy, crop=True, generator=torch.Generator().manual_seed(1))
        assert torch.equal(out, again)


# ---- attacks ------------------------------------------------------------------------------------------------------

def test_idlg_label_recovery(lenet16: nn.Module) -> None:
    x, y = _data(6)
    assert torch.equal(attacks.idlg_labels(releases.per_sample_gradients(lenet16, x, y), lenet16), y)


def test_hyper_parameters_declared() -> None:
    assert attacks.hyper_parameters("dlg", "paper")["iterations"] == 1200
    assert attacks.hyper_parameters("inverting-gradients", "paper")["iterations"] == 24000
    assert attacks.hyper_parameters("idlg", "smoke", iterations=2)["iterations"] == 2
    with pytest.raises(ValueError, match="unknown hyper-parameter"):
        attacks.hyper_parameters("dlg", "cpu", step=3)


# Tolerance for batched vs one-by-one: 1e-6 absolute in float64 (only the summation order of the stacked
# convolutions differs).
TOL = dict(atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("name", ["dlg", "idlg", "inverting-gradients"])
def test_batched_equals_one_by_one(lenet16: nn.Module, name: str) -> None:
    x, y = _data(3)
    target = releases.per_sample_gradients(lenet16, x, y)
    g = torch.Generator().manual_seed(5)
    if name == "dlg":
        init = (torch.randn(3, 1, 3, 16, 16, generator=g, dtype=torch.float64),
                torch.randn(3, 1, 10, generator=g, dtype=torch.float64))
        run = lambda t, i: attacks.dlg(lenet16, t, (3, 16, 16), init=i, iterations=15)  # noqa: E731
        pick = lambda i, k: (i[0][k:k + 1], i[1][k:k + 1])  # noqa: E731
    elif name == "idlg":
        init = torch.randn(3, 1, 3, 16, 16, generator=g, dtype=torch.float64)
        run = lambda t, i: attacks.idlg(lenet16, t, (3, 16, 16), init=i, iterations=15)  # noqa: E731
        pick = lambda i, k: i[k:k + 1]  # noqa: E731
    else:
        init = torch.randn(2, 3, 1, 3, 16, 16, generator=g, dtype=torch.float64)
        run = lambda t, i: attacks.inverting_gradients(lenet16, t, (3, 16, 16), init=i, iterations=15,  # noqa: E731
                                                       restarts=2)
        pick = lambda i, k: i[:, k:k + 1]  # noqa: E731
    together = run(target, init)
    for k in range(3):
        alone = run([t[k:k + 1] for t in target], pick(init, k))
        torch.testing.assert_close(together.images[k], alone.images[0], **TOL)
        torch.testing.assert_close(together.loss[k], alone.loss[0], **TOL)
        assert torch.equal(together.labels[k], alone.labels[0])


def test_default_init_does_not_depend_on_the_other_problems(lenet16: nn.Module) -> None:
    # torch.randn draws differ with the tensor's size, so a per-problem slice of one big draw would change with N.
    x, y = _data(3)
    target = releases.per_sample_gradients(lenet16, x, y)
    together = attacks.dlg(lenet16, target, (3, 16, 16), iterations=3)
    alone = attacks.dlg(lenet16, [t[2:] for t in target], (3, 16, 16), iterations=3)
    torch.testing.assert_close(together.images[2], alone.images[0], **TOL)
    ig = attacks.inverting_gradients(lenet16, target, (3, 16, 16), iterations=3, restarts=2)
    ig1 = attacks.inverting_gradients(lenet16, [t[2:] for t in target], (3, 16, 16), iterations=3, restarts=2)
    torch.testing.assert_close(ig.images[2], ig1.images[0], **TOL)


def test_attacks_reduce_gradient_distance_and_image_error(lenet16: nn.Module) -> None:
    x, y = _data(2)
    target = releases.per_sample_gradients(lenet16, x, y)
    start = torch.randn(2, 1, 3, 16, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    err0 = ((start[:, 0] - x) ** 2).mean()
    r = attacks.idlg(lenet16, target, (3, 16, 16), init=start, iterations=60, true_labels=y)
    assert r.label_accuracy == 1.0
    assert ((r.images[:, 0] - x) ** 2).mean() < 0.5 * err0
    ig = attacks.inverting_gradients(lenet16, target, (3, 16, 16), init=start[None], iterations=60,
                                     true_labels=y)
    assert ig.label_accuracy == 1.0 and ig.images.min() >= 0 and ig.images.max() <= 1
    assert ((ig.images[:, 0] - x) ** 2).mean() < err0


def test_ig_batch_recovers_labels_or_takes_known_ones(lenet16: nn.Module) -> None:
    x, y = _data(2)
    target = [g[None] for g in releases.batch_gradient(lenet16, x, y)]
    r = attacks.inverting_gradients(lenet16, target, (3, 16, 16), batch=2, iterations=2, labels=y[None])
    assert r.images.shape == (1, 2, 3, 16, 16) and torch.equal(r.labels, y[None])
    r = attacks.inverting_gradients(lenet16, target, (3, 16, 16), batch=2, iterations=1)
    assert sorted(r.labels[0].tolist()) == sorted(y.tolist())  # the _data(2) labels are distinct


@pytest.mark.parametrize("victim", ["lenet-zhu", "convnet"])
def test_batch_label_recovery_finds_the_batch_classes(victim: str) -> None:
    """Distinct labels of a batch release come back exactly (as a set): with non-negative features, a class present
    has a negative entry in its weight-gradient row and an absent class none. A repeated class is found once."""
    model = victims.build_victim(victim, width=2 if victim == "convnet" else None, image_size=16).eval().double()
    g = torch.Generator().manual_seed(5)
    for trial in range(4):
        y = torch.randperm(10, generator=g)[:4]
        x = torch.rand(4, 3, 16, 16, generator=g, dtype=torch.float64)
        target = [t[None] for t in releases.batch_gradient(model, x, y)]
        assert sorted(attacks.batch_labels(target, model, 4)[0].tolist()) == sorted(y.tolist())
    y = torch.tensor([3, 3, 7])
    target = [t[None] for t in releases.batch_gradient(model, torch.rand(3, 3, 16, 16, dtype=torch.float64), y)]
    assert {3, 7} <= set(attacks.batch_labels(target, model, 3)[0].tolist())


def test_batched_lbfgs_follows_torch_lbfgs() -> None:
    # torch.optim.LBFGS (no line search, tolerances off) on Rosenbrock, one row at a time, is the reference.
    def rosen(z: torch.Tensor) -> torch.Tensor:
        return (100 * (z[..., 1:] - z[..., :-1] ** 2) ** 2 + (1 - z[..., :-1]) ** 2).sum(-1)

    starts = torch.tensor([[-1.2, 1.0, 0.5], [0.3, -0.4, 2.0]], dtype=torch.float64)

    def fun(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = z.clone().requires_grad_(True)
        f = rosen(z)
        return f.detach(), torch.autograd.grad(f.sum(), z)[0]

    mine, _ = attacks._lbfgs(fun, starts, iterations=12, lr=0.5, history=5, keep_best=False)
    for k in range(2):
        z = starts[k].clone().requires_grad_(True)
        opt = torch.optim.LBFGS([z], lr=0.5, max_iter=12, history_size=5, tolerance_grad=0, tolerance_change=0)

        def closure() -> torch.Tensor:
            opt.zero_grad()
            f = rosen(z)
            f.backward()
            return f
        opt.step(closure)
        torch.testing.assert_close(mine[k], z.detach(), atol=1e-9, rtol=1e-9)


# ---- matching -----------------------------------------------------------------------------------------------------

def test_matching_undoes_a_permutation() -> None:
    orig, _ = _data(6)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    recon = orig[perm] + 0.05 * torch.randn(orig.shape, generator=torch.Generator().manual_seed(1),
                                            dtype=orig.dtype)
    back = matching.matched(recon, orig)
    assert torch.allclose(back, orig, atol=0.3)
    assert torch.equal(perm[matching.match(recon, orig)], torch.arange(6))
    with pytest.raises(ValueError):
        matching.match(recon[:5], orig)
