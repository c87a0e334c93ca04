"""The Bayes-optimal P of a simulated cohort: the physical limit any method's P is measured against.

Given the generating model's true population (the distribution of each student's level and slope,
the week-to-week wobble) and a student's observed weeks (correct of n attempts), the posterior of the
student's (level, slope) is computed by numerical integration: the binomial likelihood of every week
(integrated over that week's wobble by Gauss-Hermite quadrature) times the true prior, on a grid. P is
the posterior probability that the student's true accuracy at the target week, link^-1(level + slope T)
(the line, without that week's wobble), reaches the goal. No method that sees the same data can do better
in expected Brier score.

Two passes per student: a coarse grid over the prior (±6 sd) locates the posterior; a fine grid over ±7
posterior sds around it integrates it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

from .predict import week_reaches_goal
from .simulate import Simulation


@dataclass(frozen=True)
class TruePopulation:
    """The generating model's population (on the link scale, level at week 0), wobble sd and link
    ("logit", or "identity": the accuracy is the line, clipped to ``accuracy_bounds``)."""

    level: float
    slope: float
    sd_level: float
    sd_slope: float
    cor: float
    wobble_sd: float = 0.0
    link: str = "logit"
    accuracy_bounds: tuple[float, float] = (0.02, 0.98)

    def threshold(self, goal: float) -> float:
        """The line's value at which the accuracy reaches ``goal``."""
        return float(np.log(goal / (1.0 - goal))) if self.link == "logit" else goal

    @property
    def cholesky(self) -> np.ndarray:
        s0, s1, r = self.sd_level, self.sd_slope, self.cor
        return np.linalg.cholesky(np.array([[s0 * s0, r * s0 * s1], [r * s0 * s1, s1 * s1]]))


_WOBBLE_NODES, _WOBBLE_WEIGHTS = np.polynomial.hermite_e.hermegauss(24)
_LOG_WOBBLE_WEIGHTS = np.log(_WOBBLE_WEIGHTS / np.sqrt(2.0 * np.pi))
_ETA = np.linspace(-12.0, 12.0, 4801)  # the tabulation grid of a week's log-likelihood (step 0.005)


def _binomial_loglik(x: np.ndarray, n: np.ndarray, correct: np.ndarray, population: TruePopulation) -> np.ndarray:
    """log Pr(correct of n | line value x), without the binomial coefficient."""
    if population.link == "identity":
        p = np.clip(x, *population.accuracy_bounds)
        return correct * np.log(p) + (n - correct) * np.log1p(-p)
    return -correct * np.logaddexp(0.0, -x) - (n - correct) * np.logaddexp(0.0, x)


def _week_tables(pairs: np.ndarray, population: TruePopulation) -> np.ndarray:
    """For each distinct (n, correct): the week's log-likelihood on ``_ETA``, integrated over the wobble by
    Gauss-Hermite quadrature. (P, len(_ETA))."""
    n, correct = pairs[:, 0, None], pairs[:, 1, None]
    if population.wobble_sd <= 0:
        return _binomial_loglik(_ETA[None, :], n, correct, population)
    x = _ETA[None, :, None] + population.wobble_sd * _WOBBLE_NODES
    tables = np.empty((pairs.shape[0], _ETA.size))
    for start in range(0, pairs.shape[0], 64):
        sl = slice(start, start + 64)
        per_node = _binomial_loglik(x, n[sl, :, None], correct[sl, :, None], population) + _LOG_WOBBLE_WEIGHTS
        tables[sl] = logsumexp(per_node, axis=-1)
    return tables


def _interpolate(tables: np.ndarray, pair: np.ndarray, eta: np.ndarray) -> np.ndarray:
    """Linear interpolation of ``tables[pair]`` at ``eta`` (same shape as eta; pair broadcasts)."""
    step = _ETA[1] - _ETA[0]
    pos = np.clip((eta - _ETA[0]) / step, 0.0, _ETA.size - 1.000001)
    left = pos.astype(np.int64)
    frac = pos - left
    return (1.0 - frac) * tables[pair, left] + frac * tables[pair, left + 1]


def _posterior_on_grid(points, prior_logpdf, weeks, pair, observed, tables):
    """Normalized posterior weights on per-student grids: points (S, K, 2) of (level, slope); pair (S, W)
    indexes ``tables`` (the week's (n, correct)), observed (S, W) masks the weeks seen."""
    eta = points[..., 0, None] + points[..., 1, None] * weeks[None, None, :]
    ll = np.where(observed[:, None, :], _interpolate(tables, pair[:, None, :], eta), 0.0)
    logw = prior_logpdf + ll.sum(axis=-1)
    logw -= logw.max(axis=1, keepdims=True)
    w = np.exp(logw)
    return w / w.sum(axis=1, keepdims=True)


