"""Nearest-neighbour retrieval: the floor every learned SIFT inversion must beat.

The attacker describes every auxiliary image by a bag of visual words over its released SIFT descriptors and, for a
private image, returns the auxiliary image whose bag is closest. Nothing is learned beyond the vocabulary:

- vocabulary: seeded k-means (scipy.cluster.vq.kmeans2, k-means++ initialisation, generator from the run seed) on
  the auxiliary descriptors (a seeded sample of at most `max_descriptors` of them), k from the profile;
- histogram: each descriptor counts for its nearest word (squared Euclidean distance, float64);
- weighting: term frequency (counts / keypoints) times smoothed inverse document frequency
  idf(w) = ln((1 + N) / (1 + df(w))) + 1 over the N auxiliary images, then L2 normalisation;
- retrieval: cosine similarity (a dot product of unit vectors), the most similar auxiliary image wins (the lowest
  index on a tie).

Only descriptors are used, so the attack works whether or not coordinates were released. A private image without
any keypoint (an empty histogram) gets the mean auxiliary image, the mean-image floor. Everything is computed one
image at a time from that image's own descriptors, so an image's answer never depends on the batch it is in.
"""

from __future__ import annotations

import warnings
from typing import Any, Mapping

import numpy as np
import torch
from tqdm.auto import tqdm

from bench.errors import BenchError
from bench.features import FeatureSet, Requirement
from bench.hyper import apply, declare
from bench.features.sift import DESCRIPTOR_DIM, SiftSet, gather_rows
from bench.plugins import Attack, FitContext, register_attack, seeded_rng

# Per-profile hyper-parameters, the one place they are set: vocabulary size, k-means iterations and how many
# auxiliary descriptors (a seeded sample) the vocabulary is fitted on.
PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {"vocabulary": 64, "kmeans_iter": 10, "max_descriptors": 20_000},
    "cpu": {"vocabulary": 64, "kmeans_iter": 20, "max_descriptors": 60_000},
    "paper": {"vocabulary": 1000, "kmeans_iter": 20, "max_descriptors": 500_000},
}

NO_MATCH = -1  # match() for an image without keypoints


def _as_sift(features: FeatureSet) -> SiftSet:
    if not isinstance(features, SiftSet):
        raise BenchError(f"nearest-neighbour: needs SIFT features, got {type(features).__name__}")
    if not features.flags.get("has_descriptors", True):
        raise BenchError("nearest-neighbour: needs SIFT descriptors, but these features were released without them")
    return features


