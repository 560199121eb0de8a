"""Correlation statistics against scipy (coefficients, p-values, bootstrap) and Krippendorff's alpha against the
`krippendorff` package, on data built here: with ties, constant columns and missing answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from bench.annotations.correlation import (METHODS, bootstrap_interval, correlation, krippendorff_alpha_nominal)

SCIPY = {"spearman": stats.spearmanr, "pearson": stats.pearsonr, "kendall": stats.kendalltau}


def _data(n: int = 30, seed: int = 0, ties: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    y = 0.6 * x + rng.normal(size=n)
    if ties:
        x, y = np.round(x), (y > 0).astype(float)  # a few metric levels; binary human scores
    return x, y


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("ties", [False, True])
def test_coefficients_and_p_values_equal_scipy(method: str, ties: bool) -> None:
    x, y = _data(ties=ties)
    got = correlation(x, y, method)
    ref = SCIPY[method](x, y)
    assert got.status == "ok" and got.n == len(x)
    assert got.r == pytest.approx(float(ref[0]), abs=1e-12)
    assert got.p == pytest.approx(float(ref[1]), rel=1e-9)


def test_kendall_is_tau_b_with_ties() -> None:
    x = np.array([1, 1, 2, 2, 3, 3, 4, 5.0])
    y = np.array([0, 1, 0, 1, 1, 1, 1, 1.0])
    # tau-b by its definition: (concordant - discordant) / sqrt((n0 - ties_x) (n0 - ties_y))
    c = d = tx = ty = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            s = np.sign(x[i] - x[j]) * np.sign(y[i] - y[j])
            c, d = c + (s > 0), d + (s < 0)
            tx, ty = tx + (x[i] == x[j]), ty + (y[i] == y[j])
    n0 = len(x) * (len(x) - 1) / 2
    assert correlation(x, y, "kendall").r == pytest.approx((c - d) / np.sqrt((n0 - tx) * (n0 - ty)))


@pytest.mark.parametrize("method", METHODS)
def test_constant_columns_and_tiny_samples_are_undefined_not_nan(method: str) -> None:
    x, y = _data(n=10)
    flat = correlation(np.full(10, 0.3), y, method)
    assert flat.status == "undefined" and flat.r is None and flat.p is None
    assert "metric values are constant" in flat.reason
    assert "human scores are constant" in correlation(x, np.ones(10), method).reason
    assert "at least 3" in correlation(x[:2], y[:2], method).reason
    ci = bootstrap_interval(np.full(10, 0.3), y, method, n_resamples=50)
    assert ci.status == "undefined" and ci.lo is None and "constant" in ci.reason
    with pytest.raises(ValueError, match="finite"):
        correlation(np.r_[x[:9], np.nan], y, method)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("ties", [False, True])
def test_bootstrap_equals_scipy_percentile_bootstrap(method: str, ties: bool) -> None:
    x, y = _data(n=25, seed=3, ties=ties)
    got = bootstrap_interval(x, y, method, n_resamples=300, seed=7)
    ref = stats.bootstrap((x, y), lambda a, b: SCIPY[method](a, b)[0], paired=True, vectorized=False,
                          method="percentile", n_resamples=300, confidence_level=0.95,
                          rng=np.random.default_rng(7))
    assert got.status == "ok" and got.dropped == 0
    assert got.lo == pytest.approx(ref.confidence_interval.low, abs=1e-12)
    assert got.hi == pytest.approx(ref.confidence_interval.high, abs=1e-12)


def test_bootstrap_coverage_is_near_nominal() -> None:
    # Bivariate normal with rho = 0.5: the 90 % Pearson interval should cover rho in roughly 90 % of samples.
    rng = np.random.default_rng(11)
    cov = [[1, 0.5], [0.5, 1]]
    hits = 0
    trials = 200
    for t in range(trials):
        xy = rng.multivariate_normal([0, 0], cov, size=60)
        ci = bootstrap_interval(xy[:, 0], xy[:, 1], "pearson", n_resamples=300, level=0.9, seed=t)
        hits += ci.lo <= 0.5 <= ci.hi
    assert 0.8 <= hits / trials <= 0.97


def test_bootstrap_drops_constant_resamples_and_counts_them() -> None:
    x = np.array([0, 0, 0, 0, 0, 0, 0, 1.0])  # a resample without the single 1 is constant
    y = np.array([0.1, 0.2, 0.1, 0.3, 0.2, 0.4, 0.3, 0.9])
    ci = bootstrap_interval(x, y, "spearman", n_resamples=400, seed=0)
    assert ci.status == "ok" and 0 < ci.dropped < 400 and ci.n_resamples == 400
    # (7/8)^8 of the resamples miss the 1: about 34 %
    assert ci.dropped / 400 == pytest.approx((7 / 8) ** 8, abs=0.08)


def _reliability(seed: int, annotators: int, units: int, levels: int, missing: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, levels, units)
    data = np.where(rng.random((annotators, units)) < 0.7, truth, rng.integers(0, levels, (annotators, units)))
    data = data.astype(float)
    data[rng.random(data.shape) < missing] = np.nan
    return data


@pytest.mark.parametrize("seed,annotators,levels,missing", [(0, 2, 2, 0.0), (1, 3, 2, 0.2), (2, 5, 3, 0.3),
                                                             (3, 4, 2, 0.5)])
def test_krippendorff_alpha_equals_reference_package(seed: int, annotators: int, levels: int,
                                                     missing: float) -> None:
    krippendorff = pytest.importorskip("krippendorff", reason="reference package (pip install leakbench[test])")
    data = _reliability(seed, annotators, 40, levels, missing)
    answers = {u: {f"a{a}": data[a, u] for a in range(annotators) if not np.isnan(data[a, u])} for u in range(40)}
    got = krippendorff_alpha_nominal(answers)
    ref = krippendorff.alpha(reliability_data=data, level_of_measurement="nominal")
    assert got.status == "ok" and got.annotators == annotators
    assert got.units == sum(len(a) >= 2 for a in answers.values())
    assert got.alpha == pytest.approx(ref, abs=1e-12)


def test_krippendorff_alpha_worked_cases() -> None:
    perfect = {u: {"a": u % 2, "b": u % 2} for u in range(6)}
    assert krippendorff_alpha_nominal(perfect).alpha == pytest.approx(1.0)
    one = krippendorff_alpha_nominal({u: {"only": 1} for u in range(5)})
    assert one.status == "undefined" and one.reason == "undefined (one annotator)" and one.alpha is None
    disjoint = krippendorff_alpha_nominal({0: {"a": 1}, 1: {"b": 0}})
    assert disjoint.status == "undefined" and "two annotators" in disjoint.reason
    same = krippendorff_alpha_nominal({u: {"a": 1, "b": 1} for u in range(4)})
    assert same.status == "undefined" and "same value" in same.reason


def test_forced_choice_agreement_by_hand_and_binomial_test() -> None:
    from bench.annotations.correlation import forced_choice_agreement

    diff = [0.3, -0.2, 0.1, 0.0, 0.5, -0.4, 0.2, 0.7]
    human = [1, -1, -1, 1, 1, 1, 1, 1]
    got = forced_choice_agreement(diff, human, n_resamples=500, seed=1)
    # agreements: yes, yes, no, tie (0.5), yes, no, yes, yes -> (5 + 0.5) / 8
    assert got.rate == pytest.approx(5.5 / 8) and got.n == 8 and got.ties == 1
    assert got.p == pytest.approx(stats.binomtest(5, 7, 0.5).pvalue)
    rng = np.random.default_rng(1)
    score = np.array([1, 1, 0, 0.5, 1, 0, 1, 1])
    boot = score[rng.integers(0, 8, (500, 8))].mean(axis=1)
    assert (got.lo, got.hi) == pytest.approx(tuple(np.quantile(boot, [0.025, 0.975])))
    assert forced_choice_agreement([], []).status == "undefined"
    with pytest.raises(ValueError):
        forced_choice_agreement([0.1], [0])
