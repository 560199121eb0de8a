"""The gradient-inversion family as `bench` plugins: a per-batch gradient release, a white-box fedSGD extractor on
an untrained `lenet-zhu`, and the attacks `dlg`, `idlg`, `inverting-gradients` (batched over records)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch

from bench.attacks.gradinv import attacks as gi
from bench.attacks.gradinv import defenses as gd
from bench.attacks.gradinv import releases, victims
from bench.attacks.gradinv import utility as gu
from bench.errors import BenchError
from bench.features import FeatureSet, FeatureSpec, Requirement, register_feature_kind
from bench.images import resize
from bench.params import Param, resolve_params
from bench.plugins import (Attack, Defense, Extractor, FitContext, ImageSet, UtilityContext, Victim, register_attack,
                           register_defense, register_extractor)


@register_feature_kind
class GradientRelease(FeatureSet):
    """A federated client's release: per record, the flattened gradient of the victim's loss over the images the
    record covers (fedSGD); labels stay beside the images, never inside the release."""

    kind = "fl-gradients"
    granularity = "batch"
    undefended_utility_source = "training"  # `none`'s figure: the victim trained by plain fedSGD

    @classmethod
    def undefended_utility(cls, ctx: UtilityContext) -> dict[str, float]:
        """``fl-accuracy`` of the undefended baseline: every training step's gradient released as computed."""
        return gu.fl_accuracy(ctx, gu.plain_step)

    def __init__(self, grads: np.ndarray, cover: list[list[int]], flags: Any = None, meta: Any = None) -> None:
        super().__init__(flags, meta)
        self.grads = np.asarray(grads, dtype=np.float32)
        self.cover = [[int(i) for i in c] for c in cover]

    def __len__(self) -> int:
        return len(self.grads)

    def covers(self) -> list[list[int]]:
        return [list(c) for c in self.cover]

    def subset(self, indices: Sequence[int]) -> "GradientRelease":
        return GradientRelease(self.grads[list(indices)], [self.cover[i] for i in indices], self.flags, self.meta)

    def _save_arrays(self) -> dict[str, np.ndarray]:
        return {"grads": self.grads, "cover_flat": np.array([i for c in self.cover for i in c], dtype=np.int64),
                "cover_sizes": np.array([len(c) for c in self.cover], dtype=np.int64)}

    @classmethod
    def _from_arrays(cls, arrays: Mapping[str, np.ndarray], flags: Any, meta: Any) -> "GradientRelease":
        flat, sizes = arrays["cover_flat"].tolist(), arrays["cover_sizes"].tolist()
        starts = np.cumsum([0] + sizes[:-1]).tolist()
        return cls(np.array(arrays["grads"]), [flat[s:s + n] for s, n in zip(starts, sizes)], flags, meta)


@register_extractor
class FedSGDLeNetZhu(Extractor):
    """White-box victim: an untrained DLG LeNet releasing fedSGD gradients of `batch` images (default 1) each.

    The LeNet has seed 0 and 10 classes; a record is the gradient of the mean loss over its images; images in [0, 1]
    without normalisation (DLG's setting); needs class labels."""

    name = "fedsgd-lenet-zhu"
    produces = FeatureSpec("fl-gradients")
    white_box = True
    params = {"batch": Param(int, 1, "images per release (consecutive private images; the last release may hold "
                                      "fewer)", low=1)}

    def __init__(self, **params: Any) -> None:
        resolved = resolve_params(f"extractor {self.name!r}", type(self).params, params)
        self.batch = int(resolved["batch"])
        # Only values away from their default enter the config (the feature cache key and run id): a batch-1 run
        # keeps the id it had before `batch` was declared.
        self.params = {k: v for k, v in resolved.items() if v != type(self).params[k].default}

    def _model(self, size: int) -> torch.nn.Module:
        return victims.build_victim("lenet-zhu", num_classes=10, seed=0, image_size=size).eval()

    def victim(self) -> Victim:
        model = self._model(getattr(self, "size", None) or self.extract_size or 32)
        return Victim(model, {"trained": False, "steps": 0, "victim": "lenet-zhu", "seed": 0})

    @staticmethod
    def label_field(labels: Mapping[str, np.ndarray]) -> str:
        """The client's class labels: the dataset's `label` field (CIFAR); a dataset without one (e.g. the synthetic
        faces the contract kit uses) gives its first label field whose values all lie in 0..9, named in the
        release's meta. No such field: an error line."""
        if "label" in labels:
            return "label"
        for name, values in labels.items():
            v = np.asarray(values)
            if v.size and np.issubdtype(v.dtype, np.integer) and v.min() >= 0 and v.max() < 10:
                return name
        raise BenchError("extractor 'fedsgd-lenet-zhu' needs class labels in 0..9 (a dataset with 'label', e.g. "
                         "cifar10)")

    def extract(self, images: ImageSet, progress: bool = True) -> GradientRelease:
        self.size = int(images.images.shape[-1])
        model = self._model(self.size)
        n = len(images)
        if n == 0:
            return GradientRelease(np.zeros((0, victims.n_parameters(model)), np.float32), [])
        field = self.label_field(images.labels)
        y = torch.as_tensor(np.asarray(images.labels[field]), dtype=torch.long)
        if int(y.max()) >= 10 or int(y.min()) < 0:
            raise BenchError(f"extractor {self.name!r}: labels must lie in 0..9 for the 10-class victim")
        shapes = [list(p.shape) for p in model.parameters() if p.requires_grad]
        meta = {"label_field": field, "shapes": shapes}
        x = images.images.float()
        if self.batch == 1:
            per = releases.per_sample_gradients(model, x, y)
            flat = torch.cat([g.reshape(n, -1) for g in per], 1)
            return GradientRelease(flat.numpy(), [[i] for i in range(n)], meta=meta)
        cover = [list(range(s, min(s + self.batch, n))) for s in range(0, n, self.batch)]
        rows = [torch.cat([g.reshape(-1) for g in releases.batch_gradient(model, x[c], y[c])]) for c in cover]
        return GradientRelease(torch.stack(rows).numpy(), cover, meta={**meta, "batch": self.batch})


