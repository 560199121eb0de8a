"""Client-side gradient defenses as `bench` defenses: `dp-sgd` and `ats-augment` act before the release.

Each recomputes every record of the fedSGD release from the client's images and the victim (`ClientData`): `dp-sgd`
clips each example's gradient, sums, adds N(0, (σC)^2) and divides by the record's batch size
(defenses.dp_sgd); `ats-augment` transforms each image by an ATSPrivacy policy (and/or a random crop) and then takes
the batch gradient, optionally pruned and/or noised afterwards (`prune`, `noise`), which gives SemSim's
"crop + gradient-pruning 70 %" and "crop + gradient-noise 1e-3" settings in one defense. The same client update
trains the victim for the utility figure (utility.fl_accuracy).
"""

from __future__ import annotations

import copy
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from bench.attacks.gradinv import defenses as gd
from bench.attacks.gradinv import releases
from bench.attacks.gradinv import utility as gu
from bench.errors import BenchError
from bench.features import FeatureSet, FeatureSpec
from bench.params import Param
from bench.plugins import ClientData, Defense, UtilityContext, register_defense


def torch_generator(rng: np.random.Generator) -> torch.Generator:
    """A torch generator seeded from the run's numpy stream (keys stay a function of the run seed)."""
    return torch.Generator().manual_seed(int(rng.integers(0, 2**63 - 1)))


