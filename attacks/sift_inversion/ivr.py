"""IVR: the encoder-decoder inversion of Dosovitskiy & Brox (CVPR 2016), CFGAN's "IVR" row, on dense SIFT maps.

Dosovitskiy & Brox invert sparse SIFT by splitting the image into d×d cells and writing, in every cell that holds a
keypoint, its descriptor and five more numbers (D + 5 channels); a convolutional encoder brings that map down,
fully connected layers form a bottleneck, and up-convolutions (transposed convolutions) rebuild the RGB image. The
network is trained with the squared pixel error (L2) alone, with Adam.

Here the cell grid is the family's compressed dense SIFT map (attacks/sift_inversion/maps.py, the same keypoint per
cell as CFGAN's input, so the rows of the table compare like with like) and the five extra channels are: presence
(1 where a keypoint owns the cell), the keypoint's sub-cell x and y offset in [-1, 1], its log2 size relative to the
cell and its orientation scaled to [-1, 1] (`keypoint_maps`). Activations are LeakyReLU(0.2) as in the original,
there is no normalisation layer (so reconstruction is independent of the batch by construction), and a sigmoid
gives the image. Network shapes per profile are in PROFILES; `describe()` gives the counted figures.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.errors import BenchError
from bench.features import FeatureSet, Requirement
from bench.hyper import declare
from bench.features.sift import DESCRIPTOR_DIM, SiftSet
from bench.nn.measure import count_parameters
from bench.plugins import FitContext, register_attack
from bench.training import LearnedAttack, adam, flop_figures, optimise, record_inputs, schedules, seeded_batches

CL = torch.channels_last
LEAKY = 0.2
EXTRA_CHANNELS = ("presence", "dx", "dy", "log_size", "orientation")

# Per-profile hyper-parameters, the one place they are set.
# - smoke: seconds, for tests.
# - cpu: about 3 minutes of training on 2 CPU cores at 64×64 with 1500 auxiliary images (see docs/baselines.md for
#   the measured step time); reduced widths, learning rate 1e-3 with cosine decay (1e-4, the paper's, stays near
#   the mean-image floor in a few hundred steps).
# - paper: sized like CFGAN's Table II IVR row (93 M parameters, 25 G multiply-accumulates at 256×256); Adam 1e-4,
#   β (0.9, 0.999), batch 64 as in Dosovitskiy & Brox; the number of steps is our choice (neither paper gives it for
#   this input).
PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        "map_size": 32, "image_size": 32,
        "enc": [[16, 5], [32, 3], [32, 3]], "enc_extra": False, "fc": [128],
        "dec": [32, 16, 16], "dec_extra": False,
        "batch_size": 4, "steps": 8, "eval_batch": 16, "lr": 1e-3, "betas": [0.9, 0.999], "lr_decay": "none",
    },
    "cpu": {
        "map_size": 64, "image_size": 64,
        "enc": [[48, 5], [96, 3], [128, 3], [128, 3]], "enc_extra": False, "fc": [1024, 1024],
        "dec": [128, 96, 64, 32], "dec_extra": True,
        "batch_size": 16, "steps": 560, "eval_batch": 50, "lr": 1e-3, "betas": [0.9, 0.999], "lr_decay": "cosine",
    },
    "paper": {
        "map_size": 128, "image_size": 256,
        "enc": [[128, 5], [256, 5], [256, 3], [384, 3], [512, 3]], "enc_extra": True, "fc": [4096],
        "dec": [512, 384, 256, 256, 160, 96], "dec_extra": True,
        "batch_size": 64, "steps": 100_000, "eval_batch": 16, "lr": 1e-4, "betas": [0.9, 0.999], "lr_decay": "none",
    },
}


# --------------------------------------------------------------------------------------------- input maps
def keypoint_maps(sift: SiftSet, indices: Sequence[int], map_size: int, *, seed: int,
                  extras: Sequence[str] = EXTRA_CHANNELS) -> torch.Tensor:
    """B×(128 + len(extras))×S×S float32 maps (channels-last memory) of the records `indices`.

    The first 128 channels are exactly `sift_maps(..., compress=True, seed=seed)` (the family's dense SIFT map);
    the extra channels describe the keypoint that owns each cell: 'presence' (1), 'dx'/'dy' (its position inside
    the cell, in [-1, 1]), 'log_size' (log2 of its size over the cell size, divided by 4) and 'orientation'
    (angle / 180 - 1). Empty cells are zero in every channel. No loop over keypoints.
    """
    from bench.attacks.sift_inversion.maps import select_keypoints

    if not sift.flags.get("has_descriptors", True):
        raise BenchError("SIFT maps need descriptors, but these features were released without them")
    kept = select_keypoints(sift, indices, map_size, compress=True, seed=seed)
    n, s = np.asarray(indices).reshape(-1).size, int(map_size)
    arr = np.zeros((n, s, s, DESCRIPTOR_DIM + len(extras)), dtype=np.float32)
    if kept.source.size:
        b, r, c = kept.batch, kept.row, kept.col
        arr[b, r, c, :DESCRIPTOR_DIM] = (sift.descriptors[kept.source].astype(np.float64) / 127.5 - 1.0
                                         ).astype(np.float32)
        kp = np.nan_to_num(sift.keypoints[kept.source].astype(np.float64))
        cell = sift.image_size / s
        for j, name in enumerate(extras):  # a handful of channels, each one vectorised over keypoints
            if name == "presence":
                v = np.ones(len(b))
            elif name == "dx":
                v = np.clip(2.0 * (kp[:, 0] / cell - c) - 1.0, -1.0, 1.0)
            elif name == "dy":
                v = np.clip(2.0 * (kp[:, 1] / cell - r) - 1.0, -1.0, 1.0)
            elif name == "log_size":
                v = np.log2(np.maximum(kp[:, 2], 1e-3) / cell) / 4.0
            elif name == "orientation":
                v = np.mod(kp[:, 3], 360.0) / 180.0 - 1.0
            else:
                raise BenchError(f"unknown keypoint map channel {name!r}; channels: {', '.join(EXTRA_CHANNELS)}")
            arr[b, r, c, DESCRIPTOR_DIM + j] = v.astype(np.float32)
    return torch.from_numpy(arr).permute(0, 3, 1, 2)


# ------------------------------------------------------------------------------------------------ network
@dataclass(frozen=True)
class IVRConfig:
    """Shapes of the IVR network: encoder (width, kernel) per stride-2 stage, FC widths, decoder widths."""

    map_size: int
    image_size: int
    enc: tuple[tuple[int, int], ...]
    enc_extra: bool  # a stride-1 3×3 conv after every stride-2 encoder conv
    fc: tuple[int, ...]
    dec: tuple[int, ...]  # one per up-convolution (bottleneck → image_size)
    dec_extra: bool  # a stride-1 3×3 conv after every up-convolution
    in_channels: int = DESCRIPTOR_DIM + len(EXTRA_CHANNELS)

    @property
    def bottleneck(self) -> int:
        return self.map_size // (2 ** len(self.enc))

    def __post_init__(self) -> None:
        object.__setattr__(self, "enc", tuple((int(w), int(k)) for w, k in self.enc))
        object.__setattr__(self, "fc", tuple(int(w) for w in self.fc))
        object.__setattr__(self, "dec", tuple(int(w) for w in self.dec))
        if self.bottleneck < 1 or self.bottleneck * 2 ** len(self.enc) != self.map_size:
            raise BenchError(f"IVR: map {self.map_size} does not halve {len(self.enc)} times")
        if self.bottleneck * 2 ** len(self.dec) != self.image_size:
            raise BenchError(f"IVR: {len(self.dec)} up-convolutions from {self.bottleneck} do not give {self.image_size}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["enc"] = [list(e) for e in self.enc]
        d["fc"], d["dec"] = list(self.fc), list(self.dec)
        return d


def _act() -> nn.Module:
    return nn.LeakyReLU(LEAKY, inplace=True)


class IVRNet(nn.Module):
    """Strided-conv encoder → fully connected bottleneck → up-convolution decoder → sigmoid RGB."""

    def __init__(self, cfg: IVRConfig) -> None:
        super().__init__()
        self.cfg = cfg
        layers: list[nn.Module] = []
        cin = cfg.in_channels
        for width, kernel in cfg.enc:
            layers += [nn.Conv2d(cin, width, kernel, stride=2, padding=kernel // 2), _act()]
            if cfg.enc_extra:
                layers += [nn.Conv2d(width, width, 3, padding=1), _act()]
            cin = width
        self.encoder = nn.Sequential(*layers)
        flat = cin * cfg.bottleneck ** 2
        self.code_shape = (cfg.dec[0], cfg.bottleneck, cfg.bottleneck)
        fcs: list[nn.Module] = []
        width = flat
        for w in cfg.fc:
            fcs += [nn.Linear(width, w), _act()]
            width = w
        fcs += [nn.Linear(width, cfg.dec[0] * cfg.bottleneck ** 2), _act()]
        self.fc = nn.Sequential(*fcs)
        ups: list[nn.Module] = []
        cin = cfg.dec[0]
        for w in cfg.dec:
            ups += [nn.ConvTranspose2d(cin, w, 4, stride=2, padding=1), _act()]
            if cfg.dec_extra:
                ups += [nn.Conv2d(w, w, 3, padding=1), _act()]
            cin = w
        self.decoder = nn.Sequential(*ups)
        self.head = nn.Conv2d(cin, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """B×C×map×map SIFT map → B×3×image×image in (0, 1)."""
        h = self.encoder(x)
        h = self.fc(h.reshape(h.shape[0], -1)).reshape(h.shape[0], *self.code_shape)
        return torch.sigmoid(self.head(self.decoder(h)))


def net_config(profile: str | Mapping[str, Any]) -> IVRConfig:
    p = PROFILES[profile] if isinstance(profile, str) else profile
    return IVRConfig(map_size=p["map_size"], image_size=p["image_size"], enc=tuple(map(tuple, p["enc"])),
                     enc_extra=p["enc_extra"], fc=tuple(p["fc"]), dec=tuple(p["dec"]), dec_extra=p["dec_extra"])


def require_sift(who: str, features: FeatureSet) -> SiftSet:
    """`features` when they are SIFT, else a BenchError naming the attack."""
    if not isinstance(features, SiftSet):
        raise BenchError(f"{who}: needs SIFT features, got {type(features).__name__}")
    return features


# ------------------------------------------------------------------------------------------------- attack
@register_attack
class IVR(LearnedAttack):
    """IVR (Dosovitskiy & Brox): conv encoder, fully connected bottleneck, up-conv decoder, L2 loss only."""

    name = "ivr"
    default_extractor = "sift"
    consumes = Requirement("sift", {"has_coordinates": True, "has_descriptors": True})
    paper = ("Dosovitskiy, Brox: Inverting visual representations with convolutional networks, CVPR 2016, "
             "arXiv:1506.02753 (the IVR baseline of CFGAN, IEEE TCSVT 2024, Tables I-II)")
    profiles = ("smoke", "cpu", "paper")
    paper_figures = {"params_total": 93e6, "gmacs": 25.0}  # CFGAN's Table II (its "FLOPs" are MACs)
    PROFILES = PROFILES
    params = declare(PROFILES, help={"enc_extra": "extra convolutions in the encoder",
                                     "dec_extra": "extra convolutions in the decoder"})

    def __init__(self, profile: str, image_size: int, device: torch.device | str = "cpu", seed: int = 0,
                 params: Mapping[str, Any] | None = None) -> None:
        super().__init__(profile, image_size, device, seed, params)
        self.net_cfg = net_config(self.hp)
        self.net: IVRNet | None = None

    def network_shapes(self) -> dict[str, Any]:
        return self.net_cfg.to_dict()

    def config(self) -> dict[str, Any]:
        return {**super().config(), "map": {"compress": True, "extras": list(EXTRA_CHANNELS)}}

    def build(self) -> None:
        self.net = IVRNet(self.net_cfg).to(self.device, memory_format=CL)

    def networks(self) -> dict[str, nn.Module | None]:
        return {"net": self.net}

    def _maps(self, features: SiftSet, idx: np.ndarray) -> torch.Tensor:
        m = keypoint_maps(features, idx, self.hp["map_size"], seed=self.seed)
        return m.to(self.device, memory_format=CL)

    def fit(self, features: FeatureSet, images: torch.Tensor, ctx: FitContext) -> None:
        """Adam on the mean squared pixel error (the original's only loss)."""
        sift = require_sift(self.name, features)
        self.check_training_inputs(features, images)
        hp = self.hp
        if self.profile != "paper":
            ctx.notes.append(f"ivr: the {self.profile} profile uses reduced widths ({self.net_cfg.to_dict()['enc']} "
                             f"encoder, FC {list(self.net_cfg.fc)}), {hp['steps']} steps and learning rate "
                             f"{hp['lr']:g} ({'constant' if hp['lr_decay'] == 'none' else hp['lr_decay'] + ' decay'}) instead of "
                             "the paper profile's 1e-4 for 100 000 steps")
        self.start_training()
        assert self.net is not None
        net = self.net
        steps = int(hp["steps"])
        opt = adam(net.parameters(), hp)
        net.train()
        cpu_maps = record_inputs(lambda idx: keypoint_maps(sift, idx, hp["map_size"], seed=self.seed), len(sift))

        def step(idx: np.ndarray) -> float:
            maps = cpu_maps(idx).to(self.device, memory_format=CL)
            target = images[torch.from_numpy(idx)].to(self.device, torch.float32, memory_format=CL)
            loss = F.mse_loss(net(maps), target)
            optimise(opt, loss)
            return float(loss.detach())

        self.run_stage("train", steps, seeded_batches(images.shape[0], hp["batch_size"], self.seed), step,
                       schedulers=schedules([opt], hp["lr_decay"], steps), progress=ctx.progress, desc="IVR")
        net.eval()

    def reconstruction_inputs(self, features: FeatureSet) -> SiftSet:
        return require_sift(self.name, features)

    def reconstruct_batch(self, features: SiftSet, indices: np.ndarray) -> torch.Tensor:
        assert self.net is not None
        return self.net(self._maps(features, indices))

    def describe(self) -> dict[str, Any]:
        cfg = self.net_cfg
        with torch.device("meta"):
            net = IVRNet(cfg).eval()
            x = torch.zeros(1, cfg.in_channels, cfg.map_size, cfg.map_size)
        fc = sum(count_parameters(m) for m in net.fc.modules() if isinstance(m, nn.Linear))
        return {
            "profile": self.profile,
            "map_size": cfg.map_size,
            "image_size": cfg.image_size,
            "input_channels": cfg.in_channels,
            "params_total": count_parameters(net),
            "params_fully_connected": fc,
            "inference": f"one {cfg.image_size}x{cfg.image_size} image from a {cfg.map_size}x{cfg.map_size} map "
                         "(convolutions and matrix products)",
            **flop_figures(net, x),
            "paper_table_ii": {"params": "93M", "flops": "25G", "best_match": "parameters and MACs"},
        }
