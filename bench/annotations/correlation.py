"""Correlation of metrics with human annotations: Spearman, Pearson and Kendall with p-values and seeded percentile
bootstrap confidence intervals, and inter-annotator agreement (Krippendorff's alpha, nominal).

Small pure functions on arrays; nothing here reads the store or imports a model. A statistic that cannot be computed
(a constant column, fewer than three points) is reported with status "undefined" and the reason, never as a NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Hashable, Mapping, Sequence

import numpy as np
from scipy import stats

METHODS = ("spearman", "pearson", "kendall")
MIN_POINTS = 3


@dataclass(frozen=True)
class Correlation:
    """One coefficient: value and two-sided p-value when status is 'ok'; otherwise None and the reason."""

    method: str
    n: int
    status: str  # "ok" or "undefined"
    r: float | None = None
    p: float | None = None
    reason: str = ""


@dataclass(frozen=True)
class Interval:
    """A percentile bootstrap interval; `dropped` resamples had an undefined statistic (a constant resample)."""

    status: str
    lo: float | None = None
    hi: float | None = None
    n_resamples: int = 0
    dropped: int = 0
    reason: str = ""


def _coefficient(method: str) -> Callable[[np.ndarray, np.ndarray], tuple[float, float]]:
    if method == "spearman":
        return lambda x, y: tuple(stats.spearmanr(x, y))  # type: ignore[return-value]
    if method == "pearson":
        return lambda x, y: tuple(stats.pearsonr(x, y))  # type: ignore[return-value]
    if method == "kendall":
        return lambda x, y: tuple(stats.kendalltau(x, y))  # tau-b: corrected for ties  # type: ignore[return-value]
    raise ValueError(f"unknown correlation method {method!r}; use one of {', '.join(METHODS)}")


def _pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    xm = x - x.mean(axis=1, keepdims=True)
    ym = y - y.mean(axis=1, keepdims=True)
    r = (xm * ym).sum(axis=1) / np.sqrt((xm * xm).sum(axis=1) * (ym * ym).sum(axis=1))
    return np.clip(r, -1.0, 1.0)


def _batch(method: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The coefficient of each row pair of x, y (rows without a constant side): Pearson and Spearman (Pearson of
    average ranks) vectorised, Kendall's tau-b row by row through scipy."""
    if method == "pearson":
        return _pearson_rows(x, y)
    if method == "spearman":
        return _pearson_rows(stats.rankdata(x, axis=1), stats.rankdata(y, axis=1))
    fn = _coefficient(method)
    return np.array([fn(a, b)[0] for a, b in zip(x, y)], dtype=float)


def _why_undefined(x: np.ndarray, y: np.ndarray) -> str:
    if len(x) < MIN_POINTS:
        return f"undefined: {len(x)} point(s), at least {MIN_POINTS} needed"
    if np.ptp(x) == 0:
        return "undefined: the metric values are constant"
    if np.ptp(y) == 0:
        return "undefined: the human scores are constant"
    return ""


