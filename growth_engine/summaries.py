"""Summaries of the posterior draws: Rao-Blackwellized per-student records, the population's posterior
summary, and the draws moved to the caller's week scale.

Student-level summaries are Rao-Blackwellized: for every posterior draw the exact conditional normal of
(a_i, b_i) is used and the draws are pooled with the law of total (co)variance.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .collapsed import conditional_linear
from .state import PARAM_NAMES, draw_subset
from .stats import DesignGroups, StudentStats, design_groups

_F_KEYS = ("ma", "fya", "fsa", "mb", "fyb", "fsb")
_V_KEYS = ("vaa", "vab", "vbb")
_DESIGN_KEYS = ("n", "tbar", "stt_c", "ybar", "sty_c")
#: design group x draw cells the Rao-Blackwellization may cost; beyond that it averages over an evenly spaced
#: subset of the draws (at least ``MIN_RB_DRAWS``). Only cohorts of very many design groups get there (with
#: the attempts model nearly every student is a group of its own: 100,000 students average over 100 draws,
#: 0.5 s where all 1,000 took 2.5 s), and for them the draws' spread, which the subset estimates, is small
#: next to each student's own.
RB_CELLS = 10_000_000
MIN_RB_DRAWS = 50
#: group x draw cells per block: small enough that a block's temporaries stay in the CPU's cache (100,000
#: groups x 101 draws: 0.1 s in blocks of 2,048 groups, 1.1 s in blocks of 32,768)
RB_CHUNK_CELLS = 131_072


@jax.jit
def _rb_groups(design, draws):
    """Per design group: mean over draws of the conditional-mean coefficients and conditional covariance,
    and the (divisor D) covariance over draws of the coefficient vectors (ma, fya, fsa | mb, fyb, fsb),
    where ma/mb are the conditional means of a student at the group's mean (ybar, sty_c)."""
    p = {k: draws[k][:, None] for k in PARAM_NAMES}
    f = conditional_linear(design, p["beta0"], p["beta1"], p["sd0"], p["sd1"], p["rho"], p["sigma"], xp=jnp)
    vec = {
        "ma": f["f0a"] + f["fya"] * design["ybar"] + f["fsa"] * design["sty_c"],
        "mb": f["f0b"] + f["fyb"] * design["ybar"] + f["fsb"] * design["sty_c"],
        "fya": f["fya"],
        "fsa": f["fsa"],
        "fyb": f["fyb"],
        "fsb": f["fsb"],
    }
    mean = {k: jnp.mean(vec[k], axis=0) for k in _F_KEYS}
    cen = {k: vec[k] - mean[k] for k in _F_KEYS}
    cov = {}
    for i, a in enumerate(_F_KEYS):
        for b in _F_KEYS[i:]:
            cov[a + "*" + b] = jnp.mean(cen[a] * cen[b], axis=0)
    ec = {k: jnp.mean(f[k], axis=0) for k in _V_KEYS}
    return mean, cov, ec


