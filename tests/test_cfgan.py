"""CFGAN attack: network shapes per profile, two-stage training, determinism, state round trip, preflight."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bench import registry
from bench.attacks.sift_inversion import cfgan as cfgan_mod
from bench.attacks.sift_inversion.cfgan import CFGAN, PROFILES, net_config
from bench.attacks.sift_inversion.cfgan_nets import CFGANConfig, CoarseNet, Discriminator, FineNet
from bench.nn.measure import count_flops, count_parameters
from bench.errors import BenchError, WeightsMissingError
from bench.plugins import FitContext
from bench.profiles import PROFILES as RUN_PROFILES
from bench.features.sift import SiftSet, random_siftset

EXTRACT = 64  # smoke profile's extraction size


def tiny_sift(n: int, seed: int = 0, empty: int | None = 1) -> SiftSet:
    """A SiftSet of n images with random keypoints (image `empty` has none) extracted at 64×64."""
    return random_siftset(n, EXTRACT, np.random.default_rng(seed), counts=(10, 40),
                          empty=(empty,) if empty is not None and empty < n else ())


def smooth_images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 4, 4, generator=g)
    return F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)


def ctx(seed: int = 0) -> FitContext:
    return FitContext(defense=None, seed=seed, device=torch.device("cpu"), progress=False)  # type: ignore[arg-type]


@pytest.fixture()
def few_steps(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The smoke profile with 3 steps per stage (keeps the tests fast)."""
    hp = dict(PROFILES["smoke"], coarse_steps=3, fine_steps=3)
    monkeypatch.setitem(PROFILES, "smoke", hp)
    return hp


def test_registered_with_requirement() -> None:
    entry = registry.attacks.get("cfgan")
    assert entry.obj is CFGAN
    assert CFGAN.consumes.kind == "sift"
    assert dict(CFGAN.consumes.flags) == {"has_coordinates": True, "has_descriptors": True}
    assert "TCSVT" in CFGAN.paper


def test_profiles_follow_run_profiles() -> None:
    for name, hp in PROFILES.items():
        assert hp["image_size"] == RUN_PROFILES[name].image_size
    assert PROFILES["smoke"]["map_size"] == 32 and PROFILES["cpu"]["map_size"] == 64
    assert PROFILES["paper"]["map_size"] == 128
    paper = PROFILES["paper"]
    assert (paper["batch_size"], paper["lr"], tuple(paper["betas"])) == (8, 1e-4, (0.9, 0.999))
    assert (paper["lambda_pix"], paper["lambda_per"], paper["lambda_adv"], paper["lambda_sift"]) == (1, 0.01, 0.02, 0.01)
    assert paper["perceptual"] and not PROFILES["cpu"]["perceptual"] and not PROFILES["smoke"]["perceptual"]


def test_wrong_image_size_is_a_bench_error() -> None:
    with pytest.raises(BenchError, match="image_size"):
        CFGAN("cpu", 32)
    with pytest.raises(BenchError):
        CFGANConfig(map_size=48, image_size=64, enc_widths=(8,), dec_widths=(8,), disc_widths=(8,))


@pytest.mark.parametrize("profile", ["smoke", "cpu"])
def test_network_shapes(profile: str) -> None:
    cfg = net_config(profile)
    coarse, fine, disc = CoarseNet(cfg), FineNet(cfg), Discriminator(cfg)
    maps = torch.randn(2, 128, cfg.map_size, cfg.map_size)
    with torch.no_grad():
        rough = coarse(maps)
        out = fine(maps, rough)
        score = disc(out)
    assert rough.shape == (2, 3, cfg.image_size, cfg.image_size)
    assert float(rough.min()) >= 0 and float(rough.max()) <= 1
    assert out.shape == rough.shape
    assert score.shape == (2,)
    with pytest.raises(BenchError, match="SIFT map"):
        coarse(torch.randn(2, 128, cfg.map_size * 2, cfg.map_size * 2))