def _square_grid(half_width: float, size: int) -> np.ndarray:
    axis = np.linspace(-half_width, half_width, size)
    return np.stack(np.meshgrid(axis, axis, indexing="ij"), axis=-1).reshape(-1, 2)


def _prior_logpdf(points: np.ndarray, population: TruePopulation) -> np.ndarray:
    z = np.linalg.solve(population.cholesky, (points - [population.level, population.slope])[..., None])[..., 0]
    return -0.5 * np.sum(z * z, axis=-1)


def bayes_optimal_p(
    sim: Simulation,
    population: TruePopulation,
    last_week: int,
    target_week: int,
    goal: float,
    *,
    target_n: np.ndarray | None = None,
    grid: int = 41,
    chunk: int = 256,
) -> np.ndarray:
    """Pr(link^-1(level_i + slope_i * target_week) >= goal | the weeks seen up to ``last_week``) for every
    student of ``sim`` (a binomial simulation of ``population``), by two-pass grid integration (see the
    module doc). With ``target_n`` (N,), the predictive probability a backtest can check instead: that the
    target week's observed accuracy over ``target_n[i]`` attempts reaches the goal, that week's wobble
    and binomial noise included."""
    if sim.correct is None or sim.n is None:
        raise ValueError("the Bayes-optimal P needs a binomial simulation (correct of n attempts)")
    weeks = np.arange(last_week + 1, dtype=np.float64)
    observed = sim.observed[:, : last_week + 1]
    cells = np.stack([sim.n[:, : last_week + 1], sim.correct[:, : last_week + 1]], axis=-1)
    pairs, pair = np.unique(np.where(observed[..., None], cells, 0).reshape(-1, 2), axis=0, return_inverse=True)
    pair = pair.reshape(observed.shape)
    tables = _week_tables(pairs.astype(np.float64), population)
    outcome = _line_reaches(population, goal) if target_n is None else _week_reaches(population, goal, target_n)
    centre = np.array([population.level, population.slope])
    coarse = centre + _square_grid(6.0, 61) @ population.cholesky.T
    fine_unit = _square_grid(7.0, grid)
    out = np.empty(observed.shape[0])
    for start in range(0, observed.shape[0], chunk):
        sl = slice(start, min(start + chunk, observed.shape[0]))
        points = np.broadcast_to(coarse, (pair[sl].shape[0], *coarse.shape))
        w = _posterior_on_grid(points, _prior_logpdf(points, population), weeks, pair[sl], observed[sl], tables)
        mean = np.einsum("sk,skd->sd", w, points)
        dev = points - mean[:, None, :]
        cov = np.einsum("sk,skd,ske->sde", w, dev, dev) + np.eye(2) * 1e-10
        fine = mean[:, None, :] + np.einsum("kd,sed->ske", fine_unit, np.linalg.cholesky(cov))
        w = _posterior_on_grid(fine, _prior_logpdf(fine, population), weeks, pair[sl], observed[sl], tables)
        out[sl] = np.sum(w * outcome(fine[..., 0] + fine[..., 1] * target_week, sl), axis=1)
    return out


def _line_reaches(population: TruePopulation, goal: float):
    """The outcome of P: the line at the target week (S, K) reaches the goal (1 or 0)."""
    threshold = population.threshold(goal)
    return lambda line, _rows: (line >= threshold).astype(np.float64)


def _week_reaches(population: TruePopulation, goal: float, target_n: np.ndarray):
    """The outcome of the predictive P: Pr(correct of n >= ceil(goal n) | the line at the target week),
    over that week's wobble (Gauss-Hermite) and its binomial noise, as the simulation draws them."""
    target_n = np.asarray(target_n, dtype=np.float64)

    def reaches(line: np.ndarray, rows: slice) -> np.ndarray:
        n = target_n[rows, None, None]
        x = line[..., None] + population.wobble_sd * _WOBBLE_NODES
        if population.link == "identity":
            p = np.clip(x, *population.accuracy_bounds)
        else:
            p = 1.0 / (1.0 + np.exp(-x))
        return week_reaches_goal(n, p, goal) @ np.exp(_LOG_WOBBLE_WEIGHTS)

    return reaches


def true_outcome(sim: Simulation, population: TruePopulation, target_week: int, goal: float) -> np.ndarray:
    """1.0 where the student's true line reaches the goal at the target week, else 0.0."""
    return (sim.level + sim.slope * target_week >= population.threshold(goal)).astype(np.float64)


__all__ = ["TruePopulation", "bayes_optimal_p", "true_outcome"]