class _GradInvAttack(Attack):
    """Shared plumbing: unflatten the records against the granted victim's parameter shapes, attack all records of
    one batch size as one batched problem (in float64), return one image and one predicted class label per covered
    image at the run's image size; the runner pairs each record's images with its originals on `matching`."""

    consumes = Requirement("fl-gradients")
    default_extractor = "fedsgd-lenet-zhu"
    needs_victim = True
    uses_features = True
    attributes = ("label",)  # the class label recovered with each image (scored by `label-accuracy`)
    matching = "negative-mse"  # a batch release's images come back in no particular order

    params = {"iterations": Param(int, 0, "optimiser iterations (0: the profile's, see attacks.PROFILES)", low=0)}

    def _hp(self) -> dict[str, Any]:
        its = int(self.params.get("iterations") or 0)
        return gi.hyper_parameters(self.name, self.profile, **({"iterations": its} if its else {}))

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
        return out, self.victim_side()

    def victim_side(self) -> int:
        fc = [m for m in self.victim.model.modules() if isinstance(m, torch.nn.Linear)][-1]
        return int(round((fc.in_features / 12) ** 0.5)) * 4  # lenet-zhu: 12 x (side/4)^2 features

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

    def _batch_1_only(self, batch: int) -> None:
        if batch != 1:
            raise BenchError(f"attack {self.name!r} recovers labels from batch-1 releases only (the logits layer's "
                             f"gradient sign); this release covers {batch} images: use dlg, or --extractor-arg "
                             "batch=1")

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pass


@register_attack
class DLG(_GradInvAttack):
    """DLG: L-BFGS on the Euclidean gradient distance, image and soft label jointly (batched over records)."""

    name = "dlg"
    paper = "Zhu et al., Deep Leakage from Gradients, NeurIPS 2019"

    def _attack(self, model, target, shape, hp, batch):
        return gi.dlg(model, target, shape, batch=batch, iterations=hp["iterations"], lr=hp["lr"],
                      history=hp["history"], seed=self.seed)


@register_attack
class IDLG(_GradInvAttack):
    """iDLG: the label from the logits layer's gradient sign, then L-BFGS on the image (batched over records)."""

    name = "idlg"
    paper = "Zhao et al., iDLG: Improved Deep Leakage from Gradients, 2020"

    def _attack(self, model, target, shape, hp, batch):
        self._batch_1_only(batch)
        return gi.idlg(model, target, shape, iterations=hp["iterations"], lr=hp["lr"], history=hp["history"],
                       seed=self.seed)


@register_attack
class InvertingGradients(_GradInvAttack):
    """Inverting Gradients: cosine distance, signed Adam, TV, box [0, 1], restarts (batched over records)."""

    name = "inverting-gradients"
    paper = "Geiping et al., Inverting Gradients, NeurIPS 2020"

    def _attack(self, model, target, shape, hp, batch):
        self._batch_1_only(batch)
        return gi.inverting_gradients(model, target, shape, iterations=hp["iterations"], lr=hp["lr"], tv=hp["tv"],
                                      restarts=hp["restarts"], seed=self.seed)


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
    accepts = ("fl-gradients",)
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
        return GradientRelease(out, features.covers(), features.flags, features.meta)

    def utility_source(self, spec: FeatureSpec) -> str | None:
        return "training"

    def utility(self, ctx: UtilityContext) -> dict[str, float]:
        """``fl-accuracy``: the victim trained by fedSGD with every step's gradient pruned (utility.fl_accuracy)."""
        fraction, scope = self.params["fraction"], self.params["scope"]
        return gu.fl_accuracy(ctx, lambda m, x, y, g: gd.gradient_pruning(releases.batch_gradient(m, x, y),
                                                                          fraction, scope))


@register_defense
class GradientNoise(Defense):
    """Adds Gaussian noise of std `sigma` to every gradient entry (SemSim's gaussian setting: 1e-3)."""

    name = "gradient-noise"
    accepts = ("fl-gradients",)
    params = {"sigma": Param(float, 1e-3, "noise std in gradient units", low=0.0)}

    def released_spec(self, spec: FeatureSpec) -> FeatureSpec:
        return spec

    def protect(self, features: FeatureSet, rng: np.random.Generator) -> FeatureSet:
        grads = np.asarray(features.grads, dtype=np.float32)
        noisy = grads + np.float32(self.params["sigma"]) * rng.standard_normal(grads.shape, dtype=np.float32)
        return GradientRelease(noisy, features.covers(), features.flags, features.meta)

    def utility_source(self, spec: FeatureSpec) -> str | None:
        return "training"

    def utility(self, ctx: UtilityContext) -> dict[str, float]:
        """``fl-accuracy``: the victim trained by fedSGD with Gaussian noise on every step's gradient."""
        sigma = self.params["sigma"]
        return gu.fl_accuracy(ctx, lambda m, x, y, g: gd.gradient_noise(releases.batch_gradient(m, x, y), sigma, g))


# Client-side defenses (dp-sgd, ats-augment), registered on import.
from bench.attacks.gradinv import client_defenses  # noqa: E402,F401
