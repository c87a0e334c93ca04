"""Which P a week gets (growth.kpi.estimate_p) and the backtest loop (growth.backtest), with in-memory
fakes in place of the database and the fitting service."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from seed_growth.growth.backtest import GoalRule, backtest_weeks, run_backtest
from seed_growth.growth.goals import goal_targets
from seed_growth.growth.kpi import estimate_p
from seed_growth.growth.normal_approx import normal_approximation_p
from seed_growth.growth.probability import p_from_student_summaries
from seed_growth.window import ScoreWindow

AS_OF = dt.date(2026, 11, 16)
WINDOW = ScoreWindow(AS_OF, 6)
CONVERGED = {"max_rhat": 1.0, "min_ess_bulk": 900, "min_ess_tail": 900, "divergent_transitions": 0}
POPULATION = {
    "Intercept": {"estimate": 0.5, "error": 0.01},
    "week": {"estimate": 0.01, "error": 0.001},
    "sd_Intercept": {"estimate": 0.1},
    "sd_week": {"estimate": 0.01},
    "cor_Intercept_week": {"estimate": 0.0},
    "sigma": {"estimate": 0.08},
}


class ServiceDown(RuntimeError):
    pass


def same_summaries(students) -> pd.DataFrame:
    """Stored per-student posterior summaries, the same for every student."""
    moments = {"intercept_mean": 0.6, "intercept_sd": 0.05, "slope_mean": 0.01, "slope_sd": 0.005, "cor": 0.0}
    return pd.DataFrame({"student": list(students), **moments, "n_weeks": 6})


@pytest.fixture(scope="module")
def week():
    """Scores of 30 students over the window's 6 weeks, their targets and a stored fit of them."""
    rng = np.random.default_rng(5)
    students = np.repeat([f"s{i:02d}" for i in range(30)], 6)
    weeks = np.tile(np.arange(6), 30)
    level = np.repeat(rng.normal(0.6, 0.1, 30), 6)
    scores = pd.DataFrame(
        {
            "student": students,
            "week": weeks,
            "n_attempts": 10,
            "score": np.clip(level + 0.01 * weeks + rng.normal(0, 0.05, weeks.size), 0, 1),
        }
    )
    targets = goal_targets(scores["student"], WINDOW, goal_score=0.8, horizon_weeks=4)
    summaries = same_summaries(targets["student"])
    fit = {
        "run_id": "run-1",
        "chains": 2,
        "n_rows": len(scores),
        "diagnostics": CONVERGED,
        "model": {"link": "identity"},
        "posterior_summary": POPULATION,
    }
    return scores, targets, summaries, fit


def choose(week, *, use_bayesian=True, fit=..., predict=None):
    scores, targets, summaries, stored = week
    return estimate_p(
        len(scores),
        lambda: scores,
        targets,
        use_bayesian=use_bayesian,
        fit=stored if fit is ... else fit,
        read_fit_students=lambda run_id: summaries,
        predict_prob=predict or (lambda run_id, t: (t["goal"] * 0 + 0.25, "x")),
        service_errors=(ServiceDown,),
    )


def test_the_service_answers_when_the_fit_may_be_used(week):
    asked = []

    def predict(run_id, targets):
        asked.append(run_id)
        return pd.Series(np.linspace(0, 1, len(targets)), index=targets.index), "rao_blackwell"

    chosen = choose(week, predict=predict)
    assert asked == ["run-1"] and chosen.method == "bayesian_rao_blackwell" and chosen.run_id == "run-1"
    assert chosen.fallback_reason is None and chosen.warnings == ()
    assert chosen.p.tolist() == pytest.approx(np.linspace(0, 1, 30).tolist())


def test_the_stored_summaries_stand_in_when_the_service_is_down(week):
    _, targets, summaries, _ = week

    def predict(run_id, targets):
        raise ServiceDown("connection refused")

    chosen = choose(week, predict=predict)
    expected = p_from_student_summaries(summaries, targets, link="identity", population=POPULATION)
    assert chosen.method == "bayesian_summaries" and chosen.run_id == "run-1"
    assert chosen.p.tolist() == pytest.approx(expected.tolist())
    assert "connection refused" in chosen.warnings[0] and "run-1" in chosen.warnings[0]


def test_other_errors_of_the_service_are_not_hidden(week):
    def predict(run_id, targets):
        raise KeyError("a bug, not an outage")

    with pytest.raises(KeyError, match="a bug"):
        choose(week, predict=predict)


