"""The shared trainer of learned attacks (bench/training.py) against hand-written reference loops in plain torch,
and the worked example of a learned attack (examples/learned_attack.py) through the contract kit."""

from __future__ import annotations

import importlib.util
import io
import math
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench.errors import BenchError
from bench.training import (BCE, RAGAN, Adversary, TrainingDiverged, adam, flop_figures, optimise, recalibrate_bn,
                            run_steps, schedules, seeded_batches)

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "learned_attack.py"
HP = {"lr": 1e-2, "betas": [0.5, 0.999]}


def _data(n: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(123)
    return torch.randn(n, 5, generator=g), torch.randn(n, 2, generator=g)


# ----------------------------------------------------------------------------------------------- batches
def test_seeded_batches_are_epochs_of_a_seeded_permutation() -> None:
    got = list(zip(range(7), seeded_batches(10, 3, 4)))  # 3 full batches per epoch; the 10th index is dropped
    gen = torch.Generator().manual_seed(4)
    p1, p2, p3 = (torch.randperm(10, generator=gen).tolist() for _ in range(3))
    want = [p1[0:3], p1[3:6], p1[6:9], p2[0:3], p2[3:6], p2[6:9], p3[0:3]]
    assert [b.tolist() for _, b in got] == want


def test_a_shared_generator_starts_each_stage_on_a_fresh_permutation() -> None:
    gen = torch.Generator().manual_seed(9)
    first = seeded_batches(6, 4, gen)
    a = next(first)  # stage 1 takes one batch, drawing one permutation
    b = next(seeded_batches(6, 4, gen))  # stage 2 draws the next permutation
    ref = torch.Generator().manual_seed(9)
    assert a.tolist() == torch.randperm(6, generator=ref).tolist()[:4]
    assert b.tolist() == torch.randperm(6, generator=ref).tolist()[:4]


def test_a_batch_larger_than_the_set_is_the_whole_set() -> None:
    assert sorted(next(seeded_batches(3, 8, 0)).tolist()) == [0, 1, 2]


# ------------------------------------------------------------------------------------------------ the loop
def test_run_steps_reproduces_a_hand_written_loop_bit_for_bit() -> None:
    """Same initialisation, batches, Adam and cosine schedule as a plain torch loop: identical weights and losses."""
    x, y = _data()
    steps = 9

    torch.manual_seed(0)
    ref = nn.Linear(5, 2)
    opt = torch.optim.Adam(ref.parameters(), lr=1e-2, betas=(0.5, 0.999))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    gen = torch.Generator().manual_seed(3)
    ref_losses: list[float] = []
    done = 0
    while done < steps:
        perm = torch.randperm(10, generator=gen)
        for i in range(0, 10 - 4 + 1, 4):
            if done == steps:
                break
            idx = perm[i:i + 4]
            loss = F.mse_loss(ref(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            ref_losses.append(loss.item())
            done += 1

    torch.manual_seed(0)
    net = nn.Linear(5, 2)
    opt2 = adam(net.parameters(), HP)
    history: list[float] = []

    def step(idx: np.ndarray) -> float:
        loss = F.mse_loss(net(x[idx]), y[idx])
        optimise(opt2, loss)
        return float(loss.detach())

    run_steps("toy", steps, seeded_batches(10, 4, 3), step, history=history,
              schedulers=schedules([opt2], "cosine", steps))
    assert history == ref_losses
    assert torch.equal(net.weight, ref.weight) and torch.equal(net.bias, ref.bias)
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]


def test_divergence_guard_names_the_stage_and_step() -> None:
    losses = iter([1.0, 0.5, float("nan"), 0.1])
    history: list[float] = []
    with pytest.raises(TrainingDiverged, match=r"toy: lbp training diverged at step 2 \(loss nan\)"):
        run_steps("toy", 4, seeded_batches(4, 2, 0), lambda idx: next(losses), history=history, stage="lbp")
    assert history == [1.0, 0.5]
    assert issubclass(TrainingDiverged, RuntimeError)
    with pytest.raises(TrainingDiverged, match="step 0"):
        run_steps("toy", 1, seeded_batches(4, 2, 0), lambda idx: float("inf"))


def test_schedules() -> None:
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    assert schedules([opt], "none", 10) == []
    (cos,) = schedules([opt], "cosine", 4)
    lrs = []
    for _ in range(4):
        opt.step()
        cos.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs == pytest.approx([0.5 * (1 + math.cos(math.pi * k / 4)) for k in (1, 2, 3, 4)], abs=1e-12)
    opt2 = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    (dec,) = schedules([opt2], "step", 100, step_size=2, gamma=0.5)
    for _ in range(5):
        opt2.step()
        dec.step()
    assert opt2.param_groups[0]["lr"] == 0.25  # halved after steps 2 and 4
    with pytest.raises(BenchError, match="unknown learning-rate schedule 'linear'"):
        schedules([opt], "linear", 3)


# ------------------------------------------------------------------------------------------- adversarial
def _ragan_by_hand(real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """RaGAN's generator and discriminator losses written out (ESRGAN eq.: sigmoid of logit minus the other mean)."""
    def bce(z: torch.Tensor, t: float) -> torch.Tensor:
        p = torch.sigmoid(z)
        return -(t * torch.log(p) + (1 - t) * torch.log(1 - p)).mean()

    g = bce(fake - real.mean(), 1.0) + bce(real - fake.mean(), 0.0)
    d = bce(real - fake.mean(), 1.0) + bce(fake - real.mean(), 0.0)
    return g, d


def test_adversary_terms_and_step() -> None:
    torch.manual_seed(1)
    disc = nn.Linear(3, 1)
    gen_net = nn.Linear(3, 3)
    real, z = torch.randn(6, 3), torch.randn(6, 3)
    adv = Adversary(disc, RAGAN, adam(disc.parameters(), HP))
    fake = gen_net(z)
    term = adv.generator_term(real, fake)
    g_ref, d_ref = _ragan_by_hand(disc(real).detach(), disc(fake).detach())
    assert term.item() == pytest.approx(g_ref.item(), rel=1e-5)
    term.backward()
    assert disc.weight.grad is None and gen_net.weight.grad is not None  # only the generator gets gradients
    assert all(p.requires_grad for p in disc.parameters())  # unfrozen again
    before = disc.weight.detach().clone()
    d_loss = adv.step(real, fake)
    assert d_loss == pytest.approx(d_ref.item(), rel=1e-5)
    assert not torch.equal(before, disc.weight)

    bce = Adversary(disc, BCE, adam(disc.parameters(), HP))
    logits_f, logits_r = disc(fake).detach(), disc(real).detach()
    assert bce.generator_term(real, fake).item() == pytest.approx(F.softplus(-logits_f).mean().item(), rel=1e-5)
    want_d = F.softplus(-logits_r).mean() + F.softplus(logits_f).mean()
    assert bce.step(real, fake) == pytest.approx(want_d.item(), rel=1e-5)


# ------------------------------------------------------------------------------------- batch-norm statistics
def test_recalibrate_bn_gives_plain_averages_of_batch_statistics() -> None:
    x = torch.randn(12, 3, generator=torch.Generator().manual_seed(5)) * 3 + 1
    bn = nn.BatchNorm1d(3, momentum=0.1)
    net = nn.Sequential(bn)
    bn.running_mean.fill_(100.0)  # stale statistics that must be forgotten
    recalibrate_bn(net, lambda idx: net(x[torch.from_numpy(idx)]), 12, 4, 2, seed=7)
    order = torch.randperm(12, generator=torch.Generator().manual_seed(7))
    batches = [x[order[0:4]], x[order[4:8]]]  # two of the three batches
    assert torch.allclose(bn.running_mean, torch.stack([b.mean(0) for b in batches]).mean(0), atol=1e-6)
    assert torch.allclose(bn.running_var, torch.stack([b.var(0, unbiased=True) for b in batches]).mean(0), atol=1e-6)
    assert bn.momentum == 0.1 and not net.training
    before = bn.running_mean.clone()
    recalibrate_bn(net, lambda idx: net(x[torch.from_numpy(idx)]), 12, 4, 0, seed=7)  # 0 batches: off
    assert torch.equal(before, bn.running_mean)


def test_flop_figures_of_a_linear_layer() -> None:
    with torch.device("meta"):
        net, x = nn.Linear(1000, 500, bias=False), torch.zeros(1, 1000)
    figs = flop_figures(net, x, digits=6)
    assert figs == {"gflops": 0.001, "gmacs": 0.0005}  # 1000×500 multiply-accumulates, 2 FLOPs each


# ------------------------------------------------------------------------------------- the worked example
def _example() -> Any:
    spec = importlib.util.spec_from_file_location("learned_attack_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture()
def keypoint_cnn() -> Iterator[Any]:
    from bench import registry

    mod = _example()
    registry.attacks.register(mod.KeypointCNN.name, mod.KeypointCNN, source="test", **mod.KeypointCNN.registry_meta())
    try:
        yield mod.KeypointCNN
    finally:
        registry.attacks.unregister(mod.KeypointCNN.name)


def test_the_example_is_one_short_file() -> None:
    assert len(EXAMPLE.read_text().splitlines()) <= 200


def test_the_example_passes_the_contract_kit(keypoint_cnn: Any) -> None:
    from bench.contract import check_plugin

    results = check_plugin("keypoint-cnn", "attacks")
    failed = [(check, detail) for check, ok, detail in results if not ok]
    assert results and not failed, failed
    assert {c for c, _, _ in results} >= {"fit + reconstruct (smoke)", "checkpoint round trip (weights_only)",
                                           "same seed, same result"}


def test_the_example_checkpoint_history_and_refusals(keypoint_cnn: Any, pinned_threads: int) -> None:
    from bench.contract import smoke_data
    from bench.plugins import FitContext

    data = smoke_data(n_train=8, n_test=3)
    attack = keypoint_cnn("smoke", 32, seed=0)
    with pytest.raises(RuntimeError, match="reconstruct\\(\\) before fit"):
        attack.reconstruct(data["private"], progress=False)
    attack.fit(data["aux"], data["aux_images"], FitContext(defense=data["defense"], seed=0,
                                                            device=torch.device("cpu"), progress=False))
    assert len(attack.history["decoder"]) == 6 and all(np.isfinite(attack.history["decoder"]))
    assert attack.stage_seconds["decoder"] > 0
    out = attack.reconstruct(data["private"], progress=False)
    buf = io.BytesIO()
    torch.save(attack.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    assert set(state) == {"config", "decoder"}
    again = keypoint_cnn("smoke", 32, seed=0)
    again.load_state_dict(state)
    assert torch.equal(again.reconstruct(data["private"], progress=False), out)  # same threads, same arithmetic
    wider = keypoint_cnn("smoke", 32, params={"widths": [32, 16, 8]})
    with pytest.raises(BenchError, match="saved state has networks"):
        wider.load_state_dict(state)
    with pytest.raises(BenchError, match="reconstructs at 32px"):
        keypoint_cnn("smoke", 64)
    with pytest.raises(BenchError, match="at least 2 training images"):
        attack.fit(data["aux"].subset([0]), data["aux_images"][:1], FitContext(
            defense=data["defense"], seed=0, device=torch.device("cpu"), progress=False))
    desc = attack.describe()
    assert desc["params_decoder"] == sum(p.numel() for p in attack.decoder.parameters()) and desc["gmacs"] > 0
