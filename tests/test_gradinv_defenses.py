"""Client-side gradient defenses (dp-sgd, ats-augment), their utility (fl-accuracy) and their engine checks."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from bench import registry
from bench.attacks.gradinv import defenses as gd
from bench.attacks.gradinv import utility as gu
from bench.attacks.gradinv.client_defenses import ATSAugment, DPSGD
from bench.attacks.gradinv.plugins import FedSGDLeNetZhu
from bench.cli import main
from bench.errors import BenchError, IncompatibleError
from bench.plugins import ClientData, ImageSet, UtilityContext, UtilityTraining
from bench.run.plan import RunRequest, plan

from conftest import SHARED_DATA

CIFAR = SHARED_DATA / "cifar10"


def _tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.Tanh(), nn.Linear(5, 3))


def _reference_dp_sgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, clip: float) -> list[torch.Tensor]:
    """DP-SGD without noise written out example by example: autograd on each example's loss, clip the whole-model
    gradient to L2 norm `clip`, sum, divide by the batch size."""
    params = list(model.parameters())
    total = [torch.zeros_like(p) for p in params]
    for i in range(len(x)):
        loss = nn.functional.cross_entropy(model(x[i:i + 1]), y[i:i + 1])
        grads = torch.autograd.grad(loss, params)
        norm = math.sqrt(sum(float((g ** 2).sum()) for g in grads))
        factor = min(1.0, clip / norm)
        total = [t + factor * g for t, g in zip(total, grads)]
    return [t / len(x) for t in total]


def test_dp_sgd_equals_a_per_example_loop_and_adds_noise_of_std_sigma_c_over_b() -> None:
    from bench.attacks.gradinv import releases

    model = _tiny_model().eval()
    x = torch.randn(6, 3, 2, 2) * 3
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    per = releases.per_sample_gradients(model, x, y)
    for clip in (0.05, 1e6):  # every example clipped / none clipped
        ours = gd.dp_sgd(per, clip=clip, noise_multiplier=0.0)
        ref = _reference_dp_sgd(model, x, y, clip)
        for a, b in zip(ours, ref):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    # noise: (noisy - clean) * B / (sigma * C) is standard normal entry-wise (many entries: a wide model)
    wide = nn.Sequential(nn.Flatten(), nn.Linear(12, 400)).eval()
    per = releases.per_sample_gradients(wide, x, torch.zeros(6, dtype=torch.long))
    clean = gd.dp_sgd(per, clip=0.5, noise_multiplier=0.0)
    noisy = gd.dp_sgd(per, clip=0.5, noise_multiplier=2.0, generator=torch.Generator().manual_seed(1))
    z = torch.cat([((n - c) * 6 / (2.0 * 0.5)).flatten() for n, c in zip(noisy, clean)])
    assert abs(float(z.mean())) < 0.05 and abs(float(z.std()) - 1.0) < 0.03


def _images(n: int = 4, seed: int = 0) -> ImageSet:
    g = torch.Generator().manual_seed(seed)
    return ImageSet([f"i{k}" for k in range(n)], torch.rand(n, 3, 32, 32, generator=g),
                    {"label": np.arange(n) % 10})


def _release(images: ImageSet, batch: int):
    ext = FedSGDLeNetZhu(batch=batch)
    rel = ext.extract(images)
    return rel, ClientData(images=images, victim=ext.victim(), profile="smoke", n_train=24)


def test_dp_sgd_defense_release_is_the_per_example_loop_on_each_record() -> None:
    images = _images(4)
    rel, client = _release(images, batch=2)
    out = DPSGD(clip=0.1, noise_multiplier=0.0).protect_client(rel, client, np.random.default_rng(0))
    model = client.victim.model
    y = torch.as_tensor(images.labels["label"])
    for r, cover in enumerate(rel.covers()):
        ref = torch.cat([g.flatten() for g in _reference_dp_sgd(model, images.images[cover], y[cover], 0.1)])
        np.testing.assert_allclose(out.grads[r], ref.numpy(), rtol=1e-4, atol=1e-7)
    assert out.covers() == rel.covers() and out.grads.shape == rel.grads.shape


def test_dp_sgd_records_its_epsilon_or_says_unavailable() -> None:
    rel, client = _release(_images(2), batch=1)
    meta = DPSGD(noise_multiplier=1.0).protect_client(rel, client, np.random.default_rng(0)).meta["defense"]
    for part in ("per_release", "utility_training"):
        eps = meta[part]
        if eps.get("status") == "unavailable":
            assert eps["epsilon"] is None
        else:
            assert eps["accountant"] == "opacus-rdp" and 0 < eps["epsilon"] < math.inf
    assert meta["utility_training"]["sample_rate"] == pytest.approx(4 / 24)  # smoke: 4 images a step of 24


def test_ats_policy_parsing_and_refusals() -> None:
    assert gd.parse_policy("3-1-7") == [[3, 1, 7]]
    assert gd.parse_policy("3-1-7+43-18-18") == [[3, 1, 7], [43, 18, 18]]
    for bad in ("3-1-70", "a-b", "3--1"):
        with pytest.raises(BenchError, match="ats-augment"):
            ATSAugment(policy=bad)
    ATSAugment(policy="none", crop=True)  # SemSim's "crop": no transformation, a random crop


def test_ats_without_transformation_is_the_plain_release_and_prune_then_noise_compose() -> None:
    images = _images(4)
    rel, client = _release(images, batch=2)
    same = ATSAugment(policy="none").protect_client(rel, client, np.random.default_rng(0))
    np.testing.assert_allclose(same.grads, rel.grads, rtol=1e-5, atol=1e-8)  # the extractor's own release
    pruned = ATSAugment(policy="none", crop=True, prune=0.7).protect_client(rel, client, np.random.default_rng(0))
    i = 0
    for shape in rel.meta["shapes"]:
        k = int(np.prod(shape))
        assert ((pruned.grads[:, i:i + k] != 0).sum(1) == k - int(np.floor(0.7 * k))).all()
        i += k
    noisy = ATSAugment(policy="3-1-7", noise=1e-3).protect_client(rel, client, np.random.default_rng(0))
    assert not np.allclose(noisy.grads, rel.grads)
    again = ATSAugment(policy="3-1-7", noise=1e-3).protect_client(rel, client, np.random.default_rng(0))
    np.testing.assert_array_equal(noisy.grads, again.grads)  # keys from the rng alone


def test_training_under_a_defense_learns_and_fl_accuracy_is_deterministic() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 3, 32, 32, generator=g) * 0.5
    y = torch.arange(64) % 2  # a learnable rule: class 1 is redder
    x[y == 1, 0] += 0.5
    imgs = ImageSet([f"i{k}" for k in range(64)], x, {"label": y.numpy()})
    ext = FedSGDLeNetZhu()
    feats = ext.extract(ImageSet(imgs.ids[:1], x[:1], {"label": y.numpy()[:1]}))
    ctx = UtilityContext(images=imgs, features=feats, extractor=ext, seed=0,
                         training=UtilityTraining(images=imgs, profile="cpu", victim=ext.victim()), evaluation=imgs)
    gu.PROFILES["test"] = {"steps": 60, "batch": 16, "lr": 0.05}
    try:
        ctx.training.profile = "test"
        plain = gu.fl_accuracy(ctx, gu.plain_step)["fl-accuracy"]
        assert plain >= 0.9
        assert gu.fl_accuracy(ctx, gu.plain_step)["fl-accuracy"] == plain
        # all gradient entries pruned: the victim never moves from its initialisation
        frozen = gu.fl_accuracy(ctx, lambda m, a, b, gen: gd.gradient_pruning(gu.plain_step(m, a, b, gen), 1.0))
        from bench.attacks.gradinv import victims
        init = victims.accuracy(victims.build_victim("lenet-zhu", 10, 0, image_size=32).eval(), x, y)
        assert frozen["fl-accuracy"] == init
    finally:
        del gu.PROFILES["test"]
    with pytest.raises(BenchError, match="no training budget"):
        gu.budget("nope")


def test_client_side_defenses_refuse_other_releases_in_one_line() -> None:
    req = RunRequest(attack="sift-inversion" if "sift-inversion" in registry.attacks.names() else
                     next(e.name for e in registry.attacks if not e.obj.needs_victim),
                     defense="ats-augment", dataset="synthetic-faces", profile="smoke")
    with pytest.raises(IncompatibleError, match="cannot protect") as exc:
        plan(req)
    assert "\n" not in str(exc.value)


def test_a_client_side_defense_needs_a_white_box_extractor() -> None:
    from bench.plugins import register_defense

    class AnyClient(DPSGD):
        """A client-side defense accepting any release (to reach the white-box check)."""
        name = "test-any-client"
        accepts = ("*",)

    register_defense(AnyClient)
    try:
        attack = next(e.name for e in registry.attacks if not e.obj.needs_victim and e.obj.default_extractor)
        with pytest.raises(IncompatibleError, match="grants no victim model") as exc:
            plan(RunRequest(attack=attack, defense="test-any-client", dataset="synthetic-faces", profile="smoke"))
        assert "\n" not in str(exc.value)
    finally:
        registry.defenses.unregister("test-any-client")


@pytest.mark.slow  # a bench run each (20-40 s under load)
@pytest.mark.parametrize("attack,defense", [
    ("dlg", ["dp-sgd", "--defense-arg", "noise_multiplier=0.5"]),
    ("inverting-gradients", ["ats-augment", "--defense-arg", "policy=3-1-7+43-18-18", "--defense-arg", "crop=true"]),
    ("dlg", ["ats-augment", "--defense-arg", "policy=none", "--defense-arg", "crop=true", "--defense-arg",
             "prune=0.7"]),
])
def test_smoke_runs_record_fl_accuracy(attack: str, defense: list[str], tmp_path: Path) -> None:
    if not (CIFAR / "test").is_dir():
        pytest.skip(f"CIFAR-10 not found at {CIFAR}")
    res = CliRunner().invoke(main, ["run", "--attack", attack, "--defense", *defense, "--dataset", "cifar10",
                                    "--data-root", str(CIFAR), "--profile", "smoke", "--n-train", "4", "--n-test",
                                    "2", "--metrics", "mse", "--attack-arg", "iterations=2", "--quiet",
                                    "--results", str(tmp_path)])
    assert res.exit_code == 0, res.output
    run_dir = next(d for d in (tmp_path / "runs").iterdir() if d.is_dir())
    record = json.loads((run_dir / "run.json").read_text())
    assert 0.0 <= record["utility"]["fl-accuracy"] <= 1.0
    assert record["releases"]["defense"]["name"] == defense[0]
    if defense[0] == "dp-sgd":
        assert "per_release" in record["releases"]["defense"]
    board = pd.read_csv(tmp_path / "leaderboards" / "cifar10.csv")
    assert "utility:fl-accuracy" in board.columns and board["utility:fl-accuracy"].notna().all()


def test_utility_sources() -> None:
    from bench.features import FeatureSpec

    none = registry.defenses.get("none").obj()
    assert none.utility_source(FeatureSpec("fl-gradients")) == "training"
    assert none.utility_source(FeatureSpec("sift")) is None  # other families: no figure, no extra work
    for name in ("gradient-pruning", "gradient-noise", "dp-sgd", "ats-augment"):
        assert registry.defenses.get(name).obj().utility_source(FeatureSpec("fl-gradients")) == "training"
    assert registry.defenses.get("dp-sgd").meta["client_side"] is True
    assert registry.defenses.get("gradient-noise").meta["client_side"] is False


# ------------------------------------------------------------------------------ gradient defenses on FedAvg updates
def _fedavg_release(images: ImageSet, **params):
    from bench.attacks.gradinv.extractors import FedAvg

    ext = FedAvg(**params)
    rel = ext.extract(images)
    return rel, ClientData(images=images, victim=ext.victim(), profile="smoke", n_train=24)


def test_client_defenses_recompute_fedavg_updates_step_by_step() -> None:
    """On an `fl-updates` release a client-side defense defends every local step: without a transformation it is
    the extractor's own update; DP-SGD without noise on one image per step equals the local steps written out
    (each step's gradient clipped, then w -= lr * g); ε composes over the steps an image takes part in."""
    images = _images(4)
    rel, client = _fedavg_release(images, batch=2, local_steps=3, local_lr=0.05, local_batch=1)
    same = ATSAugment(policy="none").protect_client(rel, client, np.random.default_rng(0))
    assert same.kind == "fl-updates" and same.covers() == rel.covers()
    np.testing.assert_allclose(same.grads, rel.grads, rtol=1e-4, atol=1e-7)
    clip = 0.01
    out = DPSGD(clip=clip, noise_multiplier=0.0).protect_client(rel, client, np.random.default_rng(0))
    y = torch.as_tensor(images.labels["label"])
    for r, cover in enumerate(rel.covers()):
        model = copy.deepcopy(client.victim.model)
        w0 = [p.detach().clone() for p in model.parameters()]
        for step in range(3):  # local_batch 1 cycles through the record's 2 images: a, b, a
            k = cover[step % 2]
            g = torch.autograd.grad(nn.functional.cross_entropy(model(images.images[k:k + 1]), y[k:k + 1]),
                                    list(model.parameters()))
            scale = min(1.0, clip / float(torch.sqrt(sum((t ** 2).sum() for t in g))))
            with torch.no_grad():
                for p, t in zip(model.parameters(), g):
                    p -= 0.05 * scale * t
        ref = torch.cat([(a - p.detach()).flatten() for a, p in zip(w0, model.parameters())])
        np.testing.assert_allclose(out.grads[r], ref.numpy(), rtol=1e-3, atol=1.2e-7)  # 2 ulp of |w| <= 0.5
    meta = DPSGD(noise_multiplier=1.0).protect_client(rel, client, np.random.default_rng(0)).meta["defense"]
    assert meta["per_release"]["steps"] == 2 and "utility_training" not in meta  # image a: steps 1 and 3


def test_release_defenses_keep_the_fedavg_kind_and_claim_no_fedsgd_utility() -> None:
    from bench.attacks.gradinv.plugins import GradientNoise, GradientPruning

    rel, _ = _fedavg_release(_images(2), batch=2)
    for defense in (GradientPruning(), GradientNoise(), DPSGD(), ATSAugment()):
        assert defense.can_protect(rel.spec) and defense.utility_source(rel.spec) is None
    pruned = GradientPruning(fraction=0.5).protect(rel, np.random.default_rng(0))
    assert pruned.kind == "fl-updates" and pruned.meta["fedavg"] == rel.meta["fedavg"]
    assert (pruned.grads == 0).mean() >= 0.5
    assert GradientNoise(sigma=1e-3).protect(rel, np.random.default_rng(0)).kind == "fl-updates"
