"""SLI, SLI-B and SLI-R: contract kit, LBP, end-to-end smoke runs, reference from the auxiliary split, learning,
paper-profile figures."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from bench import registry
from bench.attacks.sift_inversion import sli as sli_mod
from bench.attacks.sift_inversion.lbp import NEIGHBOURS, lbp_codes, lbp_image
from bench.attacks.sift_inversion.sli import PROFILES, SLI, SLIB, SLIR
from bench.attacks.sift_inversion.sli_nets import UNet, UNetConfig
from bench.cli import main
from bench.contract import smoke_data
from bench.errors import WeightsMissingError
from bench.features.sift import SiftSet
from bench.plugins import FitContext
from bench.profiles import PROFILES as RUN_PROFILES

SMOKE = ["--profile", "smoke", "--n-train", "8", "--n-test", "4", "--quiet"]


def tiny_sift(n: int, seed: int = 0, extract: int = 64) -> SiftSet:
    rng = np.random.default_rng(seed)
    counts = rng.integers(20, 60, size=n)
    m = int(counts.sum())
    kp = np.zeros((m, 6), np.float32)
    kp[:, :2] = rng.uniform(0, extract, size=(m, 2))
    desc = rng.integers(0, 256, size=(m, 128), dtype=np.uint8)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return SiftSet(kp, desc, offsets, meta={"image_size": extract})


def smooth_images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 4, 4, generator=g)
    return F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)


def ctx(seed: int = 0, ids: list[str] | None = None) -> FitContext:
    return FitContext(defense=None, seed=seed, device=torch.device("cpu"), progress=False,  # type: ignore[arg-type]
                      ids=list(ids or []))


# --------------------------------------------------------------------------------------------- registration
@pytest.mark.parametrize("name", ["sli", "sli-b", "sli-r"])
def test_contract_kit_passes(name: str, builtin_contract) -> None:
    results = builtin_contract(name)
    assert all(ok for _, ok, _ in results), [r for r in results if not r[1]]


def test_registered_with_requirements() -> None:
    assert registry.attacks.get("sli").obj is SLI
    assert dict(SLI.consumes.flags) == {"has_coordinates": True, "has_descriptors": True}
    assert dict(SLIB.consumes.flags) == {"has_coordinates": True}
    assert dict(SLIR.consumes.flags) == {"has_descriptors": True}
    for cls in (SLI, SLIB, SLIR):
        assert cls.default_extractor == "sift" and "TIFS" in cls.paper and cls.profiles == ("smoke", "cpu", "paper")
    assert sli_mod.PROFILES is PROFILES and set(PROFILES) == set(SLI.profiles)
    for name, hp in PROFILES.items():
        assert hp["image_size"] == RUN_PROFILES[name].image_size
    assert PROFILES["paper"]["widths"] == [64, 128, 256, 512, 512, 512, 512, 512]
    assert PROFILES["paper"]["perceptual"] and not PROFILES["cpu"]["perceptual"]
    assert PROFILES["paper"]["lambda_l1"] == 100


# ------------------------------------------------------------------------------------------------------ LBP
def lbp_loop(grey: np.ndarray) -> np.ndarray:
    """Plain-loop LBP: 8 neighbours clockwise from the top-left, bit k for neighbour ≥ centre, replicated border."""
    h, w = grey.shape
    out = np.zeros((h, w), dtype=np.int64)
    for y in range(h):
        for x in range(w):
            code = 0
            for k, (dy, dx) in enumerate(NEIGHBOURS):
                yy, xx = min(max(y + dy, 0), h - 1), min(max(x + dx, 0), w - 1)
                if grey[yy, xx] >= grey[y, x]:
                    code |= 1 << k
            out[y, x] = code
    return out


def test_lbp_matches_plain_loop() -> None:
    rng = np.random.default_rng(3)
    grey = rng.integers(0, 6, size=(2, 9, 11)).astype(np.float32)  # few levels: many ties
    codes = lbp_codes(torch.from_numpy(grey)[:, None])
    for i in range(2):
        assert np.array_equal(codes[i, 0].numpy().astype(np.int64), lbp_loop(grey[i]))
    # lbp_image: RGB → 8-bit grey → codes scaled to [-1, 1]
    rgb = torch.from_numpy(rng.random((1, 3, 7, 8)).astype(np.float32))
    img = lbp_image(rgb)
    assert img.shape == (1, 1, 7, 8) and float(img.min()) >= -1 and float(img.max()) <= 1
    w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    grey8 = torch.round((rgb * w).sum(1)[0] * 255).numpy()
    assert np.allclose(img[0, 0].numpy(), lbp_loop(grey8) / 127.5 - 1.0, atol=1e-6)
    assert torch.all(lbp_image(torch.full((1, 3, 4, 4), 0.5)) == 1.0)  # flat: every neighbour ≥ centre


# --------------------------------------------------------------------------------------- end-to-end runs
@pytest.mark.parametrize("attack,defense", [("sli", "none"), ("sli-b", "drop-descriptors"),
                                            ("sli-r", "drop-coordinates")])
def test_smoke_bench_run(attack: str, defense: str, tmp_path: Path) -> None:
    out = CliRunner().invoke(main, ["run", "--attack", attack, "--defense", defense, *SMOKE,
                                    "--results", str(tmp_path)])
    assert out.exit_code == 0, out.output
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    record = json.loads((run_dir / "run.json").read_text())
    assert any("perceptual" in n for n in record["notes"])


def test_sli_refuses_dropped_coordinates_and_names_sli_r(tmp_path: Path) -> None:
    out = CliRunner().invoke(main, ["run", "--attack", "sli", "--defense", "drop-coordinates", *SMOKE,
                                    "--results", str(tmp_path)])
    assert out.exit_code == 2, out.output
    assert "sli-r" in out.output


# ------------------------------------------------------------------------------------------------- SLI-R
def test_sli_r_reference_from_auxiliary_split(pinned_threads: int) -> None:
    data = smoke_data(n_train=6, n_test=3, defense="drop-coordinates")
    attack = SLIR("smoke", 32, seed=5)
    c = FitContext(defense=data["defense"], seed=5, device=torch.device("cpu"), progress=False,
                   ids=list(data["aux_ids"]))
    attack.fit(data["aux"], data["aux_images"], c)
    ref = attack.reference
    assert ref is not None and ref["id"] in c.ids and ref["id"] not in data["private_ids"]
    assert c.ids[ref["index"]] == ref["id"]
    # Matching places every private descriptor at a reference keypoint, one product per image.
    placed = attack._released(data["private"], np.arange(len(data["private"])))
    scale = placed.image_size / ref["image_size"]
    ref_xy = {tuple(np.round(p * scale, 4)) for p in ref["xy"].numpy().astype(np.float64)}
    assert placed.flags["has_coordinates"] and np.isfinite(placed.keypoints[:, :2]).all()
    assert {tuple(np.round(p, 4)) for p in placed.keypoints[:, :2].astype(np.float64)} <= ref_xy
    # A descriptor that is itself in the reference lands on its own keypoint.
    d = ref["descriptors"].numpy()
    q = SiftSet(np.zeros((len(d), 6), np.float32), d, np.array([0, len(d)]),
                flags={"has_coordinates": False, "has_descriptors": True}, meta={"image_size": ref["image_size"]})
    own = attack._released(q, [0]).keypoints[:, :2]
    sims = (d / np.linalg.norm(d, axis=1, keepdims=True).clip(1e-12)).astype(np.float32)
    unique = np.sum((sims @ sims.T) > 1 - 1e-6, axis=1) == 1  # skip duplicated descriptors
    assert np.allclose(own[unique], ref["xy"].numpy()[unique])
    # The reference travels with the checkpoint (weights_only).
    buf = io.BytesIO()
    torch.save(attack.state_dict(), buf)
    buf.seek(0)
    fresh = SLIR("smoke", 32)
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    assert fresh.reference is not None and fresh.reference["id"] == ref["id"]
    # bit-identical: same thread count (pinned_threads) and batch, so the same arithmetic in the same order
    assert torch.equal(fresh.reconstruct(data["private"], progress=False),
                       attack.reconstruct(data["private"], progress=False))


# ------------------------------------------------------------------------------------------------ learning
def test_image_net_overfits_four_images(monkeypatch: pytest.MonkeyPatch) -> None:
    hp = dict(PROFILES["smoke"], lbp_steps=20, image_steps=100, batch_size=4, lr=2e-3)
    monkeypatch.setitem(PROFILES, "smoke", hp)
    feats, images = tiny_sift(4, seed=11), smooth_images(4, 32, seed=11)
    attack = SLI("smoke", 32, seed=0)
    attack.fit(feats, images, ctx())
    rec = attack.reconstruct(feats, progress=False)
    mean_l1 = F.l1_loss(images.mean(0, keepdim=True).expand_as(images), images).item()
    rec_l1 = F.l1_loss(rec, images).item()
    assert rec_l1 < mean_l1, (rec_l1, mean_l1)
    assert np.mean(attack.history["image"][-5:]) < np.mean(attack.history["image"][:5])


def test_two_stages_lbp_net_frozen_and_fed_to_image_net(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(PROFILES, "smoke", dict(PROFILES["smoke"], lbp_steps=2, image_steps=2))
    attack = SLI("smoke", 32, seed=1)
    attack.fit(tiny_sift(4), smooth_images(4, 32), ctx(1))
    assert attack.lbp_net is not None and not any(p.requires_grad for p in attack.lbp_net.parameters())
    assert attack.net_configs()["image"].in_channels == 129 and attack.net_configs()["lbp"].out_channels == 1
    lbp = attack.predict_lbp(tiny_sift(2, seed=4))
    assert lbp.shape == (2, 1, 32, 32) and float(lbp.abs().max()) <= 1
    b = SLIB("smoke", 32)
    assert set(b.net_configs()) == {"image"} and b.net_configs()["image"].in_channels == 1


@pytest.mark.parametrize("adversarial", [True, False])
def test_schedules_only_the_optimisers_that_step(monkeypatch: pytest.MonkeyPatch, adversarial: bool) -> None:
    """With the adversarial term off the discriminator never steps, so it gets no learning-rate schedule (torch would
    warn that a scheduler stepped before its optimiser); with it on both decay."""
    import warnings

    monkeypatch.setitem(PROFILES, "smoke", dict(PROFILES["smoke"], lbp_steps=2, image_steps=2, lr_decay="cosine",
                                                adversarial=adversarial))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SLI("smoke", 32, seed=0).fit(tiny_sift(4), smooth_images(4, 32), ctx())


def test_paper_preflight_needs_vgg19(bench_home: Any) -> None:
    with pytest.raises(WeightsMissingError, match="vgg19"):
        SLI("paper", 256).preflight()
    SLI("cpu", 64).preflight()


# ------------------------------------------------------------------------------------------------ describe
def test_paper_describe_near_table_ii() -> None:
    d = SLI("paper", 256).describe()  # meta device: no real 256-px forward
    assert abs(d["params_generators"] / 78e6 - 1) < 0.05
    assert d["unet_levels"] == 8 and d["gmacs"] > 0 and d["gflops"] == pytest.approx(2 * d["gmacs"], rel=1e-2)
    with torch.device("meta"):
        out = UNet(UNetConfig(128, 1, tuple(PROFILES["paper"]["widths"]), 256))(torch.zeros(1, 128, 256, 256))
    assert out.shape == (1, 1, 256, 256)
    out = CliRunner().invoke(main, ["describe", "--attack", "sli", "--profile", "paper"])
    assert out.exit_code == 0 and "78M" in out.output and "gmacs" in out.output
