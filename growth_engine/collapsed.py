r"""Exact collapsed (random effects integrated out) math for the gaussian growth model.

Model, for student i with centred times t_ij = week_ij - c::

    y_ij = a_i + b_i t_ij + e_ij,   e_ij ~ N(0, sigma^2 / w_ij),
    (a_i, b_i) ~ N((beta0, beta1), Sigma),  Sigma = L L',
    L = [[sd0, 0], [rho sd1, sd1 sqrt(1 - rho^2)]].

Integrating (a_i, b_i) out, y_i ~ N(X_i beta, V_i), V_i = sigma^2 I + Z Z', Z = X_i L, X_i = [1, t].
With r = y_i - X_i beta, u = X_i' r, w = L' u and the 2x2 SPD matrix

    M = sigma^2 I_2 + L' S L,    S = X_i' X_i = [[n, st], [st, stt]],

Woodbury and the matrix determinant lemma give

    log|V_i|       = (n - 2) log sigma^2 + log|M|
    r' V_i^{-1} r  = (r'r - w' M^{-1} w) / sigma^2

and the conditional ("posterior given the population parameters") of theta_i = (a_i, b_i) is

    theta_i | y_i  ~  N(beta + L M^{-1} w,  sigma^2 L M^{-1} L').

with w_ij the observation model's precision weights (1 in the plain model; see :mod:`.observation`) and
every sum weighted (S = X_i' W X_i, u = X_i' W r, n = sum w); log|V_i| then also gains -sum log w, and
n - 2 in it counts rows. No Sigma^{-1} is formed, so sd0, sd1 -> 0 or |rho| -> 1 are harmless. Every
quantity is written from the within-student centred statistics (see :mod:`growth_engine.stats`) so that
no large power sums are subtracted:

    u0   = n (ybar - beta0 - beta1 tbar)
    u1   = sty_c - beta1 stt_c + tbar u0
    r'r  = syy_c - 2 beta1 sty_c + beta1^2 stt_c + n (ybar - beta0 - beta1 tbar)^2
    |M|  = sigma^4 + sigma^2 tr(L'SL) + sd0^2 sd1^2 (1 - rho^2) n stt_c

Students sharing a time design (n, tbar, stt_c) can be summed exactly with per-group moments:
:func:`grouped_marginal_loglik` (the sampler's fast path) and :func:`conditional_linear` (the conditional
mean is affine in the student's (ybar, sty_c)).

All functions are *array-module generic*: pass ``xp=numpy`` (default) or ``xp=jax.numpy``. Parameters
broadcast against the per-student arrays, e.g. parameters of shape (D, 1) with N students give
per-student results of shape (D, N); :func:`marginal_loglik` then sums over the last axis -> (D,).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .stats import CENTRED_KEYS, RAW_KEYS, centred_from_raw

LOG_2PI = math.log(2.0 * math.pi)


def _arrays(stats: Any, xp: Any) -> dict[str, Any]:
    """Accept a StudentStats, a mapping with the centred keys, or a mapping with the raw sums."""
    d: Any
    if hasattr(stats, "arrays") and callable(stats.arrays):
        d = stats.arrays()
    else:
        d = stats
    if all(k in d for k in CENTRED_KEYS):
        out = {k: xp.asarray(d[k]) for k in CENTRED_KEYS}
    elif all(k in d for k in RAW_KEYS):
        out = centred_from_raw({k: xp.asarray(d[k]) for k in RAW_KEYS}, xp=xp)
    else:
        raise KeyError(f"stats must provide {CENTRED_KEYS} (preferred) or {RAW_KEYS}")
    # precision weights: the constant needs the row count and sum log w (unweighted: n and 0)
    out["n_rows"] = xp.asarray(d["n_rows"]) if "n_rows" in d else out["n"]
    out["log_w"] = xp.asarray(d["log_w"]) if "log_w" in d else 0.0 * out["n"]
    return out


def _design(n, tbar, stt_c, sd0, sd1, rho, sigma, xp):
    """Parameter x design quantities: L entries and M = sigma^2 I + L'SL (entries and determinant)."""
    s2 = sigma * sigma
    one_m_rho2 = (1.0 - rho) * (1.0 + rho)
    l11 = sd0
    l21 = rho * sd1
    l22 = sd1 * xp.sqrt(one_m_rho2)
    # G = L' S L, written with centred time sums
    h = l11 + l21 * tbar  # mean over the student's rows of z1 = l11 + l21 t
    g11 = n * h * h + l21 * l21 * stt_c
    g12 = l22 * (n * tbar * h + l21 * stt_c)
    g22 = l22 * l22 * (stt_c + n * tbar * tbar)
    det = s2 * s2 + s2 * (g11 + g22) + (sd0 * sd0) * (sd1 * sd1) * one_m_rho2 * n * stt_c
    return dict(s2=s2, l11=l11, l21=l21, l22=l22, m11=s2 + g11, m12=g12, m22=s2 + g22, det=det)


