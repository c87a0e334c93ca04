"""The statistics, as plain functions: goals, P from summaries, the empirical-Bayes normal approximation."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from seed_growth.demo_data import DemoCohort, simulate
from seed_growth.growth.convergence import convergence_problems
from seed_growth.growth.goals import goal_targets
from seed_growth.growth.kpi import InvalidProbabilities, kpi_payloads, validate_probabilities, why_not_bayesian
from seed_growth.growth.normal_approx import fit_cohort, normal_approximation_p
from seed_growth.growth.probability import line_at, p_from_student_summaries, prob_at_least
from seed_growth.window import ScoreWindow

AS_OF = dt.date(2026, 11, 16)


def scores_from(data, window: ScoreWindow) -> pd.DataFrame:
    weekly = data.weekly.assign(week=[window.week_index(d) for d in data.weekly["week_start"]])
    weekly = weekly[(weekly["week"] >= 0) & (weekly["week"] < window.lookback_weeks)]
    return pd.DataFrame(
        {
            "student": weekly["user_id"],
            "week": weekly["week"],
            "score": weekly["n_correct"] / weekly["n_attempts"],
            "n_attempts": weekly["n_attempts"],
        }
    ).reset_index(drop=True)


@pytest.fixture(scope="module")
def cohort():
    data = simulate(DemoCohort(students=2000, weeks=8, last_week=AS_OF, seed=11))
    window = ScoreWindow(AS_OF, 8)
    return data, window, scores_from(data, window)


def test_goal_targets_default_and_per_student(cohort):
    _, window, _ = cohort
    goals = pd.DataFrame({"student": ["b"], "goal_score": [0.9], "target_date": [dt.date(2026, 12, 30)]})
    targets = goal_targets(["a", "b", "a"], window, goal_score=0.8, horizon_weeks=4, student_goals=goals).set_index(
        "student"
    )
    assert targets.loc["a", "goal"] == 0.8 and targets.loc["a", "target_week"] == 7 + 4
    assert targets.loc["a", "target_week_start"] == dt.date(2026, 12, 14)
    assert targets.loc["b", "goal"] == 0.9 and targets.loc["b", "goal_source"] == "student_goal"
    assert targets.loc["b", "target_week"] == window.week_index(dt.date(2026, 12, 30)) == 13


def test_prob_at_least_matches_scipy_and_handles_zero_sd():
    assert prob_at_least(0.7, 0.1, 0.8) == pytest.approx(stats.norm.sf(1.0))
    assert prob_at_least(np.array([0.9, 0.7]), np.array([0.0, 0.0]), 0.8).tolist() == [1.0, 0.0]


def test_p_from_summaries_uses_the_line_and_population_for_unseen():
    summaries = pd.DataFrame(
        {
            "student": ["a"],
            "intercept_mean": [0.5],
            "intercept_sd": [0.05],
            "slope_mean": [0.03],
            "slope_sd": [0.01],
            "cor": [-0.5],
        }
    )
    targets = pd.DataFrame({"student": ["a", "new"], "target_week": [10, 10], "goal": [0.8, 0.8]})
    population = {
        "Intercept": {"estimate": 0.5, "error": 0.01},
        "week": {"estimate": 0.01, "error": 0.001},
        "sd_Intercept": {"estimate": 0.1},
        "sd_week": {"estimate": 0.01},
        "cor_Intercept_week": {"estimate": 0.0},
    }
    p = p_from_student_summaries(summaries, targets, link="identity", population=population)
    mean, sd = line_at(0.5, 0.05, 0.03, 0.01, -0.5, 10)
    assert p.iloc[0] == pytest.approx(stats.norm.sf((0.8 - mean) / sd))
    assert 0 < p.iloc[1] < p.iloc[0]
    logit = p_from_student_summaries(summaries.assign(intercept_mean=0.0, slope_mean=0.1), targets[:1], link="logit")
    assert logit.iloc[0] == pytest.approx(stats.norm.sf((np.log(4) - 1.0) / sd))
    with pytest.raises(KeyError, match="no posterior summary"):
        p_from_student_summaries(summaries, targets, link="identity")


def test_empirical_bayes_recovers_the_cohort(cohort):
    _, _, scores = cohort
    fit = fit_cohort(scores)
    assert fit.converged, fit.message
    assert fit.beta1 == pytest.approx(0.012, abs=0.003)  # DemoCohort.slope_mean
    assert fit.sd1 == pytest.approx(0.010, abs=0.004)
    assert fit.beta0 - fit.beta1 * fit.stats.center == pytest.approx(0.55, abs=0.02)


def brier(p, outcome):
    return float(np.mean((np.asarray(p) - np.asarray(outcome)) ** 2))


def test_normal_approximation_is_honest_on_simulated_truth(cohort):
    """Against the true expected score at the target week, the shrunk P beats the base rate and a
    per-student straight line (which is overconfident)."""
    data, window, scores = cohort
    targets = goal_targets(scores["student"], window, goal_score=0.7, horizon_weeks=4)
    p = normal_approximation_p(scores, targets).set_index("student")["P"]
    truth = data.truth.set_index("user_id").loc[p.index]
    reached = (
        truth["level"] + truth["slope"] * targets.set_index("student").loc[p.index, "target_week"] >= 0.7
    ).astype(float)

    naive = []
    for student, rows in scores.groupby("student"):
        if rows["week"].nunique() < 2:
            naive.append((student, float(rows["score"].mean() >= 0.7)))
            continue
        slope, intercept, _, _, se = stats.linregress(rows["week"], rows["score"])
        mean = intercept + slope * 11
        naive.append((student, float(stats.norm.sf((0.7 - mean) / max(se * 11, 1e-9)))))
    naive = pd.Series(dict(naive)).loc[p.index]

    base = brier(np.full(len(reached), reached.mean()), reached)
    assert brier(p, reached) < 0.8 * base
    assert brier(p, reached) < brier(naive, reached)
    # calibration in coarse bins: mean P within sampling error of the observed rate
    bins = pd.cut(p, [0, 0.2, 0.4, 0.6, 0.8, 1.0], include_lowest=True)
    for _, group in reached.groupby(bins, observed=True):
        if len(group) < 50:
            continue
        mean_p = p.loc[group.index].mean()
        assert abs(group.mean() - mean_p) < 3 * np.sqrt(mean_p * (1 - mean_p) / len(group)) + 0.03


def test_convergence_rules():
    good = {"max_rhat": 1.004, "min_ess_bulk": 450, "min_ess_tail": 300, "divergent_transitions": 0}
    assert convergence_problems(good, chains=2) == []
    assert convergence_problems({**good, "max_rhat": 1.02}, 2) == ["max R-hat 1.02 > 1.01"]
    assert "min bulk ESS 150 < 200" in convergence_problems({**good, "min_ess_bulk": 150}, 2)[0]
    assert convergence_problems({**good, "divergent_transitions": 3}, 2) == ["3 divergent transitions"]
    assert len(convergence_problems({**good, "max_rhat": None}, 2)) == 1


def test_why_not_bayesian():
    fit = {
        "run_id": "r",
        "chains": 2,
        "n_rows": 10,
        "diagnostics": {"max_rhat": 1.0, "min_ess_bulk": 900, "min_ess_tail": 900, "divergent_transitions": 0},
    }
    assert why_not_bayesian(True, fit, n_rows=10) is None
    assert why_not_bayesian(False, fit, n_rows=10) == "METRICS_USE_BAYESIAN is false"
    assert "no fit stored" in why_not_bayesian(True, None, n_rows=10)
    assert "did not converge: max R-hat 1.2" in why_not_bayesian(
        True, {**fit, "diagnostics": {**fit["diagnostics"], "max_rhat": 1.2}}, n_rows=10
    )
    assert "is of other data" in why_not_bayesian(True, fit, n_rows=11)


def test_validate_probabilities_refuses_bad_values():
    ok = pd.DataFrame({"student": ["a", "b"], "P": [0.1, 1.0]})
    validate_probabilities(ok, pd.Series(["a", "b"]))
    for bad, message in [
        (ok.assign(P=[0.1, np.nan]), "outside"),
        (ok.assign(P=[0.1, 1.2]), "outside"),
        (ok.assign(student=["a", "a"]), "more than one P, e.g. 'a'"),
        (ok.assign(student=["a", "x"]), "missing \\['b'\\], unexpected \\['x'\\]"),
    ]:
        with pytest.raises(InvalidProbabilities, match=message):
            validate_probabilities(bad, pd.Series(["a", "b"]))
    with pytest.raises(InvalidProbabilities, match="missing \\['c'\\]"):
        validate_probabilities(ok, pd.Series(["a", "b", "c"]))


def test_kpi_payloads():
    probabilities = pd.DataFrame(
        {"student": ["a"], "P": [0.25], "goal": [0.8], "target_week_start": [dt.date(2026, 12, 14)]}
    )
    payloads = kpi_payloads(probabilities, method="normal_approximation", run_id=None, as_of_week=AS_OF)
    payload = {**payloads.per_student.drop(columns="student").iloc[0].to_dict(), **payloads.shared}
    assert payloads.per_student["student"].tolist() == ["a"]
    assert payload == {
        "P": 0.25,
        "P_method": "normal_approximation",
        "P_goal": 0.8,
        "P_target_week_start": "2026-12-14",
        "P_run_id": None,
        "P_as_of_week": "2026-11-16",
    }
