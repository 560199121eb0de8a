"""The shared frame of attacks that decode one feature vector into one image (face-cnn, feature-decoder, ...).

A subclass gives its per-profile hyper-parameters (`PROFILES`), its network (`make_net`) and its loss (`loss`);
this base reads the released features (`inputs.py`: values, or bits for bit patterns), standardises them with the
auxiliary split's statistics, trains with Adam and a ×`lr_gamma` step decay every `decay_every` epochs, rebuilds
images in batches (batch-independent: the networks use batch norm in eval mode), and saves a weights_only-safe
state (tensors, numbers, strings). The network works at its own size (`net_size`); targets are resized to it for
training and outputs resized to the run's image size, which only differ on the paper profiles (e.g. face-cnn's
112 px network in a 256 px run).

The auxiliary features that reach `fit` are already protected by the runner with the attacker's own simulation of
the defense (its own keys: the victim's secret keys never reach the attacker), so the attack learns to invert what
the defense releases.
"""

from __future__ import annotations

import math
import time
from abc import abstractmethod
from typing import Any, ClassVar, Mapping

import torch
from torch import nn
from tqdm.auto import tqdm

from bench.attacks.embedding_inversion.inputs import Standardiser, input_width, raw_inputs
from bench.attacks.sift_inversion.ivr import seeded_batches
from bench.errors import BenchError
from bench.features import FeatureSet
from bench.hyper import apply
from bench.features.embeddings import BitPatternSet, EmbeddingSet
from bench.images import resize
from bench.nn.measure import count_flops, count_parameters
from bench.plugins import Attack, FitContext

# The input widths `describe()` reports figures for: the built-in victim (dlib-face, D = 128).
DESCRIBE_DIM = 128