def _core(d, beta0, beta1, sd0, sd1, rho, sigma, xp):
    n, tbar, ybar = d["n"], d["tbar"], d["ybar"]
    stt_c, sty_c, syy_c = d["stt_c"], d["sty_c"], d["syy_c"]
    k = _design(n, tbar, stt_c, sd0, sd1, rho, sigma, xp)
    d0 = ybar - beta0 - beta1 * tbar  # mean residual of the student at the population line
    u0 = n * d0
    u1 = sty_c - beta1 * stt_c + tbar * u0
    k.update(n=n, w1=k["l11"] * u0 + k["l21"] * u1, w2=k["l22"] * u1, d0=d0, stt_c=stt_c, sty_c=sty_c, syy_c=syy_c)
    return k


def marginal_loglik_terms(
    stats: Any, beta0: Any, beta1: Any, sd0: Any, sd1: Any, rho: Any, sigma: Any, xp: Any = np
) -> Any:
    """Per-student exact marginal log-likelihood log N(y_i | X_i beta, sigma^2 I + X_i Sigma X_i').

    ``stats``: :class:`~growth_engine.stats.StudentStats` or a mapping of per-student arrays with keys
    ``n, tbar, ybar, stt_c, sty_c, syy_c`` (or the raw ``n, st, stt, sy, sty, syy``). Returns an array of
    shape ``broadcast(params, students)``.
    """
    d = _arrays(stats, xp)
    k = _core(d, beta0, beta1, sd0, sd1, rho, sigma, xp)
    return _terms(d, k, beta1, xp)[0]


def _terms(d: dict[str, Any], k: dict[str, Any], beta1: Any, xp: Any) -> tuple[Any, Any, Any]:
    """Per-student log-likelihood terms, and the r'r and w'M^{-1}w they are made of."""
    s2, det = k["s2"], k["det"]
    rr = k["syy_c"] - 2.0 * beta1 * k["sty_c"] + beta1 * beta1 * k["stt_c"] + k["n"] * k["d0"] * k["d0"]
    wMw = (k["m22"] * k["w1"] * k["w1"] - 2.0 * k["m12"] * k["w1"] * k["w2"] + k["m11"] * k["w2"] * k["w2"]) / det
    quad = (rr - wMw) / s2
    n_rows = d["n_rows"]
    return -0.5 * (n_rows * LOG_2PI + (n_rows - 2.0) * xp.log(s2) - d["log_w"] + xp.log(det) + quad), rr, wMw


def marginal_loglik(stats: Any, beta0: Any, beta1: Any, sd0: Any, sd1: Any, rho: Any, sigma: Any, xp: Any = np) -> Any:
    """Exact marginal log-likelihood of all students' scores given the population parameters.

    Sums :func:`marginal_loglik_terms` over the students (last axis). Scalars in -> scalar out;
    parameters of shape (D, 1) -> shape (D,). Parameters: beta0 = mean intercept *at the centre c*,
    beta1 = mean slope per week, sd0/sd1 = sds of the intercepts (at c) and slopes, rho = their
    correlation, sigma = residual sd.
    """
    return xp.sum(marginal_loglik_terms(stats, beta0, beta1, sd0, sd1, rho, sigma, xp=xp), axis=-1)