@register_attack
class NearestNeighbour(Attack):
    """Retrieval floor: returns the auxiliary image whose bag of visual SIFT words is closest (tf-idf cosine)."""

    name = "nearest-neighbour"
    default_extractor = "sift"
    consumes = Requirement("sift", {"has_descriptors": True})
    paper = ("retrieval baseline (no single paper): bag of visual words (Sivic & Zisserman, Video Google, ICCV "
             "2003) with tf-idf cosine nearest neighbour over the auxiliary split; a floor for learned inversions")
    profiles = ("smoke", "cpu", "paper")
    params = declare(PROFILES, help={"vocabulary": "visual words (k-means centres)",
                                     "kmeans_iter": "k-means iterations",
                                     "max_descriptors": "descriptors sampled for k-means"})

    def __init__(self, profile: str, image_size: int, device: torch.device | str = "cpu", seed: int = 0,
                 params: Mapping[str, Any] | None = None) -> None:
        super().__init__(profile, image_size, device, seed, params)
        self.hp: dict[str, Any] = apply(PROFILES[profile], self.overrides)
        self.vocabulary: np.ndarray | None = None  # k×128 float64 word centres
        self.idf: np.ndarray | None = None  # (k,) float64
        self.aux_hist: np.ndarray | None = None  # N×k float32 unit rows (zero rows: no keypoints)
        self.aux_images: torch.Tensor | None = None  # N×3×S×S uint8
        self.mean: torch.Tensor | None = None  # 3×S×S float32

    def config(self) -> dict[str, Any]:
        return {**super().config(), "hyper": dict(self.hp)}

    # ------------------------------------------------------------------------------------------------ words
    def _words(self, desc: np.ndarray) -> np.ndarray:
        """Nearest word of every row of one image's K×128 descriptors (squared Euclidean, float64)."""
        assert self.vocabulary is not None
        x = np.asarray(desc, dtype=np.float64)
        c = self.vocabulary
        d2 = (x * x).sum(1)[:, None] - 2.0 * (x @ c.T) + (c * c).sum(1)[None, :]
        return np.argmin(d2, axis=1)

    def _histograms(self, sift: SiftSet, progress: bool = False) -> np.ndarray:
        """Raw word counts N×k, one image at a time (its descriptors in one matrix product)."""
        assert self.vocabulary is not None
        k = self.vocabulary.shape[0]
        out = np.zeros((len(sift), k), dtype=np.float64)
        for i in tqdm(range(len(sift)), desc="NN histograms", disable=not progress, unit="img", leave=False):
            desc = sift.descriptors_of(i)
            if len(desc):
                out[i] = np.bincount(self._words(desc), minlength=k)
        return out

    def _weigh(self, counts: np.ndarray) -> np.ndarray:
        """tf-idf rows, L2-normalised; rows without keypoints stay zero."""
        assert self.idf is not None
        total = counts.sum(1, keepdims=True)
        tf = np.divide(counts, total, out=np.zeros_like(counts), where=total > 0)
        w = tf * self.idf[None, :]
        norm = np.sqrt((w * w).sum(1, keepdims=True))
        return np.divide(w, norm, out=np.zeros_like(w), where=norm > 0)

    # --------------------------------------------------------------------------------------------------- fit
    def fit(self, features: FeatureSet, images: torch.Tensor, ctx: FitContext) -> None:
        """Vocabulary on auxiliary descriptors, auxiliary tf-idf histograms, auxiliary images kept as uint8."""
        from scipy.cluster.vq import kmeans2

        sift = _as_sift(features)
        s = self.image_size
        if images.dim() != 4 or tuple(images.shape[1:]) != (3, s, s):
            raise BenchError(f"nearest-neighbour: training images must be N×3×{s}×{s}, got {tuple(images.shape)}")
        if len(sift) != images.shape[0]:
            raise BenchError(f"nearest-neighbour: {len(sift)} feature records for {images.shape[0]} images")
        rng = seeded_rng(self.seed, "nearest-neighbour-vocabulary")
        rows, _ = gather_rows(sift.offsets, np.arange(len(sift), dtype=np.int64))
        if rows.size == 0:
            raise BenchError("nearest-neighbour: the auxiliary split holds no SIFT keypoints to build a vocabulary")
        if rows.size > self.hp["max_descriptors"]:
            rows = np.sort(rng.choice(rows, size=int(self.hp["max_descriptors"]), replace=False))
        data = np.asarray(sift.descriptors[rows], dtype=np.float64)
        k = int(self.hp["vocabulary"])
        if data.shape[0] < 16 * k:  # few descriptors: never ask for more words than distinct descriptors
            k = min(k, len(np.unique(data, axis=0)))
        if k < int(self.hp["vocabulary"]):
            ctx.notes.append(f"nearest-neighbour: vocabulary of {k} words instead of {self.hp['vocabulary']} "
                             f"(only {k} distinct auxiliary descriptors)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "one of the clusters is empty" is handled by kmeans2 itself
            centres, _ = kmeans2(data, k, iter=int(self.hp["kmeans_iter"]), minit="++", seed=rng)
        self.vocabulary = np.asarray(centres, dtype=np.float64).reshape(k, DESCRIPTOR_DIM)
        counts = self._histograms(sift, progress=ctx.progress)
        n = counts.shape[0]
        df = (counts > 0).sum(0).astype(np.float64)
        self.idf = np.log((1.0 + n) / (1.0 + df)) + 1.0
        self.aux_hist = self._weigh(counts).astype(np.float32)
        self.aux_images = (images.detach().float().cpu().clamp(0, 1) * 255.0).round().to(torch.uint8)
        self.mean = images.detach().double().cpu().mean(dim=0).float()
        empty = int((counts.sum(1) == 0).sum())
        if empty:
            ctx.notes.append(f"nearest-neighbour: {empty} auxiliary images without keypoints can never be returned")

    # ----------------------------------------------------------------------------------------------- apply
    def match(self, features: FeatureSet, progress: bool = False) -> np.ndarray:
        """Index of the returned auxiliary image per record (NO_MATCH = -1 for an image without keypoints)."""
        if self.vocabulary is None or self.aux_hist is None:
            raise RuntimeError("nearest-neighbour: match() before fit() or load_state_dict()")
        q = self._weigh(self._histograms(_as_sift(features), progress=progress))
        out = np.full(q.shape[0], NO_MATCH, dtype=np.int64)
        aux = self.aux_hist.astype(np.float64)
        for i in range(q.shape[0]):  # one matrix-vector product per image: the same arithmetic in any batch
            if q[i].any():
                sim = aux @ q[i]
                out[i] = int(np.argmax(np.round(sim, 12)))
        return out

    def reconstruct(self, features: FeatureSet, progress: bool = True) -> torch.Tensor:
        """The matched auxiliary images (the mean auxiliary image where there are no keypoints), float32 [0, 1]."""
        if self.aux_images is None or self.mean is None:
            raise RuntimeError("nearest-neighbour: reconstruct() before fit() or load_state_dict()")
        idx = self.match(features, progress=progress)
        s = self.image_size
        out = torch.empty((len(idx), 3, s, s), dtype=torch.float32)
        hit = torch.from_numpy(idx >= 0)
        out[:] = self.mean
        if bool(hit.any()):
            out[hit] = self.aux_images[torch.from_numpy(idx[idx >= 0])].float() / 255.0
        return out

    # ------------------------------------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        if self.vocabulary is None:
            raise RuntimeError("nearest-neighbour: state_dict() before fit() or load_state_dict()")
        return {"config": self.config(), "vocabulary": torch.from_numpy(self.vocabulary.copy()),
                "idf": torch.from_numpy(self.idf.copy()), "aux_hist": torch.from_numpy(self.aux_hist.copy()),
                "aux_images": self.aux_images, "mean": self.mean}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.vocabulary = state["vocabulary"].numpy().astype(np.float64)
        self.idf = state["idf"].numpy().astype(np.float64)
        self.aux_hist = state["aux_hist"].numpy().astype(np.float32)
        self.aux_images = state["aux_images"]
        self.mean = state["mean"]

    def describe(self) -> dict[str, Any]:
        return {"profile": self.profile, "vocabulary_words": self.hp["vocabulary"],
                "kmeans": f"kmeans2, k-means++ init, {self.hp['kmeans_iter']} iterations, "
                          f"≤{self.hp['max_descriptors']} auxiliary descriptors",
                "weighting": "tf-idf (smoothed idf), L2-normalised; cosine nearest neighbour",
                "learned_parameters": 0}
