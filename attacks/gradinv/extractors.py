"""White-box fedSGD extractors: a victim classifier (`lenet-zhu`, `convnet`, `resnet20-4`), untrained or trained
on the run's attacker/train split, releasing the gradient of one image or of a batch of B images per record.

`fedsgd` is the generic extractor (victim, width, trained, batch); `fedsgd-lenet-zhu` is the same extractor with
the victim fixed to DLG's LeNet, kept under its name so that its runs keep their ids; `fedavg` releases the weight
change after several local SGD steps instead (feature kind `fl-updates`).
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping

import numpy as np
import torch

from bench.attacks.gradinv import releases, victims
from bench.attacks.gradinv.release_kind import GradientRelease, UpdateRelease
from bench.errors import BenchError
from bench.features import FeatureSpec
from bench.hashing import digest
from bench.params import Param, resolve_params
from bench.plugins import Extractor, ImageSet, Victim, VictimData, register_extractor

NUM_CLASSES = 10  # the victims' default head: 10 classes (CIFAR-10's; a dataset naming more classes widens it)
CHUNK = 64  # per-sample gradients are computed this many images at a time (bounded intermediate memory)

_COMMON: dict[str, Param] = {
    "batch": Param(int, 1, "images per release (consecutive private images; the last release may hold fewer)", low=1),
    "trained": Param(bool, False, "train the victim on the run's attacker/train split first (cached stage "
                                  "`victims`; per-profile steps in victims.VICTIM_TRAINING)"),
    "train_steps": Param(int, 0, "training steps of a trained victim (0: the profile's)", low=0),
}


def dataset_classes(dataset: Any) -> int:
    """The victim's number of classes for `dataset`: the size of its declared `label` class list (CIFAR-100: 100),
    else NUM_CLASSES (a dataset that names no classes, e.g. the synthetic faces of the contract kit)."""
    names = (getattr(dataset, "class_names", None) or {}).get("label")
    return len(names) if names else NUM_CLASSES


@register_extractor
class FedSGD(Extractor):
    """White-box victim classifier (lenet-zhu, convnet, resnet20-4) releasing the fedSGD gradient of `batch` images.

    `victim` (width `width`), untrained or `trained`, `batch` images per record. The victim has initialisation
    seed 0 and one output per class of the run's dataset (10 unless it names more: CIFAR-100's 100) and runs in eval
    mode (BatchNorm uses its running statistics); a record is the gradient of the mean cross-entropy over its
    images; images in [0, 1] without normalisation (DLG's setting). A trained victim learns on the attacker/train
    split (SGD, seeded by the run seed)."""

    name = "fedsgd"
    produces = FeatureSpec("fl-gradients")
    white_box = True
    victim_models = victims.VICTIMS
    # A trained victim records the seed of its training and the digest of the seed-drawn split it trained on.
    seed_derived = ("training.seed", "training.data")
    fixed_victim: ClassVar[str | None] = None  # set by an alias that names one victim (fedsgd-lenet-zhu)
    params = {"victim": Param(str, "lenet-zhu", "victim classifier", choices=victims.VICTIMS),
              "width": Param(int, 0, "victim width (0: its default; convnet 64, resnet20-4 4; lenet-zhu has none)",
                             low=0),
              **_COMMON}

    def __init__(self, **params: Any) -> None:
        declared = type(self).params
        resolved = resolve_params(f"extractor {self.name!r}", declared, params)
        self.victim_name: str = self.fixed_victim or resolved["victim"]
        self.width: int | None = int(resolved.get("width", 0)) or None
        self.batch = int(resolved["batch"])
        self.trained = bool(resolved["trained"])
        self.train_steps = int(resolved["train_steps"])
        if self.victim_name == "lenet-zhu" and self.width:
            raise BenchError(f"extractor {self.name!r}: victim lenet-zhu has no width parameter")
        if self.train_steps and not self.trained:
            raise BenchError(f"extractor {self.name!r}: train_steps needs trained=true")
        # Only values away from their default enter the config (the feature cache key and run id): a batch-1 run
        # of an untrained victim keeps the id it had before these parameters were declared.
        self.params = {k: v for k, v in resolved.items() if v != declared[k].default}
        self._training: dict[str, Any] | None = None  # what the training depends on (bind), trained victims only
        self._weights: dict[str, torch.Tensor] | None = None  # the trained weights (load_victim)
        self._train_info: dict[str, Any] = {}
        self.size: int | None = None
        self.num_classes = NUM_CLASSES  # the run's dataset's class count (bind); 10 outside a run

    @property
    def batch_size(self) -> int:
        """Images per record (the engine's compatibility checks read it)."""
        return self.batch

    # ------------------------------------------------------------------------------------------- training
    def bind(self, data: VictimData) -> None:
        self.num_classes = dataset_classes(data.dataset)
        if not self.trained:
            return
        hp = victims.training_config(self.victim_name, data.profile)
        if self.train_steps:
            hp["steps"] = self.train_steps
        self._training = {**hp, "seed": int(data.seed),
                          "data": digest({"dataset": data.dataset.fingerprint(), "ids": digest(list(data.ids), 32),
                                          "size": int(data.size)}, 20)}

    def victim_training(self) -> dict[str, Any] | None:
        return dict(self._training) if self._training is not None else None

    def config(self) -> dict[str, Any]:
        out = super().config()
        if self.num_classes != NUM_CLASSES:  # only then: 10-class configs (and run ids) are those of before
            out["num_classes"] = self.num_classes
        if self._training is not None:
            out["training"] = dict(self._training)
        return out

    def train_victim(self, images: ImageSet, progress: bool = True) -> dict[str, Any]:
        if self._training is None:
            raise BenchError(f"extractor {self.name!r}: no training split was bound (trained=true runs through "
                             "`bench run` / `bench grid`)")
        hp = self._training
        size = int(images.images.shape[-1])
        model = self._build(size)
        field = self.label_field(images.labels)
        y = self._labels(images, field)
        stats = victims.train_victim(model, images.images.float(), y, lr=float(hp["lr"]),
                                     batch_size=int(hp["batch_size"]), seed=int(hp["seed"]),
                                     weight_decay=float(hp["weight_decay"]), steps=int(hp["steps"]))
        self._weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self._train_info = {"steps": int(hp["steps"]), "label_field": field, **stats}
        return {"model": dict(self._weights), "info": dict(self._train_info)}

    def load_victim(self, state: Mapping[str, Any]) -> None:
        self._weights = {k: v.clone() for k, v in dict(state["model"]).items()}
        self._train_info = dict(state.get("info", {}))

    # ------------------------------------------------------------------------------------------- the model
    def _build(self, size: int) -> torch.nn.Module:
        return victims.build_victim(self.victim_name, num_classes=self.num_classes, seed=0, width=self.width,
                                    image_size=size)

    def _model(self, size: int) -> torch.nn.Module:
        model = self._build(size)
        if self.trained:
            if self._weights is None:  # never the untrained weights in place of the trained ones
                raise BenchError(f"extractor {self.name!r}: the victim is trained=true but was not trained or "
                                 "loaded (the engine's `victims` stage does it before extracting)")
            model.load_state_dict(self._weights)
        return model.eval()

    def victim(self) -> Victim:
        model = self._model(self.size or self.extract_size or 32)
        state = {"trained": self.trained, "steps": int(self._train_info.get("steps", 0)) if self.trained else 0,
                 "victim": self.victim_name, "seed": 0}
        if self.width:
            state["width"] = self.width
        if self.num_classes != NUM_CLASSES:
            state["num_classes"] = self.num_classes
        if self.trained:
            state["train_accuracy"] = self._train_info.get("train_accuracy")
        return Victim(model, state)

    def victim_accuracy(self, images: ImageSet) -> dict[str, Any]:
        if len(images) == 0:
            return {}
        field = self.label_field(images.labels)
        model = self._model(int(images.images.shape[-1]))
        acc = victims.accuracy(model, images.images.float(), self._labels(images, field))
        return {"test_accuracy": acc, "n": len(images), "label_field": field,
                "on": "the private images (drawn from the test split where the dataset has one)"}

    # ------------------------------------------------------------------------------------------- labels
    @classmethod
    def label_field(cls, labels: Mapping[str, np.ndarray]) -> str:
        """The client's class labels: the dataset's `label` field (CIFAR); a dataset without one (e.g. the synthetic
        faces the contract kit uses) gives its first label field whose values all lie in 0..9, named in the
        release's meta. No such field: an error line."""
        if "label" in labels:
            return "label"
        for name, values in labels.items():
            v = np.asarray(values)
            if v.size and np.issubdtype(v.dtype, np.integer) and v.min() >= 0 and v.max() < NUM_CLASSES:
                return name
        raise BenchError(f"extractor {cls.name!r} needs class labels in 0..9 (a dataset with 'label', e.g. cifar10)")

    def _labels(self, images: ImageSet, field: str) -> torch.Tensor:
        y = torch.as_tensor(np.asarray(images.labels[field]), dtype=torch.long)
        k = self.num_classes
        if len(y) and (int(y.max()) >= k or int(y.min()) < 0):
            raise BenchError(f"extractor {self.name!r}: labels must lie in 0..{k - 1} for the {k}-class victim")
        return y

    # ------------------------------------------------------------------------------------------- release
    def extract(self, images: ImageSet, progress: bool = True) -> GradientRelease:
        self.size = int(images.images.shape[-1])
        model = self._model(self.size)
        n = len(images)
        if n == 0:
            return GradientRelease(np.zeros((0, victims.n_parameters(model)), np.float32), [])
        field = self.label_field(images.labels)
        y = self._labels(images, field)
        shapes = [list(p.shape) for p in model.parameters() if p.requires_grad]
        meta = {"label_field": field, "shapes": shapes, "image_shape": [int(s) for s in images.images.shape[1:]],
                "victim": self.victim_name}
        x = images.images.float()
        if self.batch == 1:
            rows = []
            for s in range(0, n, CHUNK):
                per = releases.per_sample_gradients(model, x[s:s + CHUNK], y[s:s + CHUNK])
                rows.append(torch.cat([g.reshape(len(g), -1) for g in per], 1))
            return GradientRelease(torch.cat(rows).numpy(), [[i] for i in range(n)], meta=meta)
        cover = [list(range(s, min(s + self.batch, n))) for s in range(0, n, self.batch)]
        rows = [torch.cat([g.reshape(-1) for g in releases.batch_gradient(model, x[c], y[c])]) for c in cover]
        return GradientRelease(torch.stack(rows).numpy(), cover, meta={**meta, "batch": self.batch})


@register_extractor
class FedSGDLeNetZhu(FedSGD):
    """White-box victim: DLG's LeNet (fedsgd with victim=lenet-zhu) releasing fedSGD gradients of `batch` images.

    The LeNet has seed 0 and one output per class of the run's dataset; untrained unless `trained`; images in
    [0, 1] without normalisation (DLG's setting); needs class labels."""

    name = "fedsgd-lenet-zhu"
    fixed_victim = "lenet-zhu"
    victim_models = ("lenet-zhu",)
    params = dict(_COMMON)


@register_extractor
class FedAvg(FedSGD):
    """White-box victim classifier releasing FedAvg updates: w0 - wT after `local_steps` local SGD steps.

    The steps run at `local_lr` on each record's `batch` images (mini-batches of `local_batch`, 0: all), on `victim`
    (untrained or `trained`)."""

    name = "fedavg"
    produces = FeatureSpec("fl-updates")
    params = {**FedSGD.params,
              "local_steps": Param(int, 5, "local SGD steps of the client", low=1),
              "local_lr": Param(float, 1e-4, "local SGD learning rate", low=0.0),
              "local_batch": Param(int, 0, "images per local step, cycling in order (0: all of the record's)", low=0)}

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        resolved = resolve_params(f"extractor {self.name!r}", type(self).params, params)
        self.local_steps = int(resolved["local_steps"])
        self.local_lr = float(resolved["local_lr"])
        self.local_batch = int(resolved["local_batch"])

    def setting(self) -> dict[str, Any]:
        """The client's local training as the release's meta names it (the server knows it: FedAvg's protocol)."""
        return {"local_steps": self.local_steps, "lr": self.local_lr, "local_batch": self.local_batch or None}

    def extract(self, images: ImageSet, progress: bool = True) -> UpdateRelease:
        self.size = int(images.images.shape[-1])
        model = self._model(self.size)
        n = len(images)
        if n == 0:
            return UpdateRelease(np.zeros((0, victims.n_parameters(model)), np.float32), [])
        field = self.label_field(images.labels)
        y = self._labels(images, field)
        x = images.images.float()
        cover = [list(range(s, min(s + self.batch, n))) for s in range(0, n, self.batch)]
        s = self.setting()
        rows = [torch.cat([u.reshape(-1) for u in releases.fedavg_update(model, x[c], y[c], s["local_steps"],
                                                                          s["lr"], s["local_batch"])])
                for c in cover]
        meta = {"label_field": field, "shapes": [list(p.shape) for p in model.parameters() if p.requires_grad],
                "image_shape": [int(d) for d in images.images.shape[1:]], "victim": self.victim_name,
                "batch": self.batch, "fedavg": s}
        return UpdateRelease(torch.stack(rows).numpy(), cover, meta=meta)
