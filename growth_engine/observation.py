"""How much one student-week says: the gaussian model's observation models.

A week's accuracy over 2 attempts is far noisier than over 40, and a strong student's week is less noisy
than an average one's (binomial variance p (1 - p) / n). The **attempts** model (the default) gives row j
(a week of student i with n_j attempts) the residual variance

    Var(e_j) = sigma^2 * g_j / gbar,   g_j = v_i / n_j + kappa,

the binomial sampling noise of n_j attempts (v_i / n_j, up to a common factor that sigma absorbs) plus
``kappa``, the week-to-week wobble of the accuracy itself in the same units; ``gbar`` is the mean of g over
the rows, so sigma stays the residual sd of an average row, on the score scale. ``v_i`` is the student's
binomial variance factor: the mean over their weeks of q (1 - q), q their accuracy fitted by a first pass
(the same model with v = 1: each student's line shrunk to the cohort's, clipped to ``VARIANCE_CLIP``), to
the power ``VARIANCE_EXPONENT`` (0.5: where the accuracy is not on a line, the full binomial variance
trusts strong students' lines too far). It is one number per student, taken from their whole window, so a
week's own luck barely moves its weight (a weight per row from that row's fitted value, or from the raw
accuracy, follows the very noise it weighs: both were measured worse). The model then has precision
weights w_j = gbar / g_j, fixed during sampling, so the collapsed engine keeps its per-student sufficient
statistics (:mod:`growth_engine.stats`).

``kappa`` is estimated by maximum marginal likelihood (profiled over the six population parameters with
:func:`growth_engine.cohort.fit_cohort_ml`, on at most ``KAPPA_STUDENTS`` students chosen at random with a
fixed seed), once for the first pass and once for the model. Chosen by measurement against the
Bayes-optimal P (README, "Observation model"): weights 1 / n alone over-trust many-attempt weeks when
accuracy wobbles from week to week, and without v_i P is under-confident for strong students.

The **plain** model (``observation_model="plain"``) is the platform note's: every row the same sigma.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import optimize

if TYPE_CHECKING:
    from .cohort import CohortFit

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
    first_kappa: float | None = None  # kappa of the first pass (v = 1), which fits the students' accuracy
    mean_variance: float | None = None  # the mean of v over the rows

    def describe(self) -> dict[str, Any]:
        """The record of the model in a fit's response (``model.observation``)."""
        if self.name == "plain":
            return {"name": "plain", "formula": "sigma"}
        return {"name": self.name, "formula": ATTEMPTS_FORMULA, "kappa": self.kappa, "gbar": self.gbar,
                "first_kappa": self.first_kappa, "mean_variance": self.mean_variance}  # fmt: skip

    @property
    def row_scale(self) -> np.ndarray | None:
        """g_j / gbar per row: row j's residual variance over sigma^2 (None: plain, all 1)."""
        return None if self.weight is None else 1.0 / self.weight


ATTEMPTS_FORMULA = (
    "sigma * sqrt((v / n + kappa) / gbar), v = sqrt(the student's mean q (1 - q) over their weeks), "
    "q their accuracy fitted by a first pass with v = 1 (kappa first_kappa), clipped to [0.05, 0.95]"
)
VARIANCE_CLIP = (0.05, 0.95)
#: v is q (1 - q) to this power: 1 is the binomial variance exactly, best where the accuracy's line is right;
#: on a logit line with even practice it cost up to 0.0045 in Brier, 0.5 keeps nearly all of the gain and
#: stays within 0.001 of the plain model there (README, "Observation model")
VARIANCE_EXPONENT = 0.5


