"""Identity metrics on dlib face descriptors: how much of the original's identity a reconstruction carries.

For face-embedding inversion (PE-MIU, Shahreza et al.), leakage is judged by a face recognition system rather than by
pixels: all three metrics use the named `dlib-face` embedder (bench/embedders/dlib_face.py), one pass per batch and
side shared through `EvalBatch.shared` with `fd-dlib`, and the originals' descriptors kept in the split's reference
cache. Higher always means more leakage (the attacker's view).

- `id-cosine` (sample): cosine similarity between the descriptors of original and reconstruction, in [-1, 1].
- `rsr@fmr=0.1%`, `rsr@fmr=1%` (set): reversibility success rate, the share of reconstructions whose similarity to
  their own original is strictly above the system's decision threshold at that false-match rate. The threshold is
  set on impostor comparisons of the test split: cosine similarities of the originals of different samples (each
  unordered pair i < j once; pairs with one known identity label excluded). With M impostor scores and
  k = floor(fmr·M), the threshold is the (k+1)-th highest impostor score, so at most k impostor pairs (a share of at
  most fmr) lie strictly above it.
- `gender-accuracy` (set): balanced accuracy of gender predicted from the reconstructions' descriptors by a
  class-balanced logistic regression fitted on the auxiliary originals' descriptors (soft-biometric leakage).
"""

from __future__ import annotations

from fractions import Fraction
from typing import ClassVar

import numpy as np
import torch

from bench import metric_conventions
from bench.embedders import Embedder, ReferenceCache, batch_features, get_embedder
from bench.logistic_regression import LogisticRegression
from bench.plugins import EvalBatch, EvalContext, Metric, MetricUnavailable

EMBEDDER = "dlib-face"
DLIB_CONVENTION = metric_conventions.DLIB_CONVENTION  # the dlib-face pipeline every identity text begins with
GENDER_FIX = "needs gender labels: use a dataset with them, e.g. --dataset utkface"
_CHUNK = 1024  # rows of the impostor score matrix computed at a time
_BUFFER = 1 << 20  # impostor scores held before cutting down to the k+1 highest