def marginal_loglik_gradient(
    stats: Any, beta0: float, beta1: float, sd0: float, sd1: float, rho: float, sigma: float
) -> tuple[float, np.ndarray]:
    """:func:`marginal_loglik` (numpy, scalar parameters) and its exact gradient with respect to
    ``(beta0, beta1, log sd0, log sd1, atanh rho, log sigma)``, in about twice the time of the value alone.

    With g = X'V^{-1} r = (u - S L v) / sigma^2 and H = X'V^{-1} X = (S - S L P L' S) / sigma^2, where
    P = M^{-1} and v = P w (Woodbury, as for the value), the standard identities of the gaussian likelihood
    give d/dbeta = g, d/dSigma = (g g' - H) / 2 and, with tr(V^{-1} W^{-1}) and r'V^{-1} W^{-1} V^{-1} r
    written in the same 2x2 terms, d/dlog sigma = (r'r - w'Pw) / sigma^2 - v'v - rows + 2 - sigma^2 tr P.
    The chain rule through Sigma = L L' then needs no inverse of L, so tiny sds are harmless here too.
    """
    d = _arrays(stats, np)
    k = _core(d, beta0, beta1, sd0, sd1, rho, sigma, np)
    s2, det, l11, l21, l22, n, tbar = k["s2"], k["det"], k["l11"], k["l21"], k["l22"], k["n"], d["tbar"]
    p11, p12, p22 = k["m22"] / det, -k["m12"] / det, k["m11"] / det
    w1, w2 = k["w1"], k["w2"]
    v1, v2 = p11 * w1 + p12 * w2, p12 * w1 + p22 * w2
    value, rr, wPw = _terms(d, k, beta1, np)
    n_rows = d["n_rows"]
    # S = X'WX, and S L (its columns: S times L's columns)
    s00, s01, s11 = n, n * tbar, k["stt_c"] + n * tbar * tbar
    sl00, sl10 = s00 * l11 + s01 * l21, s01 * l11 + s11 * l21
    sl01, sl11 = s01 * l22, s11 * l22
    u0 = n * k["d0"]
    u1 = k["sty_c"] - beta1 * k["stt_c"] + tbar * u0
    g0 = (u0 - sl00 * v1 - sl01 * v2) / s2
    g1 = (u1 - sl10 * v1 - sl11 * v2) / s2

    def slpls(i0: Any, i1: Any, j0: Any, j1: Any) -> Any:  # (S L P L' S)_ij from rows i, j of S L
        return p11 * i0 * j0 + p12 * (i0 * j1 + i1 * j0) + p22 * i1 * j1

    h00 = (s00 - slpls(sl00, sl01, sl00, sl01)) / s2
    h01 = (s01 - slpls(sl00, sl01, sl10, sl11)) / s2
    h11 = (s11 - slpls(sl10, sl11, sl10, sl11)) / s2
    G00, G01, G11 = (np.sum(a) / 2.0 for a in (g0 * g0 - h00, g0 * g1 - h01, g1 * g1 - h11))
    # dl/dL = 2 G L on L's lower triangle, then to (log sd0, log sd1, atanh rho)
    dl11, dl21, dl22 = 2.0 * (G00 * l11 + G01 * l21), 2.0 * (G01 * l11 + G11 * l21), 2.0 * G11 * l22
    root = np.sqrt((1.0 - rho) * (1.0 + rho))
    gradient = np.array(
        [
            np.sum(g0),
            np.sum(g1),
            l11 * dl11,
            l21 * dl21 + l22 * dl22,
            (1.0 - rho * rho) * sd1 * (dl21 - rho / root * dl22),
            np.sum((rr - wPw) / s2 - v1 * v1 - v2 * v2 - n_rows + 2.0 - s2 * (p11 + p22)),
        ]
    )
    return float(np.sum(value)), gradient


