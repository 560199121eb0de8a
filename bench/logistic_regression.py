"""A class-balanced binary logistic regression in numpy/scipy: one classifier shared by the `gender-accuracy` metric
and the `attribute-inference` attack (neither owns it, so it lives in the engine, not in a plugin module)."""

from __future__ import annotations

import numpy as np


class LogisticRegression:
    """Binary L2-regularised logistic regression on standardised features, classes weighted to balance
    (sklearn's LogisticRegression(C=1, class_weight='balanced') objective), fitted with scipy's L-BFGS-B."""

    def __init__(self, c: float = 1.0) -> None:
        self.c = float(c)
        self.mean = self.scale = self.coef = None
        self.bias = 0.0

    def fit(self, x: np.ndarray, y: np.ndarray) -> "LogisticRegression":
        from scipy.optimize import minimize
        from scipy.special import expit, log_expit

        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y).ravel().astype(np.float64)
        self.mean = x.mean(axis=0)
        self.scale = x.std(axis=0)
        self.scale[self.scale == 0] = 1.0
        z = (x - self.mean) / self.scale
        n, n1 = len(y), float(y.sum())
        w = np.where(y == 1, n / (2 * n1), n / (2 * (n - n1)))  # 'balanced' class weights
        sign = 2 * y - 1

        def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
            coef, bias = theta[:-1], theta[-1]
            margin = sign * (z @ coef + bias)
            value = self.c * float(-(w * log_expit(margin)).sum()) + 0.5 * float(coef @ coef)
            g = -self.c * w * sign * expit(-margin)
            return value, np.concatenate([z.T @ g + coef, [g.sum()]])

        res = minimize(loss, np.zeros(z.shape[1] + 1), jac=True, method="L-BFGS-B",
                       options={"maxiter": 1000, "gtol": 1e-8})
        self.coef, self.bias = res.x[:-1], float(res.x[-1])
        return self

    def decision(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, dtype=np.float64) - self.mean) / self.scale) @ self.coef + self.bias

    def predict(self, x: np.ndarray) -> np.ndarray:
        return (self.decision(x) > 0).astype(np.int64)