def _chunk_size(G: int, D: int, max_elements: int) -> int:
    chunk = int(max(1, min(G, max_elements // max(D, 1))))
    size = 1
    while size < chunk:
        size *= 2
    return size


def _group_moments(groups: DesignGroups, draws: Mapping[str, Any], max_elements: int) -> dict[str, np.ndarray]:
    """:func:`_rb_groups` over all design groups, in chunks of groups x draws bounded by ``max_elements``
    (the last chunk padded with a harmless dummy design). Returns one (G,) array per key."""
    G = groups.n_groups
    d = {k: jnp.asarray(np.asarray(draws[k], dtype=np.float64)) for k in PARAM_NAMES}
    chunk = _chunk_size(G, int(np.asarray(draws["beta0"]).shape[0]), max_elements)
    ga = {k: getattr(groups, k) for k in _DESIGN_KEYS}
    out: dict[str, np.ndarray] = {}
    for start in range(0, G, chunk):
        stop = min(start + chunk, G)
        sl = {}
        for k, v in ga.items():
            a = v[start:stop]
            if stop - start < chunk:
                a = np.concatenate([a, np.full(chunk - (stop - start), 1.0 if k == "n" else 0.0)])
            sl[k] = jnp.asarray(a)
        for part in _rb_groups(sl, d):
            for k, v in part.items():
                out.setdefault(k, np.empty(G))[start:stop] = np.asarray(v)[: stop - start]
    return out


def rao_blackwell_students(
    stats: StudentStats,
    draws: Mapping[str, Any],
    groups: DesignGroups | None = None,
    max_elements: int = RB_CHUNK_CELLS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Posterior mean and covariance of (a_i at c, b_i) for every student, exact given the draws.

    mean = average over draws of the conditional means; cov = average conditional covariance + covariance
    over draws of the conditional means (law of total covariance, divisor D; see ``RB_CELLS`` for very large
    cohorts). Because the conditional mean
    is affine in (ybar_i, sty_c_i) with coefficients shared by a design group, the per-draw work is done
    once per group (chunks of groups x draws bounded by ``max_elements``) and the per-student step is O(1).
    Returns (mean_a, mean_b, var_a, cov_ab, var_b), each (N,).
    """
    groups = design_groups(stats) if groups is None else groups
    m = _group_moments(groups, draw_subset(draws, groups.n_groups, RB_CELLS, MIN_RB_DRAWS), max_elements)
    g = groups.group
    dy = stats.ybar - groups.ybar[g]
    ds = stats.sty_c - groups.sty_c[g]
    mean_a = m["ma"][g] + m["fya"][g] * dy + m["fsa"][g] * ds
    mean_b = m["mb"][g] + m["fyb"][g] * dy + m["fsb"][g] * ds
    vec_a = ("ma", "fya", "fsa")
    vec_b = ("mb", "fyb", "fsb")
    x = (np.ones_like(dy), dy, ds)

    def cv(a: str, b: str) -> np.ndarray:
        k = a + "*" + b if a + "*" + b in m else b + "*" + a
        return m[k][g]

    def quad(va: tuple[str, ...], vb: tuple[str, ...]) -> Any:
        return sum(x[i] * x[j] * cv(va[i], vb[j]) for i in range(3) for j in range(3))

    var_a = m["vaa"][g] + quad(vec_a, vec_a)
    cov_ab = m["vab"][g] + quad(vec_a, vec_b)
    var_b = m["vbb"][g] + quad(vec_b, vec_b)
    return mean_a, mean_b, var_a, cov_ab, var_b


def _summ(x: Any) -> dict[str, float]:
    x = np.asarray(x, dtype=np.float64)
    q = np.quantile(x, [0.025, 0.975])
    return {
        "estimate": float(np.mean(x)),
        "error": float(np.std(x, ddof=1)) if x.size > 1 else float("nan"),
        "q2.5": float(q[0]),
        "q97.5": float(q[1]),
    }


def week_scale_draws(draws: Mapping[str, Any], center: float) -> dict[str, np.ndarray]:
    """Per-draw population parameters on the caller's week scale (A Sigma A', A = [[1, -c], [0, 1]])."""
    b0, b1, s0, s1, r = (np.asarray(draws[k]) for k in ("beta0", "beta1", "sd0", "sd1", "rho"))
    c = center
    cov01 = r * s0 * s1
    var0w = s0 * s0 - 2.0 * c * cov01 + c * c * s1 * s1
    sd0w = np.sqrt(np.maximum(var0w, 0.0))
    cov_w = cov01 - c * s1 * s1
    with np.errstate(divide="ignore", invalid="ignore"):
        cor_w = np.clip(cov_w / (sd0w * s1), -1.0, 1.0)
    return {
        "Intercept": b0 - c * b1,
        "week": b1,
        "sd_Intercept": sd0w,
        "sd_week": s1,
        "cor_Intercept_week": cor_w,
        "sigma": np.asarray(draws["sigma"]),
    }


def posterior_summary(draws: Mapping[str, Any], center: float) -> dict[str, Any]:
    """The contract's ``posterior_summary``: week-scale parameters plus the centred ones."""
    w = week_scale_draws(draws, center)
    out: dict[str, Any] = {k: _summ(v) for k, v in w.items()}
    out["centered"] = {
        "Intercept": _summ(draws["beta0"]),
        "sd_Intercept": _summ(draws["sd0"]),
        "cor_Intercept_week": _summ(draws["rho"]),
    }
    return out


STUDENT_COLUMNS = ("student", "intercept_mean", "intercept_sd", "slope_mean", "slope_sd", "cor", "n_weeks")


def student_summary_columns(
    stats: StudentStats, draws: Mapping[str, Any], groups: DesignGroups | None = None
) -> dict[str, np.ndarray]:
    """The contract's per-student summaries as columns (``STUDENT_COLUMNS``; week-0 intercept, slope, their
    sds and correlation), one entry per student of ``stats``."""
    ma, mb, vaa, vab, vbb = rao_blackwell_students(stats, draws, groups=groups)
    c = stats.center
    im = ma - c * mb
    iv = vaa - 2.0 * c * vab + c * c * vbb
    icov = vab - c * vbb
    isd = np.sqrt(np.maximum(iv, 0.0))
    ssd = np.sqrt(np.maximum(vbb, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        cor = np.clip(icov / (isd * ssd), -1.0, 1.0)
    values = (stats.ids, im, isd, mb, ssd, cor, stats.n_weeks.astype(np.int64))
    return dict(zip(STUDENT_COLUMNS, values, strict=True))


def summary_records(columns: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
    """Per-student records (the JSON body's ``students``) from :func:`student_summary_columns`."""
    keys = STUDENT_COLUMNS
    return [dict(zip(keys, row, strict=True)) for row in zip(*(columns[k].tolist() for k in keys), strict=True)]


def student_summaries(
    stats: StudentStats, draws: Mapping[str, Any], groups: DesignGroups | None = None
) -> list[dict[str, Any]]:
    """The contract's per-student records (week-0 intercept, slope, their sds and correlation)."""
    return summary_records(student_summary_columns(stats, draws, groups=groups))