def _pair(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if xa.shape != ya.shape or xa.ndim != 1:
        raise ValueError(f"x and y must be 1-d and of the same length, got {xa.shape} and {ya.shape}")
    if not (np.isfinite(xa).all() and np.isfinite(ya).all()):
        raise ValueError("x and y must be finite (leave out undefined values before correlating)")
    return xa, ya


def correlation(x: Sequence[float], y: Sequence[float], method: str) -> Correlation:
    """The `method` coefficient of paired values x, y with its two-sided p-value (scipy's), or 'undefined'."""
    fn = _coefficient(method)
    xa, ya = _pair(x, y)
    why = _why_undefined(xa, ya)
    if why:
        return Correlation(method, len(xa), "undefined", reason=why)
    r, p = fn(xa, ya)
    return Correlation(method, len(xa), "ok", float(r), float(p))


def bootstrap_interval(x: Sequence[float], y: Sequence[float], method: str, n_resamples: int = 2000,
                       level: float = 0.95, seed: int = 0) -> Interval:
    """Paired percentile bootstrap interval of the coefficient: resample (x, y) pairs with replacement.

    Resample indices are drawn as `default_rng(seed).integers(0, n, (n_resamples, n))` and the interval is the
    (1 - level)/2 and (1 + level)/2 quantiles (linear interpolation) of the resampled coefficients, as
    scipy.stats.bootstrap(paired=True, method='percentile') computes it. Resamples whose coefficient is undefined
    (all x or all y equal) are dropped and counted; with fewer than half of them left the interval is undefined.
    """
    fn = _coefficient(method)
    xa, ya = _pair(x, y)
    why = _why_undefined(xa, ya)
    if why:
        return Interval("undefined", reason=why)
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    n = len(xa)
    idx = np.random.default_rng(seed).integers(0, n, (n_resamples, n))
    xs, ys = xa[idx], ya[idx]
    defined = (np.ptp(xs, axis=1) > 0) & (np.ptp(ys, axis=1) > 0)
    kept = _batch(method, xs[defined], ys[defined])
    dropped = n_resamples - len(kept)
    if len(kept) < n_resamples / 2:
        return Interval("undefined", n_resamples=n_resamples, dropped=dropped,
                        reason=f"undefined: {dropped} of {n_resamples} bootstrap resamples were constant")
    alpha = (1 - level) / 2
    lo, hi = np.quantile(kept, [alpha, 1 - alpha])
    return Interval("ok", float(lo), float(hi), n_resamples, dropped)


# ------------------------------------------------------------------------------------------- agreement
@dataclass(frozen=True)
class Agreement:
    """Krippendorff's alpha (nominal) over the units two or more annotators answered."""

    status: str
    alpha: float | None = None
    annotators: int = 0
    units: int = 0  # units with at least two answers (the pairable ones)
    reason: str = ""


def krippendorff_alpha_nominal(answers: Mapping[Hashable, Mapping[Hashable, Hashable]]) -> Agreement:
    """Krippendorff's alpha for nominal data: 1 - D_o / D_e from the coincidence matrix.

    `answers` maps unit -> {annotator: value}; units answered by fewer than two annotators are not pairable and are
    left out. With one annotator, no pairable unit or a single value used throughout, alpha is undefined.
    """
    annotators = {a for unit in answers.values() for a in unit}
    if len(annotators) < 2:
        return Agreement("undefined", annotators=len(annotators),
                         reason=f"undefined ({'one annotator' if annotators else 'no annotations'})")
    values = sorted({v for unit in answers.values() for v in unit.values()}, key=repr)
    pos = {v: i for i, v in enumerate(values)}
    o = np.zeros((len(values), len(values)))
    pairable = 0
    for unit in answers.values():
        m = len(unit)
        if m < 2:
            continue
        pairable += 1
        counts = np.zeros(len(values))
        for v in unit.values():
            counts[pos[v]] += 1
        # coincidences within the unit: every ordered pair of different answers, weighted 1/(m - 1)
        o += (np.outer(counts, counts) - np.diag(counts)) / (m - 1)
    if pairable == 0:
        return Agreement("undefined", annotators=len(annotators),
                         reason="undefined (no item answered by two annotators)")
    n_c = o.sum(axis=1)
    n = n_c.sum()
    expected = (n * n - (n_c ** 2).sum()) / (n - 1)
    if expected == 0:
        return Agreement("undefined", annotators=len(annotators), units=pairable,
                         reason="undefined (every answer is the same value)")
    observed = o.sum() - np.trace(o)
    return Agreement("ok", float(1 - observed / expected), len(annotators), pairable)


# ------------------------------------------------------------------------------- two-alternative forced choice
@dataclass(frozen=True)
class ForcedChoice:
    """How often a metric picks the reconstruction an annotator judged closer (ties in the metric count half)."""

    status: str
    rate: float | None = None
    n: int = 0
    ties: int = 0
    p: float | None = None  # two-sided binomial test against chance (0.5) over the untied answers
    lo: float | None = None
    hi: float | None = None
    reason: str = ""


def forced_choice_agreement(metric_diff: Sequence[float], human: Sequence[int], n_resamples: int = 2000,
                            level: float = 0.95, seed: int = 0) -> ForcedChoice:
    """`metric_diff[i]` = oriented metric of reconstruction a minus that of b, `human[i]` = +1 when the annotator
    chose a, -1 for b. Agreement per answer is 1 when the signs match, 0.5 on a metric tie, else 0; the rate is its
    mean, with a percentile bootstrap interval over answers and scipy's binomial test on the untied answers."""
    d, h = np.asarray(metric_diff, dtype=float), np.asarray(human, dtype=float)
    if d.shape != h.shape or d.ndim != 1 or not np.isin(h, (-1, 1)).all() or not np.isfinite(d).all():
        raise ValueError("metric_diff must be finite and human must be +1/-1, both 1-d of one length")
    if len(d) == 0:
        return ForcedChoice("undefined", reason="undefined: no pair answers with values of this metric")
    score = np.where(d == 0, 0.5, (np.sign(d) == h).astype(float))
    ties = int((d == 0).sum())
    untied = score[d != 0]
    p = float(stats.binomtest(int(untied.sum()), len(untied), 0.5).pvalue) if len(untied) else None
    idx = np.random.default_rng(seed).integers(0, len(score), (n_resamples, len(score)))
    alpha = (1 - level) / 2
    lo, hi = np.quantile(score[idx].mean(axis=1), [alpha, 1 - alpha])
    return ForcedChoice("ok", float(score.mean()), len(score), ties, p, float(lo), float(hi),
                        "" if untied.size else "every answer is a metric tie: no binomial test")
