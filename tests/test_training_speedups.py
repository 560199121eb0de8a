"""The shared trainer's speed-ups (bench.training.speedups, bench/record_cache.py) against the plain per-step path:
kept inputs equal the built ones bit for bit, and a learned attack trained with the speed-ups ends with the same
losses and weights as one trained without them (same seed, same thread count), bit for bit."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench.record_cache import DenseRecordCache, SparseRecordCache
from bench.training import BCE, RAGAN, Adversary, adam, optimise, speedups, speedups_enabled


def _sparse_maps(n: int, c: int, s: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    maps = torch.zeros(n, c, s, s)
    for i in range(n):
        k = i % 4 * 3  # record 0 is empty
        cells = torch.randperm(s * s, generator=g)[:k]
        maps[i].view(c, s * s)[:, cells] = torch.randn(c, k, generator=g)
    maps[2, :, 1, 1] = -0.0  # a negative zero is a value, kept as it is
    return maps


@pytest.mark.parametrize("channels", [5, 1])
@pytest.mark.parametrize("channels_last", [False, True])
def test_sparse_cache_gives_the_built_maps_bit_for_bit(channels_last: bool, channels: int) -> None:
    full = _sparse_maps(9, channels, 6)
    calls: list[list[int]] = []

    def layout(m: torch.Tensor) -> torch.Tensor:  # as sift_maps builds them: B×H×W×C memory, permuted, or B×C×H×W
        return m.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2) if channels_last else m.contiguous()

    def build(idx: np.ndarray) -> torch.Tensor:
        calls.append(idx.tolist())
        return layout(full[torch.from_numpy(idx)])

    cache = SparseRecordCache(build, 9)
    for idx in ([3, 0, 5], [5, 2, 2, 8], [0, 1, 2, 3, 4, 5, 6, 7, 8], [8]):
        got = cache(np.array(idx))
        want = layout(full[torch.tensor(idx)])
        assert got.shape == want.shape and got.dtype == want.dtype
        assert got.stride() == want.stride()
        assert torch.equal(got.view(torch.int32), want.view(torch.int32))  # bits, -0.0 included
    # each record was built once, the records of a batch not kept yet in one call
    assert calls == [[3, 0, 5], [2, 8], [1, 4, 6, 7]]
    assert cache.kept() == 9 and 0 < cache.nbytes() < full.numel() * 4


def test_sparse_cache_refuses_a_builder_that_changes_shape() -> None:
    shapes = iter([(2, 3, 4, 4), (1, 3, 5, 5)])
    cache = SparseRecordCache(lambda idx: torch.zeros(*next(shapes)), 4)
    cache(np.array([0, 1]))
    with pytest.raises(ValueError, match="maps of shape"):
        cache(np.array([2]))


def test_dense_cache_keeps_records_within_its_budget() -> None:
    rows = torch.randn(6, 2, 3)
    built: list[list[int]] = []

    def build(idx: np.ndarray) -> torch.Tensor:
        built.append(idx.tolist())
        return rows[torch.from_numpy(idx)] * 1.0

    cache = DenseRecordCache(build, 6, max_bytes=3 * rows[0].nbytes)  # room for three records
    assert torch.equal(cache(np.array([0, 1])), rows[[0, 1]])
    assert torch.equal(cache(np.array([1, 2, 3])), rows[[1, 2, 3]])  # 2 kept, 3 past the budget
    assert torch.equal(cache(np.array([3, 0, 4, 4])), rows[[3, 0, 4, 4]])
    assert built == [[0, 1], [2, 3], [3, 4]] and cache.full and cache.held == 3 * rows[0].nbytes


def test_the_switch_and_its_environment_default() -> None:
    before = speedups_enabled()
    with speedups(False):
        assert not speedups_enabled()
        with speedups(True):
            assert speedups_enabled()
        assert not speedups_enabled()
    assert speedups_enabled() == before


def test_foreach_adam_is_the_plain_update_bit_for_bit(pinned_threads: int) -> None:
    x = torch.randn(6, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    out = {}
    for on in (False, True):
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))
        with speedups(on):
            opt = adam(net.parameters(), {"lr": 1e-2, "betas": [0.5, 0.999]})
        assert opt.defaults["foreach"] is (True if on else None)
        for _ in range(5):
            optimise(opt, net(x).pow(2).mean())
        out[on] = [p.detach().clone() for p in net.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(out[False], out[True]))


@pytest.mark.parametrize("gan", [RAGAN, BCE], ids=["ragan", "bce"])
def test_adversarial_step_with_one_shared_forward_equals_the_plain_one(gan: Any, pinned_threads: int) -> None:
    """Generator and discriminator (with batch norm) after a few steps: the same weights whichever path."""
    g = torch.Generator().manual_seed(1)
    z, real = torch.randn(4, 2, 8, 8, generator=g), torch.rand(4, 3, 8, 8, generator=g)
    results: dict[bool, list[torch.Tensor]] = {}
    losses: dict[bool, list[float]] = {}
    for on in (False, True):
        torch.manual_seed(0)
        gen = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.Sigmoid())
        disc = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.LeakyReLU(0.2, inplace=True),
                             nn.Flatten(), nn.Linear(4 * 6 * 6, 1), nn.Flatten(0))
        with speedups(on):
            opt_g, adv = adam(gen.parameters(), {"lr": 1e-2}), Adversary(disc, gan, adam(disc.parameters(), {"lr": 1e-2}))
            losses[on] = []
            for _ in range(4):
                fake = gen(z)
                total = adv.train_step(opt_g, F.l1_loss(fake, real), 0.1, real, fake)
                losses[on].append(float(total.detach()))
        results[on] = [p.detach().clone() for p in [*gen.parameters(), *disc.parameters()]]
        assert all(p.requires_grad for p in disc.parameters())
    assert losses[True] == losses[False]
    assert all(torch.equal(a, b) for a, b in zip(results[False], results[True]))


# ------------------------------------------------------------------------------------ the learned attacks
def _fit_both(make: Callable[[], Any], fit: Callable[[Any], None]) -> dict[bool, Any]:
    out = {}
    for on in (False, True):
        with speedups(on):
            attack = make()
            fit(attack)
        out[on] = attack
    return out


def _assert_same_training(attacks: dict[bool, Any]) -> None:
    """Same losses and weights (batch-norm statistics included), bit for bit: the speed-ups run the same kernels
    on tensors of the same shapes and strides, at the same thread count."""
    plain, fast = attacks[False], attacks[True]
    assert fast.history == plain.history
    for key, net in plain.networks().items():
        got = fast.networks()[key].state_dict()
        for name, value in net.state_dict().items():
            assert torch.equal(got[name], value), f"{key}.{name}: max |diff| {(got[name] - value).abs().max()}"


def test_cfgan_trains_to_the_same_weights_with_the_speedups(pinned_threads: int) -> None:
    from bench.attacks.sift_inversion.cfgan import CFGAN
    from test_cfgan import ctx, smooth_images, tiny_sift

    feats, images = tiny_sift(10), smooth_images(10, 32)
    attacks = _fit_both(lambda: CFGAN("smoke", 32, seed=2, params={"coarse_steps": 6, "fine_steps": 6}),
                        lambda a: a.fit(feats, images, ctx(2)))
    _assert_same_training(attacks)
    recon = {on: a.reconstruct(tiny_sift(4, seed=5), progress=False) for on, a in attacks.items()}
    assert torch.equal(recon[True], recon[False])


@pytest.fixture(scope="module")
def sift_data() -> dict[str, Any]:
    from bench.contract import smoke_data

    return smoke_data(n_train=10, n_test=2)


@pytest.mark.parametrize("name, params", [
    ("sli", {"lbp_steps": 3, "image_steps": 4}), ("sli-b", {"image_steps": 4}),
    ("sli-r", {"lbp_steps": 3, "image_steps": 4}), ("ivr", {"steps": 5}),
    ("inv", {"coarse_steps": 3, "refine_steps": 4}),
])
def test_sift_attacks_train_to_the_same_weights_with_the_speedups(name: str, params: dict[str, int],
                                                                  sift_data: dict[str, Any],
                                                                  pinned_threads: int) -> None:
    from bench import registry
    from bench.plugins import FitContext

    cls = registry.attacks.get(name).obj
    d = sift_data
    size = d["profile"].image_size

    def fit(attack: Any) -> None:
        attack.fit(d["aux"], d["aux_images"], FitContext(defense=d["defense"], seed=3, device=torch.device("cpu"),
                                                         progress=False, ids=[f"aux-{i}" for i in range(10)]))

    _assert_same_training(_fit_both(lambda: cls("smoke", size, seed=3, params=params), fit))


def test_vector_attacks_train_to_the_same_weights_with_the_speedups(pinned_threads: int) -> None:
    from bench.attacks.feature_inversion.decoder import FeatureGANAttack
    from bench.features.embeddings import EmbeddingSet
    from bench.plugins import FitContext

    g = torch.Generator().manual_seed(4)
    feats = EmbeddingSet(torch.randn(16, 12, generator=g).numpy())
    images = torch.rand(16, 3, 32, 32, generator=g)
    fit = lambda a: a.fit(feats, images, FitContext(defense=None, seed=4, device=torch.device("cpu"),  # noqa: E731
                                                    progress=False))
    _assert_same_training(_fit_both(lambda: FeatureGANAttack("smoke", 32, seed=4), fit))
