"""The gradient-inversion family as `bench` plugins: the release kind `fl-gradients` (release_kind), the white-box
fedSGD extractors (extractors), the attacks `dlg`, `idlg`, `inverting-gradients` (batched over records) and the
gradient defenses."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from bench.attacks.gradinv import attacks as gi
from bench.attacks.gradinv import defenses as gd
from bench.attacks.gradinv import extractors  # noqa: F401  (registers fedsgd, fedsgd-lenet-zhu)
from bench.attacks.gradinv import releases
from bench.attacks.gradinv import utility as gu
from bench.attacks.gradinv.extractors import FedSGD, FedSGDLeNetZhu  # noqa: F401  (re-exported)
from bench.attacks.gradinv.release_kind import GradientRelease
from bench.errors import BenchError, IncompatibleError
from bench.features import FeatureSet, FeatureSpec, Requirement
from bench import hyper
from bench.images import resize
from bench.params import Param
from bench.plugins import Attack, Defense, FitContext, UtilityContext, register_attack, register_defense


class _GradInvAttack(Attack):
    """Shared plumbing: unflatten the records against the granted victim's parameter shapes, attack all records of
    one batch size as one batched problem (in float64), return one image and one predicted class label per covered
    image at the run's image size; the runner pairs each record's images with its originals on `matching`."""

    # fedSGD gradients, or FedAvg updates (the attack then simulates the client's local steps, as Inverting
    # Gradients' FedAvg attack does; the meta of an `fl-updates` release names them)
    consumes = Requirement(("fl-gradients", "fl-updates"))
    default_extractor = "fedsgd-lenet-zhu"
    needs_victim = True
    uses_features = True
    uses_auxiliary = False  # each release is optimised on its own: the attacker's split is never extracted
    attributes = ("label",)  # the class label recovered with each image (scored by `label-accuracy`)
    matching = "negative-mse"  # a batch release's images come back in no particular order
    # Before their hyper-parameters were declared these attacks had one plain parameter, iterations=0 ("the
    # profile's"), recorded in every config: kept, so that runs with every default keep their run ids.
    legacy_params = {"iterations": 0}

    def _hp(self) -> dict[str, Any]:
        """The declared hyper-parameters at the run's profile with the user's overrides (`--attack-arg`)."""
        return hyper.apply(gi.PROFILES[self.name][self.profile], self.overrides)

    def fit(self, features: FeatureSet, images: torch.Tensor, ctx: FitContext) -> None:
        """Nothing to train: the attack optimises against each release."""

    def _targets(self, features: GradientRelease) -> tuple[list[torch.Tensor], int]:
        assert self.victim is not None, "the engine attaches the victim before reconstructing"
        shapes = [p.shape for p in self.victim.model.parameters() if p.requires_grad]
        released = (features.meta or {}).get("shapes")
        if released is not None and [list(s) for s in shapes] != [list(s) for s in released]:
            raise BenchError(f"attack {self.name!r}: the granted victim's parameter shapes differ from those of the "
                             "model that made the release (another input size?)")
        g = torch.from_numpy(np.asarray(features.grads, dtype=np.float32))
        out, i = [], 0
        for s in shapes:
            k = int(np.prod(s))
            out.append(g[:, i:i + k].reshape(len(g), *s))
            i += k
        return out, self.victim_side(features)

    def victim_side(self, features: GradientRelease) -> int:
        """The released images' side: named in the release's meta; a release cached before it was named came from
        `lenet-zhu`, whose last layer reads 12 x (side/4)^2 features."""
        shape = (features.meta or {}).get("image_shape")
        if shape:
            return int(shape[-1])
        fc = [m for m in self.victim.model.modules() if isinstance(m, torch.nn.Linear)][-1]
        return int(round((fc.in_features / 12) ** 0.5)) * 4

    def reconstruct(self, features: FeatureSet, progress: bool = True) -> torch.Tensor:
        return self.reconstruct_with_attributes(features, progress)[0]

    def reconstruct_with_attributes(self, features: FeatureSet,
                                    progress: bool = True) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
        if len(features) == 0:
            return torch.zeros((0, 3, self.image_size, self.image_size)), {"label": np.zeros(0, np.int64)}
        target, side = self._targets(features)
        # float64: in float32 the last-bit differences of batched convolutions, amplified by L-BFGS / signed Adam
        # over many iterations, would make a record's reconstruction depend on the records attacked beside it.
        target = [t.double() for t in target]
        model = self.victim.model.eval().double()
        hp = self._hp()
        self._release_meta = dict(features.meta or {})
        covers = features.covers()
        images: list[torch.Tensor] = [torch.zeros(0)] * len(covers)
        labels: list[torch.Tensor] = [torch.zeros(0)] * len(covers)
        for b in sorted({len(c) for c in covers}):  # one batched problem per batch size (a short last release)
            rows = [r for r, c in enumerate(covers) if len(c) == b]
            r = self._attack(model, [t[rows] for t in target], (3, side, side), hp, b)
            for k, row in enumerate(rows):
                images[row], labels[row] = r.images[k], r.labels[k].reshape(-1)
        out = torch.cat(images).clamp(0, 1).float()
        out = resize(out, self.image_size) if side != self.image_size else out
        return out, {"label": torch.cat(labels).long().numpy()}

    def _classes(self) -> int:
        """The victim's number of classes (its logits layer's outputs: 10, or 100 on CIFAR-100)."""
        return [m for m in self.victim.model.modules() if isinstance(m, torch.nn.Linear)][-1].out_features

    def _fedavg(self) -> gi.FedAvgSetting | None:
        """The client's local steps named by an `fl-updates` release's meta; None for a fedSGD release."""
        s = getattr(self, "_release_meta", {}).get("fedavg")
        if s is None:
            return None
        return gi.FedAvgSetting(int(s["local_steps"]), float(s["lr"]),
                                int(s["local_batch"]) if s.get("local_batch") else None)

    # Recovers one distinct label per image from a release (idlg, inverting-gradients): a release of more images than
    # the victim has classes is refused before any work (check_extractor) and again when attacked (_distinct_labels).
    distinct_labels: bool = False

    def check_extractor(self, extractor: Any) -> None:
        batch, classes = getattr(extractor, "batch_size", None), getattr(extractor, "num_classes", None)
        if self.distinct_labels and batch is not None and classes is not None and batch > classes:
            raise IncompatibleError(f"attack {self.name!r} recovers one distinct label per image, but extractor "
                                    f"{extractor.name!r} releases {batch} images per record of a {classes}-class "
                                    f"victim: use dlg, or --extractor-arg batch<={classes}")

    def _distinct_labels(self, batch: int) -> None:
        """Label recovery at batch > 1 finds distinct classes: a release of more images than classes is refused."""
        classes = self._classes()
        if batch > classes:
            raise BenchError(f"attack {self.name!r} recovers one distinct label per image, but this release covers "
                             f"{batch} images of a {classes}-class victim: use dlg, or --extractor-arg batch<={classes}")

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pass


@register_attack
class DLG(_GradInvAttack):
    """DLG: L-BFGS on the Euclidean gradient distance, image and soft label jointly (batched over records)."""

    name = "dlg"
    paper = "Zhu et al., Deep Leakage from Gradients, NeurIPS 2019"
    params = hyper.declare(gi.PROFILES["dlg"], help=gi.HELP)

    def _attack(self, model, target, shape, hp, batch):
        return gi.dlg(model, target, shape, batch=batch, num_classes=self._classes(), iterations=hp["iterations"],
                      lr=hp["lr"], history=hp["history"], seed=self.seed, fedavg=self._fedavg())


@register_attack
class IDLG(_GradInvAttack):
    """iDLG: labels from the logits layer's weight gradient, then L-BFGS on the images (batched over records)."""

    name = "idlg"
    paper = "Zhao et al., iDLG: Improved Deep Leakage from Gradients, 2020"
    distinct_labels = True
    params = hyper.declare(gi.PROFILES["idlg"], help=gi.HELP)

    def _attack(self, model, target, shape, hp, batch):
        self._distinct_labels(batch)
        return gi.idlg(model, target, shape, num_classes=self._classes(), iterations=hp["iterations"], lr=hp["lr"],
                       history=hp["history"], seed=self.seed, batch=batch, fedavg=self._fedavg())


