"""How much one student-week says: the gaussian model's observation models.

A week's accuracy over 2 attempts is far noisier than over 40. The **attempts** model (the default) gives
row j (a student-week with n_j attempts) the residual variance

    Var(e_j) = sigma^2 * g_j / gbar,   g_j = 1 / n_j + kappa,

the binomial sampling noise of n_j attempts (1 / n_j, up to the common factor p (1 - p) that sigma absorbs)
plus ``kappa``, the week-to-week wobble of the accuracy itself in the same units; ``gbar`` is the mean of
g over the rows, so sigma stays the residual sd of an average row, on the score scale. The model then
has precision weights w_j = gbar / g_j, fixed during sampling, so the collapsed engine keeps its
per-student sufficient statistics (:mod:`growth_engine.stats`).

``kappa`` is estimated once per fit by maximum marginal likelihood (profiled over the six population
parameters with :func:`growth_engine.cohort.fit_cohort_ml`, on at most ``KAPPA_STUDENTS`` students chosen
at random with a fixed seed). Chosen by measurement against the Bayes-optimal P (README, "Observation
model"): weights 1 / n alone over-trust many-attempt weeks when accuracy wobbles from week to week; a
plug-in binomial variance p (1 - p) / n was worse than the plain model on even practice with wobble.

The **plain** model (``observation_model="plain"``) is the platform note's: every row the same sigma.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize

OBSERVATION_MODELS = ("attempts", "plain")
DEFAULT_OBSERVATION_MODEL = "attempts"
KAPPA_STUDENTS = 20_000
_LOG10_KAPPA_BOUNDS = (-4.0, 0.0)


@dataclass(frozen=True)
class Observation:
    """The observation model of one fit: its name, kappa and gbar (attempts), and the row weights."""

    name: str
    kappa: float | None
    gbar: float | None
    weight: np.ndarray | None  # (rows,) precision weights; None: all 1 (plain)

    def describe(self) -> dict[str, Any]:
        """The record of the model in a fit's response (``model.observation``)."""
        if self.name == "plain":
            return {"name": "plain", "formula": "sigma"}
        return {"name": self.name, "formula": "sigma * sqrt((1 / n + kappa) / gbar)", "kappa": self.kappa,
                "gbar": self.gbar}  # fmt: skip


def attempts_weight(n: np.ndarray, kappa: float) -> tuple[np.ndarray, float]:
    """Precision weights gbar / (1 / n + kappa) and gbar."""
    g = 1.0 / np.asarray(n, dtype=np.float64) + kappa
    if np.all(g == g[0]):  # equal attempts everywhere: exactly the plain model's weights
        return np.ones_like(g), float(g[0])
    gbar = float(np.mean(g))
    return gbar / g, gbar


def _profile_loglik(student: np.ndarray, week: np.ndarray, score: np.ndarray, n: np.ndarray, kappa: float) -> float:
    from .cohort import fit_cohort_ml  # cohort imports nothing from here; local import avoids a cycle

    weight, _ = attempts_weight(n, kappa)
    return fit_cohort_ml(student, week, score, weight=weight).loglik


def estimate_kappa(student: np.ndarray, week: np.ndarray, score: np.ndarray, n: np.ndarray, seed: int = 0) -> float:
    """kappa by maximum marginal likelihood (bounded search on log10 kappa in [-4, 0]), on at most
    ``KAPPA_STUDENTS`` students drawn with ``seed``."""
    ids, inverse = np.unique(student, return_inverse=True)
    if ids.size > KAPPA_STUDENTS:
        chosen = np.zeros(ids.size, dtype=bool)
        chosen[np.random.default_rng(seed).choice(ids.size, KAPPA_STUDENTS, replace=False)] = True
        rows = chosen[inverse.reshape(-1)]
        student, week, score, n = student[rows], week[rows], score[rows], n[rows]
    result = optimize.minimize_scalar(
        lambda x: -_profile_loglik(student, week, score, n, 10.0**x),
        bounds=_LOG10_KAPPA_BOUNDS,
        method="bounded",
        options={"xatol": 0.02},
    )
    return float(10.0**result.x)


def observation(
    name: str, student: np.ndarray, week: np.ndarray, score: np.ndarray, n: np.ndarray | None
) -> Observation:
    """The observation model ``name`` (validated: growth_engine.request.validate_observation_model) for these
    rows (``n``: attempts per row; the attempts model needs it)."""
    if name == "plain":
        return Observation("plain", None, None, None)
    if n is None:
        raise ValueError("the attempts observation model needs data.n (attempts per row)")
    kappa = estimate_kappa(student, week, score, n)
    weight, gbar = attempts_weight(n, kappa)
    return Observation(name, kappa, gbar, weight)