class VectorToImageAttack(Attack):
    """Base: standardised feature vector -> network -> image in [0, 1]; Adam with step decay; batch-independent."""

    PROFILES: ClassVar[dict[str, dict[str, Any]]] = {}
    default_extractor = "dlib-face"

    def __init__(self, profile: str, image_size: int, device: torch.device | str = "cpu", seed: int = 0,
                 params: Mapping[str, Any] | None = None) -> None:
        super().__init__(profile, image_size, device, seed, params)
        self.hp: dict[str, Any] = apply(self.PROFILES[profile], self.overrides)
        self.net: nn.Module | None = None
        self.inputs = Standardiser()
        self.history: list[float] = []
        self.train_seconds = 0.0

    # ------------------------------------------------------------------------------------ subclass hooks
    @abstractmethod
    def make_net(self, in_width: int) -> nn.Module:
        """The network for `in_width` inputs: B×F -> B×3×net_size×net_size in [0, 1]."""

    @abstractmethod
    def loss(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The training loss of one batch (outputs and targets at net_size)."""

    def fit_notes(self, features: FeatureSet) -> list[str]:
        """What this run changes or disables relative to the paper (copied into run.json)."""
        return []

    def start_training(self, in_width: int) -> None:
        """Build anything besides the network that training needs (e.g. a discriminator)."""

    def train_step(self, x: torch.Tensor, target: torch.Tensor, opt: torch.optim.Optimizer) -> float:
        """One optimisation step on a batch; returns the loss value."""
        assert self.net is not None
        loss = self.loss(self.net(x), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    # ------------------------------------------------------------------------------------------ engine
    def config(self) -> dict[str, Any]:
        return {**super().config(), "hyper": dict(self.hp)}

    def _check(self, features: FeatureSet, images: torch.Tensor) -> None:
        if not isinstance(features, (EmbeddingSet, BitPatternSet)) or not type(self).consumes.accepts(features.spec):
            raise BenchError(f"{self.name}: needs {type(self).consumes.describe()}, got {features.spec.describe()}")
        s = self.image_size
        if images.dim() != 4 or tuple(images.shape[1:]) != (3, s, s):
            raise BenchError(f"{self.name}: training images must be N×3×{s}×{s}, got {tuple(images.shape)}")
        if len(features) != images.shape[0] or len(features) < 1:
            raise BenchError(f"{self.name}: {len(features)} feature records for {images.shape[0]} training images")

    def _build(self, in_width: int) -> None:
        self.net = self.make_net(in_width).to(self.device)

    def fit(self, features: FeatureSet, images: torch.Tensor, ctx: FitContext) -> None:
        """Standardise the auxiliary inputs, then `epochs` epochs of Adam on `loss` (seeded batches)."""
        self._check(features, images)
        hp = self.hp
        ctx.notes.extend(self.fit_notes(features))
        x_all = raw_inputs(features, self.name)
        self.inputs = Standardiser.fit(x_all, features.kind)
        x_all = torch.from_numpy((x_all - self.inputs.mean) / self.inputs.scale)
        targets = resize(images.float(), int(hp["net_size"]))
        torch.manual_seed(self.seed)
        self._build(x_all.shape[1])
        self.start_training(x_all.shape[1])
        assert self.net is not None
        n = len(features)
        batch = min(int(hp["batch_size"]), n)
        per_epoch = max(n // batch, 1)
        steps = int(hp["epochs"]) * per_epoch
        opt = torch.optim.Adam(self.net.parameters(), lr=hp["lr"], betas=tuple(hp.get("betas", (0.9, 0.999))))
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=max(int(hp["decay_every"]) * per_epoch, 1),
                                                gamma=float(hp["lr_gamma"]))
        batches = seeded_batches(n, batch, self.seed)
        self.history = []
        self.net.train()
        t0 = time.perf_counter()
        bar = tqdm(range(steps), desc=self.name, disable=not ctx.progress, unit="step")
        for step in bar:
            idx = torch.from_numpy(next(batches))
            value = self.train_step(x_all[idx].to(self.device), targets[idx].to(self.device), opt)
            sched.step()
            if not math.isfinite(value):
                raise RuntimeError(f"{self.name}: training diverged at step {step} (loss {value})")
            self.history.append(value)
            if ctx.progress and (step % 10 == 0 or step == steps - 1):
                bar.set_postfix(loss=f"{value:.4f}")
        bar.close()
        self.train_seconds = time.perf_counter() - t0
        self.net.eval()

    def reconstruct(self, features: FeatureSet, progress: bool = True) -> torch.Tensor:
        if self.net is None:
            raise RuntimeError(f"{self.name}: reconstruct() before fit() or load_state_dict()")
        x_all = self.inputs(features, self.name)
        self.net.eval()
        n, b, s = len(features), int(self.hp["eval_batch"]), self.image_size
        out = torch.empty((n, 3, s, s), dtype=torch.float32)
        with torch.no_grad():
            for start in tqdm(range(0, n, b), desc=f"{self.name} reconstruct", disable=not progress, unit="batch"):
                y = self.net(x_all[start:start + b].to(self.device)).float().cpu()
                out[start:start + len(y)] = resize(y, s).clamp_(0, 1)
        return out

    def state_dict(self) -> dict[str, Any]:
        if self.net is None:
            raise RuntimeError(f"{self.name}: state_dict() before fit() or load_state_dict()")
        return {"config": self.config(), "inputs": self.inputs.state_dict(),
                "net": {k: v.detach().cpu() for k, v in self.net.state_dict().items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        hyper = dict(state.get("config", {}).get("hyper", {}))
        if hyper != self.hp:
            raise BenchError(f"{self.name}: saved state was trained with {hyper}, profile {self.profile!r} has {self.hp}")
        self.inputs = Standardiser.from_state(state["inputs"])
        self._build(self.inputs.width)
        assert self.net is not None
        self.net.load_state_dict(state["net"])
        self.net.eval()

    # ---------------------------------------------------------------------------------------- describe
    def describe_widths(self) -> dict[str, int]:
        """Input widths to report figures for, by what is released (dlib-face's D = 128)."""
        return {"embeddings": input_width(EmbeddingSet.kind, DESCRIBE_DIM)}

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"profile": self.profile, "net_size": int(self.hp["net_size"]),
                               "image_size": self.image_size}
        for kind, width in self.describe_widths().items():
            with torch.device("meta"):
                net = self.make_net(width).eval()
                x = torch.zeros(1, width)
            flops = count_flops(net, x)
            out[f"{kind} (D={DESCRIBE_DIM}, {width} inputs)"] = {
                "params_total": count_parameters(net), "gflops": round(flops / 1e9, 3),
                "gmacs": round(flops / 2e9, 3)}
        out["inference"] = (f"one {self.hp['net_size']}x{self.hp['net_size']} image from one feature vector "
                            "(matrix products and convolutions counted)")
        return out


def training_images_note(name: str, hp: Mapping[str, Any], image_size: int) -> list[str]:
    """A run note when the network's size differs from the run's image size (targets and outputs are resized)."""
    if int(hp["net_size"]) == int(image_size):
        return []
    return [f"{name}: the network works at {hp['net_size']}px (the paper's size); targets are resized to it and "
            f"reconstructions resized to the run's {image_size}px"]