def conditional_moments(
    stats: Any, beta0: Any, beta1: Any, sd0: Any, sd1: Any, rho: Any, sigma: Any, xp: Any = np
) -> tuple[Any, Any, Any, Any, Any]:
    """Conditional normal of (a_i, b_i) | y_i, population parameters, as broadcast components.

    Returns ``(ma, mb, vaa, vab, vbb)``: means of a_i (level at the centre c) and b_i (slope), and the
    entries of their 2x2 covariance. Shapes as in :func:`marginal_loglik_terms`.
    """
    d = _arrays(stats, xp)
    k = _core(d, beta0, beta1, sd0, sd1, rho, sigma, xp)
    det, m11, m12, m22 = k["det"], k["m11"], k["m12"], k["m22"]
    w1, w2 = k["w1"], k["w2"]
    l11, l21, l22, s2 = k["l11"], k["l21"], k["l22"], k["s2"]
    v1 = (m22 * w1 - m12 * w2) / det
    v2 = (m11 * w2 - m12 * w1) / det
    ma = beta0 + l11 * v1
    mb = beta1 + l21 * v1 + l22 * v2
    p11 = m22 / det
    p12 = -m12 / det
    p22 = m11 / det
    vaa = s2 * l11 * l11 * p11
    vab = s2 * l11 * (l21 * p11 + l22 * p12)
    vbb = s2 * (l21 * l21 * p11 + 2.0 * l21 * l22 * p12 + l22 * l22 * p22)
    return ma, mb, vaa, vab, vbb


def conditional_effects(
    stats: Any, beta0: Any, beta1: Any, sd0: Any, sd1: Any, rho: Any, sigma: Any, xp: Any = np
) -> tuple[Any, Any]:
    """Per-student conditional mean ``(..., N, 2)`` and covariance ``(..., N, 2, 2)`` of (a_i, b_i).

    a_i is the student's level at the centred time 0 (week c), b_i the slope per week, given the
    population parameters (exact: normal-normal conjugacy). See :func:`conditional_moments` for the
    component form, which avoids building the stacked arrays.
    """
    ma, mb, vaa, vab, vbb = conditional_moments(stats, beta0, beta1, sd0, sd1, rho, sigma, xp=xp)
    ma, mb, vaa, vab, vbb = xp.broadcast_arrays(ma, mb, vaa, vab, vbb)
    mean = xp.stack([ma, mb], axis=-1)
    cov = xp.stack([xp.stack([vaa, vab], axis=-1), xp.stack([vab, vbb], axis=-1)], axis=-2)
    return mean, cov


def _gain(k):
    """K = L M^{-1} L' (so that the conditional covariance is sigma^2 K): entries kaa, kab, kbb."""
    det, l11, l21, l22 = k["det"], k["l11"], k["l21"], k["l22"]
    p11 = k["m22"] / det
    p12 = -k["m12"] / det
    p22 = k["m11"] / det
    kaa = l11 * l11 * p11
    kab = l11 * (l21 * p11 + l22 * p12)
    kbb = l21 * l21 * p11 + 2.0 * l21 * l22 * p12 + l22 * l22 * p22
    return kaa, kab, kbb


def conditional_linear(
    design: Any, beta0: Any, beta1: Any, sd0: Any, sd1: Any, rho: Any, sigma: Any, xp: Any = np
) -> dict[str, Any]:
    """The conditional mean of (a_i, b_i) as an affine function of the student's (ybar, sty_c).

    Given the design (keys ``n, tbar, stt_c`` of ``design``) and the parameters, the conditional normal
    of theta_i = (a_i, b_i) is N(beta + K u_i, sigma^2 K) with K = L M^{-1} L' and u_i = X_i'(y_i - X_i beta)
    = U_y ybar_i + U_s sty_c_i + U_0. Returns a dict of broadcast arrays

        f0a, f0b : mean at ybar = 0, sty_c = 0;   fya, fyb : d mean / d ybar;   fsa, fsb : d mean / d sty_c
        vaa, vab, vbb : conditional covariance (independent of y)

    so that  E[a_i] = f0a + fya ybar_i + fsa sty_c_i  (same for b with the *b entries).
    Students with the same design share all of these, which makes Rao-Blackwellization O(#designs).
    """
    n, tbar, stt_c = (xp.asarray(design[k]) for k in ("n", "tbar", "stt_c"))
    k = _design(n, tbar, stt_c, sd0, sd1, rho, sigma, xp)
    kaa, kab, kbb = _gain(k)
    e = beta0 + beta1 * tbar
    u00 = -n * e  # U_0, the part of u that does not depend on y
    u01 = tbar * u00 - beta1 * stt_c
    s2 = k["s2"]
    return {
        "f0a": beta0 + kaa * u00 + kab * u01,
        "f0b": beta1 + kab * u00 + kbb * u01,
        "fya": n * (kaa + kab * tbar),
        "fyb": n * (kab + kbb * tbar),
        "fsa": kab + 0.0 * n,
        "fsb": kbb + 0.0 * n,
        "vaa": s2 * kaa,
        "vab": s2 * kab,
        "vbb": s2 * kbb,
    }


