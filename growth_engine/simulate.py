"""The one simulator of the growth model: true per-student lines, the true accuracy of every week, and
what is observed (tests, benchmarks, demo data).

Student i has a true level a_i at week 0 and slope b_i, (a_i, b_i) ~ N((level, slope), Sigma). Week t's
true accuracy is link^-1(a_i + b_i t + w_it), w_it ~ N(0, wobble_sd^2) the week-to-week wobble (identity
link: clipped to ``accuracy_bounds``). Which weeks are observed: from a late joiner's first week on, each
missed with probability ``p_missing`` (optionally keeping one week per student), or exactly
``weeks_per_student`` random weeks each. Attempts per observed week:
``UniformAttempts`` or ``PoissonAttempts`` (each student's own practice rate). The score is then either
gaussian (accuracy + N(0, sigma^2), optionally clipped to [0, 1]) or binomial (correct of n attempts).

:func:`simulate_cohort` returns everything as (students x weeks) arrays (:class:`Simulation`);
:func:`simulate` is the gaussian special case as rows, with the truth, used by the engine's tests.

Random draws are taken in a fixed order, each only when its feature is on (true lines, joiners, practice
rates, missed weeks, wobble, attempts, noise), so a seed reproduces the same cohort.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

DEFAULT_TRUTH = {"intercept": 0.40, "week": 0.02, "sd_intercept0": 0.06, "sd_week": 0.008, "cor0": 0.2, "sigma": 0.04}


@dataclass(frozen=True)
class UniformAttempts:
    """Every observed week: n ~ uniform on low..high (inclusive)."""

    low: int
    high: int


@dataclass(frozen=True)
class PoissonAttempts:
    """Each student practises at their own rate r_i ~ Gamma(shape, mean / shape); an observed week has
    ``minimum`` + Poisson(r_i) attempts."""

    mean: float
    shape: float = 4.0
    minimum: int = 1


@dataclass(frozen=True)
class Simulation:
    """A simulated cohort; (N, W) arrays are students x weeks 0..W-1."""

    ids: np.ndarray  # (N,) student ids
    level: np.ndarray  # (N,) true level at week 0 (on the link scale)
    slope: np.ndarray  # (N,) true slope per week (on the link scale)
    join_week: np.ndarray  # (N,) first week the student can be observed
    practice_rate: np.ndarray | None  # (N,) PoissonAttempts' rates, else None
    accuracy: np.ndarray  # (N, W) true expected score / probability of a correct attempt
    observed: np.ndarray  # (N, W) bool
    n: np.ndarray | None  # (N, W) attempts (0 where not observed), None without attempts
    correct: np.ndarray | None  # (N, W) correct attempts (binomial family)
    score: np.ndarray  # (N, W) observed score, NaN where not observed
    n_clipped: int  # gaussian scores that fell outside [0, 1] (before any clipping)

    def students(self, index: Any) -> Simulation:
        """The students ``index`` (a boolean mask or positions): every per-student array cut to them."""
        arrays = {f.name: getattr(self, f.name) for f in fields(self) if isinstance(getattr(self, f.name), np.ndarray)}
        return replace(self, **{name: array[index] for name, array in arrays.items()})

    def rows(self) -> dict[str, np.ndarray]:
        """The observed cells as rows, student-major: student, week, score, accuracy (+ n, correct)."""
        i, t = np.nonzero(self.observed)
        out = {"student": self.ids[i], "week": t.astype(np.int64), "score": self.score[i, t],
               "accuracy": self.accuracy[i, t]}  # fmt: skip
        if self.n is not None:
            out["n"] = self.n[i, t]
        if self.correct is not None:
            out["correct"] = self.correct[i, t]
        return out


def _lines(rng: np.random.Generator, n: int, level: float, slope: float, sd: tuple[float, float], cor: float):
    s0, s1 = sd
    cov = np.array([[s0**2, cor * s0 * s1], [cor * s0 * s1, s1**2]])
    return rng.multivariate_normal([level, slope], cov, size=n).T


def _observed(rng, n, w, join, p_missing, keep_one_week, weeks_per_student):
    observed = np.arange(w)[None, :] >= join[:, None]
    if weeks_per_student is not None:  # exactly k weeks each, at random: nearly every student its own design
        chosen = np.zeros((n, w), dtype=bool)
        chosen[np.arange(n)[:, None], np.argsort(rng.random((n, w)), axis=1)[:, :weeks_per_student]] = True
        observed &= chosen
    if p_missing > 0:
        observed &= rng.random((n, w)) >= p_missing
        if keep_one_week:
            observed[np.arange(n), rng.integers(0, w, n)] = True
    return observed


def _attempts(rng, attempts, observed, rate):
    if attempts is None:
        return None
    shape = observed.shape
    if isinstance(attempts, UniformAttempts):
        n = rng.integers(attempts.low, attempts.high + 1, size=shape)
    else:
        n = rng.poisson(rate[:, None], shape) + attempts.minimum
    return np.where(observed, n, 0)


def simulate_cohort(
    n_students: int,
    n_weeks: int,
    *,
    level: float,
    slope: float,
    sd_level: float,
    sd_slope: float,
    cor: float = 0.0,
    family: str = "gaussian",
    link: str = "identity",
    sigma: float = 0.0,
    wobble_sd: float = 0.0,
    accuracy_bounds: tuple[float, float] | None = None,
    attempts: UniformAttempts | PoissonAttempts | None = None,
    p_missing: float = 0.0,
    keep_one_week: bool = True,
    weeks_per_student: int | None = None,
    late_joiner_rate: float = 0.0,
    clip: bool = True,
    id_prefix: str = "s",
    id_width: int | None = None,
    seed: int | np.random.Generator = 0,
) -> Simulation:
    """Simulate ``n_students`` over weeks 0..n_weeks-1; see the module docstring for the model.

    ``family``: "gaussian" (score = accuracy + N(0, sigma^2), clipped to [0, 1] when ``clip``) or
    "binomial" (correct ~ Binomial(n, accuracy), score = correct / n; needs ``attempts``). ``link``:
    "identity" (accuracy = the line, clipped to ``accuracy_bounds`` if given) or "logit". Late joiners (a
    share ``late_joiner_rate``) start at a week drawn uniformly from 1..max(1, W - 2). ``weeks_per_student``:
    observe each student on exactly that many weeks drawn at random (before ``p_missing``). Ids are
    ``id_prefix`` + the index zero-padded to ``id_width`` (default: the width of n_students - 1).
    """
    if family == "binomial" and attempts is None:
        raise ValueError("the binomial family needs attempts")
    rng = np.random.default_rng(seed)
    n, w = n_students, n_weeks
    a, b = _lines(rng, n, level, slope, (sd_level, sd_slope), cor)
    join = np.zeros(n, dtype=np.int64)
    if late_joiner_rate > 0:
        join = np.where(rng.random(n) < late_joiner_rate, rng.integers(1, max(2, w - 1), size=n), 0)
    rate = None
    if isinstance(attempts, PoissonAttempts):
        rate = rng.gamma(attempts.shape, attempts.mean / attempts.shape, size=n)
    observed = _observed(rng, n, w, join, p_missing, keep_one_week, weeks_per_student)
    eta = a[:, None] + b[:, None] * np.arange(w)[None, :]
    if wobble_sd > 0:
        eta = eta + rng.normal(0, wobble_sd, (n, w))
    accuracy = 1 / (1 + np.exp(-eta)) if link == "logit" else eta
    if accuracy_bounds is not None:
        accuracy = np.clip(accuracy, *accuracy_bounds)
    n_att = _attempts(rng, attempts, observed, rate)
    score, correct, n_clipped = _observe(rng, family, accuracy, observed, n_att, sigma, clip)
    width = len(str(n - 1)) if id_width is None else id_width
    ids = np.array([f"{id_prefix}{i:0{width}d}" for i in range(n)])
    return Simulation(ids, a, b, join, rate, accuracy, observed, n_att, correct, score, n_clipped)


def _observe(rng, family, accuracy, observed, n_att, sigma, clip):
    """(score with NaN where unobserved, correct or None, number of gaussian scores outside [0, 1])."""
    score = np.full(accuracy.shape, np.nan)
    if family == "gaussian":
        y = accuracy[observed] + rng.normal(0, sigma, int(observed.sum()))
        n_clipped = int(np.sum((y < 0) | (y > 1)))
        score[observed] = np.clip(y, 0.0, 1.0) if clip else y
        return score, None, n_clipped
    if family == "binomial":
        correct = rng.binomial(n_att, accuracy)
        score[observed] = correct[observed] / n_att[observed]
        return score, correct, 0
    raise ValueError(f"unknown family {family!r}")


def simulate(
    n_students: int = 1000,
    n_weeks: int = 12,
    truth: dict[str, float] | None = None,
    p_missing: float = 0.0,
    seed: int = 0,
    clip: bool = True,
) -> dict[str, Any]:
    """Rows (student, week, score) for weeks 0..n_weeks-1 plus the true effects (gaussian model).

    ``truth`` is on the caller's week scale (level at week 0): intercept, week, sd_intercept0, sd_week,
    cor0 (correlation of the week-0 level and slope), sigma. Each row is dropped independently with
    probability ``p_missing`` (every student keeps at least one row). Scores are clipped to [0, 1] when
    ``clip`` (the count is returned; keep the truth such that it is ~0 when recovery is tested).
    """
    t = dict(DEFAULT_TRUTH if truth is None else truth)
    sim = simulate_cohort(
        n_students, n_weeks, level=t["intercept"], slope=t["week"], sd_level=t["sd_intercept0"],
        sd_slope=t["sd_week"], cor=t["cor0"], sigma=t["sigma"], p_missing=p_missing, clip=clip, seed=seed,
    )  # fmt: skip
    rows = sim.rows()
    return {"student": rows["student"], "week": rows["week"], "score": rows["score"], "intercept": sim.level,
            "slope": sim.slope, "ids": sim.ids, "truth": t, "n_clipped": sim.n_clipped}  # fmt: skip
