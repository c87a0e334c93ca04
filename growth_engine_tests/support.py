"""Brute-force references and random data shared by the engine's tests (not a test module)."""

from __future__ import annotations

import numpy as np
from scipy.stats import multivariate_normal

PARAMS = ("beta0", "beta1", "sd0", "sd1", "rho", "sigma")

PARAM_CASES = [
    dict(beta0=0.4, beta1=0.03, sd0=0.2, sd1=0.04, rho=-0.6, sigma=0.1),
    dict(beta0=0.7, beta1=-0.01, sd0=0.05, sd1=0.002, rho=0.3, sigma=0.2),
    dict(beta0=0.5, beta1=0.0, sd0=0.3, sd1=0.1, rho=0.999, sigma=0.02),  # nearly singular Sigma
    dict(beta0=0.1, beta1=0.05, sd0=1e-4, sd1=1e-5, rho=-0.2, sigma=0.15),  # tiny random effects
    dict(beta0=0.5, beta1=0.02, sd0=0.5, sd1=0.2, rho=0.0, sigma=0.01),  # data >> prior
]


def sigma_matrix(p):
    c01 = p["rho"] * p["sd0"] * p["sd1"]
    return np.array([[p["sd0"] ** 2, c01], [c01, p["sd1"] ** 2]])


def dense_student(t, y, p, weight=None):
    """Dense log N(y | X beta, sigma^2 W^-1 + X Sigma X') (W = diag(weight), default I), and the
    conditional mean/cov of (a, b)."""
    X = np.c_[np.ones_like(t), t]
    S = sigma_matrix(p)
    w = np.ones_like(t) if weight is None else np.asarray(weight, dtype=float)
    V = p["sigma"] ** 2 * np.diag(1.0 / w) + X @ S @ X.T
    ll = multivariate_normal(X @ [p["beta0"], p["beta1"]], V).logpdf(y)
    beta = np.array([p["beta0"], p["beta1"]])
    # conditional via the joint normal of (theta, y): no Sigma^{-1} needed
    K = S @ X.T @ np.linalg.inv(V)
    mean = beta + K @ (y - X @ beta)
    cov = S - K @ X @ S
    return ll, mean, cov


def random_rows(rng, n_students=40, n_weeks=12):
    rows = []
    for i in range(n_students):
        n = int(rng.integers(1, 9))
        kind = i % 6
        if kind == 0:
            w = rng.choice(n_weeks, size=n, replace=True)  # repeated weeks
        elif kind == 1:
            w = np.full(n, int(rng.integers(0, n_weeks)))  # all rows in one week (stt_c = 0)
        else:
            w = rng.choice(n_weeks, size=min(n, n_weeks), replace=False)
        for x in w:
            rows.append((f"st{i:03d}", int(x), float(rng.uniform(0, 1))))
    rng.shuffle(rows)
    s, w, y = map(np.array, zip(*rows, strict=True))
    return s, w, y
