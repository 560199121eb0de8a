"""Set metrics that compare the distribution of reconstructions with that of the originals: FID, KID and fd-dlib.

All three stream (torch-fidelity's split): `embed` computes one batch's features through a named embedder
(bench/embedders), `aggregate` scores the concatenated features. FID and KID share one Inception pass per batch and
side (`EvalBatch.shared`); the originals' features are also kept per dataset split in the stage cache, so a second
attack on the same split reuses them.

- `fid`: Fréchet distance between Gaussians fitted to Inception pool3 features, the quantity torch-fidelity computes
  (`fid_statistics_to_metric`: tr sqrt(S1 S2) as Σ Re sqrt(eigvals(S1 S2)); pytorch-fid and torch-fidelity <= 0.3:
  trace of scipy's sqrtm). Here tr sqrt(S1 S2) is the nuclear norm of L1ᵀL2 (S_i = L_i L_iᵀ): exact, symmetric and
  fast; tests check it against both. Biased below 2,048 images (the feature dimension): the value then carries that
  note and KID is the one to prefer.
- `kid`: torch-fidelity's KID defaults (100 subsets of 1,000, polynomial kernel of degree 3, unbiased MMD², numpy
  RandomState(2020)), with the subset size capped at the smaller set's size.
- `fd-dlib`: the same Fréchet distance in dlib's 128-d face-descriptor space: an offline-capable distribution metric
  for faces (no ImageNet weights needed), not comparable with FID.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from bench.embedders import Embedder, ReferenceCache, batch_features, get_embedder
from bench import metric_conventions
from bench.plugins import EvalBatch, EvalContext, Metric

FID_UNBIASED_N = 2048  # below this many images the 2048-d covariance is rank-deficient and FID is biased upwards
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
KID_SEED = 2020
KID_DEGREE = 3
KID_COEF0 = 1.0
_KERNEL_CACHE_MAX = 8000  # precompute whole kernel matrices when n_recon + n_ref is at most this


# ------------------------------------------------------------------------------------------- Fréchet distance
def gaussian_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D×D, divided by n - 1) of N×D features, in float64."""
    x = np.asarray(features, dtype=np.float64)
    return x.mean(axis=0), np.cov(x, rowvar=False)


def frechet_from_statistics(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """|mu1 - mu2|² + tr(S1) + tr(S2) - 2 tr sqrt(S1 S2), with tr sqrt(S1 S2) = Σ Re sqrt(λ_i(S1 S2)).

    The eigenvalues of S1 S2 (a product of covariance matrices) are real and non-negative in exact arithmetic; they
    are taken as complex so that rounding noise around zero (rank-deficient covariances) contributes only its real
    part, as torch-fidelity does.
    """
    diff = mu1 - mu2
    eig = np.linalg.eigvals(sigma1 @ sigma2)
    tr_covmean = float(np.sum(np.sqrt(eig.astype(np.complex128)).real))
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)


def covariance_factor(features: np.ndarray) -> np.ndarray:
    """A D×k matrix L with L Lᵀ = np.cov(features) (k = min(n, D)): the centred rows / sqrt(n - 1) when n <= D,
    else the symmetric square root of the covariance (eigh, eigenvalues clipped at 0)."""
    x = np.asarray(features, dtype=np.float64)
    n, d = x.shape
    centred = (x - x.mean(axis=0)) / np.sqrt(n - 1)
    if n <= d:
        return centred.T
    w, v = np.linalg.eigh(centred.T @ centred)
    return v * np.sqrt(np.clip(w, 0.0, None))