@register_attack
class InvertingGradients(_GradInvAttack):
    """Inverting Gradients: cosine distance, signed Adam, TV, box [0, 1], restarts (batched over records)."""

    name = "inverting-gradients"
    paper = "Geiping et al., Inverting Gradients, NeurIPS 2020"
    distinct_labels = True
    params = hyper.declare(gi.PROFILES["inverting-gradients"], help=gi.HELP)

    def _attack(self, model, target, shape, hp, batch):
        self._distinct_labels(batch)
        return gi.inverting_gradients(model, target, shape, batch=batch, iterations=hp["iterations"], lr=hp["lr"],
                                      tv=hp["tv"], restarts=hp["restarts"], labels=hp["labels"], seed=self.seed,
                                      fedavg=self._fedavg())


def _fedsgd_training(spec: FeatureSpec) -> str | None:
    """A gradient defense's utility source: fedSGD training under it for `fl-gradients`; none for `fl-updates`
    (FedAvg training is not wired, as for `none`: no figure rather than one of another protocol)."""
    return "training" if spec.kind == "fl-gradients" else None


def _split(release: GradientRelease, name: str) -> tuple[list[list[int]], np.ndarray]:
    shapes = (release.meta or {}).get("shapes")
    if not shapes:
        raise BenchError(f"defense {name!r}: the release does not name its parameter shapes")
    return shapes, np.asarray(release.grads, dtype=np.float32)


