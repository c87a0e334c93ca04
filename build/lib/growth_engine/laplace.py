"""Where the chains start and how they are preconditioned: moment estimates, the posterior mode and a
square root of the inverse Hessian there (a Laplace approximation used only to precondition NUTS)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from scipy import optimize

from .model import potential
from .stats import StudentStats


def moment_estimates(stats: StudentStats) -> dict[str, float]:
    """Cheap method-of-moments values of the population parameters (start of the mode search)."""
    n, tbar, ybar = stats.n, stats.tbar, stats.ybar
    stt_c, sty_c, syy_c = stats.stt_c, stats.sty_c, stats.syy_c
    ok = stt_c > 1e-12
    three = ok & (n >= 3)
    b_i = np.where(ok, sty_c / np.where(ok, stt_c, 1.0), np.nan)
    rss = syy_c - np.where(ok, sty_c * np.where(ok, b_i, 0.0), 0.0)
    if three.any():
        sigma2 = float(np.sum(rss[three]) / np.sum(n[three] - 2.0))
    else:
        sigma2 = float(np.sum(syy_c) / max(np.sum(n - 1.0), 1.0))
    if not np.isfinite(sigma2) or sigma2 <= 0:
        sigma2 = 0.01
    beta1 = float(np.sum(sty_c) / np.sum(stt_c)) if np.sum(stt_c) > 0 else 0.0
    a_i = ybar - beta1 * tbar
    beta0 = float(np.mean(a_i))
    var0 = float(np.var(a_i) - sigma2 * np.mean(1.0 / n)) if a_i.size > 1 else 0.0
    var1 = float(np.var(b_i[ok]) - sigma2 * np.mean(1.0 / stt_c[ok])) if ok.sum() > 1 else 0.0
    sd0 = np.sqrt(var0) if var0 > 0 else 0.05
    sd1 = np.sqrt(var1) if var1 > 0 else 0.01
    return {
        "beta0": float(np.clip(beta0, -5, 5)),
        "beta1": float(np.clip(beta1, -1, 1)),
        "sd0": float(np.clip(sd0, 1e-3, 2.0)),
        "sd1": float(np.clip(sd1, 1e-4, 0.5)),
        "rho": 0.0,
        "sigma": float(np.clip(np.sqrt(sigma2), 1e-3, 2.0)),
    }


def _fd_hessian(grad: Callable[[np.ndarray], np.ndarray], x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Central differences of the exact gradient (symmetrized)."""
    k = x.shape[0]
    H = np.empty((k, k))
    for i in range(k):
        e = np.zeros(k)
        e[i] = h[i]
        H[:, i] = (grad(x + e) - grad(x - e)) / (2.0 * h[i])
    return 0.5 * (H + H.T)


def _step(x: np.ndarray) -> np.ndarray:
    return 1e-5 * np.maximum(1.0, np.abs(x))


def _find_mode(fun: Callable, hess: Callable, start: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """Trust-region Newton from ``start``; falls back to the start point if the search fails."""
    x = np.asarray(start, dtype=np.float64)
    try:
        res = optimize.minimize(
            fun, x, jac=True, hess=hess, method="trust-exact", options={"gtol": 1e-5, "maxiter": 100}
        )
        if np.all(np.isfinite(res.x)) and np.isfinite(res.fun):
            x = res.x
        info = {"converged": bool(res.success), "iterations": int(res.nit), "grad_norm": float(np.max(np.abs(res.jac)))}
    except Exception as e:  # pragma: no cover - defensive: fall back to the start point
        info = {"converged": False, "error": str(e)}
    return x, info


def _inverse_sqrt(grad: Callable, x: np.ndarray, info: dict[str, Any]) -> np.ndarray:
    """Cholesky factor of the inverse Hessian at x (eigenvalues floored); refined once with steps on the
    posterior's own scale (a small fraction of a standard deviation)."""
    H = _fd_hessian(grad, x, _step(x))
    w, V = np.linalg.eigh(H)
    if np.all(np.isfinite(w)) and np.all(w > 0):
        sd = np.sqrt(np.maximum(np.diag((V / w) @ V.T), 1e-300))
        H2 = _fd_hessian(grad, x, np.maximum(1e-2 * sd, 1e-9 * np.maximum(1.0, np.abs(x))))
        w2, V2 = np.linalg.eigh(H2)
        if np.all(np.isfinite(w2)) and np.all(w2 > 0):
            w, V = w2, V2
    if not np.all(np.isfinite(w)):
        w, V = np.ones(x.shape[0]), np.eye(x.shape[0])
    floor = max(float(np.max(np.abs(w))) * 1e-10, 1e-8)
    info["hessian_clipped"] = bool(np.any(w < floor))
    w = np.maximum(w, floor)
    return np.linalg.cholesky((V / w) @ V.T)


def laplace(data: Mapping[str, Any], start: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, Any], float]:
    """Posterior mode of the unconstrained 6-vector and a square root of the inverse Hessian there.

    Used only to precondition NUTS (affine reparametrization v = mode + chol eps, whose constant Jacobian
    leaves the posterior unchanged), so it need not be exact; the Hessian is a central difference of the
    exact (autodiff) gradient, which saves compiling a second program. Returns
    (mode, chol, info, compile_seconds).
    """
    t0 = time.perf_counter()
    jd = {k: jnp.asarray(v) for k, v in data.items()}
    vg = jax.jit(jax.value_and_grad(potential)).lower(jnp.asarray(start), jd).compile()
    compile_s = time.perf_counter() - t0

    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        v, g = vg(jnp.asarray(x), jd)
        return float(v), np.asarray(g, dtype=np.float64)

    def grad(x: np.ndarray) -> np.ndarray:
        return fun(x)[1]

    x, info = _find_mode(fun, lambda x: _fd_hessian(grad, x, _step(x)), start)
    return x, _inverse_sqrt(grad, x, info), info, compile_s
