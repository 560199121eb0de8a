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

from abc import abstractmethod
from typing import Any, ClassVar, Mapping

import numpy as np
import torch
from torch import nn

from bench.attacks.embedding_inversion.inputs import Standardiser, input_width, raw_inputs
from bench.errors import BenchError
from bench.features import FeatureSet
from bench.features.embeddings import BitPatternSet, EmbeddingSet
from bench.images import resize
from bench.nn.measure import count_parameters
from bench.plugins import FitContext
from bench.training import LearnedAttack, adam, flop_figures, optimise, schedules, seeded_batches

# The input widths `describe()` reports figures for: the built-in victim (dlib-face, D = 128).
DESCRIBE_DIM = 128


class VectorToImageAttack(LearnedAttack):
    """Base: standardised feature vector -> network -> image in [0, 1]; Adam with step decay; batch-independent."""

    PROFILES: ClassVar[dict[str, dict[str, Any]]] = {}
    default_extractor = "dlib-face"

    def __init__(self, profile: str, image_size: int, device: torch.device | str = "cpu", seed: int = 0,
                 params: Mapping[str, Any] | None = None) -> None:
        super().__init__(profile, image_size, device, seed, params)
        self.net: nn.Module | None = None
        self.inputs = Standardiser()

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

    def prepare_training(self, in_width: int) -> None:
        """Build anything besides the network that training needs (e.g. a discriminator)."""

    def train_step(self, x: torch.Tensor, target: torch.Tensor, opt: torch.optim.Optimizer) -> float:
        """One optimisation step on a batch; returns the loss value."""
        assert self.net is not None
        loss = self.loss(self.net(x), target)
        optimise(opt, loss)
        return float(loss.detach())

    # ------------------------------------------------------------------------------------------ engine
    def _check(self, features: FeatureSet, images: torch.Tensor) -> None:
        if not isinstance(features, (EmbeddingSet, BitPatternSet)) or not type(self).consumes.accepts(features.spec):
            raise BenchError(f"{self.name}: needs {type(self).consumes.describe()}, got {features.spec.describe()}")
        s = self.image_size
        if images.dim() != 4 or tuple(images.shape[1:]) != (3, s, s):
            raise BenchError(f"{self.name}: training images must be N×3×{s}×{s}, got {tuple(images.shape)}")
        if len(features) != images.shape[0] or len(features) < 1:
            raise BenchError(f"{self.name}: {len(features)} feature records for {images.shape[0]} training images")

    def build(self) -> None:
        self.net = self.make_net(self.inputs.width).to(self.device)

    def networks(self) -> dict[str, nn.Module | None]:
        return {"net": self.net}

    def fit(self, features: FeatureSet, images: torch.Tensor, ctx: FitContext) -> None:
        """Standardise the auxiliary inputs, then `epochs` epochs of Adam on `loss` (seeded batches)."""
        self._check(features, images)
        hp = self.hp
        ctx.notes.extend(self.fit_notes(features))
        x_all = raw_inputs(features, self.name)
        self.inputs = Standardiser.fit(x_all, features.kind)
        x_all = torch.from_numpy((x_all - self.inputs.mean) / self.inputs.scale)
        targets = resize(images.float(), int(hp["net_size"]))
        self.start_training()
        self.prepare_training(self.inputs.width)
        assert self.net is not None
        n = len(features)
        batch = min(int(hp["batch_size"]), n)
        per_epoch = max(n // batch, 1)
        steps = int(hp["epochs"]) * per_epoch
        opt = adam(self.net.parameters(), hp)
        scheds = schedules([opt], "step", steps, step_size=int(hp["decay_every"]) * per_epoch, gamma=hp["lr_gamma"])
        self.net.train()

        def step(idx: np.ndarray) -> float:
            i = torch.from_numpy(idx)
            return self.train_step(x_all[i].to(self.device), targets[i].to(self.device), opt)

        self.run_stage("train", steps, seeded_batches(n, batch, self.seed), step, schedulers=scheds,
                       progress=ctx.progress, desc=self.name)
        self.net.eval()

    def reconstruction_inputs(self, features: FeatureSet) -> torch.Tensor:
        return self.inputs(features, self.name)

    def reconstruct_batch(self, x_all: torch.Tensor, indices: np.ndarray) -> torch.Tensor:
        assert self.net is not None
        return resize(self.net(x_all[torch.from_numpy(indices)].to(self.device)).float().cpu(), self.image_size)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "inputs": self.inputs.state_dict()}

    def check_state(self, state: Mapping[str, Any]) -> None:
        hyper = dict(state.get("config", {}).get("hyper", {}))
        if hyper != self.hp:
            raise BenchError(f"{self.name}: saved state was trained with {hyper}, profile {self.profile!r} has {self.hp}")

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.check_state(state)
        self.inputs = Standardiser.from_state(state["inputs"])
        super().load_state_dict(state)

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
            out[f"{kind} (D={DESCRIBE_DIM}, {width} inputs)"] = {
                "params_total": count_parameters(net), **flop_figures(net, x, digits=3)}
        out["inference"] = (f"one {self.hp['net_size']}x{self.hp['net_size']} image from one feature vector "
                            "(matrix products and convolutions counted)")
        return out


def training_images_note(name: str, hp: Mapping[str, Any], image_size: int) -> list[str]:
    """A run note when the network's size differs from the run's image size (targets and outputs are resized)."""
    if int(hp["net_size"]) == int(image_size):
        return []
    return [f"{name}: the network works at {hp['net_size']}px (the paper's size); targets are resized to it and "
            f"reconstructions resized to the run's {image_size}px"]

