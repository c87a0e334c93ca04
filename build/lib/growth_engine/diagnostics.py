"""Rank-normalized split R-hat and bulk/tail ESS (Vehtari, Gelman, Simpson, Carpenter & Buerkner 2021).

A line-by-line numpy port of the R package ``posterior`` (1.4.0: ``rhat``, ``ess_bulk``, ``ess_tail``,
as used by ``posterior::summarise_draws``), so the collapsed engine reports the same numbers as the
brms engine. Checked against R's posterior in the test-suite when R is available.
Input arrays are ``(chains, draws)``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from scipy.special import ndtri
from scipy.stats import rankdata

_EPS = np.finfo(np.float64).eps


def _should_return_nan(x) -> bool:
    return (not np.all(np.isfinite(x))) or abs(np.max(x) - np.min(x)) < _EPS


def split_chains(x: Any) -> np.ndarray:
    """(chains, draws) -> (2*chains, floor(draws/2)); the middle draw is dropped when draws is odd."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    n = x.shape[1]
    if n == 1:
        return x
    h = n // 2
    return np.concatenate([x[:, :h], x[:, n - h :]], axis=0)


def z_scale(x: Any, c: float = 3.0 / 8.0) -> np.ndarray:
    """Rank-normalize over all chains jointly: Phi^-1((rank - 3/8) / (S + 1/4)), average ranks for ties."""
    x = np.asarray(x, dtype=np.float64)
    r = rankdata(x, method="average", axis=None).reshape(x.shape)
    S = x.size
    return ndtri((r - c) / (S - 2.0 * c + 1.0))


def _autocovariance(x) -> np.ndarray:
    n = x.shape[0]
    varx = np.var(x, ddof=1)
    if varx == 0:
        return np.zeros(n)
    m = 1
    while m < 2 * n:
        m *= 2
    yc = x - x.mean()
    f = np.fft.rfft(yc, n=m)
    ac = np.fft.irfft(np.abs(f) ** 2, n=m)[:n]
    return ac / ac[0] * varx * (n - 1) / n


def _ess(x) -> float:
    """posterior:::.ess on (chains, iterations)."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    nchains, niter = x.shape
    if niter < 3 or _should_return_nan(x):
        return float("nan")
    acov = np.stack([_autocovariance(x[j]) for j in range(nchains)], axis=1)  # (niter, nchains)
    acov_means = acov.mean(axis=1)
    mean_var = acov_means[0] * niter / (niter - 1)
    var_plus = mean_var * (niter - 1) / niter
    if nchains > 1:
        var_plus += np.var(x.mean(axis=1), ddof=1)
    rho_hat_t = np.zeros(niter)
    t = 0
    rho_hat_even = 1.0
    rho_hat_t[t] = rho_hat_even
    rho_hat_odd = 1.0 - (mean_var - acov_means[t + 1]) / var_plus
    rho_hat_t[t + 1] = rho_hat_odd
    # Geyer's initial positive sequence
    while t < niter - 5 and not np.isnan(rho_hat_even + rho_hat_odd) and rho_hat_even + rho_hat_odd > 0:
        t += 2
        rho_hat_even = 1.0 - (mean_var - acov_means[t]) / var_plus
        rho_hat_odd = 1.0 - (mean_var - acov_means[t + 1]) / var_plus
        if rho_hat_even + rho_hat_odd >= 0:
            rho_hat_t[t] = rho_hat_even
            rho_hat_t[t + 1] = rho_hat_odd
    max_t = t
    if rho_hat_even > 0:
        rho_hat_t[max_t] = rho_hat_even
    # Geyer's initial monotone sequence
    t = 0
    while t <= max_t - 4:
        t += 2
        if rho_hat_t[t] + rho_hat_t[t + 1] > rho_hat_t[t - 2] + rho_hat_t[t - 1]:
            rho_hat_t[t] = (rho_hat_t[t - 2] + rho_hat_t[t - 1]) / 2.0
            rho_hat_t[t + 1] = rho_hat_t[t]
    ess = nchains * niter
    # R's rho_hat_t[1:max_t] is c(1, 0) -> rho_hat_t[1] when max_t == 0; mirror that quirk exactly
    head = rho_hat_t[:max_t] if max_t > 0 else rho_hat_t[:1]
    tau_hat = -1.0 + 2.0 * np.sum(head) + rho_hat_t[max_t]
    tau_bound = 1.0 / np.log10(ess)
    if tau_hat < tau_bound:
        warnings.warn("The ESS has been capped to avoid unstable estimates.", RuntimeWarning, stacklevel=2)
        tau_hat = tau_bound
    return float(ess / tau_hat)


def _rhat(x) -> float:
    """posterior:::.rhat on (chains, iterations)."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    if _should_return_nan(x):
        return float("nan")
    nchains, niter = x.shape
    chain_mean = x.mean(axis=1)
    chain_var = x.var(axis=1, ddof=1)
    var_between = niter * np.var(chain_mean, ddof=1) if nchains > 1 else 0.0
    var_within = chain_var.mean()
    return float(np.sqrt((var_between / var_within + niter - 1) / niter))


def rhat(x: Any) -> float:
    """Rank-normalized split R-hat: max of bulk and folded (tail) versions."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    if _should_return_nan(x):
        return float("nan")
    bulk = _rhat(z_scale(split_chains(x)))
    folded = np.abs(x - np.median(x))
    tail = _rhat(z_scale(split_chains(folded)))
    return float(max(bulk, tail))


def ess_bulk(x: Any) -> float:
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    if _should_return_nan(x):
        return float("nan")
    return _ess(z_scale(split_chains(x)))


def ess_quantile(x: Any, prob: float) -> float:
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    if _should_return_nan(x):
        return float("nan")
    if prob == 1:
        prob = (x.size - 0.5) / x.size
    ind = (x <= np.quantile(x, prob)).astype(np.float64)
    return _ess(split_chains(ind))


def ess_tail(x: Any) -> float:
    """min of the ESS of the 5% and 95% quantile indicators."""
    return float(np.min([ess_quantile(x, 0.05), ess_quantile(x, 0.95)]))  # NaN propagates like R


def summarise(x: Any) -> dict[str, float]:
    """{"rhat", "ess_bulk", "ess_tail"} for one parameter's (chains, draws) array."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return {"rhat": rhat(x), "ess_bulk": ess_bulk(x), "ess_tail": ess_tail(x)}