def frechet_distance(features1: np.ndarray, features2: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets; NaN with fewer than 2 rows or non-finite input.

    Same quantity as `frechet_from_statistics`, computed exactly from covariance factors: with S_i = L_i L_iᵀ the
    non-zero eigenvalues of S1 S2 are the squared singular values of L1ᵀ L2, so tr sqrt(S1 S2) = ||L1ᵀ L2||_* (the
    sum of its singular values). A symmetric, backward-stable computation: with n < D images the 2048×2048 product
    is rank-deficient, its eigenvalue route spends tens of seconds and adds rounding noise from ~2000 spurious
    near-zero eigenvalues (relative 1e-5 on FID), while this is an n1×n2 SVD (milliseconds).
    """
    a, b = np.asarray(features1, dtype=np.float64), np.asarray(features2, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"need two N×D feature sets of one dimension, got {a.shape} and {b.shape}")
    if len(a) < 2 or len(b) < 2 or not (np.isfinite(a).all() and np.isfinite(b).all()):
        return float("nan")
    l1, l2 = covariance_factor(a), covariance_factor(b)
    diff = a.mean(axis=0) - b.mean(axis=0)
    tr_covmean = float(np.linalg.svd(l1.T @ l2, compute_uv=False).sum())
    return float(diff @ diff + np.sum(l1 * l1) + np.sum(l2 * l2) - 2.0 * tr_covmean)


# ------------------------------------------------------------------------------------------------------- KID
def polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int = KID_DEGREE, coef0: float = KID_COEF0) -> np.ndarray:
    """(x·y / D + coef0) ** degree for every row pair (gamma = 1/D, torch-fidelity's default)."""
    return (x @ y.T / x.shape[1] + coef0) ** degree


def mmd2_unbiased(k_xx: np.ndarray, k_xy: np.ndarray, k_yy: np.ndarray) -> float:
    """Unbiased MMD² of two m-sample sets from their kernel matrices (diagonals of K_XX and K_YY left out)."""
    m = k_xx.shape[0]
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2.0 * k_xy.sum() / (m * m))


def kid(features1: np.ndarray, features2: np.ndarray, subsets: int = KID_SUBSETS, subset_size: int = KID_SUBSET_SIZE,
        seed: int = KID_SEED) -> tuple[float, float, int]:
    """(mean, std, subset size) of the unbiased polynomial-kernel MMD² over random subsets, torch-fidelity's way.

    Each subset draws `m = min(subset_size, n1, n2)` rows of each set without replacement (set 1 first, then set
    2, from one numpy RandomState(seed)). When m equals both set sizes every subset is the whole sets reordered,
    so the value is computed once (std 0). NaN with fewer than 2 rows in a set or non-finite input.
    """
    a, b = np.asarray(features1, dtype=np.float64), np.asarray(features2, dtype=np.float64)
    n1, n2 = len(a), len(b)
    m = min(int(subset_size), n1, n2)
    if m < 2 or not (np.isfinite(a).all() and np.isfinite(b).all()):
        return float("nan"), float("nan"), m
    if m == n1 == n2:  # every subset is a permutation of both whole sets, and MMD² ignores order: one value
        k11, k22, k12 = polynomial_kernel(a, a), polynomial_kernel(b, b), polynomial_kernel(a, b)
        return mmd2_unbiased(k11, k12, k22), 0.0, m
    rng = np.random.RandomState(seed)
    whole = n1 + n2 <= _KERNEL_CACHE_MAX
    if whole:  # each entry once, then index the subsets (the subsets overlap heavily)
        k11, k22, k12 = polynomial_kernel(a, a), polynomial_kernel(b, b), polynomial_kernel(a, b)
    values = np.zeros(int(subsets))
    for i in range(int(subsets)):
        i1 = rng.choice(n1, m, replace=False)
        i2 = rng.choice(n2, m, replace=False)
        if whole:
            values[i] = mmd2_unbiased(k11[np.ix_(i1, i1)], k12[np.ix_(i1, i2)], k22[np.ix_(i2, i2)])
        else:
            x, y = a[i1], b[i2]
            values[i] = mmd2_unbiased(polynomial_kernel(x, x), polynomial_kernel(x, y), polynomial_kernel(y, y))
    return float(values.mean()), float(values.std()), m


# --------------------------------------------------------------------------------------------------- metrics
class EmbeddingSetMetric(Metric):
    """A set metric on a named embedder's features: one pass per batch and side, shared; originals cached per split."""

    level = "set"
    higher_is_better = False
    needs_weights = True
    embedder_name: ClassVar[str] = ""

    def __init__(self) -> None:
        self._embedder: Embedder | None = None
        self._cache: ReferenceCache | None = None
        self._note: str | None = None

    def prepare(self, ctx: EvalContext) -> None:
        """Load the embedder (MetricUnavailable with the fix when it cannot be) and open the split's feature cache."""
        self._embedder = get_embedder(self.embedder_name, ctx.device)
        self._cache = ReferenceCache(ctx.cache_dir, self._embedder, ctx.reference_key)

    def _features(self, recon: torch.Tensor, ref: torch.Tensor, batch: EvalBatch) -> tuple[dict, dict]:
        if self._embedder is None:  # used without prepare (a direct call): CPU, no reference cache
            self._embedder = get_embedder(self.embedder_name, "cpu")
        if recon is None:
            raise ValueError(f"{self.name} scores images; this batch has no reconstructions")
        return (batch_features(self._embedder, "recon", recon, batch),
                batch_features(self._embedder, "ref", ref, batch, self._cache))

    def embed(self, recon: torch.Tensor, ref: torch.Tensor, batch: EvalBatch) -> dict[str, np.ndarray]:
        r, o = self._features(recon, ref, batch)
        return {"recon": np.asarray(r["features"], dtype=np.float32), "ref": np.asarray(o["features"], dtype=np.float32)}

    def value_note(self, n: int) -> str | None:
        return self._note


INCEPTION = metric_conventions.INCEPTION


class FID(EmbeddingSetMetric):
    """Fréchet Inception distance between reconstructions and originals (torch-fidelity's); lower is better."""

    name = "fid"
    value_range = (0.0, float("inf"))
    embedder_name = "inception"
    convention = metric_conventions.text("fid")

    def aggregate(self, parts: dict[str, np.ndarray]) -> float:
        self._note = None
        return frechet_distance(parts["recon"], parts["ref"])

    def value_note(self, n: int) -> str | None:
        if n < FID_UNBIASED_N:
            return f"biased: computed on {n} < {FID_UNBIASED_N} images; prefer kid"
        return None


class KID(EmbeddingSetMetric):
    """Kernel Inception distance (unbiased polynomial-kernel MMD², torch-fidelity's defaults); lower is better."""

    name = "kid"
    value_range = (float("-inf"), float("inf"))  # an unbiased estimate: slightly negative for near-equal sets
    embedder_name = "inception"
    convention = metric_conventions.text("kid")

    def aggregate(self, parts: dict[str, np.ndarray]) -> float:
        mean, std, m = kid(parts["recon"], parts["ref"])
        self._note = None if mean != mean else f"{KID_SUBSETS} subsets of {m}, std {std:.3g}"
        return mean


class FrechetDlibFace(EmbeddingSetMetric):
    """Fréchet distance of dlib 128-d face descriptors (offline; not comparable with FID); lower is better."""

    name = "fd-dlib"
    value_range = (0.0, float("inf"))
    needs_weights = False  # its models come with a pip package (leakbench[faces]), not the weights cache
    embedder_name = "dlib-face"
    convention = metric_conventions.text("fd-dlib")

    def embed(self, recon: torch.Tensor, ref: torch.Tensor, batch: EvalBatch) -> dict[str, np.ndarray]:
        r, o = self._features(recon, ref, batch)
        return {"recon": np.asarray(r["features"], dtype=np.float32),
                "ref": np.asarray(o["features"], dtype=np.float32),
                "recon_miss": np.asarray(r["detector_miss"], dtype=bool),
                "ref_miss": np.asarray(o["detector_miss"], dtype=bool)}

    def aggregate(self, parts: dict[str, np.ndarray]) -> float:
        notes: list[Any] = []
        n = len(parts["recon"])
        dim = parts["recon"].shape[1] if parts["recon"].ndim == 2 else 128
        if n < dim:
            notes.append(f"biased: computed on {n} < {dim} images")
        misses = [(int(np.sum(parts[key])), len(parts[key]), what) for key, what in
                  (("recon_miss", "reconstructions"), ("ref_miss", "originals")) if key in parts]
        if any(k for k, _, _ in misses):
            notes.append("no face detected in " + " and ".join(f"{k}/{t} {w}" for k, t, w in misses)
                         + " (whole image used as the face box)")
        self._note = "; ".join(notes) or None
        return frechet_distance(parts["recon"], parts["ref"])


metric_conventions.register(__name__)  # fid, kid, fd-dlib