@pytest.mark.parametrize(
    "settings, reason",
    [
        ({"use_bayesian": False}, "METRICS_USE_BAYESIAN is false"),
        ({"fit": None}, "no fit stored for this week"),
        (
            {"fit": {"run_id": "r", "chains": 2, "n_rows": 180, "diagnostics": {**CONVERGED, "max_rhat": 1.3}}},
            "did not converge",
        ),
        ({"fit": {"run_id": "r", "chains": 2, "n_rows": 7, "diagnostics": CONVERGED}}, "is of other data"),
    ],
)
def test_the_normal_approximation_otherwise(week, settings, reason):
    scores, targets, _, _ = week

    def predict(run_id, targets):
        raise AssertionError("the service must not be asked")

    chosen = choose(week, predict=predict, **settings)
    assert chosen.method == "normal_approximation" and chosen.run_id is None
    assert reason in chosen.fallback_reason
    assert chosen.p.tolist() == pytest.approx(normal_approximation_p(scores, targets)["P"].tolist())


class MemorySource:
    """The backtest's reads from frames: a cohort whose every student reaches the goal in week 9 but s00."""

    def __init__(self, scores: pd.DataFrame):
        self.scores, self.asked = scores, []

    def weekly_scores(self, as_of_week):
        return self.scores

    def student_posterior(self, run_id):
        return same_summaries(sorted(set(self.scores["student"])))

    def observed_weeks(self, mondays):
        self.asked.append(mondays)
        students = sorted(set(self.scores["student"]))
        return pd.DataFrame(
            [
                {"student": s, "target_week_start": monday, "n": 10, "correct": 2 if s == "s00" else 9}
                for monday in mondays
                for s in students
            ],
            columns=["student", "target_week_start", "n", "correct"],
        )

    def predictive_p(self, fit, week):
        raise AssertionError("a gaussian fit is judged from its stored summaries")


def test_the_backtest_judges_each_week_with_both_methods(week):
    scores, _, _, stored = week
    source = MemorySource(scores)
    fit = {**stored, "as_of_week": AS_OF, "lookback_weeks": 6, "family": "gaussian"}
    goals = GoalRule(goal_score=0.8, horizon_weeks=2)
    assert run_backtest(source, [fit], goals, observed_until=AS_OF + dt.timedelta(weeks=1)) is None  # not yet observed
    result = run_backtest(source, [fit], goals, observed_until=AS_OF + dt.timedelta(weeks=2))
    assert result is not None and source.asked[-1] == [AS_OF + dt.timedelta(weeks=2)]
    judged = result.student_weeks.set_index("student")
    assert len(judged) == 30 and judged["reached"].sum() == 29 and judged.loc["s00", "reached"] == 0
    assert judged[["P_bayesian", "P_normal"]].stack().between(0, 1).all()
    # every student has the same stored summaries, attempts and goal, so the same Bayesian P
    assert np.ptp(judged["P_bayesian"]) < 1e-12 and np.ptp(judged["P_normal"]) > 0.01
    overall = result.summary[result.summary["as_of_week"] == "overall"]
    assert set(overall["method"]) == {"P_bayesian", "P_normal"} and (overall["students"] == 30).all()
    assert result.reliability.groupby("method")["count"].sum().tolist() == [30, 30]
    stale = {**fit, "n_rows": fit["n_rows"] + 1}  # a fit of other data than weekly_scores holds is skipped
    assert run_backtest(source, [stale], goals, observed_until=AS_OF + dt.timedelta(weeks=2)) is None


def test_backtest_weeks_are_the_latest_with_an_observed_target():
    assert backtest_weeks(dt.date(2026, 11, 16), 4, 3) == [
        dt.date(2026, 10, 5),
        dt.date(2026, 10, 12),
        dt.date(2026, 10, 19),
    ]


def test_the_rows_are_read_only_for_the_normal_approximation(week):
    scores, targets, summaries, stored = week
    reads = []

    def read_scores():
        reads.append(len(scores))
        return scores

    def estimate(use_bayesian):
        return estimate_p(len(scores), read_scores, targets, use_bayesian=use_bayesian, fit=stored,
                          read_fit_students=lambda run_id: summaries,
                          predict_prob=lambda run_id, t: (t["goal"] * 0 + 0.25, "x"),
                          service_errors=(ServiceDown,))  # fmt: skip

    assert estimate(True).method == "bayesian_x" and reads == []
    assert estimate(False).method == "normal_approximation" and reads == [len(scores)]