# ---------------------------------------------------------------------------------------------------- helpers
def _unit(features: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm in float64 (a zero row becomes NaN)."""
    x = np.asarray(features, dtype=np.float64)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return x / norm


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of matching rows of two N×D arrays, in float64, clipped to [-1, 1] (NaN for a zero row)."""
    return np.clip(np.sum(_unit(a) * _unit(b), axis=1), -1.0, 1.0)


def fmr_rank(fmr: float, m: int) -> int:
    """k = floor(fmr·m), computed exactly from the decimal value of `fmr` (0.01 · 300 is 3, not 2)."""
    return int(Fraction(repr(float(fmr))) * int(m))


def threshold_at_fmr(scores: np.ndarray, fmr: float) -> float:
    """The decision threshold at a false-match rate from impostor scores: the (k+1)-th highest with
    k = floor(fmr·M); a comparison matches when its score is strictly above it. NaN without scores."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    m = len(s)
    if m == 0:
        return float("nan")
    k = fmr_rank(fmr, m)
    return float(np.partition(s, m - 1 - k)[m - 1 - k])


def impostor_threshold(ref: np.ndarray, fmr: float, identity: np.ndarray | None = None) -> tuple[float, int, int]:
    """(threshold, M impostor pairs, k) on the cosine similarities of every unordered pair i < j of `ref`'s rows,
    leaving out pairs of one known identity (equal labels >= 0). Streams over row chunks and keeps only the k+1
    highest scores, so memory stays O(k + chunk·N) rather than O(N²)."""
    u = _unit(ref)
    n = len(u)
    ident = None if identity is None else np.asarray(identity).ravel()
    m = n * (n - 1) // 2
    if ident is not None:
        _, counts = np.unique(ident[ident >= 0], return_counts=True)
        m -= int(np.sum(counts * (counts - 1) // 2))
    if m <= 0 or not np.isfinite(u).all():
        return float("nan"), max(m, 0), 0
    k = fmr_rank(fmr, m)
    keep = k + 1
    buffer: list[np.ndarray] = []
    held = seen = 0
    for start in range(0, n - 1, _CHUNK):
        rows = np.arange(start, min(start + _CHUNK, n - 1))
        s = u[rows] @ u.T  # rows × n
        valid = np.arange(n)[None, :] > rows[:, None]  # upper triangle: j > i
        if ident is not None:
            valid &= ~((ident[rows][:, None] == ident[None, :]) & (ident[rows][:, None] >= 0))
        scores = s[valid]
        seen += len(scores)
        buffer.append(scores)
        held += len(scores)
        if held > max(4 * keep, _BUFFER):  # keep only the k+1 highest seen so far
            merged = np.concatenate(buffer)
            buffer, held = [np.partition(merged, len(merged) - keep)[len(merged) - keep:]], keep
    if seen != m:
        raise RuntimeError(f"counted {seen} impostor pairs, expected {m}")
    top = np.concatenate(buffer)
    return float(np.partition(top, len(top) - keep)[len(top) - keep]), m, k


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def mean_impostor_cosine(ref: np.ndarray) -> float:
    """Mean cosine similarity over all pairs i != j of rows, in O(N): (|sum u|^2 - sum |u_i|^2) / (N(N-1))."""
    u = _unit(ref)
    n = len(u)
    if n < 2:
        return float("nan")
    total = u.sum(axis=0)
    return float((total @ total - np.sum(u * u)) / (n * (n - 1)))


def _miss_note(parts: dict[str, np.ndarray]) -> str | None:
    misses = [(int(np.sum(parts[key])), len(parts[key]), what) for key, what in
              (("recon_miss", "reconstructions"), ("ref_miss", "originals")) if key in parts]
    if any(k for k, _, _ in misses):
        return ("no face detected in " + " and ".join(f"{k}/{t} {w}" for k, t, w in misses)
                + " (whole image used as the face box)")
    return None


def balanced_accuracy(true: np.ndarray, pred: np.ndarray) -> float:
    """Mean per-class recall over the classes present in `true` (labels < 0 are left out); NaN without labels."""
    t, p = np.asarray(true).ravel(), np.asarray(pred).ravel()
    keep = t >= 0
    t, p = t[keep], p[keep]
    classes = np.unique(t)
    if len(classes) == 0:
        return float("nan")
    return float(np.mean([np.mean(p[t == c] == c) for c in classes]))


# --------------------------------------------------------------------------------------------------- metrics
class DlibIdentityMetric(Metric):
    """Base: the shared dlib-face embedder (one pass per batch and side) and the split's reference cache."""

    higher_is_better = True  # the attacker's view: higher means more of the original's identity leaked
    needs_weights = False  # its models come with a pip package (leakbench[faces]), not the weights cache

    def __init__(self) -> None:
        self._embedder: Embedder | None = None
        self._cache: ReferenceCache | None = None
        self._note: str | None = None

    def prepare(self, ctx: EvalContext) -> None:
        """Load the embedder (MetricUnavailable("pip install leakbench[faces]") without dlib) and open the cache."""
        self._embedder = get_embedder(EMBEDDER, ctx.device)
        self._cache = ReferenceCache(ctx.cache_dir, self._embedder, ctx.reference_key)

    def _get_embedder(self) -> Embedder:
        if self._embedder is None:  # used without prepare (a direct call): CPU, no reference cache
            self._embedder = get_embedder(EMBEDDER, "cpu")
        return self._embedder

    def _recon(self, recon: torch.Tensor | None, batch: EvalBatch) -> dict[str, np.ndarray]:
        if recon is None:
            raise ValueError(f"{self.name} scores images; this batch has no reconstructions")
        return batch_features(self._get_embedder(), "recon", recon, batch)

    def _ref(self, ref: torch.Tensor, batch: EvalBatch) -> dict[str, np.ndarray]:
        return batch_features(self._get_embedder(), "ref", ref, batch, self._cache)

    def value_note(self, n: int) -> str | None:
        return self._note


class IdCosine(DlibIdentityMetric):
    """Cosine similarity of dlib face descriptors of original and reconstruction; higher = more identity leaked."""

    name = "id-cosine"
    value_range = (-1.0, 1.0)
    convention = metric_conventions.text("id-cosine")

    def score_batch(self, recon: torch.Tensor | None, ref: torch.Tensor, batch: EvalBatch) -> np.ndarray:
        return cosine_rows(self._recon(recon, batch)["features"], self._ref(ref, batch)["features"])

    def per_sample(self, recon: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        r = self._get_embedder().embed(recon)["features"]
        o = self._get_embedder().embed(ref)["features"]
        return torch.from_numpy(cosine_rows(r, o))

    def embed(self, recon: torch.Tensor | None, ref: torch.Tensor, batch: EvalBatch) -> dict[str, np.ndarray]:
        r, o = self._recon(recon, batch), self._ref(ref, batch)
        return {"values": cosine_rows(r["features"], o["features"]),
                "ref_features": np.asarray(o["features"], dtype=np.float32),
                "recon_miss": np.asarray(r["detector_miss"], dtype=bool),
                "ref_miss": np.asarray(o["detector_miss"], dtype=bool)}

    def aggregate(self, parts: dict[str, np.ndarray]) -> float:
        notes = []
        if "ref_features" in parts and len(parts["ref_features"]) >= 2:
            notes.append(f"baseline: mean cosine between originals of different samples "
                         f"{mean_impostor_cosine(parts['ref_features']):.3f}")
        miss = _miss_note(parts)
        if miss:
            notes.append(miss)
        self._note = "; ".join(notes) or None
        values = np.asarray(parts["values"], dtype=np.float64)
        return float(values.mean()) if len(values) else float("nan")


class ReversibilitySuccessRate(DlibIdentityMetric):
    """Base of rsr@fmr=…: the share of reconstructions that match their original at a false-match rate (one
    registered subclass per row of the convention table, whose arguments set `fmr` and `fmr_label`)."""

    level = "set"
    value_range = (0.0, 1.0)
    fmr: ClassVar[float] = 0.0
    fmr_label: ClassVar[str] = ""

    def embed(self, recon: torch.Tensor | None, ref: torch.Tensor, batch: EvalBatch) -> dict[str, np.ndarray]:
        r, o = self._recon(recon, batch), self._ref(ref, batch)
        out = {"recon": np.asarray(r["features"], dtype=np.float32), "ref": np.asarray(o["features"], dtype=np.float32),
               "recon_miss": np.asarray(r["detector_miss"], dtype=bool),
               "ref_miss": np.asarray(o["detector_miss"], dtype=bool)}
        identity = batch.labels.get("identity")
        if identity is not None and np.asarray(identity).dtype.kind in "iu":
            out["identity"] = np.asarray(identity, dtype=np.int64)
        return out

    def aggregate(self, parts: dict[str, np.ndarray]) -> float:
        self._note = None
        recon, ref = parts.get("recon"), parts.get("ref")
        if recon is None or len(recon) < 2:
            return float("nan")
        identity = parts.get("identity")
        threshold, m, k = impostor_threshold(ref, self.fmr, identity)
        if threshold != threshold:
            return float("nan")
        genuine = cosine_rows(recon, ref)
        matched = int(np.sum(genuine > threshold))
        notes = [f"threshold {threshold:.4f} (cosine) at FMR {self.fmr_label}: the {_ordinal(k + 1)} highest of {m} "
                 f"impostor pairs (originals of different samples"
                 + (", same-identity pairs excluded" if identity is not None else "") + f"); {matched}/{len(recon)} "
                 "reconstructions match"]
        if k == 0 and m * self.fmr < 1:
            notes.append(f"fewer than {round(1 / self.fmr)} impostor pairs: the threshold is the highest impostor "
                         "score (achieved FMR 0)")
        miss = _miss_note(parts)
        if miss:
            notes.append(miss)
        self._note = "; ".join(notes)
        return matched / len(recon)


class GenderAccuracy(DlibIdentityMetric):
    """Balanced accuracy of gender predicted from reconstructions (classifier fit on aux originals); higher = leakier."""

    name = "gender-accuracy"
    level = "set"
    value_range = (0.0, 1.0)
    convention = metric_conventions.text("gender-accuracy")

    def __init__(self) -> None:
        super().__init__()
        self._clf: LogisticRegression | None = None
        self._n_aux = 0

    def prepare(self, ctx: EvalContext) -> None:
        """Embed the auxiliary originals and fit the classifier; MetricUnavailable without gender labels."""
        aux = ctx.aux_labels.get("gender")
        if aux is None or "gender" not in ctx.labels:
            raise MetricUnavailable(GENDER_FIX)
        y = np.asarray(aux).ravel()
        keep = y >= 0
        if len(np.unique(y[keep])) < 2:
            raise MetricUnavailable(GENDER_FIX + " (the auxiliary split needs both genders)")
        super().prepare(ctx)
        features = self._get_embedder().embed(ctx.aux_images[torch.from_numpy(np.flatnonzero(keep))])["features"]
        self.fit(features, y[keep])

    def fit(self, features: np.ndarray, gender: np.ndarray) -> None:
        """Fit the classifier on descriptors and 0/1 gender labels (what `prepare` does with the auxiliary split)."""
        self._clf = LogisticRegression().fit(features, gender)
        self._n_aux = len(gender)

    def embed(self, recon: torch.Tensor | None, ref: torch.Tensor, batch: EvalBatch) -> dict[str, np.ndarray]:
        if self._clf is None:
            raise RuntimeError("gender-accuracy needs prepare(ctx) (its classifier is fitted on the auxiliary split)")
        r, o = self._recon(recon, batch), self._ref(ref, batch)
        return {"pred": self._clf.predict(r["features"]), "ref_pred": self._clf.predict(o["features"]),
                "true": np.asarray(batch.labels["gender"], dtype=np.int64),
                "recon_miss": np.asarray(r["detector_miss"], dtype=bool)}

    def aggregate(self, parts: dict[str, np.ndarray]) -> float:
        true = np.asarray(parts.get("true", np.zeros(0)), dtype=np.int64)
        value = balanced_accuracy(true, parts.get("pred", np.zeros(0)))
        notes = [f"classifier fitted on {self._n_aux} auxiliary originals; {int(np.sum(true >= 0))} labelled samples"]
        if "ref_pred" in parts and value == value:
            notes.append(f"on the originals themselves: {balanced_accuracy(true, parts['ref_pred']):.3f}")
        miss = _miss_note({k: v for k, v in parts.items() if k == "recon_miss"})
        if miss:
            notes.append(miss)
        self._note = "; ".join(notes)
        return value


metric_conventions.register(__name__)  # id-cosine, rsr@fmr=0.1%, rsr@fmr=1%, gender-accuracy