def _rows(flat: np.ndarray, shapes: list[list[int]]) -> list[torch.Tensor]:
    out, i = [], 0
    for s in shapes:
        k = int(np.prod(s))
        out.append(torch.from_numpy(np.ascontiguousarray(flat[i:i + k])))
        i += k
    return out


@register_defense
class GradientPruning(Defense):
    """Zeroes the `fraction` smallest-magnitude gradient entries of every record (SemSim's prune_70 at 0.7)."""

    name = "gradient-pruning"
    accepts = ("fl-gradients", "fl-updates")
    params = {"fraction": Param(float, 0.7, "share of entries zeroed", low=0.0, high=1.0),
              "scope": Param(str, "layer", "rank within each parameter tensor, or over the whole record",
                             choices=("layer", "global"))}

    def released_spec(self, spec: FeatureSpec) -> FeatureSpec:
        return spec

    def protect(self, features: FeatureSet, rng: np.random.Generator) -> FeatureSet:
        shapes, grads = _split(features, self.name)
        out = np.stack([torch.cat(gd.gradient_pruning(_rows(g, shapes), self.params["fraction"],
                                                      self.params["scope"])).numpy() for g in grads]) \
            if len(grads) else grads.copy()
        return type(features)(out, features.covers(), features.flags, features.meta)

    def utility_source(self, spec: FeatureSpec) -> str | None:
        return _fedsgd_training(spec)

    def utility(self, ctx: UtilityContext) -> dict[str, float]:
        """``fl-accuracy``: the victim trained by fedSGD with every step's gradient pruned (utility.fl_accuracy)."""
        fraction, scope = self.params["fraction"], self.params["scope"]
        return gu.fl_accuracy(ctx, lambda m, x, y, g: gd.gradient_pruning(releases.batch_gradient(m, x, y),
                                                                          fraction, scope))


@register_defense
class GradientNoise(Defense):
    """Adds Gaussian noise of std `sigma` to every gradient entry (SemSim's gaussian setting: 1e-3)."""

    name = "gradient-noise"
    accepts = ("fl-gradients", "fl-updates")
    params = {"sigma": Param(float, 1e-3, "noise std in gradient units", low=0.0)}

    def released_spec(self, spec: FeatureSpec) -> FeatureSpec:
        return spec

    def protect(self, features: FeatureSet, rng: np.random.Generator) -> FeatureSet:
        grads = np.asarray(features.grads, dtype=np.float32)
        noisy = grads + np.float32(self.params["sigma"]) * rng.standard_normal(grads.shape, dtype=np.float32)
        return type(features)(noisy, features.covers(), features.flags, features.meta)

    def utility_source(self, spec: FeatureSpec) -> str | None:
        return _fedsgd_training(spec)

    def utility(self, ctx: UtilityContext) -> dict[str, float]:
        """``fl-accuracy``: the victim trained by fedSGD with Gaussian noise on every step's gradient."""
        sigma = self.params["sigma"]
        return gu.fl_accuracy(ctx, lambda m, x, y, g: gd.gradient_noise(releases.batch_gradient(m, x, y), sigma, g))


# Client-side defenses (dp-sgd, ats-augment), registered on import.
from bench.attacks.gradinv import client_defenses  # noqa: E402,F401
