"""The attempts observation model against the physical limit: P on simulated classes (binomial attempts on
a true accuracy that grows on a line, and on a logit line) scored against the Bayes-optimal P of the true
generating model (growth_engine.bayes_optimal), with and without week-to-week wobble, on uneven and even
practice. P is Pr(the student's expected score at the target week >= the goal); the outcome is whether
the true line reached it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from growth_engine.bayes_optimal import TruePopulation, bayes_optimal_p, true_outcome
from growth_engine.cohort import fit_cohort_ml
from growth_engine.observation import (
    VARIANCE_CLIP,
    VARIANCE_EXPONENT,
    attempts_weight,
    estimate_kappa,
    observation,
    student_variance,
)
from growth_engine.simulate import PoissonAttempts, Simulation, UniformAttempts, simulate_cohort

LAST_WEEK, HORIZON, GOAL = 7, 4, 0.8
TARGET = LAST_WEEK + HORIZON
UNEVEN = PoissonAttempts(mean=12, shape=1.0, minimum=1)  # own rates: about 1 to 40 attempts a week
EVEN = UniformAttempts(8, 12)


def population(wobble: float) -> TruePopulation:
    """Accuracy on a line (the issue's classes): 0.6 at week 0, +0.015 a week, wobble on the accuracy scale."""
    return TruePopulation(level=0.6, slope=0.015, sd_level=0.12, sd_slope=0.012, cor=0.2, wobble_sd=wobble,
                          link="identity")  # fmt: skip


def logit_population(wobble: float) -> TruePopulation:
    """Accuracy on a logit line (the gaussian model's line is then only an approximation)."""
    return TruePopulation(level=0.8, slope=0.06, sd_level=0.7, sd_slope=0.05, cor=0.2, wobble_sd=wobble)


def cohort(pop: TruePopulation, attempts, n_students: int, seed: int) -> Simulation:
    return simulate_cohort(
        n_students, TARGET + 1, level=pop.level, slope=pop.slope, sd_level=pop.sd_level, sd_slope=pop.sd_slope,
        cor=pop.cor, family="binomial", link=pop.link, wobble_sd=pop.wobble_sd, attempts=attempts,
        accuracy_bounds=pop.accuracy_bounds if pop.link == "identity" else None,
        p_missing=0.2, late_joiner_rate=0.1, seed=seed,
    )  # fmt: skip


def window_rows(sim: Simulation) -> dict[str, np.ndarray]:
    """The weeks up to LAST_WEEK as rows (what the model sees)."""
    i, t = np.nonzero(sim.observed[:, : LAST_WEEK + 1])
    return {"student": sim.ids[i], "week": t.astype(float), "score": sim.score[i, t], "n": sim.n[i, t]}


def brier(p: np.ndarray, outcome: np.ndarray) -> float:
    return float(np.mean((p - outcome) ** 2))


def empirical_bayes_p(rows: dict[str, np.ndarray], students: np.ndarray, model: str) -> np.ndarray:
    """P(expected score at TARGET >= GOAL) from the cohort's ML fit under observation model ``model``."""
    weight = observation(model, rows["student"], rows["week"], rows["score"], rows["n"]).weight
    fit = fit_cohort_ml(rows["student"], rows["week"], rows["score"], weight=weight)
    mean, sd = fit.expected_score(students, np.full(students.size, float(TARGET)))
    return norm.sf((GOAL - mean) / sd)


def scored(sim: Simulation, pop: TruePopulation) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """(rows, students seen in the window, their outcomes, their Bayes-optimal P)."""
    seen = sim.observed[:, : LAST_WEEK + 1].any(axis=1)
    optimal = bayes_optimal_p(sim, pop, LAST_WEEK, TARGET, GOAL)[seen]
    return window_rows(sim), sim.ids[seen], true_outcome(sim, pop, TARGET, GOAL)[seen], optimal


@pytest.mark.parametrize("wobble", [0.0, 0.06])
def test_uneven_practice_attempts_model_is_near_the_bayes_optimal_p(wobble):
    """Measured (seed 21, 3000 students): the attempts model within 0.0004 of the limit, the plain model
    0.013-0.014 behind it."""
    pop = population(wobble)
    rows, students, outcome, optimal = scored(cohort(pop, UNEVEN, 3000, seed=21), pop)
    limit = brier(optimal, outcome)
    attempts = brier(empirical_bayes_p(rows, students, "attempts"), outcome)
    plain = brier(empirical_bayes_p(rows, students, "plain"), outcome)
    assert attempts - limit < 0.01, (attempts, limit)
    assert plain - attempts >= 0.01, (plain, attempts)


@pytest.mark.parametrize("wobble", [0.0, 0.3])
def test_uneven_practice_on_a_logit_line_is_near_the_bayes_optimal_p(wobble):
    """The line is misspecified here; measured: 0.002 from the limit, plain 0.011-0.013 behind."""
    pop = logit_population(wobble)
    rows, students, outcome, optimal = scored(cohort(pop, UNEVEN, 3000, seed=21), pop)
    attempts = brier(empirical_bayes_p(rows, students, "attempts"), outcome)
    plain = brier(empirical_bayes_p(rows, students, "plain"), outcome)
    assert attempts - brier(optimal, outcome) < 0.01
    assert plain - attempts > 0.005, (plain, attempts)


@pytest.mark.parametrize("pop", [population(0.0), population(0.06), logit_population(0.3)], ids=str)
def test_even_practice_attempts_model_is_no_worse_than_plain(pop):
    rows, students, outcome, optimal = scored(cohort(pop, EVEN, 2000, seed=22), pop)
    attempts = brier(empirical_bayes_p(rows, students, "attempts"), outcome)
    plain = brier(empirical_bayes_p(rows, students, "plain"), outcome)
    assert attempts - plain <= 0.002, (attempts, plain)
    assert attempts - brier(optimal, outcome) < 0.01


def test_kappa_follows_the_wobble():
    """kappa is the wobble's variance in units of one attempt's binomial variance: ~0 without wobble."""
    estimates = []
    for wobble in (0.0, 0.3, 0.5):
        rows = window_rows(cohort(logit_population(wobble), UNEVEN, 3000, seed=23))
        estimates.append(estimate_kappa(rows["student"], rows["week"], rows["score"], rows["n"]))
    assert estimates[0] < 0.003 < estimates[1] < estimates[2], estimates


def test_a_fit_started_from_another_reaches_the_same_maximum():
    """kappa's search starts each fit from the previous kappa's: the maximum must not depend on the start."""
    rows = window_rows(cohort(population(0.06), UNEVEN, 2000, seed=24))
    fits = [
        fit_cohort_ml(rows["student"], rows["week"], rows["score"], weight=attempts_weight(rows["n"], kappa)[0])
        for kappa in (0.002, 0.02)
    ]
    started = fit_cohort_ml(
        rows["student"], rows["week"], rows["score"], weight=attempts_weight(rows["n"], 0.02)[0], start=fits[0]
    )
    assert started.converged and fits[1].converged
    assert started.loglik == pytest.approx(fits[1].loglik, abs=1e-4)
    np.testing.assert_allclose(started.params, fits[1].params, rtol=1e-3, atol=1e-5)


def test_weights_average_one_and_equal_attempts_give_the_plain_model():
    weight, gbar = attempts_weight(np.array([1, 2, 10, 40]), 0.01)
    assert np.mean(1.0 / weight) == pytest.approx(1.0) and weight[0] < weight[1] < weight[2] < weight[3]
    assert gbar == pytest.approx(np.mean(1 / np.array([1, 2, 10, 40]) + 0.01))
    equal, _ = attempts_weight(np.full(5, 12), 0.02)
    assert np.all(equal == 1.0)


def test_a_strong_students_weeks_weigh_more_and_the_record_says_how():
    """v_i: one number per student, smaller the further their fitted accuracy is from 0.5, so a strong
    student's week of n attempts counts for more than an average student's week of n."""
    pop = population(0.06)
    rows = window_rows(cohort(pop, UNEVEN, 2000, seed=25))
    student, n = rows["student"], rows["n"].astype(float)
    kappa = estimate_kappa(student, rows["week"], rows["score"], n)
    variance = student_variance(student, rows["week"], rows["score"], n, kappa)
    frame = pd.DataFrame({"student": student, "v": variance, "score": rows["score"]})
    per_student = frame.groupby("student").agg(v_min=("v", "min"), v_max=("v", "max"), score=("score", "mean"))
    assert np.allclose(per_student["v_min"], per_student["v_max"])  # one per student
    lo = VARIANCE_CLIP[0]
    assert np.all((variance >= (lo * (1 - lo)) ** VARIANCE_EXPONENT - 1e-12) & (variance <= 0.5 + 1e-12))
    distance = (per_student["score"] - 0.5).abs()
    assert np.corrcoef(distance, per_student["v_min"])[0, 1] < -0.8
    model = observation("attempts", student, rows["week"], rows["score"], n)
    record = model.describe()
    assert record["first_kappa"] == pytest.approx(kappa) and record["mean_variance"] == pytest.approx(variance.mean())
    assert np.mean(model.row_scale) == pytest.approx(1.0)
    np.testing.assert_allclose(model.row_scale, (variance / n + record["kappa"]) / record["gbar"])


def test_bayes_optimal_p_is_calibrated_and_beats_the_base_rate():
    """The yardstick itself: on its own generating model it is calibrated (mean P = observed rate within
    sampling error) and far better than the base rate."""
    pop = logit_population(0.3)
    _, _, outcome, optimal = scored(cohort(pop, UNEVEN, 2000, seed=24), pop)
    assert abs(optimal.mean() - outcome.mean()) < 3.3 * np.sqrt(np.mean(optimal * (1 - optimal)) / optimal.size)
    assert brier(optimal, outcome) < 0.5 * brier(np.full(outcome.size, outcome.mean()), outcome)


def test_bayes_optimal_predictive_p_is_calibrated_on_the_observed_week():
    """With ``target_n``: Pr(the target week's observed accuracy >= goal), wobble and binomial noise
    included, is calibrated against what the simulated week shows, and a week of many attempts without
    wobble says what the line says."""
    pop = population(0.06)
    sim = cohort(pop, UNEVEN, 1500, seed=26)
    seen = sim.observed[:, : LAST_WEEK + 1].any(axis=1) & sim.observed[:, TARGET]
    assert sim.n is not None and sim.correct is not None
    n, correct = sim.n[seen, TARGET], sim.correct[seen, TARGET]
    window = sim.students(seen)
    predictive = bayes_optimal_p(window, pop, LAST_WEEK, TARGET, GOAL, target_n=n)
    reached = (correct / n >= GOAL).astype(float)
    se = np.sqrt(np.mean(predictive * (1 - predictive)) / predictive.size)
    assert abs(predictive.mean() - reached.mean()) < 3.3 * se, (predictive.mean(), reached.mean())
    steady = population(0.0)
    line = bayes_optimal_p(window, steady, LAST_WEEK, TARGET, GOAL)
    many = bayes_optimal_p(window, steady, LAST_WEEK, TARGET, GOAL, target_n=np.full(n.size, 100_000))
    gap = np.abs(many - line)  # the line's P is an indicator on the grid: a little rougher
    assert gap.mean() < 0.005 and gap.max() < 0.05, (gap.mean(), gap.max())


def bayesian_p(rows: dict[str, np.ndarray], students: np.ndarray, model: str, **settings) -> tuple[np.ndarray, dict]:
    """The fitted model's P (Rao-Blackwellized over the posterior draws) and the fit's response."""
    from growth_engine import fit_full, predict_prob

    result = fit_full(rows["student"], rows["week"], rows["score"], n=rows["n"], observation_model=model,
                      iter=1000, chains=2, seed=5, **settings)  # fmt: skip
    targets = [{"student": s, "target_week": TARGET, "goal": GOAL} for s in students.tolist()]
    return np.array([t["p"] for t in predict_prob(result.state, targets)]), result.response


@pytest.mark.slow  # two MCMC fits of 3000 students
def test_bayesian_p_of_the_attempts_model_is_near_the_limit_and_calibrated():
    pop = population(0.06)
    rows, students, outcome, optimal = scored(cohort(pop, UNEVEN, 3000, seed=21), pop)
    p, response = bayesian_p(rows, students, "attempts")
    plain, _ = bayesian_p(rows, students, "plain")
    assert response["model"]["observation"]["name"] == "attempts" and response["diagnostics"]["max_rhat"] <= 1.01
    assert brier(p, outcome) - brier(optimal, outcome) < 0.01
    assert brier(plain, outcome) - brier(p, outcome) >= 0.01
    index = np.minimum((p * 10).astype(int), 9)
    for b in range(10):
        chosen = index == b
        if chosen.sum() >= 20:  # every bin with 20+ students within 3.3 binomial SE of the diagonal
            mean_p, rate = p[chosen].mean(), outcome[chosen].mean()
            assert abs(rate - mean_p) <= 3.3 * np.sqrt(mean_p * (1 - mean_p) / chosen.sum()), (b, mean_p, rate)


def test_independence_chains_agree_with_nuts():
    """Very large cohorts run independence Metropolis-Hastings from the Laplace approximation; on a cohort
    NUTS can also fit, the two posteriors agree (means within 4 Monte Carlo SEs, sds within 15%)."""
    from growth_engine import fit_full

    rows = window_rows(cohort(population(0.06), UNEVEN, 3000, seed=25))
    columns = (rows["student"], rows["week"], rows["score"])
    fits = {
        method: fit_full(*columns, n=rows["n"], iter=2000, chains=2, seed=7, chain_method=method).state.draws
        for method in ("independence", "sequential")
    }
    for name in ("beta0", "beta1", "sd0", "sd1", "rho", "sigma"):
        a, b = fits["independence"][name], fits["sequential"][name]
        se = np.sqrt(a.var() / (a.size / 2) + b.var() / (b.size / 2))  # ESS >= half the draws, conservatively
        assert abs(a.mean() - b.mean()) < 4 * se, name
        assert a.std() == pytest.approx(b.std(), rel=0.15), name


@pytest.mark.parametrize(
    "n,message",
    [([12, 0, 3], "integers in 1..100000"), ([12, None, 3], "on every row"), ([12, 2.5, 3], "integers in")],
)
def test_attempts_that_cannot_weigh_a_row_are_refused(n, message):
    from growth_engine.request import GrowthInputError, validate_data

    with pytest.raises(GrowthInputError, match=message):
        validate_data({"student": ["a", "a", "b"], "week": [0, 1, 0], "score": [0.5, 0.6, 0.7], "n": n})


def test_the_attempts_model_needs_n_and_the_default_follows_the_data():
    from growth_engine.request import GrowthInputError, validate_observation_model

    assert validate_observation_model(None, np.array([3.0])) == "attempts"
    assert validate_observation_model(None, None) == "plain"
    with pytest.raises(GrowthInputError, match=r"needs data\.n"):
        validate_observation_model("attempts", None)
    with pytest.raises(GrowthInputError, match="must be one of"):
        validate_observation_model("weighted", np.array([3.0]))


def test_student_summaries_of_huge_cohorts_use_a_subset_of_the_draws(monkeypatch):
    """Beyond RB_CELLS group x draw cells the Rao-Blackwellization averages over MIN_RB_DRAWS evenly spaced
    draws; the students' posterior moments barely move (the draws' spread is small next to a student's)."""
    from growth_engine import summaries
    from growth_engine.stats import student_stats

    rows = window_rows(cohort(population(0.06), UNEVEN, 400, seed=26))
    weight = observation("attempts", rows["student"], rows["week"], rows["score"], rows["n"]).weight
    stats = student_stats(rows["student"], rows["week"], rows["score"], weight=weight)
    rng = np.random.default_rng(0)
    # posterior draws as narrow as a huge cohort's (sds ~1/1000 of the values)
    centre = {"beta0": 0.65, "beta1": 0.015, "sd0": 0.12, "sd1": 0.012, "rho": 0.2, "sigma": 0.12}
    draws = {k: v * (1 + 0.001 * rng.standard_normal(1000)) for k, v in centre.items()}
    full = summaries.rao_blackwell_students(stats, draws)
    monkeypatch.setattr(summaries, "RB_CELLS", 10)
    subset = summaries.rao_blackwell_students(stats, draws)
    mean_a, mean_b, var_a, cov_ab, var_b = full
    # means within 1% of each student's posterior sd; (co)variances within 2% of their scale
    assert np.all(np.abs(subset[0] - mean_a) <= 0.01 * np.sqrt(var_a))
    assert np.all(np.abs(subset[1] - mean_b) <= 0.01 * np.sqrt(var_b))
    for a, b in zip((var_a, cov_ab, var_b), subset[2:], strict=True):
        np.testing.assert_allclose(a, b, atol=0.02 * np.max(np.abs(a)))