def grouped_marginal_loglik_terms(
    groups: Any, beta0: Any, beta1: Any, sd0: Any, sd1: Any, rho: Any, sigma: Any, xp: Any = np
) -> Any:
    """Marginal log-likelihood summed within each design group (see stats.DesignGroups); exact.

    Equals the sum of :func:`marginal_loglik_terms` over each group's students, at O(1) cost per group.
    """
    d = groups.arrays() if hasattr(groups, "arrays") else groups
    m, n, tbar, stt_c = (xp.asarray(d[k]) for k in ("count", "n", "tbar", "stt_c"))
    yb, sc, qyy, qys, qss, R = (xp.asarray(d[k]) for k in ("ybar", "sty_c", "qyy", "qys", "qss", "syy_c"))
    k = _design(n, tbar, stt_c, sd0, sd1, rho, sigma, xp)
    l11, l21, l22, s2, det = k["l11"], k["l21"], k["l22"], k["s2"], k["det"]
    d0 = yb - beta0 - beta1 * tbar
    u0 = n * d0
    u1 = sc - beta1 * stt_c + tbar * u0
    # U = sum_i u_i u_i' = m u_bar u_bar' + scatter of u (u is affine in (ybar_i, sty_c_i))
    nq = n * qyy
    U00 = m * u0 * u0 + n * nq
    U01 = m * u0 * u1 + n * (qys + tbar * nq)
    U11 = m * u1 * u1 + qss + 2.0 * tbar * n * qys + tbar * tbar * n * nq
    W11 = l11 * l11 * U00 + 2.0 * l11 * l21 * U01 + l21 * l21 * U11
    W12 = l22 * (l11 * U01 + l21 * U11)
    W22 = l22 * l22 * U11
    trPW = (k["m22"] * W11 - 2.0 * k["m12"] * W12 + k["m11"] * W22) / det
    rr = R - 2.0 * beta1 * m * sc + m * beta1 * beta1 * stt_c + n * (m * d0 * d0 + qyy)
    rows = xp.asarray(d["n_rows"]) if "n_rows" in d else m * n
    log_w = xp.asarray(d["log_w"]) if "log_w" in d else 0.0
    constant = rows * LOG_2PI + (rows - 2.0 * m) * xp.log(s2) - log_w
    return -0.5 * (constant + m * xp.log(det) + (rr - trPW) / s2)


def grouped_marginal_loglik(
    groups: Any, beta0: Any, beta1: Any, sd0: Any, sd1: Any, rho: Any, sigma: Any, xp: Any = np
) -> Any:
    """Same value as :func:`marginal_loglik` on the students, computed from design groups (fast path)."""
    return xp.sum(grouped_marginal_loglik_terms(groups, beta0, beta1, sd0, sd1, rho, sigma, xp=xp), axis=-1)


def population_cov(sd0: Any, sd1: Any, rho: Any) -> tuple[Any, Any, Any]:
    """Sigma components (s00, s01, s11) at the centre."""
    return sd0 * sd0, rho * sd0 * sd1, sd1 * sd1


def to_week_scale(mean_a: Any, mean_b: Any, vaa: Any, vab: Any, vbb: Any, center: float) -> tuple[Any, ...]:
    """Move (level at c, slope) moments to (level at week 0, slope) with A = [[1, -c], [0, 1]]."""
    c = center
    return (mean_a - c * mean_b, mean_b, vaa - 2.0 * c * vab + c * c * vbb, vab - c * vbb, vbb)