def test_paper_network_shapes_on_meta_device() -> None:
    # Paper: SIFT map 128×128 → 6 encoder blocks to 2×2, 7 decoder blocks to 256×256.
    cfg = net_config("paper")
    with torch.device("meta"):
        coarse, fine, disc = CoarseNet(cfg).eval(), FineNet(cfg).eval(), Discriminator(cfg).eval()
        maps = torch.zeros(1, 128, 128, 128)
        rough = coarse(maps)
        out = fine(maps, rough)
        score = disc(out)
    assert len(coarse.encoder.blocks) == 6 and len(coarse.decoder.blocks) == 7
    assert rough.shape == out.shape == (1, 3, 256, 256) and score.shape == (1,)
    assert max(cfg.enc_widths) == 512 and cfg.enc_widths[:3] == (128, 256, 512)


def test_paper_figures_near_table_ii() -> None:
    """Paper Table II: 153 M parameters, 148 G(MAC) 'FLOPs'; within 25 % (generators only, MACs)."""
    d = CFGAN("paper", 256).describe()
    assert abs(d["params_generators"] / 153e6 - 1) < 0.25
    assert abs(d["gmacs"] / 148 - 1) < 0.25
    assert d["params_total"] == d["params_generators"] + d["params_discriminators"]
    assert d["gflops"] == pytest.approx(2 * d["gmacs"], rel=1e-3)


def test_describe_helpers_match_hand_counts() -> None:
    conv = torch.nn.Conv2d(4, 6, 3, padding=1, bias=True)
    assert count_parameters(conv) == 6 * 4 * 9 + 6
    # One 3×3 conv on 5×5 output positions: 6·4·9 multiply-adds per position, 2 FLOPs each.
    assert count_flops(conv, torch.zeros(1, 4, 5, 5)) == 2 * 6 * 4 * 9 * 25


def test_smoke_fit_reconstruct_deterministic(few_steps: dict[str, Any], pinned_threads: int) -> None:
    """Two fits with one seed, one thread count and one batch shape are bit-identical (what the cache promises)."""
    feats, images = tiny_sift(8), smooth_images(8, 32)
    runs = []
    for _ in range(2):
        attack = CFGAN("smoke", 32, seed=7)
        c = ctx(7)
        attack.fit(feats, images, c)
        runs.append(attack.reconstruct(tiny_sift(5, seed=3), progress=False))
    rec = runs[0]
    assert rec.shape == (5, 3, 32, 32) and rec.dtype == torch.float32 and rec.device.type == "cpu"
    assert float(rec.min()) >= 0.0 and float(rec.max()) <= 1.0
    assert torch.equal(runs[0], runs[1])
    assert any("perceptual" in note for note in c.notes)
    assert any("warm-started" in note for note in c.notes)


def test_fit_checks_inputs(few_steps: dict[str, Any]) -> None:
    attack = CFGAN("smoke", 32)
    with pytest.raises(BenchError):
        attack.fit(tiny_sift(4), smooth_images(4, 64), ctx())
    with pytest.raises(BenchError):
        attack.fit(tiny_sift(5), smooth_images(4, 32), ctx())
    with pytest.raises(RuntimeError):
        attack.reconstruct(tiny_sift(2))