def attempts_weight(n: np.ndarray, kappa: float, variance: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Precision weights gbar / (v / n + kappa) and gbar (``variance``: v per row, default 1)."""
    g = (1.0 if variance is None else variance) / np.asarray(n, dtype=np.float64) + kappa
    if np.all(g == g[0]):  # equal attempts (and v) everywhere: exactly the plain model's weights
        return np.ones_like(g), float(g[0])
    gbar = float(np.mean(g))
    return gbar / g, gbar


@dataclass(frozen=True)
class _Rows:
    """The rows with their students coded 0..N-1 once (sorting millions of text ids takes seconds), the
    week centre, and the rows of the students kappa is estimated on (None: every row)."""

    code: np.ndarray
    n_students: int
    week: np.ndarray
    score: np.ndarray
    n: np.ndarray
    center: float
    sample: np.ndarray | None

    @classmethod
    def of(cls, student: np.ndarray, week: np.ndarray, score: np.ndarray, n: np.ndarray, seed: int) -> _Rows:
        ids, code = np.unique(student, return_inverse=True)
        code = code.reshape(-1).astype(np.int64)
        sample = None
        if ids.size > KAPPA_STUDENTS:  # at most KAPPA_STUDENTS students drawn with seed
            chosen = np.zeros(ids.size, dtype=bool)
            chosen[np.random.default_rng(seed).choice(ids.size, KAPPA_STUDENTS, replace=False)] = True
            sample = chosen[code]
        week, score = np.asarray(week, dtype=np.float64), np.asarray(score, dtype=np.float64)
        n = np.asarray(n, dtype=np.float64)
        return cls(code, int(ids.size), week, score, n, float(np.mean(week)), sample)

    def sampled(self, values: np.ndarray) -> np.ndarray:
        return values if self.sample is None else values[self.sample]


def _kappa(rows: _Rows, variance: np.ndarray | None) -> float:
    """kappa by maximum marginal likelihood (bounded search on log10 kappa in [-4, 0]) on the sampled rows."""
    from .cohort import fit_cohort_ml  # cohort imports nothing from here; local import avoids a cycle

    code, week, score, n = (rows.sampled(v) for v in (rows.code, rows.week, rows.score, rows.n))
    variance = None if variance is None else rows.sampled(variance)

    previous: CohortFit | None = None

    def negative_loglik(log10_kappa: float) -> float:
        # each fit starts where the previous kappa's ended: a step in kappa moves the optimum little, and
        # the fits take half the iterations they take from scratch (measured)
        nonlocal previous
        weight, _ = attempts_weight(n, 10.0**log10_kappa, variance)
        previous = fit_cohort_ml(code, week, score, weight=weight, center=rows.center, start=previous)
        return -previous.loglik

    result = optimize.minimize_scalar(
        negative_loglik, bounds=_LOG10_KAPPA_BOUNDS, method="bounded", options={"xatol": 0.02}
    )
    return float(10.0**result.x)


def _variance(rows: _Rows, kappa: float) -> np.ndarray:
    """v per row (see :func:`student_variance`), the first pass fitted with ``kappa``."""
    from .cohort import fit_cohort_ml
    from .collapsed import conditional_moments
    from .stats import student_stats

    weight, gbar = attempts_weight(rows.sampled(rows.n), kappa)
    first = fit_cohort_ml(
        rows.sampled(rows.code), rows.sampled(rows.week), rows.sampled(rows.score), weight=weight, center=rows.center
    )
    # every row weighted in the first pass' units (its gbar), so its sigma applies to them all
    weight = gbar / (1.0 / rows.n + kappa)
    stats = student_stats(rows.code, rows.week, rows.score, center=rows.center, weight=weight)
    level, slope, *_ = conditional_moments(stats, *first.params)  # stats.ids are the codes 0..N-1
    q = np.clip(level[rows.code] + slope[rows.code] * (rows.week - rows.center), *VARIANCE_CLIP)
    per_student = np.bincount(rows.code, weights=q * (1.0 - q), minlength=rows.n_students) / stats.n_rows
    return per_student[rows.code] ** VARIANCE_EXPONENT


def estimate_kappa(
    student: np.ndarray,
    week: np.ndarray,
    score: np.ndarray,
    n: np.ndarray,
    seed: int = 0,
    variance: np.ndarray | None = None,
) -> float:
    """kappa by maximum marginal likelihood (bounded search on log10 kappa in [-4, 0]), on at most
    ``KAPPA_STUDENTS`` students drawn with ``seed`` (``variance``: v per row, default 1)."""
    return _kappa(_Rows.of(student, week, score, n, seed), variance)


def student_variance(
    student: np.ndarray, week: np.ndarray, score: np.ndarray, n: np.ndarray, kappa: float, seed: int = 0
) -> np.ndarray:
    """v per row: the mean over the student's weeks of q (1 - q), to the power ``VARIANCE_EXPONENT``, q the
    accuracy the first pass fits with ``kappa`` (the population by maximum likelihood on the kappa students,
    then every student's line shrunk to it)."""
    return _variance(_Rows.of(student, week, score, n, seed), kappa)


def observation(
    name: str, student: np.ndarray, week: np.ndarray, score: np.ndarray, n: np.ndarray | None
) -> Observation:
    """The observation model ``name`` (validated: growth_engine.request.validate_observation_model) for these
    rows (``n``: attempts per row; the attempts model needs it)."""
    if name == "plain":
        return Observation("plain", None, None, None)
    if n is None:
        raise ValueError("the attempts observation model needs data.n (attempts per row)")
    rows = _Rows.of(student, week, score, n, seed=0)
    first_kappa = _kappa(rows, None)
    variance = _variance(rows, first_kappa)
    kappa = _kappa(rows, variance)
    weight, gbar = attempts_weight(rows.n, kappa, variance)
    return Observation(name, kappa, gbar, weight, first_kappa, float(np.mean(variance)))