def local_update(model: nn.Module, x: torch.Tensor, y: torch.Tensor, step: gu.ClientStep, g: torch.Generator,
                 fedavg: Mapping[str, Any]) -> list[torch.Tensor]:
    """A FedAvg client's update under a defense: `local_steps` SGD steps at `lr`, each applying the defended update
    `step` of one mini-batch (`local_batch` images cycling in order, None: all), from a copy of `model`; returns
    w0 - wT. With the undefended step it is `releases.fedavg_update` (same steps, same order)."""
    local = copy.deepcopy(model)
    params = [p for p in local.parameters() if p.requires_grad]
    start = [p.detach().clone() for p in params]
    b = int(fedavg.get("local_batch") or 0) or len(x)
    n_batches = max(1, (len(x) + b - 1) // b)
    lr = float(fedavg["lr"])
    for k in range(int(fedavg["local_steps"])):
        i = (k % n_batches) * b
        grads = step(local, x[i:i + b], y[i:i + b], g)
        with torch.no_grad():
            for p, gr in zip(params, grads):
                p -= lr * gr.to(p.dtype).reshape(p.shape)
    return [s0 - p.detach() for s0, p in zip(start, params)]


def participations(covers: list[list[int]], fedavg: Mapping[str, Any] | None) -> int:
    """The most local steps any one image takes part in: 1 for fedSGD; for FedAvg, mini-batches cycle in a fixed
    order, so an image of a record split into m mini-batches is used in ceil(local_steps / m) of its steps."""
    if not fedavg:
        return 1
    steps, most = int(fedavg["local_steps"]), 0
    for c in covers:
        if c:
            b = int(fedavg.get("local_batch") or 0) or len(c)
            most = max(most, -(-steps // max(1, -(-len(c) // b))))
    return max(most, 1)


def client_release(features: FeatureSet, client: ClientData, step: gu.ClientStep, rng: np.random.Generator,
                   name: str, meta: dict[str, Any] | None = None) -> FeatureSet:
    """Recompute each record of a fedSGD release (its covers, its label field) with the defended update `step`; of a
    FedAvg release (`fl-updates`, whose meta names the local steps), with every local step's update defended."""
    fmeta = dict(features.meta or {})
    if fmeta.get("release", "fedsgd") != "fedsgd":
        raise BenchError(f"defense {name!r} acts on fedSGD releases only; this release is {fmeta['release']!r}")
    fedavg = fmeta.get("fedavg")
    if features.kind == "fl-updates" and not fedavg:
        raise BenchError(f"defense {name!r}: the FedAvg release does not name its local steps (meta 'fedavg')")
    field = fmeta.get("label_field", "label")
    if field not in client.images.labels:
        raise BenchError(f"defense {name!r}: the client's images carry no class label {field!r}")
    model = client.victim.model.eval()
    shapes = [list(p.shape) for p in model.parameters() if p.requires_grad]
    if fmeta.get("shapes") is not None and [list(s) for s in fmeta["shapes"]] != shapes:
        raise BenchError(f"defense {name!r}: the victim's parameter shapes differ from those of the release")
    x = client.images.images.float()
    y = torch.as_tensor(np.asarray(client.images.labels[field]), dtype=torch.long)
    g = torch_generator(rng)
    covers = features.covers()
    width = sum(int(np.prod(s)) for s in shapes)

    def release(c: list[int]) -> list[torch.Tensor]:
        return local_update(model, x[c], y[c], step, g, fedavg) if fedavg else step(model, x[c], y[c], g)
    # A record that covers no image releases nothing: an all-zero row, as the extractor would.
    rows = [torch.cat([t.reshape(-1) for t in release(c)]).float().numpy() if c
            else np.zeros(width, np.float32) for c in covers]
    grads = np.stack(rows) if rows else np.zeros((0, width), np.float32)
    out_meta = {**fmeta, "defense": {"name": name, **(meta or {})}}
    return type(features)(grads, covers, features.flags, out_meta)


class _ClientDefense(Defense):
    """Shared: fedSGD gradients or FedAvg updates, the release kind unchanged, acts on the client, utility by
    fedSGD training under it (fedSGD releases only: FedAvg training is not wired, so `fl-updates` get no figure)."""

    accepts = ("fl-gradients", "fl-updates")
    client_side = True

    def released_spec(self, spec: FeatureSpec) -> FeatureSpec:
        return spec

    def protect(self, features: FeatureSet, rng: np.random.Generator) -> FeatureSet:
        raise BenchError(f"defense {self.name!r} acts on the client before the release: it needs the client's "
                         "images and the victim (the engine calls protect_client)")

    def step(self) -> gu.ClientStep:
        raise NotImplementedError

    def release_meta(self, client: ClientData, features: FeatureSet) -> dict[str, Any]:
        return {}

    def protect_client(self, features: FeatureSet, client: ClientData, rng: np.random.Generator) -> FeatureSet:
        return client_release(features, client, self.step(), rng, self.name, self.release_meta(client, features))

    def utility_source(self, spec: FeatureSpec) -> str | None:
        return "training" if spec.kind == "fl-gradients" else None

    def utility(self, ctx: UtilityContext) -> dict[str, float]:
        return gu.fl_accuracy(ctx, self.step())


@register_defense
class DPSGD(_ClientDefense):
    """DP-SGD on the client: per-example gradients clipped to `clip`, Gaussian noise σ·clip; ε recorded.

    Each example's gradient is clipped to L2 norm `clip`, the sum gets N(0, (σ·clip)^2) per entry and is divided by
    the batch size; the ε reached comes from Opacus' RDP accountant when installed, else 'unavailable'."""

    name = "dp-sgd"
    params = {"clip": Param(float, 1.0, "per-example L2 clipping norm C", low=0.0),
              "noise_multiplier": Param(float, 1.0, "σ: noise std in units of C", low=0.0),
              "delta": Param(float, 1e-5, "δ of the (ε, δ) reported", low=0.0, high=1.0)}

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        if self.params["clip"] <= 0:
            raise BenchError("defense 'dp-sgd': clip must be > 0")

    def step(self) -> gu.ClientStep:
        clip, sigma = float(self.params["clip"]), float(self.params["noise_multiplier"])

        def dp_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> list[torch.Tensor]:
            return gd.dp_sgd(releases.per_sample_gradients(model, x, y), clip, sigma, g)
        return dp_step

    def release_meta(self, client: ClientData, features: FeatureSet) -> dict[str, Any]:
        """ε of one release (one DP-SGD step on the record's batch, sampling rate 1; a FedAvg release: the local
        steps an image takes part in, each at rate 1, mini-batches being fixed) and of the utility training (the
        profile's steps at sampling rate batch / train-split size; the accountant assumes Poisson sampling, the
        training draws shuffled fixed-size batches; fedSGD releases only, FedAvg gets no utility figure)."""
        sigma, delta = float(self.params["noise_multiplier"]), float(self.params["delta"])
        fedavg = (features.meta or {}).get("fedavg")
        if fedavg:
            k = participations(features.covers(), fedavg)
            return {"per_release": {**_epsilon(sigma, 1.0, k, delta), "steps": k}}
        out: dict[str, Any] = {"per_release": _epsilon(sigma, 1.0, 1, delta)}
        if client.profile in gu.PROFILES and client.n_train:
            q, steps = gu.sample_rate(client.profile, client.n_train), int(gu.budget(client.profile)["steps"])
            out["utility_training"] = {**_epsilon(sigma, q, steps, delta), "sample_rate": q, "steps": steps,
                                       "note": "the accountant assumes Poisson sampling; training shuffles "
                                               "fixed-size batches"}
        return out


def _epsilon(sigma: float, q: float, steps: int, delta: float) -> dict[str, Any]:
    if sigma <= 0:
        return {"epsilon": float("inf"), "delta": delta, "note": "no noise: no privacy guarantee"}
    return gd.dp_epsilon(sigma, q, steps, delta)


@register_defense
class ATSAugment(_ClientDefense):
    """ATSPrivacy: the client's images transformed by a policy and/or randomly cropped before the gradient.

    Policies such as 3-1-7, 43-18-18, 3-1-7+43-18-18 (`none`: no transformation); optionally the gradient is then
    pruned (`prune`) or noised (`noise`): SemSim's crop + pruning / crop + noise settings."""

    name = "ats-augment"
    params = {"policy": Param(str, "3-1-7", "transformation indices a-b-c (ATS_TRANSFORMS), '+' joins policies "
                                            "(one drawn per image); 'none': no transformation"),
              "crop": Param(bool, False, "random crop (4 px zero padding) after the policy"),
              "prune": Param(float, 0.0, "then zero this share of each layer's smallest gradient entries (0: off)",
                             low=0.0, high=1.0),
              "noise": Param(float, 0.0, "then add Gaussian noise of this std to every entry (0: off)", low=0.0)}

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        if self.params["policy"] != "none":
            try:
                gd.parse_policy(self.params["policy"])
            except ValueError as exc:
                raise BenchError(f"defense 'ats-augment': {exc}") from None

    def step(self) -> gu.ClientStep:
        policy, crop = str(self.params["policy"]), bool(self.params["crop"])
        prune, noise = float(self.params["prune"]), float(self.params["noise"])

        def ats_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> list[torch.Tensor]:
            if policy != "none":
                x = gd.ats_augment(x, policy, crop, g)
            elif crop:
                x = gd.random_crop(x, g)
            grads = releases.batch_gradient(model, x, y)
            if prune > 0:
                grads = gd.gradient_pruning(grads, prune, "layer")
            if noise > 0:
                grads = gd.gradient_noise(grads, noise, g)
            return grads
        return ats_step