def test_coarse_frozen_while_fine_trains(few_steps: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    snapshots: dict[str, Any] = {}
    original = CFGAN._train_stage

    def spy(self: CFGAN, stage: str, net: torch.nn.Module, disc: Any, coarse: Any, *args: Any) -> None:
        if stage == "fine":
            snapshots["coarse"] = {k: v.clone() for k, v in coarse.state_dict().items()}
            snapshots["fine"] = {k: v.clone() for k, v in net.state_dict().items()}
            snapshots["coarse_grad"] = [p.requires_grad for p in coarse.parameters()]
            snapshots["coarse_training"] = coarse.training
        original(self, stage, net, disc, coarse, *args)

    monkeypatch.setattr(CFGAN, "_train_stage", spy)
    attack = CFGAN("smoke", 32, seed=1)
    attack.fit(tiny_sift(8), smooth_images(8, 32), ctx(1))
    assert attack.coarse is not None and attack.fine is not None
    after = attack.coarse.state_dict()
    assert all(torch.equal(after[k], v) for k, v in snapshots["coarse"].items())  # weights and BN statistics
    assert not any(snapshots["coarse_grad"]) and snapshots["coarse_training"] is False
    fine_after = attack.fine.state_dict()
    assert any(not torch.equal(fine_after[k], v) for k, v in snapshots["fine"].items())  # the fine net did train


def test_fine_warm_start_copies_coarse_weights() -> None:
    attack = CFGAN("smoke", 32)
    torch.manual_seed(0)
    attack.build()
    assert attack.coarse is not None and attack.fine is not None
    attack._init_fine_from_coarse()
    for mine, theirs in ((attack.fine.decoder, attack.coarse.decoder), (attack.fine.sift_encoder, attack.coarse.encoder)):
        a, b = mine.state_dict(), theirs.state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not PROFILES["paper"]["fine_from_coarse"] and PROFILES["paper"]["bn_batches"] == 0


def test_state_dict_round_trip(few_steps: dict[str, Any], pinned_threads: int) -> None:
    """A reloaded checkpoint reconstructs bit-identically (same threads, same batch: same arithmetic)."""
    attack = CFGAN("smoke", 32, seed=2)
    attack.fit(tiny_sift(6), smooth_images(6, 32), ctx(2))
    buf = io.BytesIO()
    torch.save(attack.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    assert set(state) == {"config", "coarse", "fine"}
    fresh = CFGAN("smoke", 32, seed=99)
    fresh.load_state_dict(state)
    test = tiny_sift(4, seed=5)
    assert torch.equal(fresh.reconstruct(test, progress=False), attack.reconstruct(test, progress=False))
    other = CFGAN("cpu", 64)
    with pytest.raises(BenchError):
        other.load_state_dict(state)


def test_config_is_json_and_covers_hyper_parameters() -> None:
    import json

    cfg = CFGAN("cpu", 64, seed=3).config()
    back = json.loads(json.dumps(cfg))
    assert back["name"] == "cfgan" and back["version"] == CFGAN.version
    # The seed is keyed separately (run spec, attack cache key), so one configuration covers all its seeds.
    assert "seed" not in back and CFGAN("cpu", 64, seed=4).config() == cfg
    assert back["hyper"]["lr"] == PROFILES["cpu"]["lr"] and back["nets"]["map_size"] == 64


def test_paper_preflight_needs_vgg19_weights(bench_home: Any) -> None:
    with pytest.raises(WeightsMissingError, match="vgg19"):
        CFGAN("paper", 256).preflight()
    CFGAN("smoke", 32).preflight()  # no weights needed


def test_perceptual_path_uses_vgg19_weights(few_steps: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """With the perceptual loss on (as in the paper profile), fit loads 'vgg19' through bench.weights."""
    import torchvision

    from bench import weights

    asked: list[str] = []

    def fake_load(name: str) -> dict[str, torch.Tensor]:
        asked.append(name)
        return torchvision.models.vgg19(weights=None).state_dict()  # stand-in random weights

    monkeypatch.setattr(weights, "load_state_dict", fake_load)
    monkeypatch.setitem(PROFILES, "smoke", dict(few_steps, perceptual=True, coarse_steps=2, fine_steps=1))
    attack = CFGAN("smoke", 32)
    c = ctx()
    attack.fit(tiny_sift(4), smooth_images(4, 32), c)
    assert asked == ["vgg19"] and not any("perceptual" in note for note in c.notes)
    assert all(np.isfinite(attack.history["coarse"]))


def test_overfits_four_images(monkeypatch: pytest.MonkeyPatch) -> None:
    hp = dict(PROFILES["smoke"], coarse_steps=40, fine_steps=30, batch_size=4, lr=3e-3)
    monkeypatch.setitem(PROFILES, "smoke", hp)
    feats, images = tiny_sift(4, seed=11, empty=None), smooth_images(4, 32, seed=11)
    attack = CFGAN("smoke", 32, seed=0)
    torch.manual_seed(0)
    attack.build()
    before = F.l1_loss(attack.reconstruct(feats, progress=False), images).item()
    attack.fit(feats, images, ctx())
    after = F.l1_loss(attack.reconstruct(feats, progress=False), images).item()
    assert after < 0.6 * before, (before, after)
    assert np.mean(attack.history["coarse"][-5:]) < np.mean(attack.history["coarse"][:5])


def test_module_exposes_profiles_in_one_place() -> None:
    assert cfgan_mod.PROFILES is PROFILES and set(PROFILES) == set(CFGAN.profiles)
